"""How often the chain answers held-out questions right: the gold source cited and the key fact stated.

    .venv/bin/python scripts/chain_held_out.py [ADAPTER]     # default: the chat's adapter
    .venv/bin/python scripts/chain_held_out.py --reference   # the ceiling: data/qa's own answers, checked

Issue 4 asks for >= 10 such answers among data/qa's held-out questions; this measures it on a
fixed sample (every 4th answerable question, facts written down before measuring) and prints one
line per question. Runs the real chain over the ingested data/sample_docs (`make ingest`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from core.chain import chain_from_settings
from core.check import CheckedAnswer
from core.cli import docstring_parser
from core.settings import load_settings
from evaluation.answers import reference_answerer
from evaluation.data import Question, read_questions

ROOT = Path(__file__).resolve().parents[1]
# Every 4th answerable held-out question (fixed before measuring) and the fact its answer must
# state; "a|b" accepts either spelling.
KEY_FACTS = {
    "Which office covers sales in Italy, and who runs it?": "Bellini",
    "I'd like to apply for an internal position. Am I eligible after 8 months in my current role?": "12 months",
    "What's the welcome lunch for new starters about?": "executive",
    "How many keep-in-touch days can I do during parental leave, and are they paid?": "10",
    "Why did nobody get paged for 26 minutes during the September 2024 ingestion outage?": "warning",
    "My laptop still wants my old password after the reset and I'm working from home. What do I do?": "cached|lock",
    "How fast will I hear back after filing a report on SpeakUp?": "7 days",
    "I lost the receipt for a client lunch. Can I still get reimbursed?": "missing receipt",
    "When do I have to confirm goods receipt in ProcureHub?": "3 business days|three business days",
    "What's the hotel cap in Singapore?": "280",
    "When did the US data region launch?": "February 2024",
    "What's the list price of the ATEX sensor?": "649",
    "How many Kestrel sensors are installed worldwide?": "140,000",
    "What temperature range can the KD-GW2 operate in?": "60",
    "Our KD-400 battery died after two years. Is that covered?": "12-month|12 months",
    "What ambient temperature range applies to the KD-400X in a hazardous area?": "70",
}


def answered_with(result: CheckedAnswer, source: str, fact: str) -> bool:
    """Not refused, the gold source among the verified citations, the fact in a supported sentence."""
    supported = " ".join(s.text for s in result.sentences if s.supported).lower()
    cited = {s["source"] for s in result.sources}
    return not result.refused and source in cited and any(f.lower() in supported for f in fact.split("|"))


def ask_chain(chain: Any, question: Question) -> CheckedAnswer:
    return chain.invoke({"question": question.question, "history": []})


def graded(ask: Callable[[Question], CheckedAnswer]) -> Iterator[tuple[str, CheckedAnswer, bool, float]]:
    """(question, answer, right?, seconds) for each of KEY_FACTS' questions, asked through `ask`."""
    held_out = {q.question: q for q in read_questions(ROOT / "data" / "qa" / "eval.jsonl")}
    for question, fact in KEY_FACTS.items():
        started = time.perf_counter()
        result = ask(held_out[question])
        ok = answered_with(result, held_out[question].gold_sources[0], fact)
        yield question, result, ok, time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = docstring_parser("scripts/chain_held_out.py", __doc__)
    parser.add_argument("adapter", nargs="?", help="adapter name or path (default: the chat's)")
    parser.add_argument("--reference", action="store_true", help="data/qa's own answers, checked: the ceiling")
    args = parser.parse_args(argv)
    settings = load_settings()
    if args.reference:
        ask = reference_answerer(settings)
    else:
        chain = chain_from_settings(settings, adapter=args.adapter)
        ask = partial(ask_chain, chain)
    right = 0
    for question, result, ok, seconds in graded(ask):
        right += ok
        print(f"{'ok' if ok else 'no'} {seconds:5.1f}s {question[:60]!r} -> {result.answer[:100]!r}", flush=True)
    print(f"{right} of {len(KEY_FACTS)} answered with the gold source and the key fact")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
