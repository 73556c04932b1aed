"""Re-runs touch only what changed: by content hash, with renames re-using stored vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core import store
from core.retrieval import retriever
from core.settings import Settings
from ingestion import sync
from ingestion.pipeline import ingest
from tests.conftest import make_markdown


def stored(settings: Settings) -> dict[str, dict]:
    collection = store.client(settings).get_collection(settings.collection, embedding_function=None)
    rows = collection.get(include=["metadatas", "embeddings", "documents"])
    return {
        i: {"meta": m, "vector": np.asarray(v), "text": t}
        for i, m, v, t in zip(rows["ids"], rows["metadatas"], rows["embeddings"], rows["documents"], strict=True)
    }


def sources(rows: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows.values():
        counts[row["meta"]["source"]] = counts.get(row["meta"]["source"], 0) + 1
    return counts


def test_first_ingest_stores_every_chunk_with_its_metadata(settings: Settings, docs: Path) -> None:
    report = ingest(docs, settings)
    rows = stored(settings)
    assert report.counts()["added"] == 3 and not report.failed
    assert report.chunks_total == len(rows) == report.chunks_embedded
    meta = next(r["meta"] for r in rows.values() if r["meta"]["source"] == "vpn.md" and r["meta"]["chunk_index"] == 0)
    assert meta["title"] == "Vpn guide"
    assert meta["section"] == "Vpn guide"
    assert meta["file_type"] == "md" and len(meta["file_hash"]) == 64
    assert {r["meta"]["chunk_count"] for r in rows.values() if r["meta"]["source"] == "vpn.md"} == {
        sources(rows)["vpn.md"]
    }


def test_second_ingest_of_unchanged_docs_adds_nothing(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    before = stored(settings)
    report = ingest(docs, settings)
    assert report.counts()["unchanged"] == 3
    assert report.chunks_embedded == report.chunks_reused == report.chunks_deleted == 0
    assert stored(settings).keys() == before.keys()


def test_changed_file_replaces_its_chunks(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    (docs / "vpn.md").write_text(make_markdown("vpn", paragraphs=3) + "\nThe new VPN gateway is gw-7.\n")
    report = ingest(docs, settings)
    rows = stored(settings)
    assert report.counts()["changed"] == 1 and report.counts()["unchanged"] == 2
    vpn_texts = [r["text"] for r in rows.values() if r["meta"]["source"] == "vpn.md"]
    assert any("gw-7" in t for t in vpn_texts)
    assert not any("Rule 11 about vpn" in t for t in vpn_texts), "old chunks of the changed file must be gone"
    assert len({r["meta"]["file_hash"] for r in rows.values() if r["meta"]["source"] == "vpn.md"}) == 1


def test_removed_file_loses_its_chunks(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    (docs / "laptops.md").unlink()
    report = ingest(docs, settings)
    assert [r.source for r in report.results if r.status == "removed"] == ["laptops.md"]
    assert "laptops.md" not in sources(stored(settings))


def test_renamed_file_reuses_its_vectors_without_embedding(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    before = {
        r["meta"]["chunk_index"]: r["vector"] for r in stored(settings).values() if r["meta"]["source"] == "vpn.md"
    }
    (docs / "network").mkdir()
    (docs / "vpn.md").rename(docs / "network" / "vpn-howto.md")
    report = ingest(docs, settings)
    after = {
        r["meta"]["chunk_index"]: r["vector"]
        for r in stored(settings).values()
        if r["meta"]["source"] == "network/vpn-howto.md"
    }
    renamed = [r for r in report.results if r.status == "renamed"]
    assert [(r.source, r.detail) for r in renamed] == [("network/vpn-howto.md", "from vpn.md")]
    assert report.chunks_embedded == 0 and report.chunks_reused == len(before)
    assert "vpn.md" not in sources(stored(settings))
    assert before.keys() == after.keys()
    assert all(np.allclose(before[i], after[i]) for i in before)


def test_copied_file_is_added_with_copied_vectors_and_original_kept(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    (docs / "vpn-copy.md").write_bytes((docs / "vpn.md").read_bytes())
    report = ingest(docs, settings)
    assert report.chunks_embedded == 0 and report.counts()["added"] == 1
    counts = sources(stored(settings))
    assert counts["vpn.md"] == counts["vpn-copy.md"]


def test_dry_run_reports_changes_and_writes_nothing(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    before = stored(settings).keys()
    (docs / "new.md").write_text(make_markdown("printers"))
    (docs / "laptops.md").unlink()
    report = ingest(docs, settings, dry_run=True)
    assert report.counts()["added"] == 1 and report.counts()["removed"] == 1
    assert stored(settings).keys() == before


def test_collection_built_with_other_chunking_is_refused_until_rebuild(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    smaller = settings.model_copy(update={"chunk_size": 64, "chunk_overlap": 8})
    with pytest.raises(store.StoreError, match="--rebuild"):
        ingest(docs, smaller)
    report = ingest(docs, smaller, rebuild=True)
    assert report.counts()["added"] == 3
    names = [c.name for c in store.client(settings).list_collections()]
    assert names == [settings.collection]
    assert max(r["meta"]["chunk_count"] for r in stored(settings).values()) > 3


def test_collection_built_with_another_embedding_model_is_refused(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    other = settings.model_copy(update={"embedding_model": "sentence-transformers/paraphrase-MiniLM-L3-v2"})
    with pytest.raises(store.StoreError, match="embedding model 'bundled:all-minilm-l6-v2'"):
        ingest(docs, other)
    with pytest.raises(store.StoreError, match="--rebuild"):
        retriever(other)


def test_run_cut_after_first_write_is_finished_by_the_next_without_duplicates(
    settings: Settings, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = settings.model_copy(update={"collection": "clean"})
    ingest(docs, clean)
    expected = stored(clean)

    monkeypatch.setattr(sync, "FLUSH_CHUNKS", 4)
    real_upsert_calls = 0
    original = sync.Ingestor.embed_and_store

    def crash_after_first_step(self: sync.Ingestor, chunks: list[sync.Chunk]) -> None:
        nonlocal real_upsert_calls
        original(self, chunks[:4])
        real_upsert_calls += 1
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(sync.Ingestor, "embed_and_store", crash_after_first_step)
    with pytest.raises(KeyboardInterrupt):
        ingest(docs, settings)
    assert 0 < len(stored(settings)) < len(expected)
    monkeypatch.setattr(sync.Ingestor, "embed_and_store", original)

    report = ingest(docs, settings)
    assert report.chunks_embedded == len(expected) - 4, "the chunks stored before the cut are not embedded again"
    assert stored(settings).keys() == expected.keys()


def test_a_second_writer_is_refused_while_one_runs(settings: Settings, docs: Path) -> None:
    from ingestion.pipeline import writer_lock

    with writer_lock(settings), pytest.raises(store.StoreError, match="another ingestion"):
        ingest(docs, settings)
