"""How well the answer check tells right from wrong (`python -m evaluation Q.jsonl --check`).

For every question with a reference answer whose gold source was retrieved, the reference's first
sentence goes through the check as the model's answer, as written (it should be accepted) and with
one planted error of each kind (each should be refused). A kind that does not apply to a sentence
(no number to change, no name to swap) is skipped for it; the report counts how many were tried.
"""

from __future__ import annotations

import random
from functools import partial
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from core.check import CITATION, NAMED_CITATION
from core.facts import bare_reply
from core.text import SENTENCE_END
from evaluation.data import Question
from finetune.perturb import KINDS, planted

if TYPE_CHECKING:
    from langchain_core.documents import Document

    from core.settings import Settings


def claim_of(answer: str) -> str:
    """The reference's first sentence, without citations: the direct answer. A bare "Yes." or "Maybe!"
    claims nothing on its own: it goes with the sentence after it, as the check reads it."""
    plain = CITATION.sub("", NAMED_CITATION.sub("", answer)).strip()
    sentences = [s.strip() for s in SENTENCE_END.split(plain) if s.strip()] or [plain]
    return " ".join(sentences[:2]) if bare_reply(sentences[0]) and len(sentences) > 1 else sentences[0]


def evaluate(settings: Settings, questions: list[Question], seed: int = 0) -> dict[str, Any]:
    """{"kinds": {kind: {"tried", "accepted", "rate"}}, "questions": n used, "examples": [...]}."""
    from core.check import check
    from core.models import encode, load_embedder
    from core.retrieval import retriever
    from core.verifier import load_verifier

    search, embed = retriever(settings), partial(encode, settings, load_embedder(settings))
    verify = load_verifier(settings)
    usable = [q for q in questions if q.answerable and q.answer and q.gold_sources]
    others = [claim_of(q.answer) for q in usable]
    rng = random.Random(seed)
    counts = {kind: [0, 0] for kind in KINDS}
    examples: list[dict[str, Any]] = []
    used = 0
    for question in tqdm(usable, desc="checking the check", unit="q", disable=None):
        docs = search.invoke(question.question)
        if not any(gold_hit(d, question.gold_sources) for d in docs):
            continue
        used += 1
        claim = claim_of(question.answer)
        for kind in KINDS:
            answer = planted(kind, claim, [d.page_content for d in docs], others, rng)
            if answer is None:
                continue
            result = check(
                {"question": question.question, "docs": docs, "answer": answer}, settings.chat, embed, verify
            )
            counts[kind][0] += 1
            counts[kind][1] += not result.refused
            if (kind == "correct") == result.refused:  # a mistake of the check's, kept for the report
                examples.append(
                    {"kind": kind, "question": question.question, "answer": answer, "reason": result.reason}
                )
    kinds = {k: {"tried": t, "accepted": a, "rate": a / t if t else None} for k, (t, a) in counts.items()}
    return {"questions": used, "kinds": kinds, "examples": examples}


def gold_hit(doc: Document, gold: list[str]) -> bool:
    source = str(doc.metadata.get("source", ""))
    return any(source == g.split("#")[0] for g in gold)


def compare(settings: Settings, questions: list[Question]) -> dict[str, Any]:
    """The check with the word rules and with the settings' verifier (when there is one), on the same claims."""
    from core.verifier import verifier_dir

    runs = {"rules": settings.model_copy(update={"chat": settings.chat.model_copy(update={"verifier": "none"})})}
    if (folder := verifier_dir(settings)) is not None:
        runs[f"verifier {folder.name}"] = settings
    return {name: evaluate(run, questions) for name, run in runs.items()}


def markdown(results: dict[str, dict[str, Any]], name: str) -> list[str]:
    """One row per kind, one column per check (accepted rate; tried in brackets)."""
    first = next(iter(results.values()))
    lines = [f"The answer check on {name} ({first['questions']} questions whose gold source was retrieved):", ""]
    lines += ["| kind | " + " | ".join(results) + " | should be |", "|---" + "|---:" * len(results) + "|---|"]
    for kind in KINDS:
        cells = []
        for result in results.values():
            row = result["kinds"][kind]
            cells.append("-" if row["rate"] is None else f"{row['rate']:.3f} ({row['tried']})")
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {'>= 0.95' if kind == 'correct' else '<= 0.10'} |")
    return lines
