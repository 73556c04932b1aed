"""The question file: one JSON object per line with `question` and any of `answer` (reference),
`gold_sources` (paths relative to the ingested folder, optionally `path#section`; `source`, a
single path, is read as one gold source) and `answerable` (false: the documents can't answer).

Two more formats, told apart by their keys:
- a follow-up set (data/qa/followups.jsonl): `question`, `answer`, `followup`, `followup_answer`,
  `gold_sources`; the follow-up is what is asked, after the first question and its reference answer;
- the chat's feedback file (<data_dir>/feedback/feedback.jsonl): each 👎 with a correction is a
  regression question, the correction its reference (one that refuses: an unanswerable question).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.jsonl import read_objects


class QuestionError(ValueError):
    """A malformed question file; the message names the file, line and field."""


@dataclass(frozen=True)
class Question:
    question: str
    answer: str = ""
    gold_sources: list[str] = field(default_factory=list)
    answerable: bool = True
    history: tuple[tuple[str, str], ...] = ()  # earlier (question, answer) turns: `question` follows them


def read_questions(path: Path) -> list[Question]:
    records = read_objects(path, QuestionError, "questions")
    if "rating" in records[0][1]:
        return regression_questions(path)
    return [parse_followup(r, where) if "followup" in r else parse(r, where) for where, r in records]


def parse(record: dict, where: str) -> Question:
    question = text(record, "question", where)
    answer = record.get("answer") or ""
    if not isinstance(answer, str):
        raise QuestionError(f"{where}: field 'answer' must be a string")
    gold = record.get("gold_sources", [record["source"]] if record.get("source") else [])
    if not isinstance(gold, list) or not all(isinstance(g, str) and g for g in gold):
        raise QuestionError(f"{where}: field 'gold_sources' must be a list of paths")
    answerable = record.get("answerable", True)
    if not isinstance(answerable, bool):
        raise QuestionError(f"{where}: field 'answerable' must be true or false")
    return Question(question, answer.strip(), gold, answerable)


def parse_followup(record: dict, where: str) -> Question:
    """The follow-up as the question, asked after the first question and its reference answer: the
    set measures the follow-up step alone, not how the model did on the first turn."""
    first = parse(record, where)
    history = ((first.question, text(record, "answer", where)),)
    followup = text(record, "followup", where)
    return Question(followup, text(record, "followup_answer", where), first.gold_sources, first.answerable, history)


def text(record: dict, name: str, where: str) -> str:
    value = record.get(name)
    if not isinstance(value, str) or not value.strip():
        raise QuestionError(f"{where}: field '{name}' must be a non-empty string")
    return value.strip()


def regression_questions(path: Path) -> list[Question]:
    """The 👎 with a correction of a feedback file, asked again with the conversation they came from."""
    from core.check import is_refusal
    from finetune.feedback_data import FeedbackError, latest, read_feedback

    try:
        feedback = latest(read_feedback(path))  # the last rating of an answer counts
    except FeedbackError as exc:
        raise QuestionError(str(exc)) from None
    corrected = [f for f in feedback if f.rating == "down" and f.correction]
    if not corrected:
        raise QuestionError(f"{path}: no 👎 with a correction to use as a regression set")
    return [
        Question(f.question, f.correction or "", [], not is_refusal(f.correction or ""), f.history) for f in corrected
    ]
