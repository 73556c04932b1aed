"""Answer quality per configuration, running the real model: no-RAG base, RAG base, RAG + adapter;
and `reference`, the question file's own answers through the same retrieval and check: what a model
that answered exactly like the reference would get (its refusals are retrieval's and the check's).

Each (question, configuration) result is cached under DATA_DIR/eval_cache, keyed by everything
that changes the answer (model, adapter, chat and retrieval settings, what the collection holds),
so a re-run after changing one setting only recomputes what that setting touches.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from core.metrics import agrees_with_reference, mean, token_f1
from core.settings import Settings
from evaluation.data import Question

if TYPE_CHECKING:
    from core.check import CheckedAnswer

NO_RAG_SYSTEM = "Answer the question in one or two sentences. If you don't know, reply exactly: {refusal}"
NO_RAG_REFUSAL = "the model said it does not know"


@dataclass(frozen=True)
class Config:
    name: str  # as given: no-rag, rag, rag+ADAPTER, reference
    rag: bool
    adapter: str  # "none" = the base model; a name under data/adapters, a path, or "newest"
    reference: bool = False  # the reference answers instead of a model's

    @classmethod
    def parse(cls, text: str) -> Config:
        if text == "no-rag":
            return cls(text, rag=False, adapter="none")
        if text == "rag":
            return cls(text, rag=True, adapter="none")
        if text == "reference":
            return cls(text, rag=True, adapter="none", reference=True)
        if text.startswith("rag+") and len(text) > 4:
            return cls(text, rag=True, adapter=text[4:])
        raise ValueError(f"unknown configuration '{text}': use no-rag, rag, rag+ADAPTER (rag+newest) or reference")


class Cache:
    """One JSON line per answered (question, configuration)."""

    def __init__(self, path: Path):
        self.path = path
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        self.entries = {e["key"]: e["result"] for e in map(json.loads, lines)}

    def get(self, key: str) -> dict | None:
        return self.entries.get(key)

    def put(self, key: str, result: dict) -> None:
        self.entries[key] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"key": key, "result": result}, ensure_ascii=False) + "\n")


def evaluate(settings: Settings, questions: list[Question], configs: list[Config]) -> dict[str, dict]:
    """{config name: metrics} and, under "answers", every answer for the report."""
    cache = Cache(settings.data_dir / "eval_cache" / "answers.jsonl")
    results = {}
    for config in configs:
        identity = config_identity(settings, config)
        answer: Answerer | None = None  # loaded on the first answer not in the cache
        records = []
        for q in tqdm(questions, desc=f"answers ({config.name})", unit="q", disable=None):
            asked = [q.question, *([q.history] if q.history else [])]  # a follow-up's answer depends on its history
            key = hashlib.sha256(json.dumps([identity, *asked]).encode()).hexdigest()
            record = cache.get(key)
            if record is None:
                answer = answer or Answerer(settings, config)
                record = answer(q)
                cache.put(key, record)
            records.append(record)
        results[config.name] = summarize(settings, questions, records)
    return results


def config_identity(settings: Settings, config: Config) -> dict[str, Any]:
    """Everything that changes an answer of `config`."""
    from core.bm25 import fingerprint
    from core.llm import llm_precision, resolve_adapter
    from core.served_llm import served_model
    from core.store import checked_collection

    name = None if config.adapter == "newest" else config.adapter
    if config.reference:
        model: list[Any] = ["reference"]
        adapter, manifest = None, None
    elif settings.llm_backend == "openai-compatible":  # what the server does with a model name is its business
        model = [settings.llm_server.url, served_model(settings, name)]
        adapter, manifest = None, None
    else:
        model = [settings.llm_base, llm_precision(settings), settings.llm_backend]
        adapter = resolve_adapter(settings, name)
        manifest = adapter / "manifest.json" if adapter else None
    return {
        "code": chain_code(),
        "config": [config.rag, str(adapter)],
        "adapter": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest and manifest.is_file() else None,
        "llm": model,
        "chat": settings.chat.model_dump(),
        "retrieval": settings.retrieval.model_dump() if config.rag else None,
        "collection": fingerprint(checked_collection(settings, settings.collection)) if config.rag else None,
    }


def chain_code() -> str:
    """The code an answer passes through as written (prompt, stop strings, retrieval, model wrapper,
    check, the reference's citing): changing it changes every answer."""
    import importlib
    import inspect

    modules = ("core.chain", "core.check", "core.llm", "core.llama_llm", "core.retrieval", "finetune.rag_data")
    source = "".join(inspect.getsource(importlib.import_module(m)) for m in modules)
    return hashlib.sha256(source.encode()).hexdigest()


class Answerer:
    """Question → {"answer", "refused", "reason", "raw_answer", "cited", "grounded"} for one configuration."""

    def __init__(self, settings: Settings, config: Config):
        from core.chain import chain_from_settings
        from core.llm import chat_model

        adapter = None if config.adapter == "newest" else config.adapter
        self.config = config
        if config.reference:
            self.run: Any = reference_answerer(settings)
        elif config.rag:
            self.run = chain_from_settings(settings, adapter=adapter)
        else:
            self.run = chat_model(settings, adapter)

    def __call__(self, question: Question) -> dict[str, Any]:
        from core.check import REFUSAL, is_refusal

        if self.config.reference:
            return record(self.run(question))
        if not self.config.rag:
            messages = [("system", NO_RAG_SYSTEM.format(refusal=REFUSAL)), ("human", question.question)]
            answer = str(self.run.invoke(messages).content).strip()
            refused = is_refusal(answer)
            reason = NO_RAG_REFUSAL if refused else ""
            return {
                "answer": answer,
                "refused": refused,
                "reason": reason,
                "raw_answer": answer,
                "cited": [],
                "grounded": None,
            }
        return record(self.run.invoke({"question": question.question, "history": list(question.history)}))


def reference_answerer(settings: Settings) -> Callable[[Question], CheckedAnswer]:
    """The question's reference answer, citing the best retrieved passage of a gold source (none
    retrieved: a refusal), checked like a model's answer."""
    from functools import partial

    from core.check import check
    from core.models import encode, load_embedder
    from core.retrieval import retriever
    from core.verifier import load_verifier
    from finetune.rag_data import cited_answer

    search, embed = retriever(settings), partial(encode, settings, load_embedder(settings))
    verify = load_verifier(settings)

    def answer(question: Question) -> CheckedAnswer:
        docs = search.invoke(question.question)
        retrieved = {d.metadata.get("source") for d in docs}
        gold = next((g for g in (g.partition("#")[0] for g in question.gold_sources) if g in retrieved), None)
        text = cited_answer(question.answer, gold, docs)
        return check({"question": question.question, "docs": docs, "answer": text}, settings.chat, embed, verify)

    return answer


def record(result: CheckedAnswer) -> dict[str, Any]:
    return {
        "answer": result.answer,
        "refused": result.refused,
        "reason": result.reason,  # why the check refused: the model, retrieval or the check itself
        "raw_answer": result.raw_answer,  # the model's words before the check
        "cited": [] if result.refused else sorted({s["source"] for s in result.sources}),
        "grounded": None if result.refused else all(s.supported for s in result.sentences),
    }


def summarize(settings: Settings, questions: list[Question], records: list[dict]) -> dict[str, Any]:
    from core.models import encode, load_embedder

    pairs = list(zip(questions, records, strict=True))
    answerable = [(q, r) for q, r in pairs if q.answerable]
    unanswerable = [(q, r) for q, r in pairs if not q.answerable]
    with_reference = [(q, r) for q, r in answerable if q.answer]
    vectors = encode(
        settings,
        load_embedder(settings),
        [r["answer"] for _, r in with_reference] + [q.answer for q, _ in with_reference],
    )
    n = len(with_reference)
    cited = [(q, r) for q, r in answerable if r["cited"] and q.gold_sources]
    answered = [r for _, r in pairs if r["grounded"] is not None]
    accepted = [(q, r) for q, r in with_reference if not r["refused"]]
    return {
        "token_f1": mean(token_f1(r["answer"], q.answer) for q, r in with_reference),
        "similarity": mean(float(vectors[i] @ vectors[n + i]) for i in range(n)),
        "citation_precision": mean(
            mean(float(any(c == g.partition("#")[0] for g in q.gold_sources)) for c in r["cited"]) for q, r in cited
        )
        if cited
        else None,
        "grounded": mean(float(r["grounded"]) for r in answered) if answered else None,
        # of the answers the check let through, the share that state what the reference states
        "accepted_correct": mean(float(agrees_with_reference(r["answer"], q.answer, q.question)) for q, r in accepted)
        if accepted
        else None,
        "refusal_unanswerable": mean(float(r["refused"]) for _, r in unanswerable) if unanswerable else None,
        "false_refusal": mean(float(r["refused"]) for _, r in answerable) if answerable else None,
        "false_refusal_reasons": dict(
            Counter(r.get("reason") or "?" for _, r in answerable if r["refused"]).most_common()
        ),
        "questions": len(pairs),
        "answers": [{"question": q.question, **r} for q, r in pairs],
    }
