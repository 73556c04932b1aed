"""The chain's last step: check the answer against the retrieved chunks before anyone reads it.

Citations to chunks that were not in the context are removed; each sentence is marked supported
or not (one span of a chunk must contain its numbers, names, links and negations verbatim, then the
learned verifier decides, or without one, embedding similarity or word overlap); an answer with no supported
sentence, a degenerate one (empty, looping, echoing the prompt) or one over a retrieval that found
nothing relevant becomes an honest "I couldn't find this in the documents".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.documents import Document

from core.conflict import conflict
from core.facts import REPLY, Facts, bare_reply, rests_on
from core.injection import planted_instruction
from core.retrieval import VECTOR
from core.settings import ChatSettings
from core.text import SENTENCE_END, WORD, content_words, names_in, window
from core.verifier import WINDOW_WORDS

REFUSAL = "I couldn't find this in the documents."
CITATION = re.compile(r"\s?\[(\d+)\]")
# Training answers cite like "(Source: office_locations.csv)"; the prompt asks for [n]. Accept both.
NAMED_CITATION = re.compile(r"\s?\(Sources?:\s*([^)]*)\)", re.IGNORECASE)
REFUSAL_HINTS = ("couldn't find", "could not find", "can't find", "cannot find", "don't know", "not in the documents")
YES_NO = re.compile(
    r"\s*(?:is|are|was|were|can|could|do|does|did|will|would|should|shall|may|might|must|has|have|had)\b", re.I
)
ECHO = re.compile(r"Context:|Question:|\[\d+\] \(|Use only the numbered context|^#{1,6} |```", re.MULTILINE)

Embed = Callable[[list[str]], Any]  # texts -> normalised vectors (rows)
Verify = Callable[[list[tuple[str, str]]], list[float]]  # (claim, passage window) -> P(stated); core/verifier.py
VERIFIED_PASSAGES = 2  # per sentence, the closest passages whose facts agree go to the verifier
# A claim rests on one span of a passage: the sentence nearest it and its neighbours, this many words. Its
# numbers, names and negations must all be there, not anywhere in the context ("In Paris the cap is 280 SGD"
# takes Paris from one row and 280 from another). 40: about two sentences; measured, not fitted (RESULTS.md).
SPAN_WORDS = 40


@dataclass
class Sentence:
    text: str  # without citations
    supported: bool
    source: int | None  # the context number [n] that supports it (may differ from what the model cited)
    model_cited: list[int]
    similarity: float
    overlap: float
    closest: int = 1  # the context number most like it, named when it is refused
    verified: float | None = None  # the verifier's P(stated) for its passage, when the verifier judged


@dataclass
class CheckedAnswer:
    """What the chat shows: the answer, the sources it rests on, and how each sentence fared."""

    question: str
    query: str  # the standalone question retrieval used (differs for follow-ups)
    answer: str
    refused: bool
    reason: str = ""
    raw_answer: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)
    removed_citations: list[int] = field(default_factory=list)

    @property
    def unsupported(self) -> list[str]:
        return [s.text for s in self.sentences if not s.supported]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def source_info(number: int, doc: Document) -> dict[str, Any]:
    meta = doc.metadata
    keys = ("source", "title", "section", "page", "row", "score")
    return {"n": number, **{k: meta[k] for k in keys if meta.get(k) not in (None, "")}, "snippet": doc.page_content}


def check(inputs: dict[str, Any], settings: ChatSettings, embed: Embed, verify: Verify | None = None) -> CheckedAnswer:
    """inputs: question, query, docs (retrieved, in context order), answer (the model's text).
    `verify`: the learned verifier (core/verifier.py) that decides which passage states a claim;
    None: word overlap and embedding similarity decide, behind a minimum retrieval score."""
    docs: list[Document] = inputs["docs"]
    raw = inputs["answer"].strip()
    result = CheckedAnswer(
        question=inputs["question"],
        query=inputs.get("query", inputs["question"]),
        answer=raw,
        refused=False,
        raw_answer=raw,
    )
    best = max((d.metadata.get("score", 0.0) for d in docs), default=None)
    if best is None or (verify is None and best < settings.min_retrieval_score):
        return refuse(result, docs, f"no passage is close to the question (best score {best or 0:.2f})")
    if problem := degenerate(raw, inputs["question"]):
        return refuse(result, docs, problem)
    if is_refusal(raw):
        return refuse(result, docs, "the model found no answer in the context")
    if planted := planted_instruction(raw):
        return refuse(result, docs, f"the answer carries instruction-like text ({planted!r}), not a fact")
    text, removed = normalise_citations(raw, docs)
    result.removed_citations = removed
    result.sentences = judge_sentences(text, result.query, docs, settings, embed, verify)
    if not result.sentences or not result.sentences[0].supported:  # the direct answer comes first
        why = f": {why_not(result.sentences[0], docs)}" if result.sentences else ""
        return refuse(result, docs, f"the answer's first sentence is not supported{why}{steering_note(docs)}")
    if supported_share(result.sentences) < settings.min_supported_share:
        return refuse(result, docs, "most of the answer is not supported by the retrieved passages")
    if off_topic(result.query, supported_with_headers(result.sentences, docs), settings, embed):
        return refuse(result, docs, "the supported sentences do not address the question")
    result.answer = " ".join(cite(s) for s in result.sentences)
    cited = sorted({s.source for s in result.sentences if s.supported and s.source})
    result.sources = [source_info(n, docs[n - 1]) for n in cited]
    return result


def refuse(result: CheckedAnswer, docs: list[Document], reason: str) -> CheckedAnswer:
    """An honest refusal that still lists the closest passages, so the user can look for themselves."""
    result.answer, result.refused, result.reason = REFUSAL, True, reason
    result.sources = [source_info(n, doc) for n, doc in enumerate(docs[:3], start=1)]
    return result


def why_not(sentence: Sentence, docs: list[Document]) -> str:
    """What the closest passage says instead, e.g. "the answer says 130 EUR; [2] (prices.md) says 280 EUR"."""
    number = sentence.closest
    doc = docs[number - 1]
    return conflict(sentence.text, doc.page_content, f"[{number}] ({doc.metadata.get('source', '?')})")


def steering_note(docs: list[Document]) -> str:
    """Names the passages that could not vouch because they give the model orders (see core/injection.py)."""
    steering = [
        f"{d.metadata.get('source', '?')} ({planted!r})"
        for d in docs
        if (planted := planted_instruction(d.page_content))
    ]
    return f"; passages that give the model instructions vouch for nothing: {', '.join(steering)}" if steering else ""


def supported_share(sentences: list[Sentence]) -> float:
    """The share of the answer's words that stand in supported sentences."""
    words = [(len(WORD.findall(s.text)), s.supported) for s in sentences]
    total = sum(n for n, _ in words)
    return sum(n for n, supported in words if supported) / total if total else 0.0


def supported_with_headers(sentences: list[Sentence], docs: list[Document]) -> tuple[str, str]:
    """The supported sentences, and the headers (file, section) of the passages they rest on."""
    supported = [s for s in sentences if s.supported]
    heads = {header(docs[s.source - 1]) for s in supported if s.source}
    return " ".join(s.text for s in supported), "\n".join(sorted(heads))


def off_topic(question: str, supported: tuple[str, str], settings: ChatSettings, embed: Embed) -> bool:
    """A passage copied out verbatim is "supported" but may answer nothing: no shared word, far in meaning.
    `supported`: the sentences and their passages' headers. What a sentence is about may be said only where
    it sits ("During the open enrolment window ..." under "Pension: salary conversion"), and a yes or no
    answers a yes/no question whatever its words."""
    text, heads = supported
    if content_words(question) & content_words(f"{text}\n{heads}") or (YES_NO.match(question) and REPLY.match(text)):
        return False
    vectors = embed([question, text])
    return float(vectors[0] @ vectors[1]) < settings.min_answer_relevance


def is_refusal(answer: str) -> bool:
    lowered = answer.lower().replace("\u2019", "'")
    return any(hint in lowered for hint in REFUSAL_HINTS) and len(answer) < 200


def degenerate(answer: str, question: str) -> str:
    """Why the answer is unusable, or '' when it is fine."""
    words = WORD.findall(answer.lower())
    if len(words) < 2:
        return "the model gave an empty answer"
    grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
    if len(grams) >= 8 and len(set(grams)) / len(grams) < 0.5:
        return "the model's answer repeats itself in a loop"
    if ECHO.search(answer) or answer.strip().lower() == question.strip().lower():
        return "the model echoed its prompt instead of answering"
    return ""


def normalise_citations(answer: str, docs: list[Document]) -> tuple[str, list[int]]:
    """ "(Source: file.md)" becomes [n] when file.md is context n; [n] beyond the context is removed."""
    by_name: dict[str, int] = {}
    for number, doc in reversed(list(enumerate(docs, start=1))):
        source = str(doc.metadata.get("source", ""))
        by_name[source.lower()] = by_name[source.rsplit("/", 1)[-1].lower()] = number

    def named(match: re.Match[str]) -> str:
        numbers = [by_name.get(name.strip().lower()) for name in re.split(r"[,;]", match.group(1))]
        return "".join(f" [{n}]" for n in numbers if n)

    removed: list[int] = []

    def numbered(match: re.Match[str]) -> str:
        number = int(match.group(1))
        if 1 <= number <= len(docs):
            return match.group(0)
        removed.append(number)
        return ""

    text = CITATION.sub(numbered, NAMED_CITATION.sub(named, answer))
    return re.sub(r"\s+([.,;:!?])", r"\1", text).strip(), removed


def judge_sentences(
    text: str, question: str, docs: list[Document], settings: ChatSettings, embed: Embed, verify: Verify | None = None
) -> list[Sentence]:
    sentences = [s.strip() for s in SENTENCE_END.split(text) if WORD.search(s)]
    for i in range(len(sentences) - 2, -1, -1):  # a bare "No." or "Maybe!" belongs to the sentence that explains it
        if bare_reply(sentences[i]):
            sentences[i : i + 2] = [f"{sentences[i]} {sentences[i + 1]}"]
    plain = [CITATION.sub("", s).strip() for s in sentences]
    passages = [shown(d) for d in docs]
    similarities = embed(plain) @ passage_vectors(docs, passages, embed).T
    bodies = ["" if planted_instruction(d.page_content) else d.page_content for d in docs]  # vouch for nothing
    passages = [p if body else "" for p, body in zip(passages, bodies, strict=True)]
    asked = content_words(question)
    named = names_in("\n".join(passages))
    verified = verified_by(plain, docs, passages, similarities, verify) if verify else [None] * len(plain)
    judged = []
    for i, sentence in enumerate(sentences):
        cited = [int(n) for n in CITATION.findall(sentence)]
        spans = [
            window(plain[i], header(d), body, SPAN_WORDS) if body else "" for d, body in zip(docs, bodies, strict=True)
        ]
        judged.append(judge(plain[i], asked, cited, similarities[i], passages, spans, named, settings, verified[i]))
    return judged


def passage_vectors(docs: list[Document], passages: list[str], embed: Embed) -> Any:
    """The passages' vectors: those retrieval brought from the store, the others embedded now."""
    import numpy as np

    missing = [n for n, d in enumerate(docs) if d.metadata.get(VECTOR) is None]
    made = dict(zip(missing, embed([passages[n] for n in missing]), strict=True)) if missing else {}
    return np.array([made[n] if n in made else d.metadata[VECTOR] for n, d in enumerate(docs)], dtype=np.float32)


def verified_by(
    plain: list[str], docs: list[Document], passages: list[str], similarities: Any, verify: Verify
) -> list[list[float | None]]:
    """The verifier's P(stated) per sentence and passage, asked only for the VERIFIED_PASSAGES closest
    passages whose numbers, units, identifiers and negation agree with the sentence (None elsewhere)."""
    asked: list[tuple[int, int]] = []
    for i, sentence in enumerate(plain):
        facts = Facts.of(sentence)
        agree = [n for n in range(len(docs)) if facts.stated_in(passages[n])]
        asked += [(i, n) for n in sorted(agree, key=lambda n: -similarities[i][n])[:VERIFIED_PASSAGES]]
    windows = [(plain[i], window(plain[i], header(docs[n]), docs[n].page_content, WINDOW_WORDS)) for i, n in asked]
    table: list[list[float | None]] = [[None] * len(docs) for _ in plain]
    for (i, n), score in zip(asked, verify(windows), strict=True):
        table[i][n] = score
    return table


def cite(sentence: Sentence) -> str:
    """The sentence with the citation the check verified, before its final punctuation."""
    if sentence.source is None:
        return sentence.text
    body, end = re.match(r"(.*?)([.!?]*)$", sentence.text, re.DOTALL).groups()  # type: ignore[union-attr]
    return f"{body} [{sentence.source}]{end}"


def judge(
    plain: str,
    asked: set[str],
    cited: list[int],
    similarities: Any,
    passages: list[str],
    spans: list[str],
    named: set[str],
    settings: ChatSettings,
    verified: list[float | None] | None = None,
) -> Sentence:
    """Supported by a cited chunk if one supports it, else by the best other chunk, else unsupported.
    `passages`: the chunks as the model saw them (`shown`), in context order.

    A chunk vouches for a sentence only through one span (`spans`: its header and the sentences nearest the
    claim): the span must contain the sentence's numbers, e-mail addresses, links and the names the context
    has, give each number no other unit, and negate as often (`rests_on`). Then, with `verified` (the
    verifier's P(stated) per chunk, None where it was not asked), the verifier decides. Without it, the
    sentence must share enough words with the chunk or be close in meaning; a sentence that only restates
    the question ("Yes, we have an office in Brazil.") must have all its words in the chunk.
    """
    words, facts = content_words(plain), Facts.of(plain)
    names = names_in(plain) & named  # a name no passage has is left to the word overlap
    restates_question = bool(words) and words <= asked  # `asked`: the question's content words
    scores = []
    for number, (passage, span) in enumerate(zip(passages, spans, strict=True), start=1):
        overlap = len(words & content_words(passage)) / len(words) if words else 0.0
        similarity = float(similarities[number - 1])
        if verified is not None:
            score = verified[number - 1]
            close = score is not None and score >= settings.verifier_threshold
        else:
            close = similarity >= settings.support_similarity or overlap >= settings.support_overlap
            close = overlap == 1.0 if restates_question else close
        supported = close and rests_on(span, plain, facts, names)
        scores.append((supported, number in cited, similarity + overlap, number, similarity, overlap))
    supported, _, _, number, similarity, overlap = max(scores)
    closest = max(scores, key=lambda s: s[2])[3]
    score = verified[number - 1] if verified is not None else None
    return Sentence(
        plain,
        supported,
        number if supported else None,
        cited,
        round(similarity, 3),
        round(overlap, 3),
        closest,
        None if score is None else round(score, 3),
    )


def shown(doc: Document) -> str:
    """A passage as the model saw it: where it sits (file, section) above its text. A row of a
    specification table vouches for "The KD-GW2 runs at -20 to +60 °C" through its section's name."""
    return "\n".join(p for p in (header(doc), doc.page_content) if p)


def header(doc: Document) -> str:
    """Where a passage sits: its file and section, one per line."""
    return "\n".join(str(p) for p in (doc.metadata.get("source"), doc.metadata.get("section")) if p)
