"""RAG training data: the chain's own prompt around retrieved passages, the answer cited as [n]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.documents import Document

from core.chain import rag_prompt
from core.check import REFUSAL
from finetune import data
from finetune.rag_data import cited_answer, main, rag_example

DOCS = [
    Document("Holidays: the office is closed on 1 May.", metadata={"source": "hr/holidays.md"}),
    Document("The Milan office is run by Luca Bellini.", metadata={"source": "company/offices.csv"}),
    Document("Lyon is run by Camille Durand and Milan has 12 people.", metadata={"source": "company/offices.csv"}),
]


def test_the_named_source_becomes_the_number_of_its_best_passage() -> None:
    answer = "Luca Bellini runs the Milan office (Source: offices.csv)."
    assert cited_answer(answer, "company/offices.csv", DOCS) == "Luca Bellini runs the Milan office [2]."
    assert cited_answer("Camille Durand", "company/offices.csv", DOCS) == "Camille Durand [3]."


def test_unretrieved_or_missing_source_teaches_the_refusal() -> None:
    assert cited_answer("It is 42 (Source: other.md).", "other.md", DOCS) == REFUSAL
    assert cited_answer("I couldn't find this in the company documents.", None, DOCS) == REFUSAL


def test_examples_are_the_chains_prompt_with_few_shot_turns_not_learnt() -> None:
    example = rag_example("Who runs Milan?", "Luca Bellini (Source: offices.csv).", "company/offices.csv", DOCS)
    messages = example["messages"]
    prompt = rag_prompt().format_messages(context="x", question="y")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user", "assistant"]
    assert len(messages) == len(prompt) + 1
    assert messages[0]["content"] == prompt[0].text
    assert [m.get("weight") for m in messages if m["role"] == "assistant"] == [0, 0, None]
    assert messages[-2]["content"].startswith("[1] (hr/holidays.md) Holidays")
    assert messages[-2]["content"].endswith("Question: Who runs Milan?")
    assert messages[-1]["content"] == "Luca Bellini [2]."


def test_command_writes_trainable_lines_from_the_store(chat_data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps(
            {
                "question": "Who manages the Milan office?",
                "answer": "Luca Bellini (Source: x).",
                "source": "company/office_locations.csv",
            }
        )
        + "\n"
        + json.dumps({"question": "What is the CEO's salary?", "answer": "I couldn't find it.", "source": None})
        + "\n"
    )
    out = tmp_path / "rag" / "train.jsonl"
    assert main([str(qa), str(out), "--data-dir", str(chat_data_dir)]) == 0
    assert "1 answered, 1 refusals" in capsys.readouterr().out
    first, second = data.read_jsonl(out)
    assert first[-1]["content"].startswith("Luca Bellini [") and "office_locations.csv" in first[-2]["content"]
    assert second[-1]["content"] == REFUSAL


def test_bad_lines_are_named(chat_data_dir: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "Q?", "answer": "A.", "source": 3}) + "\n")
    assert main([str(qa), str(tmp_path / "out.jsonl"), "--data-dir", str(chat_data_dir)]) == 2
    assert f"{qa}:1: field 'source' must be a path string or null" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists()
    with pytest.raises(SystemExit):
        main([])
