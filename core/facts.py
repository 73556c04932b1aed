"""What a passage must contain verbatim to vouch for a claim: its numbers (with their units), e-mail
addresses and links, and a negation if the claim negates; `rests_on`: all of them, with the claim's
names, in one span of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from core.bm25 import tokenize
from core.text import canonical, nearest, numbers_in, sentences

# A number and its unit (after it, or a currency sign before it), if any: "up to 150 °C" is not vouched for
# by a passage whose 150 is only ever "150 m", nor "30 weeks" by "30 days". (A bare 150 may have its unit in
# a column name: that one vouches.)
QUANTITY = re.compile(
    r"([€$£]\s?)?(\d+(?:[.,]\d+)*)(?:\s*(°c|°f|%|€|eur|usd|sgd|gbp|chf|km|cm|mm|m|kg|g|kw|w|v|ghz|mhz|khz|hz|tb|gb|mb|ms|"
    r"days?|weeks?|months?|years?|hours?|minutes?|seconds?)(?!\w))?",
    re.IGNORECASE,
)
SAME_UNIT = {"€": "eur", "$": "usd", "£": "gbp", "days": "day", "weeks": "week", "months": "month", "years": "year"}
SAME_UNIT |= {"hours": "hour", "minutes": "minute", "seconds": "second"}
# E-mail addresses and links must appear verbatim: a near miss (another domain) is an invented fact.
IDENTIFIER = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?:https?://|www\.)[^\s)\]>]+[^\s)\]>.,;:!?]")
# "Refunds need no approval" must not be vouched for by "Refunds need approval" (same words otherwise).
# "isn't" written with the typographic apostrophe (U+2019), as HTML documentation does, negates too.
NEGATION = re.compile(
    r"\b(?:no|not|never|none|nothing|nobody|neither|nor|without|cannot)\b|n['\u2019]t\b", re.IGNORECASE
)
# "No, battery packs have a 12-month warranty." answers the question; the claim after it is not negated.
REPLY_WORDS = "yes|no|not yet|nope"
REPLY = re.compile(rf"^(?:{REPLY_WORDS})\b\s*[,:;.!\u2013\u2014-]\s*", re.IGNORECASE)
# A sentence that only replies ("No.", "Maybe!", "It depends.") leaves its claim to the sentence after it.
# Not "Not always.": its negation would count in the claim it joins (REPLY strips only REPLY_WORDS).
BARE_REPLY = re.compile(
    rf"(?:{REPLY_WORDS}|maybe|perhaps|(?:it )?depends|sometimes|probably|possibly|usually|of course|sure|indeed)\W*",
    re.IGNORECASE,
)
# A claim's negation must deny what the passage's denies: the word after it within this many words of a
# negation in the passage ("cannot join" by "not eligible to join"; "must not be acknowledged" is not
# vouched for by "must be acknowledged within 15 minutes; do not page twice").
NEGATED_WINDOW = 4
# A name the claim takes from the passage must stand there within this many words of another word of the
# claim ("Django requires PostgreSQL" is not vouched for by "... we recommend PostgreSQL").
NAME_WINDOW = 6
WORDS = re.compile(r"[\w.@/-]+")


@dataclass
class Facts:
    """What a passage must contain, verbatim, to vouch for a sentence."""

    numbers: set[str]
    quantities: dict[str, set[str]]
    identifiers: set[str]
    negated: bool

    @classmethod
    def of(cls, plain: str) -> Facts:
        identifiers = {i.lower() for i in IDENTIFIER.findall(plain)}
        return cls(numbers_in(plain), units(plain), identifiers, bool(NEGATION.search(REPLY.sub("", plain))))

    def stated_in(self, passage: str) -> bool:
        """Every number (with its unit), e-mail address and link, and a negation if the sentence has one.
        An empty passage (one that gives the model instructions) states nothing."""
        return (
            bool(passage)
            and self.numbers <= numbers_in(passage)
            and units_agree(self.quantities, units(passage))
            and all(i in passage.lower() for i in self.identifiers)
            and (not self.negated or bool(NEGATION.search(passage)))
        )


def bare_reply(sentence: str) -> bool:
    """Whether a sentence only replies and claims nothing of its own ("No.", "Maybe!", "Depends.")."""
    return bool(BARE_REPLY.fullmatch(sentence.strip()))


def units(text: str) -> dict[str, set[str]]:
    """Each number in `text` (canonical) and the units written after it ("" for none)."""
    found: dict[str, set[str]] = {}
    for currency, number, unit in QUANTITY.findall(text):
        unit = (unit or currency.strip()).lower()
        found.setdefault(canonical(number), set()).add(SAME_UNIT.get(unit, unit))
    return found


def units_agree(claimed: dict[str, set[str]], passage: dict[str, set[str]]) -> bool:
    """Every unit the answer gives a number appears with that number in the passage, or the passage
    also writes the number bare."""
    return all(
        "" in passage.get(number, set()) or unit in passage.get(number, set())
        for number, given in claimed.items()
        for unit in given - {""}
    )


def rests_on(span: str, plain: str, facts: Facts, names: set[str]) -> bool:
    """Whether the span has the sentence's numbers, units, identifiers and names, and its sentence nearest
    the claim negates at least as often as the claim ("is not open" is not vouched for by "is open") and
    near the words the claim denies; each name stands near another word of the claim."""
    if not (facts.stated_in(span) and all(n.lower() in span.lower() for n in names)):
        return False
    if not all(among_its_words(name, plain, span) for name in names):
        return False
    units = sentences(span)
    unit = units[nearest(plain, units)]
    return negations(plain) <= negations(unit) and denied(plain) <= deniable(unit)


def negations(text: str) -> int:
    return len(NEGATION.findall(REPLY.sub("", text)))


def denied(claim: str) -> set[str]:
    """The first content word after each of the claim's negations, stemmed ("must not be acknowledged")."""
    return {term for _, term in denials(claim)}


