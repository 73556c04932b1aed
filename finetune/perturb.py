"""Errors planted in a true claim, the kinds a small model makes: a number or a name taken from elsewhere
in the passages, a negation, a changed unit, the subject of one sentence with the fact of another.

The verifier learns to refuse them (finetune/verifier_data.py) and `python -m evaluation --check`
measures how many the check lets through (evaluation/checks.py).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

from core.text import NUMBER, SENTENCE_END, names_in, numbers_in

KINDS = (
    "correct",  # the claim as written: should be accepted
    "number_absent",  # a number changed to one no passage has
    "number_swapped",  # a number replaced by another number from the same passages
    "negation",  # "is" -> "is not" (or a negation removed)
    "entity_swapped",  # a name replaced by another name from the passages
    "unit_changed",  # EUR -> USD, days -> weeks, ...
    "spliced",  # the subject of the sentence, the rest from another passage's sentence
    "other_answer",  # another question's claim
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


def planted(kind: str, claim: str, passages: list[str], others: list[str], rng: random.Random) -> str | None:
    """`claim` with one error of `kind` drawn from `passages` (the texts it is checked against), or None
    where the kind does not apply. `others`: claims about other things, for "other_answer"."""
    context = "\n".join(passages)
    if kind == "correct":
        return claim
    if kind == "other_answer":
        return rng.choice([o for o in others if o != claim]) if len(others) > 1 else None
    if kind == "number_absent":
        return replace_number(claim, lambda n: str(int(re.sub(r"\D", "", n) or 0) * 3 + 7), rng)
    if kind == "number_swapped":
        pool = sorted({n for n in NUMBER.findall(context) if n.isdigit()} - numbers_in(claim))
        return replace_number(claim, lambda _: rng.choice(pool), rng) if pool else None
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
        return spliced(claim, passages, rng)
    raise ValueError(kind)


def replace_number(claim: str, new: Callable[[str], str], rng: random.Random) -> str | None:
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


def sentences_of(text: str, min_words: int = 6) -> list[str]:
    return [s.strip() for s in SENTENCE_END.split(text) if len(s.split()) >= min_words]


def spliced(claim: str, passages: list[str], rng: random.Random) -> str | None:
    """The claim's first half (its subject), then the second half of a sentence from another passage."""
    words = claim.split()
    others = [s.split() for p in passages for s in sentences_of(p) if s not in claim]
    if len(words) < 6 or not others:
        return None
    other = rng.choice(others)
    return " ".join(words[: len(words) // 2] + other[len(other) // 2 :]).rstrip(".") + "."
