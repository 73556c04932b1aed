"""python -m evaluation QUESTIONS.jsonl: how well retrieval (and, with --answers, the chain) does.

    python -m evaluation data/qa/eval.jsonl                        # dense / bm25 / hybrid table
    python -m evaluation data/qa/eval.jsonl --answers no-rag,rag,rag+newest --limit 20
    python -m evaluation data/qa/eval.jsonl --min-recall-at-5 0.9   # a gate: exit 1 below it
    python -m evaluation data/qa/followups.jsonl --answers rag     # follow-ups: how each search finds them
    python -m evaluation data/feedback/feedback.jsonl --answers rag  # the chat's 👎 as a regression set
    python -m evaluation data/qa/eval.jsonl --check               # the answer check vs planted errors

Gates apply to the configured retrieval mode (ASKDOCS_RETRIEVAL__MODE) and to the last --answers
configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from core.cli import add_store_options, fail, ingested_settings, positive_int
from core.settings import SEARCH_MODES
from evaluation import followups
from evaluation.data import QuestionError, read_questions

EXIT_GATE = 1
RETRIEVAL_COLUMNS = ["recall@1", "recall@3", "recall@5", "recall@10", "hit@5", "mrr", "ndcg@10", "p50_ms", "p95_ms"]
ANSWER_COLUMNS = [
    "token_f1",
    "similarity",
    "citation_precision",
    "grounded",
    "accepted_correct",
    "refusal_unanswerable",
    "false_refusal",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation", description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("questions", type=Path, help="JSONL: question, answer, gold_sources, answerable")
    add_store_options(parser)
    parser.add_argument("--modes", default="dense,bm25,hybrid", help="retrieval modes to compare")
    parser.add_argument("--answers", default="", help="answer configurations: no-rag, rag, rag+ADAPTER (slow)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also measure the answer check: reference answers as written and with planted errors, through the\n"
        "check with the word rules (verifier none) and with the configured verifier",
    )
    parser.add_argument("--limit", type=positive_int, help="only the first N questions")
    parser.add_argument("--min-recall-at-5", type=float, help="gate: recall@5 of the configured mode")
    parser.add_argument("--min-mrr", type=float, help="gate: MRR of the configured mode")
    parser.add_argument("--min-refusal-rate", type=float, help="gate: refusals on unanswerable questions")
    parser.add_argument("--max-false-refusal-rate", type=float, help="gate: refusals on answerable questions")
    parser.add_argument("--report", type=Path, help="also write the tables to this markdown file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        questions = read_questions(args.questions)[: args.limit]
        modes = parse_modes(args.modes)
        from evaluation.answers import Config

        configs = [Config.parse(c.strip()) for c in args.answers.split(",") if c.strip()]
    except (QuestionError, ValueError) as exc:
        return fail(str(exc))
    settings = ingested_settings(args.collection, args.data_dir, args.user)
    if isinstance(settings, int):
        return settings
    from evaluation import answers, checks, retrieval

    results: dict[str, Any] = {"questions": str(args.questions), "collection": settings.collection}
    results["search"] = settings.retrieval.model_dump(exclude={"mode"})  # what the modes were run with
    results["retrieval"] = retrieval.evaluate(settings, questions, modes)
    if any(q.history and q.gold_sources for q in questions):
        results["followups"] = followups.evaluate(settings, questions)
    if configs:
        results["answers"] = answers.evaluate(settings, questions, configs)
    if args.check:
        results["check"] = checks.compare(settings, questions)
    report = markdown(results, settings.retrieval.mode)
    if args.report:
        args.report.write_text(report, encoding="utf-8")
    print(json.dumps(results, indent=2, ensure_ascii=False) if args.json else report)
    failures = gates(args, results, settings.retrieval.mode)
    for failure in failures:
        print(f"gate failed: {failure}", file=sys.stderr)
    return EXIT_GATE if failures else 0


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in SEARCH_MODES]
    if unknown or not modes:
        raise ValueError(
            f"--modes: unknown mode {unknown[0] if unknown else '(none)'}; choose from {', '.join(SEARCH_MODES)}"
        )
    return modes


def gates(args: argparse.Namespace, results: dict[str, Any], mode: str) -> list[str]:
    """The thresholds asked for that the results do not reach."""
    checks = []
    if args.min_recall_at_5 is not None or args.min_mrr is not None:
        row = results["retrieval"].get(mode)
        if row is None:
            return [f"the configured retrieval mode '{mode}' was not evaluated (--modes)"]
        checks += [("recall@5", row["recall@5"], args.min_recall_at_5, 1), ("mrr", row["mrr"], args.min_mrr, 1)]
    if results.get("answers"):
        last, row = list(results["answers"].items())[-1]
        checks += [
            (f"refusal rate ({last})", row["refusal_unanswerable"], args.min_refusal_rate, 1),
            (f"false-refusal rate ({last})", row["false_refusal"], args.max_false_refusal_rate, -1),
        ]
    failures = []
    for name, value, threshold, sign in checks:
        if threshold is None:
            continue
        if value is None or sign * (value - threshold) < 0:
            bound = ">=" if sign > 0 else "<="
            failures.append(f"{name} {fmt(value)} (needs {bound} {threshold})")
    return failures


def markdown(results: dict[str, Any], mode: str) -> str:
    search = ", ".join(f"{name} {value}" for name, value in results["search"].items())
    lines = [f"Retrieval on {results['questions']} (collection {results['collection']}; {search}):", ""]
    lines += table("mode", RETRIEVAL_COLUMNS, results["retrieval"])
    if missed := results["retrieval"].get(mode, {}).get("missed@5"):
        lines += ["", f"No gold source in the top 5 ({mode}):", "", *(f"- {question}" for question in missed)]
    if results.get("answers"):
        lines += ["", "Answers:", ""]
        lines += table("configuration", ANSWER_COLUMNS, results["answers"])
        lines += ["", "Why answerable questions were refused:", ""]
        for name, row in results["answers"].items():
            reasons = "; ".join(f"{reason} ({n})" for reason, n in row["false_refusal_reasons"].items())
            lines.append(f"- {name}: {reasons or 'none refused'}")
    lines += followups.markdown(results)
    if results.get("check"):
        from evaluation import checks

        lines += ["", *checks.markdown(results["check"], results["questions"])]
    return "\n".join(lines) + "\n"


def table(first: str, columns: list[str], rows: dict[str, dict]) -> list[str]:
    head = [f"| {first} | " + " | ".join(columns) + " |", "|---" + "|---:" * len(columns) + "|"]
    return head + [f"| {name} | " + " | ".join(fmt(row[c]) for c in columns) + " |" for name, row in rows.items()]


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)
