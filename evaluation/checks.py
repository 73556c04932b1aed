"""How well the answer check tells right from wrong (`python -m evaluation Q.jsonl --check`).

For every question with a reference answer whose gold source was retrieved, the reference's first
sentence goes through the check as the model's answer, as written (it should be accepted) and with
one planted error of each kind (each should be refused). A kind that does not apply to a sentence
(no number to change, no name to swap) is skipped for it; the report counts how many were tried.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from core.check import CITATION, NAMED_CITATION, NUMBER, SENTENCE_END, STOPWORDS, numbers_in
from evaluation.data import Question

if TYPE_CHECKING:
    from langchain_core.documents import Document

    from core.settings import Settings

KINDS = (
    "correct",  # the reference sentence as written: should be accepted
    "number_absent",  # a number changed to one no passage has
    "number_swapped",  # a number replaced by another number from the same passages
    "negation",  # "is" -> "is not" (or a negation removed)
    "entity_swapped",  # a name replaced by another name from the passages
    "unit_changed",  # EUR -> USD, days -> weeks, ...
    "spliced",  # the subject of the sentence, the rest from another passage's sentence
    "other_answer",  # another question's reference sentence
)
AUXILIARY = re.compile(r"\b(is|are|was|were|can|must|will|should|does|do|has|have)\b(?! not\b)")
NEGATED = re.compile(r"\b(is|are|was|were|can|must|will|should|does|do|has|have) not\b|\b(cannot)\b")
UNITS = {
    "EUR": "USD",
    "USD": "EUR",
    "€": "$",
    "$": "€",
    "SGD": "EUR",
    "GBP": "EUR",
    "CHF": "EUR",
    "km": "m",
    "kg": "g",
    "GB": "MB",
    "MB": "GB",
    "%": " points",
    "°C": "°F",
    "days": "weeks",
    "weeks": "months",
    "months": "years",
    "years": "months",
    "hours": "minutes",
    "minutes": "seconds",
    "seconds": "minutes",
    "day": "week",
    "week": "month",
    "month": "year",
    "hour": "minute",
}
UNIT = re.compile(
    r"(?<=\d)\s?(EUR|USD|SGD|GBP|CHF|€|%|°C|km|kg|GB|MB)\b|(?<=\d )(days?|weeks?|months?|years|hours?|"
    r"minutes|seconds)\b|(€|\$)(?=\s?\d)"
)
NAME = re.compile(r"(?<![.!?:]\s)(?<!^)(?<!\n)\b[A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+)*\b")


def claim_of(answer: str) -> str:
    """The reference's first sentence, without citations: the direct answer."""
    plain = CITATION.sub("", NAMED_CITATION.sub("", answer)).strip()
    return next((s.strip() for s in SENTENCE_END.split(plain) if s.strip()), plain)


def planted(kind: str, claim: str, docs: list[Document], others: list[str], rng: random.Random) -> str | None:
    """`claim` with one error of `kind`, or None where the kind does not apply."""
    context = "\n".join(d.page_content for d in docs)
    if kind == "correct":
        return claim
    if kind == "other_answer":
        return rng.choice([o for o in others if o != claim]) if len(others) > 1 else None
    if kind == "number_absent":
        return replace_number(claim, lambda n: str(int(re.sub(r"\D", "", n) or 0) * 3 + 7), context, rng)
    if kind == "number_swapped":
        pool = sorted({n for n in NUMBER.findall(context) if n.isdigit()} - numbers_in(claim))
        return replace_number(claim, lambda _: rng.choice(pool), context, rng) if pool else None
    if kind == "negation":
        return negated(claim)
    if kind == "entity_swapped":
        names, pool = names_in(claim), sorted(names_in(context) - names_in(claim))
        return rng.choice(pool).join(claim.split(rng.choice(sorted(names)), 1)) if names and pool else None
    if kind == "unit_changed":
        match = UNIT.search(claim)
        if not match:
            return None
        unit = next(g for g in match.groups() if g)
        return claim[: match.start()] + match.group(0).replace(unit, UNITS[unit]) + claim[match.end() :]
    if kind == "spliced":
        return spliced(claim, docs, rng)
    raise ValueError(kind)


def names_in(text: str) -> set[str]:
    """Capitalised words (and runs of them) that are not a sentence's first word nor a common word."""
    return {n for n in NAME.findall(text) if n.split()[0].lower() not in STOPWORDS and len(n) > 2}


def replace_number(claim: str, new: Callable[[str], str], context: str, rng: random.Random) -> str | None:
    numbers = [m for m in NUMBER.finditer(claim) if not re.fullmatch(r"(19|20)\d\d", m.group(0))]  # not years
    if not numbers:
        return None
    match = rng.choice(numbers)
    value = new(match.group(0))
    return claim[: match.start()] + value + claim[match.end() :] if value != match.group(0) else None


def negated(claim: str) -> str | None:
    if match := NEGATED.search(claim):
        return claim[: match.start()] + (match.group(1) or "can") + claim[match.end() :]
    if match := AUXILIARY.search(claim):
        return claim[: match.end()] + " not" + claim[match.end() :]
    return None


def spliced(claim: str, docs: list[Document], rng: random.Random) -> str | None:
    """The claim's first half (its subject), then the second half of a sentence from another passage."""
    words = claim.split()
    others = [
        s.split() for d in docs for s in SENTENCE_END.split(d.page_content) if len(s.split()) >= 6 and s not in claim
    ]
    if len(words) < 6 or not others:
        return None
    other = rng.choice(others)
    return " ".join(words[: len(words) // 2] + other[len(other) // 2 :]).rstrip(".") + "."


def evaluate(settings: Settings, questions: list[Question], seed: int = 0) -> dict[str, Any]:
    """{"kinds": {kind: {"tried", "accepted", "rate"}}, "questions": n used, "examples": [...]}."""
    from core.check import check
    from core.models import encode, load_embedder
    from core.retrieval import retriever

    search, embed = retriever(settings), partial(encode, settings, load_embedder(settings))
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
            answer = planted(kind, claim, docs, others, rng)
            if answer is None:
                continue
            result = check({"question": question.question, "docs": docs, "answer": answer}, settings.chat, embed)
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


def markdown(result: dict[str, Any], name: str) -> list[str]:
    lines = [f"The check on {name} ({result['questions']} questions whose gold source was retrieved):", ""]
    lines += ["| kind | tried | accepted | should be |", "|---|---:|---:|---|"]
    for kind, row in result["kinds"].items():
        rate = "-" if row["rate"] is None else f"{row['rate']:.3f}"
        lines.append(f"| {kind} | {row['tried']} | {rate} | {'>= 0.95' if kind == 'correct' else '<= 0.10'} |")
    return lines
