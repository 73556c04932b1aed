"""Why a passage does not back a claim, in words a person can check: "the answer says 130 EUR; the
closest passage (prices.md) says 280 EUR". Used for the check's refusal reasons."""

from __future__ import annotations

import re

from core.facts import deniable, denial, denied
from core.text import names_in

NUMBER_WITH_UNIT = re.compile(
    r"(?:[€$]\s?)?\d+(?:[.,:]\d+)*(?:\s?(?:%|°C|EUR|USD|SGD|GBP|CHF|km|kg|GB|MB|days?|weeks?|months?|years?|hours?|minutes?|seconds?))?"
)
NEGATION = re.compile(r"\b(?:no|not|never|cannot)\b|n['\u2019]t\b", re.IGNORECASE)
WORD = re.compile(r"\w+")


def closest_sentence(claim: str, passage: str) -> str:
    """The passage's sentence (or line) sharing the most words with the claim."""
    words = set(WORD.findall(claim.lower()))
    lines = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", passage) if s.strip()]
    return max(lines, key=lambda s: len(words & set(WORD.findall(s.lower()))), default="")


def differs(claimed: set[str], stated: set[str]) -> tuple[list[str], list[str]]:
    return sorted(claimed - stated), sorted(stated - claimed)


def conflict(claim: str, passage: str, where: str) -> str:
    """One line naming what the claim says and what the passage `where` says instead."""
    sentence = closest_sentence(claim, passage)
    said, stated = differs(set(NUMBER_WITH_UNIT.findall(claim)), set(NUMBER_WITH_UNIT.findall(sentence)))
    if said and stated:
        return f"the answer says {', '.join(said)}; {where} says {', '.join(stated)}"
    said, stated = differs(names_in(claim), names_in(sentence))
    if said and stated:
        return f"the answer names {', '.join(said)}; {where} names {', '.join(stated)}"
    if bool(NEGATION.search(claim)) != bool(NEGATION.search(sentence)):
        negated = "negates" if NEGATION.search(claim) else "does not negate"
        return f"the answer {negated} what {where} says: {shorten(sentence)!r}"
    if denied(claim) - deniable(sentence):
        return f"the answer says {denial(claim)!r}; {where} says {shorten(sentence)!r}"
    return f"no passage states it; the closest, {where}, says {shorten(sentence)!r}"


def shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1].rsplit(" ", 1)[0] + "…"
