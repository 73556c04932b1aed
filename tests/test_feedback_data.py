"""The chat's 👍/👎 → training lines (python -m finetune.rag_data --from-feedback) and a regression set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.check import REFUSAL, CheckedAnswer
from core.feedback import FEEDBACK_FILE, feedback_record, save_feedback
from evaluation.data import QuestionError, read_questions
from finetune.feedback_data import FeedbackError, read_feedback
from finetune.rag_data import main

MILAN = ("Which office covers sales in Italy?", "The Milan Sales Office [1].")
PRICE_LIST = {"n": 1, "source": "products/price_list_2025.csv", "snippet": "KD-400X ... 649.00"}


def rate(data_dir: Path, question: str, answer: str, rating: str, correction: str | None = None, **more) -> None:
    """One rating saved the way the chat saves it (core/feedback.py)."""
    checked = CheckedAnswer(
        question=question,
        query=more.pop("query", question),
        answer=answer,
        refused=answer == REFUSAL,
        raw_answer=answer,
        sources=[PRICE_LIST],
    )
    record = feedback_record(
        collection="docs",
        adapter="none",
        history=more.pop("history", []),
        checked=checked,
        rating=rating,
        correction=correction,
    )
    save_feedback(data_dir, record)


def write_feedback(data_dir: Path) -> Path:
    rate(
        data_dir,
        "And who runs it?",
        "Claudia Reinhardt [1].",
        "down",
        "Luca Bellini is the office manager of the Milan Sales Office.",
        history=[MILAN],
        query="Who runs the Milan Sales Office?",
    )
    rate(data_dir, "What's the list price of the ATEX sensor?", "It costs 649.00 EUR per piece [2].", "up")
    rate(data_dir, "What's the hotel cap in Singapore?", "180 SGD [1].", "down")  # 👎 without a correction
    rate(data_dir, "Who is the CEO's dog?", "Rex [1].", "down", "Our CEO's dog is a poodle called Mister Fluff.")
    rate(data_dir, "What is the CEO's salary?", REFUSAL, "up")
    return data_dir / FEEDBACK_FILE


@pytest.mark.slow
def test_corrections_and_approved_answers_become_examples_in_the_chains_prompt(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.chain import SYSTEM

    feedback = write_feedback(tmp_path / "chat")
    out = tmp_path / "rag" / "feedback.jsonl"
    assert main(["--from-feedback", str(feedback), str(out), "--data-dir", str(chat_data_dir)]) == 0
    printed = capsys.readouterr().out
    assert "3 examples (1 corrected, 2 approved)" in printed
    assert "1 👎 without a correction, 1 whose answer the passages retrieved now do not back" in printed
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    corrected, approved, refusal = lines
    messages = corrected["messages"]
    assert messages[0] == {"role": "system", "content": SYSTEM}
    assert messages[-2]["content"].endswith("Question: Who runs the Milan Sales Office?")  # the stored query
    target = messages[-1]["content"]
    n = int(target.rsplit("[", 1)[1].rstrip("].")) - 1
    assert target.startswith("Luca Bellini is the office manager") and corrected["retrieved"][n] == (
        "company/office_locations.csv"
    )
    assert corrected["feedback"] == "down" and corrected["line"].endswith("feedback.jsonl:1")
    assert approved["messages"][-1]["content"].startswith("It costs 649.00 EUR per piece [")
    assert approved["source"] == "products/price_list_2025.csv"
    assert refusal["messages"][-1]["content"] == REFUSAL


def test_the_last_rating_of_an_answer_counts(tmp_path: Path) -> None:
    rate(tmp_path, "Q?", "A [1].", "up")
    rate(tmp_path, "Q?", "A [1].", "down", "B.")
    from finetune.feedback_data import latest

    (only,) = latest(read_feedback(tmp_path / FEEDBACK_FILE))
    assert only.rating == "down" and only.correction == "B."


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("query"), "missing field 'query'"),
        (lambda r: r.update(mood="happy"), "unknown field 'mood'"),
        (lambda r: r.update(rating="meh"), "field 'rating' must be one of down, up, not 'meh'"),
        (lambda r: r.update(history=[["only a question"]]), "field 'history' must be a list of [question, answer]"),
        (lambda r: r.update(refused="no"), "field 'refused' must be true or false"),
        (lambda r: r.update(correction=3), "field 'correction' must be a string or null"),
        (lambda r: r.update(sources=[{"n": 1}]), "field 'sources[0]' has no 'source'"),
        (lambda r: r.update(question=" "), "field 'question' must be a non-empty string"),
    ],
)
def test_a_bad_feedback_line_is_named(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    feedback = write_feedback(tmp_path)
    lines = feedback.read_text().splitlines()
    record = json.loads(lines[1])
    change(record)
    feedback.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    with pytest.raises(FeedbackError) as error:
        read_feedback(feedback)
    assert str(error.value).startswith(f"{feedback}:2: {message}")


def test_the_command_says_which_line_is_bad_in_one_line(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text('{"rating": "up"}\n')
    out = tmp_path / "out.jsonl"
    assert main(["--from-feedback", str(feedback), str(out), "--data-dir", str(chat_data_dir)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {feedback}:1: missing field 'time'") and error.count("\n") == 1
    assert not out.exists()


def test_from_feedback_takes_one_or_two_paths(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["only-out.jsonl"])  # without --from-feedback: IN and OUT
    with pytest.raises(SystemExit):
        main(["--from-feedback", "a", "b", "c"])
    assert "--from-feedback [FEEDBACK] OUT" in capsys.readouterr().err


def test_thumbs_down_with_a_correction_are_the_regression_set(tmp_path: Path) -> None:
    feedback = write_feedback(tmp_path)
    rate(tmp_path, "Who is the deputy CISO?", "Anna [1].", "down", REFUSAL)
    milan, dog, ciso = read_questions(feedback)
    assert milan.question == "And who runs it?" and milan.history == (MILAN,)
    assert milan.answer == "Luca Bellini is the office manager of the Milan Sales Office." and milan.answerable
    assert dog.answerable and not dog.gold_sources
    assert not ciso.answerable  # the correction says the documents don't answer it


def test_a_feedback_file_without_corrections_is_no_regression_set(tmp_path: Path) -> None:
    rate(tmp_path, "Q?", "A [1].", "up")
    with pytest.raises(QuestionError, match="no 👎 with a correction"):
        read_questions(tmp_path / FEEDBACK_FILE)


def test_evaluation_takes_the_feedback_file_as_its_question_file(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.cli import main as evaluate

    feedback = write_feedback(tmp_path)
    assert evaluate([str(feedback), "--data-dir", str(chat_data_dir), "--modes", "hybrid", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["retrieval"] == {}  # no gold sources: only --answers scores a regression set
    bad = tmp_path / "bad.jsonl"
    bad.write_text(feedback.read_text().replace('"rating": "up"', '"rating": "meh"', 1))
    assert evaluate([str(bad), "--data-dir", str(chat_data_dir)]) == 2
    assert f"{bad}:2: field 'rating' must be one of down, up" in capsys.readouterr().err
