"""Words, numbers and names in text, the way the check and its tests compare claims with passages."""

from __future__ import annotations

import re

# A sentence ends at . ! ? before a capital, at a blank line, and at a line break, but not at one before a
# lower-case word, a `code` or an opening bracket or quote: HTML and PDF text is wrapped mid-sentence
# ("make sure your user\naccount has is_active"), and a table row or list item starts its line otherwise.
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\u201c\u2018`])|\n\s*\n\s*|\n(?![a-z`(\u201c\u2018])")
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
DECIMAL = re.compile(r"\d+\.\d+")
WORD = re.compile(r"[\w€$%.-]+")
STOPWORD_TEXT = (
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these those "
    "you your we our they their he she his her i me my can do does did not no yes so than then there here what which "
    "who whom when where why how all any each per via into out up about also will would should could may might must "
    "has have had"
)
STOPWORDS = frozenset(STOPWORD_TEXT.split())
FACT_WEIGHT = 3  # a shared number or name says more about where a claim comes from than a shared word
NAME = re.compile(r"(?<![.!?:]\s)(?<!^)(?<!\n)\b[A-Z][a-zA-Z]+(?:\s[A-Z][a-zA-Z]+)*\b")


def canonical(number: str) -> str:
    """One spelling per value: 1,150 and 1150.00 are the same price, 03 (in 2025-05-03) and 3 the same day."""
    if THOUSANDS.fullmatch(number):
        number = number.replace(",", "")
    if DECIMAL.fullmatch(number):
        number = number.rstrip("0").rstrip(".")
    return number.lstrip("0") or "0" if number.isdigit() else number


def numbers_in(text: str) -> set[str]:
    return {canonical(n) for n in NUMBER.findall(text)}


def content_words(text: str) -> set[str]:
    return {w.strip(".-") for w in WORD.findall(text.lower()) if w.strip(".-") and w.strip(".-") not in STOPWORDS}


def names_in(text: str) -> set[str]:
    """Capitalised words (and runs of them) that are not a sentence's first word nor a common word."""
    return {n for n in NAME.findall(text) if n.split()[0].lower() not in STOPWORDS and len(n) > 2}


def sentences(text: str) -> list[str]:
    """Sentences, and lines (a table's rows), of a text."""
    return [u.strip() for u in SENTENCE_END.split(text) if u.strip()]


def nearest(claim: str, units: list[str]) -> int:
    """The unit sharing the most with the claim, its numbers and names counting FACT_WEIGHT times a word:
    "In Singapore the cap is 280 SGD" rests on the Singapore row, not on the note "caps are per night"."""
    words = content_words(claim)
    facts = {w for w in words if NUMBER.fullmatch(w)} | {n.lower() for n in names_in(claim) if " " not in n}

    def shared(unit: str) -> int:
        common = words & content_words(unit)
        return len(common) + (FACT_WEIGHT - 1) * len(common & facts)

    return max(range(len(units)), key=lambda i: shared(units[i]))


def window(claim: str, header: str, body: str, budget: int) -> str:
    """The part of a passage a claim rests on: its header (file, section), then the sentence nearest the
    claim and its neighbours, up to `budget` words."""
    units = sentences(body)
    if not units:
        return header
    best = nearest(claim, units)
    start = end = best
    size = len(units[best].split())
    while size < budget and (start > 0 or end < len(units) - 1):
        for step in (end + 1, start - 1):
            if 0 <= step < len(units) and size < budget:
                size += len(units[step].split())
                start, end = min(start, step), max(end, step)
    return "\n".join(p for p in (header, " ".join(units[start : end + 1])) if p)