def denial(claim: str) -> str:
    """The claim's first negation and the words after it up to a content word ("not be acknowledged"), for
    a refusal's reason; "" if it has none."""
    return next((phrase for phrase, _ in denials(claim)), "")


def denials(claim: str) -> Iterator[tuple[str, str]]:
    """(the negation up to its first content word, that word stemmed) for each of the claim's negations
    with a content word among the NEGATED_WINDOW words after it."""
    claim = REPLY.sub("", claim)
    for match in NEGATION.finditer(claim):
        words = claim[match.end() :].split()[:NEGATED_WINDOW]
        for n, word in enumerate(words):
            if terms := tokenize(word):
                yield " ".join([match.group(), *words[: n + 1]]).rstrip(".,;:!?"), terms[0]
                break


def deniable(passage: str) -> set[str]:
    """The content words near the passage's negations, stemmed ("#announcements is NOT used")."""
    near = (f"{before(passage, m.start())} {after(passage, m.end())}" for m in NEGATION.finditer(passage))
    return {term for words in near for term in tokenize(words)}


def after(text: str, end: int) -> str:
    return " ".join(text[end:].split()[:NEGATED_WINDOW])


def before(text: str, start: int) -> str:
    return " ".join(text[:start].split()[-NEGATED_WINDOW:])


def among_its_words(name: str, claim: str, span: str) -> bool:
    """Whether the span names `name` near another content word of the claim (a claim of the name alone: yes)."""
    others = set(tokenize(claim)) - set(tokenize(name))
    return not others or bool(others & context(name, span))


def context(name: str, text: str) -> set[str]:
    """The content words within NAME_WINDOW words of each place `text` names `name`, stemmed."""
    lowered = text.lower()
    found: set[str] = set()
    start = lowered.find(name.lower())
    while start >= 0:
        end = start + len(name)
        near = WORDS.findall(text[:start])[-NAME_WINDOW:] + WORDS.findall(text[end:])[:NAME_WINDOW]
        found |= set(tokenize(" ".join(near)))
        start = lowered.find(name.lower(), end)
    return found - set(tokenize(name))
