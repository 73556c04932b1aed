"""Chunks fit the embedding model's window, overlap their neighbours and know their section."""

from __future__ import annotations

import itertools

import pytest
from langchain_core.documents import Document

from core.models import load_embedder
from core.settings import Settings
from ingestion import chunking

SENTENCES = [f"Sensor unit {i} reports vibration level {i * 7} mm/s to gateway number {i % 5}." for i in range(80)]


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_embedder(Settings()).tokenizer


def tokens(tokenizer, text: str) -> int:  # type: ignore[no-untyped-def]
    return len(tokenizer.tokenize(text))


def shared_edge(left: str, right: str) -> str:
    """The longest end of `left` that `right` starts with."""
    return next((left[-n:] for n in range(min(len(left), len(right)), 0, -1) if right.startswith(left[-n:])), "")


@pytest.mark.parametrize(("size", "overlap"), [(200, 40), (64, 16), (32, 0)])
def test_chunks_never_exceed_the_size_in_embedding_tokens(tokenizer, size: int, overlap: int) -> None:  # type: ignore[no-untyped-def]
    text = "# Fleet\n\n" + " ".join(SENTENCES[:40]) + "\n\n## Alerts\n\n" + "\n".join(SENTENCES[40:])
    chunks = chunking.split([Document(text)], chunking.make_splitter(tokenizer, size, overlap))
    assert len(chunks) > 2
    assert max(tokens(tokenizer, c.page_content) for c in chunks) <= size
    joined = " ".join(c.page_content for c in chunks)
    assert all(sentence in joined for sentence in SENTENCES), "no text is lost between chunks"


def test_neighbouring_chunks_overlap_by_at_most_the_overlap(tokenizer) -> None:  # type: ignore[no-untyped-def]
    chunks = chunking.split([Document(" ".join(SENTENCES))], chunking.make_splitter(tokenizer, 60, 15))
    edges = [shared_edge(a.page_content, b.page_content) for a, b in itertools.pairwise(chunks)]
    assert all(edges), "every chunk starts with the tail of the one before"
    assert all(0 < tokens(tokenizer, edge) <= 15 for edge in edges)


def test_chunks_record_the_heading_path_where_they_start(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "# Manual\n\nIntro.\n\n## Mounting\n\n" + " ".join(SENTENCES[:30]) + "\n\n## LED codes\n\nRed means E-217.\n"
    chunks = chunking.split([Document(text)], chunking.make_splitter(tokenizer, 60, 10))
    sections = [c.metadata["section"] for c in chunks]
    assert sections[0] == "Manual"
    assert "Manual > Mounting" in sections
    assert sections[-1] == "Manual > LED codes" and "E-217" in chunks[-1].page_content


def test_underlined_headings_of_plain_text_are_sections(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = (
        "POSTMORTEM: Ingestion outage\n============================\n\nIntro.\n\n"
        "2. TIMELINE\n-----------\n\n"
        + "\n".join(SENTENCES[:20])
        + "\n\n5. ACTION ITEMS\n---------------\n\nPM-7 is open.\n"
    )
    docs = [Document(text)]
    chunks = chunking.split(docs, chunking.make_splitter(tokenizer, 60, 10))
    assert chunking.first_heading(docs) == "POSTMORTEM: Ingestion outage"
    assert "POSTMORTEM: Ingestion outage > 2. TIMELINE" in [c.metadata.get("section") for c in chunks]
    assert chunks[-1].metadata["section"] == "POSTMORTEM: Ingestion outage > 5. ACTION ITEMS"


def test_comments_and_rules_in_code_blocks_are_not_headings(tokenizer) -> None:  # type: ignore[no-untyped-def]
    code = "```bash\n# install the tools\npip install x\n```\n\n~~~\nRan 3 tests\n-----------\n~~~"
    text = "# Setup\n\n" + code + "\n\n" + "\n".join(SENTENCES[:20])
    chunks = chunking.split([Document(text)], chunking.make_splitter(tokenizer, 60, 0))
    assert len(chunks) > 2
    assert {c.metadata["section"] for c in chunks} == {"Setup"}


def test_structure_is_split_before_size(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "## Short A\n\nAlpha facts.\n\n## Short B\n\nBeta facts."
    chunks = chunking.split([Document(text)], chunking.make_splitter(tokenizer, 8, 0))
    assert [c.page_content for c in chunks] == ["## Short A\n\nAlpha facts.", "## Short B\n\nBeta facts."]


def test_page_metadata_is_carried_to_every_chunk(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pages = [
        Document(" ".join(SENTENCES[:20]), metadata={"page": 1}),
        Document(" ".join(SENTENCES[20:40]), metadata={"page": 2}),
    ]
    chunks = chunking.split(pages, chunking.make_splitter(tokenizer, 50, 10))
    assert {c.metadata["page"] for c in chunks} == {1, 2}
    assert all("unit 25 " not in c.page_content for c in chunks if c.metadata["page"] == 1)


@pytest.mark.parametrize("heading", ["## Why the gateway?", "6. CUSTOMER COMMUNICATION\n-------------------------"])
def test_a_heading_left_alone_by_the_splitter_is_not_a_chunk(tokenizer, heading: str) -> None:  # type: ignore[no-untyped-def]
    text = f"# Gateway\n\nIntro.\n\n{heading}\n\n" + "\n".join(SENTENCES[:12])
    chunks = chunking.split([Document(text)], chunking.make_splitter(tokenizer, 60, 10))
    assert len(chunks) > 2
    assert all(any(word in c.page_content for word in ("Intro", "Sensor")) for c in chunks)
    joined = " ".join(c.page_content for c in chunks)
    assert all(sentence in joined for sentence in SENTENCES[:12])


def test_a_document_that_is_only_a_heading_keeps_its_one_chunk(tokenizer) -> None:  # type: ignore[no-untyped-def]
    chunks = chunking.split([Document("# Coming soon")], chunking.make_splitter(tokenizer, 60, 10))
    assert [c.page_content for c in chunks] == ["# Coming soon"]
