"""The chat's 👍/👎 (core/feedback.py writes them) → training lines in the chain's own prompt.

A 👎 with a correction teaches the correction; a 👍 teaches the answer as it was shown (a 👍 on a
refusal teaches the refusal); a 👎 without a correction says what is wrong but not what is right,
so it teaches nothing. The passages are retrieved again for the stored standalone query, through
the chain's own search: the record keeps only the passages the answer cited (or the closest three
of a refusal), not the numbered context the prompt showed, and the next adapter must learn from
the context the chain builds over today's store. A target that the chain's check would refuse over
those passages (the correction is not in them) is left out: training on it would teach the model
to say what its context does not say. Those lines are counted, since they point at retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from core.check import CITATION, REFUSAL, is_refusal
from core.jsonl import read_objects
from core.text import content_words


class FeedbackError(ValueError):
    """A malformed feedback file; the message names the file, line and field."""


@dataclass(frozen=True)
class Feedback:
    where: str  # file:line, for messages
    collection: str
    adapter: str
    question: str
    query: str  # the standalone question the chain searched and answered
    history: tuple[tuple[str, str], ...]
    answer: str
    refused: bool
    rating: str  # "up" or "down"
    correction: str | None


def read_feedback(path: Path) -> list[Feedback]:
    """Every rating in `path`, or FeedbackError naming the first bad line and field."""
    return [parse(record, where) for where, record in read_objects(path, FeedbackError, "feedback")]


def parse(record: dict[str, Any], where: str) -> Feedback:
    from core.feedback import RATINGS, RECORD_KEYS

    if missing := [k for k in RECORD_KEYS if k not in record]:
        raise FeedbackError(f"{where}: missing field '{missing[0]}' (a feedback line has {', '.join(RECORD_KEYS)})")
    if unknown := [k for k in record if k not in RECORD_KEYS]:
        raise FeedbackError(f"{where}: unknown field '{unknown[0]}'")
    for name in ("time", "collection", "adapter", "question", "query", "raw_answer", "answer"):
        if not isinstance(record[name], str) or (name in ("question", "query") and not record[name].strip()):
            raise FeedbackError(
                f"{where}: field '{name}' must be a {'non-empty ' * (name in ('question', 'query'))}string"
            )
    if record["rating"] not in RATINGS:
        raise FeedbackError(f"{where}: field 'rating' must be one of {', '.join(RATINGS)}, not {record['rating']!r}")
    if not isinstance(record["refused"], bool):
        raise FeedbackError(f"{where}: field 'refused' must be true or false")
    if record["correction"] is not None and not isinstance(record["correction"], str):
        raise FeedbackError(f"{where}: field 'correction' must be a string or null")
    check_sources(record["sources"], where)
    return Feedback(
        where,
        record["collection"],
        record["adapter"],
        record["question"].strip(),
        record["query"].strip(),
        parse_history(record["history"], where),
        record["answer"],
        record["refused"],
        record["rating"],
        (record["correction"] or "").strip() or None,
    )


def parse_history(history: Any, where: str) -> tuple[tuple[str, str], ...]:
    pairs = isinstance(history, list) and all(
        isinstance(turn, list) and len(turn) == 2 and all(isinstance(t, str) for t in turn) for turn in history
    )
    if not pairs:
        raise FeedbackError(f"{where}: field 'history' must be a list of [question, answer] pairs")
    return tuple((q, a) for q, a in history)


def check_sources(sources: Any, where: str) -> None:
    """The sources shown: checked for the file's sake, though conversion retrieves them again."""
    if not isinstance(sources, list) or not all(isinstance(s, dict) for s in sources):
        raise FeedbackError(f"{where}: field 'sources' must be a list of objects")
    for index, source in enumerate(sources):
        if missing := [k for k in ("n", "source", "snippet") if k not in source]:
            raise FeedbackError(f"{where}: field 'sources[{index}]' has no '{missing[0]}'")


def latest(feedback: list[Feedback]) -> list[Feedback]:
    """One rating per answer: a person who changes their mind appends a new line, and the last counts."""
    by_answer = {(f.collection, f.adapter, f.question, f.query, f.history, f.answer): f for f in feedback}
    return list(by_answer.values())


def target(item: Feedback) -> str | None:
    """What the model should have said: the correction of a 👎, the answer of a 👍 (its [n] dropped:
    the passages are numbered again), or None for a 👎 without a correction."""
    if item.rating == "down":
        return item.correction
    return REFUSAL if item.refused else CITATION.sub("", item.answer).strip()


def source_of(answer: str, docs: list[Document]) -> str | None:
    """The file of the passage that shares most words with `answer` (None: no passage shares any)."""
    words = content_words(answer)
    overlap = [len(words & content_words(doc.page_content)) for doc in docs]
    best = max(range(len(docs)), key=lambda n: overlap[n], default=None)
    return docs[best].metadata.get("source") if best is not None and overlap[best] else None


def example(
    item: Feedback, docs: list[Document], settings: Any, embed: Any, verify: Any = None
) -> dict[str, Any] | None:
    """A training line for `item` over `docs`, or None when its target can't be taught from them."""
    from core.chain import asked_question
    from core.check import check
    from finetune.rag_data import rag_example

    wanted = target(item)
    if wanted is None:
        return None
    refusal = is_refusal(wanted)
    turn = {"question": item.question, "query": item.query, "history": item.history}
    asked = asked_question(turn)  # the question as the chain's prompt puts it
    line = rag_example(asked, REFUSAL if refusal else wanted, None if refusal else source_of(wanted, docs), docs)
    said = line["messages"][-1]["content"]
    if not refusal and check(turn | {"docs": docs, "answer": said}, settings.chat, embed, verify).refused:
        return None
    return line | {"feedback": item.rating, "line": item.where}


def convert_feedback(settings: Any, feedback_file: Path, output: Path) -> dict[str, int]:
    """Write `output` (atomically) from the ratings in `feedback_file`; counts of what was written."""
    from functools import partial

    from core.access import AccessError
    from core.chain import followup_search
    from core.models import encode, load_embedder
    from core.retrieval import retriever
    from core.store import StoreError
    from core.verifier import load_verifier
    from finetune.rag_data import write_lines

    embed = partial(encode, settings, load_embedder(settings))
    verify = load_verifier(settings)
    searches: dict[str, Any] = {}
    lines, counts = [], {"corrected": 0, "approved": 0, "no correction": 0, "not in the passages": 0}
    for item in latest(read_feedback(feedback_file)):
        if target(item) is None:
            counts["no correction"] += 1
            continue
        if item.collection not in searches:  # the collection the person asked, as the chain searches it
            try:
                search = retriever(settings, item.collection)
            except (AccessError, StoreError) as exc:
                raise FeedbackError(f"{item.where}: {exc}") from None
            searches[item.collection] = followup_search(search, settings.chat.history_turns)
        docs = searches[item.collection].invoke(
            {"question": item.question, "query": item.query, "history": item.history}
        )
        line = example(item, docs, settings, embed, verify)
        counts["not in the passages" if line is None else "corrected" if item.rating == "down" else "approved"] += 1
        if line is not None:
            lines.append(line)
    write_lines(output, lines)
    return counts
