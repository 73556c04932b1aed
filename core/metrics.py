"""Metric functions. Rankings are the sources of the retrieved chunks in rank order (what the
chain's prompt sees), so a file that fills several of the top slots counts once, at its first."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable


def matches(source: str, section: str | None, gold: str) -> bool:
    """A chunk matches a gold `path` or `path#section` (the section a prefix of the chunk's)."""
    path, _, gold_section = gold.partition("#")
    if source != path:
        return False
    return not gold_section or (section or "").lower().startswith(gold_section.lower())


def hits(ranked: list[tuple[str, str | None]], gold: list[str]) -> list[bool]:
    """Per rank: does this chunk bring a gold source not already found higher up?"""
    found: set[str] = set()
    flags = []
    for source, section in ranked:
        new = [g for g in gold if g not in found and matches(source, section, g)]
        found.update(new)
        flags.append(bool(new))
    return flags


def recall_at(flags: list[bool], gold_count: int, k: int) -> float:
    """Share of the gold sources found in the top k chunks."""
    return sum(flags[:k]) / gold_count if gold_count else 0.0


def reciprocal_rank(flags: list[bool]) -> float:
    return next((1 / rank for rank, hit in enumerate(flags, start=1) if hit), 0.0)


def ndcg_at(flags: list[bool], gold_count: int, k: int) -> float:
    """Binary-relevance nDCG: each gold source counts once, at the rank it first appears."""
    dcg = sum(1 / math.log2(rank + 1) for rank, hit in enumerate(flags[:k], start=1) if hit)
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(gold_count, k) + 1))
    return dcg / ideal if ideal else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] if ordered else 0.0


def token_f1(answer: str, reference: str) -> float:
    """SQuAD-style token overlap F1."""
    predicted, gold = words(answer), words(reference)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


# An accepted answer is counted correct when the reference vouches for it: most of its words are the
# reference's, and its numbers (with units), identifiers, names and polarity are the reference's. A proxy
# for a person's reading, audited by hand in benchmarks/RESULTS.md ("The check on four sets").
REFERENCE_WORDS = 0.5


def agrees_with_reference(answer: str, reference: str, question: str = "") -> bool:
    """Whether `answer` states what `reference` states (see above); words and names of the question are free."""
    from core.facts import Facts
    from core.text import content_words, names_in

    answer = re.sub(r"\s?\[\d+\]", "", answer)  # its citations
    said = content_words(answer) - content_words(question)
    shared = len(said & content_words(reference)) / len(said) if said else 1.0
    names = {n.lower() for n in names_in(answer) - names_in(question)}
    replies = {reply(answer), reply(reference)} - {""}  # a yes and a no: they contradict each other
    return (
        shared >= REFERENCE_WORDS
        and Facts.of(answer).stated_in(reference)  # numbers with units, identifiers, a negation
        and all(n in reference.lower() for n in names)
        and len(replies) < 2
    )


def reply(text: str) -> str:
    """ "yes" or "no" for a text that opens with one, else ""."""
    from core.facts import REPLY

    match = REPLY.match(text.strip())
    return "" if not match else "no" if match.group(0).lower().startswith(("no", "not")) else "yes"
