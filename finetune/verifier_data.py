"""Training pairs for the verifier, made from a collection's own chunks (FactCC / MiniCheck style).

For a sampled chunk P and a sentence s of it (a list item or table row counts), each claim read against
the window of P nearest to it (core.text.window), as the check reads it:
- supported (1): s as written, s shortened to its main clause or without brackets, s after a reply
  word ("Yes, ...");
- not supported (0): s with one planted error (finetune/perturb.py: a number or name from P or its
  neighbours, a negation, a unit, a splice), and a sentence of a neighbouring chunk that P does not state.
Neighbours are the chunks closest to P in the store's own embeddings, the passages retrieval puts beside it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.documents import Document

from core.check import header
from core.text import content_words, window
from core.verifier import WINDOW_WORDS
from finetune.perturb import KINDS, planted, sentences_of

NEIGHBOURS = 3
NOT_STATED = 0.5  # a neighbour's sentence sharing fewer of its content words with P is a negative
PLANTED = [k for k in KINDS if k not in ("correct", "other_answer")]
BRACKETS = re.compile(r"\s*\([^()]*\)")
MAIN_CLAUSE = re.compile(r"^(.{25,}?)(?:, (?:but|and|which|so|while|whereas) |; ).*$")
REPLIES = ("Yes, ", "In short, ", "According to the documentation, ")


@dataclass
class Pair:
    claim: str
    passage: str  # the window of the chunk the verifier reads (core.text.window)
    label: int
    kind: str
    chunk: int  # which chunk: train and validation are split by chunk


@dataclass
class Chunk:
    header: str  # file and section, as the check shows them above the text
    body: str


def chunk_of(document: str, meta: dict[str, Any]) -> Chunk:
    return Chunk(header(Document(document, metadata=meta)), document)


def neighbours(embeddings: np.ndarray, picked: list[int], count: int = NEIGHBOURS) -> dict[int, list[int]]:
    """For each picked chunk, the `count` other chunks closest to it (cosine; rows are normalised)."""
    found = {}
    for start in range(0, len(picked), 256):
        rows = picked[start : start + 256]
        sims = embeddings[rows] @ embeddings.T
        for row, index in zip(sims, rows, strict=True):
            row[index] = -np.inf
            found[index] = [int(i) for i in np.argsort(-row)[:count]]
    return found


def supported_forms(sentence: str, rng: random.Random) -> list[tuple[str, str]]:
    """True restatements of a sentence: as written, plus one shortened or prefixed form when one applies."""
    forms = [("verbatim", sentence)]
    shorter = BRACKETS.sub("", sentence)
    if match := MAIN_CLAUSE.match(shorter):
        shorter = match.group(1).rstrip(",;:") + "."
    if shorter != sentence and len(shorter.split()) >= 5:
        forms.append(("shortened", shorter))
    elif rng.random() < 0.3:
        forms.append(("reply", rng.choice(REPLIES) + sentence[0].lower() + sentence[1:]))
    return forms


def shared(sentence: str, passage: str) -> float:
    """The share of a sentence's content words that a passage has."""
    words = content_words(sentence)
    return len(words & content_words(passage)) / len(words) if words else 1.0


def pairs_for(index: int, chunk: Chunk, near: list[str], rng: random.Random) -> list[Pair]:
    """Supported and planted claims for one chunk; `near`: its neighbours' texts."""
    sentences = [s for s in sentences_of(chunk.body, min_words=5) if len(s.split()) <= 60]
    if not sentences:
        return []
    sentence = rng.choice(sentences)
    claims = [(claim, 1, kind) for kind, claim in supported_forms(sentence, rng)]
    for kind in rng.sample(PLANTED, 3):
        claim = planted(kind, sentence, [chunk.body, *near], [], rng)
        if claim is not None and claim != sentence:
            claims.append((claim, 0, kind))
    # Only what P plainly does not say: a neighbour's sentence may restate P in other words, and a
    # restatement taught as unsupported teaches the verifier to refuse every answer not copied word for word.
    elsewhere = [s for text in near for s in sentences_of(text, min_words=5) if shared(s, chunk.body) < NOT_STATED]
    if elsewhere:
        claims.append((rng.choice(elsewhere), 0, "neighbour_sentence"))
    return [
        Pair(claim, window(claim, chunk.header, chunk.body, WINDOW_WORDS), label, kind, index)
        for claim, label, kind in claims
    ]


def build_pairs(chunks: list[Chunk], embeddings: np.ndarray, sample: int, seed: int = 0) -> list[Pair]:
    """Pairs from `sample` chunks of a collection (`embeddings`: its normalised vectors, in the same order)."""
    rng = random.Random(seed)
    picked = rng.sample(range(len(chunks)), min(sample, len(chunks)))
    near = neighbours(embeddings, picked)
    pairs = []
    for index in picked:
        pairs += pairs_for(index, chunks[index], [chunks[i].body for i in near[index]], rng)
    return pairs
