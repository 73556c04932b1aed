"""Synthetic Q&A: the filter keeps only supported, new questions; runs resume where they stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.settings import Settings
from finetune import synth
from finetune.data import read_jsonl
from ingestion.pipeline import ingest

CHUNK = "Hotels in Munich are capped at 170 EUR per night, room only. Book through the travel portal Trippo."


def test_reply_is_parsed_into_question_and_answer() -> None:
    reply = "Question: What is the hotel cap in Munich?\nAnswer:  170 EUR per night,\nroom only."
    assert synth.parse_pair(reply) == ("What is the hotel cap in Munich?", "170 EUR per night, room only.")
    assert synth.parse_pair("I cannot help with that.") is None


@pytest.mark.parametrize(
    ("question", "answer", "kept"),
    [
        ("What is the hotel cap in Munich?", "170 EUR per night, room only.", True),
        ("What is the hotel cap in Munich", "170 EUR per night.", False),  # not a question
        ("What is the hotel cap in Munich?", "Ask your manager for the company card.", False),  # unsupported
        ("Hotel cap?", "170 EUR.", False),  # too short to be useful
        ("What is the hotel cap in Munich for 170 EUR per night?", "170 EUR per night", False),  # answer in question
    ],
)
def test_filter_drops_unsupported_trivial_and_malformed_pairs(question: str, answer: str, kept: bool) -> None:
    assert synth.keep(question, answer, CHUNK, set()) is kept


def test_filter_drops_duplicate_questions() -> None:
    seen: set[str] = set()
    assert synth.keep("What is the hotel cap in Munich?", "170 EUR per night.", CHUNK, seen)
    assert not synth.keep("what is the hotel cap in munich?", "170 EUR per night.", CHUNK, seen)


@pytest.mark.slow
def test_synthesis_over_a_collection_writes_chat_jsonl_and_resumes(llm_data_dir: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, fact in enumerate(
        ["Hotels in Munich are capped at 170 EUR per night.", "The VPN gateway is vpn2.kestrel.de."]
    ):
        (docs / f"doc{i}.md").write_text(f"# Policy {i}\n\n{fact}\n")
    settings = Settings(data_dir=llm_data_dir, store_dir=tmp_path / "chroma")
    ingest(docs, settings)
    output = tmp_path / "synthetic.jsonl"

    first = synth.synthesize(settings, output, limit=1)
    second = synth.synthesize(settings, output, limit=5)
    assert first["chunks"] == 1 and second["chunks"] == 1, "the second run only does the chunk left"
    assert len(synth.progress_file(output).read_text().split()) == 2
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert all({"messages", "source", "chunk_id"} <= line.keys() for line in lines)
    if lines:
        assert read_jsonl(output)
    assert synth.synthesize(settings, output)["chunks"] == 0
