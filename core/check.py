"""The chain's last step: check the answer against the retrieved chunks before anyone reads it.

Citations to chunks that were not in the context are removed; each sentence is marked supported
or not (embedding similarity or word overlap with a context chunk); an answer with no supported
sentence, a degenerate one (empty, looping, echoing the prompt) or one over a retrieval that found
nothing relevant becomes an honest "I couldn't find this in the documents".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.documents import Document

from core.injection import planted_instruction
from core.settings import ChatSettings

REFUSAL = "I couldn't find this in the documents."
CITATION = re.compile(r"\s?\[(\d+)\]")
# Training answers cite like "(Source: office_locations.csv)"; the prompt asks for [n]. Accept both.
NAMED_CITATION = re.compile(r"\s?\(Sources?:\s*([^)]*)\)", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?")
DECIMAL = re.compile(r"\d+\.\d+")
# A number and the unit written after it, if any: "up to 150 °C" is not vouched for by a passage whose
# 150 is only ever "150 m". (A bare 150 may have its unit in a column name: that one vouches.)
QUANTITY = re.compile(
    r"(\d+(?:[.,]\d+)*)(?:\s*(°c|°f|%|€|eur|usd|sgd|gbp|chf|km|cm|mm|m|kg|g|kw|w|v|ghz|mhz|khz|hz|tb|gb|mb|ms)(?!\w))?",
    re.IGNORECASE,
)
# E-mail addresses and links must appear verbatim: a near miss (another domain) is an invented fact.
IDENTIFIER = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|(?:https?://|www\.)[^\s)\]>]+[^\s)\]>.,;:!?]")
WORD = re.compile(r"[\w€$%.-]+")
# "Refunds need no approval" must not be vouched for by "Refunds need approval" (same words otherwise).
NEGATION = re.compile(r"\b(?:no|not|never|none|nothing|nobody|neither|nor|without|cannot)\b|n't\b", re.IGNORECASE)
# "No, battery packs have a 12-month warranty." answers the question; the claim after it is not negated.
REPLY = re.compile(r"^(?:yes|no|not yet|nope)\b\s*[,:;.!\u2013\u2014-]\s*", re.IGNORECASE)
REFUSAL_HINTS = ("couldn't find", "could not find", "can't find", "cannot find", "don't know", "not in the documents")
ECHO = re.compile(r"Context:|Question:|\[\d+\] \(|Use only the numbered context|^#{1,6} |```", re.MULTILINE)
STOPWORD_TEXT = (
    "a an the and or but if of to in on at by for with from as is are was were be been it its this that these those "
    "you your we our they their he she his her i me my can do does did not no yes so than then there here what which "
    "who whom when where why how all any each per via into out up about also will would should could may might must "
    "has have had"
)
STOPWORDS = frozenset(STOPWORD_TEXT.split())

Embed = Callable[[list[str]], Any]  # texts -> normalised vectors (rows)


@dataclass
class Sentence:
    text: str  # without citations
    supported: bool
    source: int | None  # the context number [n] that supports it (may differ from what the model cited)
    model_cited: list[int]
    similarity: float
    overlap: float


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


def check(inputs: dict[str, Any], settings: ChatSettings, embed: Embed) -> CheckedAnswer:
    """inputs: question, query, docs (retrieved, in context order), answer (the model's text)."""
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
    if best is None or best < settings.min_retrieval_score:
        return refuse(result, docs, f"no passage is close to the question (best score {best or 0:.2f})")
    if problem := degenerate(raw, inputs["question"]):
        return refuse(result, docs, problem)
    if is_refusal(raw):
        return refuse(result, docs, "the model found no answer in the context")
    if planted := planted_instruction(raw):
        return refuse(result, docs, f"the answer carries instruction-like text ({planted!r}), not a fact")
    text, removed = normalise_citations(raw, docs)
    result.removed_citations = removed
    result.sentences = judge_sentences(text, result.query, docs, settings, embed)
    if not result.sentences or not result.sentences[0].supported:  # the direct answer comes first
        return refuse(
            result,
            docs,
            "the answer's first sentence is not supported by the retrieved passages" + (steering_note(docs)),
        )
    if supported_share(result.sentences) < settings.min_supported_share:
        return refuse(result, docs, "most of the answer is not supported by the retrieved passages")
    if off_topic(result.query, [s.text for s in result.sentences if s.supported], settings, embed):
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


def off_topic(question: str, supported: list[str], settings: ChatSettings, embed: Embed) -> bool:
    """A passage copied out verbatim is "supported" but may answer nothing: no shared word, far in meaning."""
    text = " ".join(supported)
    if content_words(question) & content_words(text):
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
    text: str, question: str, docs: list[Document], settings: ChatSettings, embed: Embed
) -> list[Sentence]:
    sentences = [s.strip() for s in SENTENCE_END.split(text) if WORD.search(s)]
    for i in range(len(sentences) - 2, -1, -1):  # a bare "No." belongs to the sentence that explains it
        if not REPLY.sub("", sentences[i]):
            sentences[i : i + 2] = [f"{sentences[i]} {sentences[i + 1]}"]
    plain = [CITATION.sub("", s).strip() for s in sentences]
    passages = [shown(d) for d in docs]
    vectors = embed(plain + passages)
    passages = [
        "" if planted_instruction(d.page_content) else p for d, p in zip(docs, passages, strict=True)
    ]  # vouch for nothing
    similarities = vectors[: len(plain)] @ vectors[len(plain) :].T
    asked = content_words(question)
    judged = []
    for i, sentence in enumerate(sentences):
        cited = [int(n) for n in CITATION.findall(sentence)]
        judged.append(judge(plain[i], asked, cited, similarities[i], passages, settings))
    return judged


