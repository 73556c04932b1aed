"""python -m finetune.rag_data IN OUT: Q&A lines → training lines in the chain's own prompt.

Each `{"question", "answer", "source"}` line becomes the exact messages the chain sends (system,
few-shot turns with weight 0, the numbered passages the retriever finds, the question) and, as
the target, the reference answer citing the passage it comes from as [n]. When the retriever
misses the answer's source, or the line has none, the target is the chain's refusal. An adapter
trained on this learns what the chain asks of it: copy from the passages, cite, or refuse.

    python -m finetune.rag_data data/qa/train.jsonl data/qa/rag/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from app.check import NAMED_CITATION, REFUSAL, content_words
from app.cli import add_store_options


def cited_answer(answer: str, source: str | None, docs: list[Document]) -> str:
    """The answer with its "(Source: …)" replaced by [n] of the best passage from `source`."""
    passages = [n for n, doc in enumerate(docs, start=1) if source and doc.metadata.get("source") == source]
    if not passages:
        return REFUSAL
    words = content_words(answer)
    best = max(passages, key=lambda n: len(words & content_words(docs[n - 1].page_content)))
    plain = NAMED_CITATION.sub("", answer).strip()
    end = len(plain.rstrip(".!?"))
    return f"{plain[:end]} [{best}]{plain[end:] or '.'}"


def rag_example(question: str, answer: str, source: str | None, docs: list[Document]) -> dict[str, Any]:
    from app.chain import format_docs, rag_prompt
    from app.llm import chat_dicts

    prompt = chat_dicts(rag_prompt().format_messages(context=format_docs(docs), question=question))
    shown = [m | {"weight": 0} if m["role"] == "assistant" else m for m in prompt]
    target = {"role": "assistant", "content": cited_answer(answer, source, docs)}
    return {"messages": [*shown, target], "source": source, "retrieved": [d.metadata.get("source") for d in docs]}


def convert(settings: Any, source_file: Path, output: Path) -> dict[str, int]:
    """Write `output` (atomically) from the Q&A lines of `source_file`; counts of what was written."""
    from tqdm import tqdm

    from app.jsonl import read_objects
    from app.retrieval import retriever
    from finetune.data import DataError, text

    search = retriever(settings)
    lines, counts = [], {"answered": 0, "refused": 0, "missed": 0}
    for where, record in tqdm(read_objects(source_file, DataError, "questions"), desc="retrieving", unit="q"):
        if record.get("source") is not None and not isinstance(record["source"], str):
            raise DataError(f"{where}: field 'source' must be a path string or null")
        question, answer = text(record, "question", where), text(record, "answer", where)
        example = rag_example(question, answer, record.get("source"), search.invoke(question))
        refused = example["messages"][-1]["content"] == REFUSAL
        counts["refused" if refused else "answered"] += 1
        counts["missed"] += bool(refused and record.get("source"))
        lines.append(json.dumps(example, ensure_ascii=False))
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text("\n".join(lines) + "\n", encoding="utf-8")
    partial.replace(output)
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finetune.rag_data", description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path, help='JSONL of {"question", "answer", "source"} lines')
    parser.add_argument("output", type=Path, help="chat JSONL to write (replaced)")
    add_store_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.cli import fail, ingested_settings
    from finetune.data import DataError

    if not args.input.is_file():
        return fail(f"{args.input}: no such file")
    settings = ingested_settings(args.collection, args.data_dir, args.user)
    if isinstance(settings, int):
        return settings
    try:
        counts = convert(settings, args.input, args.output)
    except DataError as exc:
        return fail(str(exc))
    print(
        f"{counts['answered']} answered, {counts['refused']} refusals "
        f"({counts['missed']} because retrieval missed the source) -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
