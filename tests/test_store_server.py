"""`store.mode = server`: a real Chroma server (`chroma run`, from the chromadb package) on loopback
does what the embedded store does — ingestion, incremental updates, search and the chat."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import bm25, store
from core.retrieval import retriever
from core.settings import Settings, StoreSettings
from ingestion.pipeline import ingest
from tests.conftest import free_port, make_markdown, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
CHROMA = shutil.which("chroma") or str(Path(sys.executable).with_name("chroma"))


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreSettings]:
    folder = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [CHROMA, "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
        env=os.environ | {"ANONYMIZED_TELEMETRY": "False"},
        stdout=log,
        stderr=log,
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api/v2/heartbeat", server, seconds=60)
        yield StoreSettings(mode="server", port=port)
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def remote(settings: Settings, chroma_server: StoreSettings, request: pytest.FixtureRequest) -> Settings:
    """Settings pointing at the server, with a collection of this test's own (and a local folder for BM25)."""
    name = request.node.name[:60]
    local = settings.data_dir / "server-mode"
    return settings.model_copy(update={"store": chroma_server, "collection": name, "store_dir": local})


def chunk_ids(settings: Settings) -> list[str]:
    return sorted(store.client(settings).get_collection(settings.collection).get(include=[])["ids"])


def test_server_store_holds_exactly_what_the_embedded_store_holds(
    settings: Settings, remote: Settings, docs: Path
) -> None:
    ingest(docs, settings)
    report = ingest(docs, remote)
    assert report.counts()["added"] == 3
    assert chunk_ids(remote) == chunk_ids(settings)
    assert not (remote.chroma_dir / "chroma.sqlite3").exists()  # nothing written to a local Chroma
    assert store.collection_names(remote).count(remote.collection) == 1


def test_server_store_is_updated_incrementally(remote: Settings, docs: Path) -> None:
    ingest(docs, remote)
    assert ingest(docs, remote).chunks_embedded == 0  # unchanged: nothing re-embedded
    (docs / "vpn.md").write_text(make_markdown("tunnels"))
    (docs / "expenses.md").unlink()
    report = ingest(docs, remote)
    counts = report.counts()
    assert (counts["changed"], counts["removed"], counts["unchanged"], counts["added"]) == (1, 1, 1, 0)
    rows = store.client(remote).get_collection(remote.collection).get(include=["metadatas", "documents"])
    assert {m["source"] for m in rows["metadatas"]} == {"vpn.md", "laptops.md"}
    assert not any("VPN-" in text for text in rows["documents"])
    collection = store.checked_collection(remote, remote.collection)
    assert sorted(bm25.open_index(remote.chroma_dir, collection).ids) == chunk_ids(remote)


def test_hybrid_search_finds_the_same_chunks_as_embedded(settings: Settings, remote: Settings, docs: Path) -> None:
    ingest(docs, settings)
    ingest(docs, remote)
    question = "Which reference is recorded for rule 7 about laptops?"
    local = [d.metadata for d in retriever(settings, k=3).invoke(question)]
    served = [d.metadata for d in retriever(remote, k=3).invoke(question)]
    assert served[0]["source"] == "laptops.md"
    assert [(m["source"], m["chunk_index"]) for m in served] == [(m["source"], m["chunk_index"]) for m in local]


def test_chat_answers_the_same_from_the_server(
    chat_data_dir: Path, chroma_server: StoreSettings, sample_docs_copy: Path, tmp_path: Path
) -> None:
    from core.chain import chain_from_settings

    local = Settings(data_dir=chat_data_dir)
    update = {"store": chroma_server, "store_dir": tmp_path / "bm25-only", "collection": "chat"}
    served = local.model_copy(update=update)
    ingest(sample_docs_copy, served)
    question = {"question": "How do I reset my VPN password?", "history": []}
    expected = chain_from_settings(local, adapter="none", max_new_tokens=48).invoke(question)
    got = chain_from_settings(served, adapter="none", max_new_tokens=48).invoke(question)
    assert got.raw_answer == expected.raw_answer and got.answer == expected.answer
    assert [s["source"] for s in got.sources] == [s["source"] for s in expected.sources]
    assert got.sources


def test_unreachable_server_is_one_clear_line(settings: Settings) -> None:
    down = settings.model_copy(update={"store": StoreSettings(mode="server", port=free_port())})
    with pytest.raises(store.StoreError, match=r"cannot reach the Chroma server at http://127\.0\.0\.1:\d+") as error:
        store.collection_names(down)
    assert "\n" not in str(error.value)