def cite(sentence: Sentence) -> str:
    """The sentence with the citation the check verified, before its final punctuation."""
    if sentence.source is None:
        return sentence.text
    body, end = re.match(r"(.*?)([.!?]*)$", sentence.text, re.DOTALL).groups()  # type: ignore[union-attr]
    return f"{body} [{sentence.source}]{end}"


def judge(
    plain: str, asked: set[str], cited: list[int], similarities: Any, passages: list[str], settings: ChatSettings
) -> Sentence:
    """Supported by a cited chunk if one supports it, else by the best other chunk, else unsupported.
    `passages`: the chunks as the model saw them (`shown`), in context order.

    A sentence that only restates the question ("Yes, we have an office in Brazil.") adds no word
    a chunk could vouch for by overlap or similarity, so a chunk must contain all its words. A chunk
    vouches for a sentence's numbers, e-mail addresses and links only by containing them, for a
    number's unit only if it does not give that number another one, and for a negated sentence only
    if it negates something too.
    """
    words, numbers, quantities = content_words(plain), numbers_in(plain), units(plain)
    restates_question = bool(words) and words <= asked  # `asked`: the question's content words
    identifiers = {i.lower() for i in IDENTIFIER.findall(plain)}
    negated = bool(NEGATION.search(REPLY.sub("", plain)))
    scores = []
    for number, passage in enumerate(passages, start=1):
        overlap = len(words & content_words(passage)) / len(words) if words else 0.0
        similarity = float(similarities[number - 1])
        states_its_facts = (
            bool(passage)  # blanked by judge_sentences: it gives the model instructions
            and numbers <= numbers_in(passage)
            and units_agree(quantities, units(passage))
            and all(i in passage.lower() for i in identifiers)
            and (not negated or bool(NEGATION.search(passage)))
        )
        close = similarity >= settings.support_similarity or overlap >= settings.support_overlap
        if restates_question:
            close = overlap == 1.0
        supported = states_its_facts and close
        scores.append((supported, number in cited, similarity + overlap, number, similarity, overlap))
    supported, _, _, number, similarity, overlap = max(scores)
    return Sentence(plain, supported, number if supported else None, cited, round(similarity, 3), round(overlap, 3))


def canonical(number: str) -> str:
    """One spelling per value: 1,150 and 1150.00 are the same price, 03 (in 2025-05-03) and 3 the same day."""
    if THOUSANDS.fullmatch(number):
        number = number.replace(",", "")
    if DECIMAL.fullmatch(number):
        number = number.rstrip("0").rstrip(".")
    return number.lstrip("0") or "0" if number.isdigit() else number


def numbers_in(text: str) -> set[str]:
    return {canonical(n) for n in NUMBER.findall(text)}


def units(text: str) -> dict[str, set[str]]:
    """Each number in `text` (canonical) and the units written after it ("" for none)."""
    found: dict[str, set[str]] = {}
    for number, unit in QUANTITY.findall(text):
        found.setdefault(canonical(number), set()).add(unit.lower().replace("€", "eur"))
    return found


def units_agree(claimed: dict[str, set[str]], passage: dict[str, set[str]]) -> bool:
    """Every unit the answer gives a number appears with that number in the passage, or the passage
    also writes the number bare."""
    return all(
        "" in passage.get(number, set()) or unit in passage.get(number, set())
        for number, given in claimed.items()
        for unit in given - {""}
    )


def shown(doc: Document) -> str:
    """A passage as the model saw it: where it sits (file, section) above its text. A row of a
    specification table vouches for "The KD-GW2 runs at -20 to +60 °C" through its section's name."""
    return "\n".join(str(p) for p in (doc.metadata.get("source"), doc.metadata.get("section"), doc.page_content) if p)


def content_words(text: str) -> set[str]:
    return {w.strip(".-") for w in WORD.findall(text.lower()) if w.strip(".-") and w.strip(".-") not in STOPWORDS}
