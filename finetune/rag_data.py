"""python -m finetune.rag_data IN OUT: Q&A lines → training lines in the chain's own prompt.

Each `{"question", "answer", "source"}` line becomes the exact messages the chain sends (system,
few-shot turns with weight 0, the numbered passages the retriever finds, the question) and, as
the target, the reference answer citing the passage it comes from as [n]. When the retriever
misses the answer's source, or the line has none, the target is the chain's refusal. An adapter
trained on this learns what the chain asks of it: copy from the passages, cite, or refuse.

    python -m finetune.rag_data data/qa/train.jsonl data/qa/rag/train.jsonl
    python -m finetune.rag_data --from-feedback data/qa/rag/feedback.jsonl   # the chat's 👍/👎
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from core.check import NAMED_CITATION, REFUSAL
from core.cli import add_store_options
from core.text import content_words


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
    from core.chain import format_docs, rag_prompt
    from core.llm import chat_dicts

    prompt = chat_dicts(rag_prompt().format_messages(context=format_docs(docs), question=question))
    shown = [m | {"weight": 0} if m["role"] == "assistant" else m for m in prompt]
    target = {"role": "assistant", "content": cited_answer(answer, source, docs)}
    return {"messages": [*shown, target], "source": source, "retrieved": [d.metadata.get("source") for d in docs]}


def convert(settings: Any, source_file: Path, output: Path) -> dict[str, int]:
    """Write `output` (atomically) from the Q&A lines of `source_file`; counts of what was written."""
    from tqdm import tqdm

    from core.jsonl import read_objects
    from core.retrieval import retriever
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
        lines.append(example)
    write_lines(output, lines)
    return counts


def write_lines(output: Path, lines: list[dict[str, Any]]) -> None:
    """`output` replaced in one step: a run that stops half-way leaves the old file, not half a new one."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    partial.replace(output)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.rag_data",
        description=__doc__.splitlines()[0],
        usage="%(prog)s [options] IN OUT | --from-feedback [FEEDBACK] OUT",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="IN OUT",
        help='JSONL of {"question", "answer", "source"} '
        "lines (or, with --from-feedback, the feedback file), then the chat JSONL to write (replaced)",
    )
    parser.add_argument(
        "--from-feedback",
        action="store_true",
        help="read the chat's 👍/👎 (default: DATA_DIR/feedback/feedback.jsonl): corrections and approved answers "
        "become examples (finetune/feedback_data.py)",
    )
    add_store_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.paths) > 2 or (len(args.paths) == 1 and not args.from_feedback):
        parser.error("expected IN OUT, or --from-feedback [FEEDBACK] OUT")
    from core.cli import fail, ingested_settings
    from finetune.data import DataError

    *source, output = args.paths
    if source and not source[0].is_file():
        return fail(f"{source[0]}: no such file")
    settings = ingested_settings(args.collection, args.data_dir, args.user)
    if isinstance(settings, int):
        return settings
    if args.from_feedback:
        from core.feedback import FEEDBACK_FILE

        return from_feedback(settings, source[0] if source else settings.data_dir / FEEDBACK_FILE, output)

    try:
        counts = convert(settings, source[0], output)
    except DataError as exc:
        return fail(str(exc))
    print(
        f"{counts['answered']} answered, {counts['refused']} refusals "
        f"({counts['missed']} because retrieval missed the source) -> {output}"
    )
    return 0


def from_feedback(settings: Any, feedback: Path, output: Path) -> int:
    from core.cli import fail
    from finetune.feedback_data import FeedbackError, convert_feedback

    try:
        counts = convert_feedback(settings, feedback, output)
    except FeedbackError as exc:
        return fail(str(exc))
    written = counts["corrected"] + counts["approved"]
    print(
        f"{written} examples ({counts['corrected']} corrected, {counts['approved']} approved); left out: "
        f"{counts['no correction']} 👎 without a correction, {counts['not in the passages']} whose answer the "
        f"passages retrieved now do not back -> {output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
