"""The shipped sample documents: every file loads, and retrieval finds the right one for real questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import store
from core.retrieval import retriever
from core.settings import Settings
from ingestion import loaders
from ingestion.pipeline import ingest
from tests.conftest import ROOT, SAMPLE_DOCS

QUESTIONS = [
    json.loads(line) for line in (ROOT / "tests" / "data" / "retrieval_questions.jsonl").read_text().splitlines()
]
SAMPLE_FILES = sorted(p for p in SAMPLE_DOCS.rglob("*") if p.is_file())


def test_sample_docs_cover_every_format_with_enough_documents() -> None:
    suffixes = {p.suffix for p in SAMPLE_FILES}
    assert {".md", ".txt", ".html", ".pdf", ".docx", ".csv"} <= suffixes
    assert len(SAMPLE_FILES) >= 25


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.relative_to(SAMPLE_DOCS).as_posix())
def test_every_sample_document_loads_with_its_structure(path: Path) -> None:
    docs = loaders.load(path)
    text = "\n".join(d.page_content for d in docs)
    assert len(text.split()) > 50
    if path.suffix == ".pdf":
        assert [d.metadata["page"] for d in docs] == list(range(1, len(docs) + 1))
    if path.suffix in {".docx", ".md", ".html"}:
        assert "\n# " in "\n" + text or "\n## " in text, "headings survive as markdown"
    if path.suffix == ".html":
        assert "<script" not in text and "function(" not in text


@pytest.fixture(scope="module")
def sample_store(sample_docs_copy: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = Settings(data_dir=tmp_path_factory.mktemp("sample-store"))
    report = ingest(sample_docs_copy, settings)
    assert not report.failed, report.failed
    return settings


def test_multi_page_pdf_chunks_keep_their_page_numbers(sample_store: Settings) -> None:
    collection = store.client(sample_store).get_collection(sample_store.collection)
    pages = {m.get("page") for m in collection.get(where={"file_type": "pdf"}, include=["metadatas"])["metadatas"]}
    assert {1, 2, 3} <= pages


@pytest.mark.slow
def test_retrieval_over_sample_docs_finds_the_right_document(sample_store: Settings) -> None:
    search = retriever(sample_store, k=5)
    misses = []
    for question in QUESTIONS:
        hits = search.invoke(question["question"])
        if question["source"] not in [hit.metadata["source"] for hit in hits]:
            misses.append(question["question"])
    assert len(misses) <= len(QUESTIONS) // 10, f"not in the top 5: {misses}"
