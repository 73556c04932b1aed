"""The question file: one JSON object per line with `question` and any of `answer` (reference),
`gold_sources` (paths relative to the ingested folder, optionally `path#section`; `source`, a
single path, is read as one gold source) and `answerable` (false: the documents can't answer)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from app.jsonl import read_objects


class QuestionError(ValueError):
    """A malformed question file; the message names the file, line and field."""


@dataclass(frozen=True)
class Question:
    question: str
    answer: str = ""
    gold_sources: list[str] = field(default_factory=list)
    answerable: bool = True


def read_questions(path: Path) -> list[Question]:
    return [parse(record, where) for where, record in read_objects(path, QuestionError, "questions")]


def parse(record: dict, where: str) -> Question:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise QuestionError(f"{where}: field 'question' must be a non-empty string")
    answer = record.get("answer") or ""
    if not isinstance(answer, str):
        raise QuestionError(f"{where}: field 'answer' must be a string")
    gold = record.get("gold_sources", [record["source"]] if record.get("source") else [])
    if not isinstance(gold, list) or not all(isinstance(g, str) and g for g in gold):
        raise QuestionError(f"{where}: field 'gold_sources' must be a list of paths")
    answerable = record.get("answerable", True)
    if not isinstance(answerable, bool):
        raise QuestionError(f"{where}: field 'answerable' must be true or false")
    return Question(question.strip(), answer.strip(), gold, answerable)
