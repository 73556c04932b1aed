"""Speed of the answer check: python -m benchmarks.check.

A 3-sentence answer over the 4 passages retrieved for each of the first data/qa questions, through the
check with the word rules (the peer: today's check without a verifier) and with a verifier (--verifier
FOLDER, else the one `chat.verifier` picks; none trained: the rules alone), on all cores; p50 and p95
over the questions after a warm-up. The embedder's calls are part of both.
"""

from __future__ import annotations

import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = 20


def cases(settings: Any) -> list[dict[str, Any]]:
    """Each question, its 4 passages, and an answer of three sentences taken from its reference and passages."""
    from core.retrieval import retriever
    from evaluation.checks import claim_of
    from evaluation.data import read_questions
    from finetune.perturb import sentences_of

    search = retriever(settings, k=4)
    out = []
    for question in read_questions(ROOT / "data" / "qa" / "eval.jsonl")[:QUESTIONS]:
        docs = search.invoke(question.question)
        extra = [s for d in docs for s in sentences_of(d.page_content)][:2]
        answer = " ".join([claim_of(question.answer or ""), *extra])
        out.append({"question": question.question, "docs": docs, "answer": answer})
    return out


def timed(check: Any, inputs: list[dict[str, Any]]) -> list[float]:
    check(inputs[0])  # warm-up: loads, first-call allocations
    times = []
    for case in inputs:
        started = time.perf_counter()
        check(case)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main(argv: list[str] | None = None) -> int:
    from core.check import check
    from core.cli import docstring_parser, quiet_libraries
    from core.models import encode, load_embedder
    from core.settings import apply_environment, load_settings
    from core.verifier import load_verifier, verifier_dir

    parser = docstring_parser("python -m benchmarks.check", __doc__)
    parser.add_argument("--verifier", type=Path, help="a verifier folder (python -m finetune --verifier)")
    args = parser.parse_args(argv)
    quiet_libraries()
    settings = load_settings()
    apply_environment(settings)
    embed = partial(encode, settings, load_embedder(settings))
    inputs = cases(settings)
    chosen = settings.chat.model_copy(update={"verifier": str(args.verifier)}) if args.verifier else settings.chat
    folder = verifier_dir(settings.model_copy(update={"chat": chosen}))
    rows = {"word rules (no verifier)": timed(partial(check, settings=settings.chat, embed=embed), inputs)}
    if folder is not None:
        verify = load_verifier(settings.model_copy(update={"chat": chosen}))
        rows[f"verifier {folder.name}"] = timed(partial(check, settings=chosen, embed=embed, verify=verify), inputs)
    lines = [
        f"## Answer check benchmark — {time.strftime('%Y-%m-%d')}",
        "",
        f"{machine()} A 3-sentence answer over 4 retrieved passages, {len(inputs)} data/qa questions.",
        "Command: `make bench` (`python -m benchmarks.check`). Goal: p50 ≤ 100 ms.",
        "",
        "| check | p50 ms | p95 ms |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {statistics.median(t):.0f} | {sorted(t)[int(0.95 * (len(t) - 1))]:.0f} |"
            for name, t in rows.items()
        ),
    ]
    print("\n".join(lines))
    write_section("Answer check benchmark", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
