"""Feedback records (core/feedback.py): the fixed keys another command reads, appended one per line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.check import CheckedAnswer
from core.feedback import FEEDBACK_FILE, RECORD_KEYS, feedback_record, save_feedback


def answer(**changes: object) -> CheckedAnswer:
    fields = {
        "question": "And from how many pieces?",
        "query": "From how many ATEX sensors is there a discount?",
        "answer": "From 10 pieces [1].",
        "refused": False,
        "raw_answer": "From 10 pieces [1]. Call us.",
        "sources": [{"n": 1, "source": "products/price_list_2025.csv", "score": np.float32(0.75), "snippet": "..."}],
    } | changes
    return CheckedAnswer(**fields)  # type: ignore[arg-type]


def record(rating: str = "down", correction: str | None = " From 10 pieces, 5 % off. ") -> dict:
    history = [("How much does the ATEX sensor cost?", "649.00 EUR [1].")]
    return feedback_record(
        collection="docs",
        adapter="sample-company",
        history=history,
        checked=answer(),
        rating=rating,
        correction=correction,
    )


def test_a_record_has_exactly_the_keys_the_readers_expect() -> None:
    row = record()
    assert tuple(row) == RECORD_KEYS
    assert row["question"] == "And from how many pieces?"
    assert row["query"] == "From how many ATEX sensors is there a discount?"
    assert row["history"] == [["How much does the ATEX sensor cost?", "649.00 EUR [1]."]]
    assert row["raw_answer"] == "From 10 pieces [1]. Call us." and row["answer"] == "From 10 pieces [1]."
    assert row["refused"] is False and row["rating"] == "down"
    assert row["correction"] == "From 10 pieces, 5 % off."
    assert row["time"].endswith("+00:00")  # ISO 8601, UTC


def test_an_empty_correction_is_stored_as_null() -> None:
    assert record(rating="up", correction="  ")["correction"] is None
    assert record(rating="up", correction=None)["correction"] is None


def test_an_unknown_rating_is_refused() -> None:
    with pytest.raises(ValueError, match="rating"):
        record(rating="meh")


def test_records_are_appended_one_json_object_per_line(tmp_path: Path) -> None:
    first = save_feedback(tmp_path, record())
    second = save_feedback(tmp_path, record(rating="up", correction=None))
    assert first == second == tmp_path / FEEDBACK_FILE
    lines = first.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["rating"] for r in rows] == ["down", "up"]
    assert rows[0]["sources"][0]["score"] == pytest.approx(0.75)  # a number, not the text "0.75"
    assert rows[1]["correction"] is None


def test_a_record_with_other_keys_is_not_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly the keys"):
        save_feedback(tmp_path, record() | {"user": "someone"})
    assert not (tmp_path / FEEDBACK_FILE).exists()
