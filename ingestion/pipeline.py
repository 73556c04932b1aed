"""`ingest(folder, settings)`: the library entry point behind `python -m ingestion`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core import bm25, store
from core.models import load_embedder
from core.settings import Settings
from ingestion.report import Report
from ingestion.sync import Ingestor

if TYPE_CHECKING:
    import chromadb

REBUILD_SUFFIX = "-rebuild"


def ingest(root: Path, settings: Settings, *, rebuild: bool = False, dry_run: bool = False) -> Report:
    """Bring the collection in line with `root`; --rebuild re-embeds into a fresh copy, then swaps."""
    started = time.perf_counter()
    if dry_run:
        report = Ingestor(settings, None if rebuild else existing_collection(settings), dry_run=True).run(root)
    else:
        with writer_lock(settings):
            chroma = store.client(settings)
            if rebuild or not store.has_collection(settings, settings.collection):
                load_embedder(settings)  # a bad model fails here, before a collection records it
            collection = (
                rebuild_target(chroma, settings) if rebuild else open_checked(chroma, settings.collection, settings)
            )
            report = Ingestor(settings, collection).run(root)
            if rebuild:
                collection = swap(chroma, collection, settings.collection)
            store.record_root(collection, root)
            with report.timed("keyword index"):
                bm25.open_index(settings.chroma_dir, collection)  # rebuilt here when chunks changed
            report.chunks_total = collection.count()
    report.seconds = time.perf_counter() - started
    return report


def open_checked(chroma: chromadb.ClientAPI, name: str, settings: Settings) -> chromadb.Collection:
    return store.open_collection(chroma, name, store.IndexSpec.from_settings(settings))


def existing_collection(settings: Settings) -> chromadb.Collection | None:
    if not store.has_collection(settings, settings.collection):
        return None
    return open_checked(store.client(settings), settings.collection, settings)


def rebuild_target(chroma: chromadb.ClientAPI, settings: Settings) -> chromadb.Collection:
    """A side collection to build into; one left by a cut rebuild with the same settings is resumed."""
    name = settings.collection + REBUILD_SUFFIX
    try:
        return open_checked(chroma, name, settings)
    except store.StoreError:
        chroma.delete_collection(name)
        return open_checked(chroma, name, settings)


def swap(chroma: chromadb.ClientAPI, built: chromadb.Collection, name: str) -> chromadb.Collection:
    if name in {c.name for c in chroma.list_collections()}:
        chroma.delete_collection(name)
    built.modify(name=name)
    return chroma.get_collection(name, embedding_function=None)


@contextmanager
def writer_lock(settings: Settings) -> Iterator[None]:
    """One writer per store: a second ingestion fails at once instead of interleaving."""
    from filelock import FileLock, Timeout

    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(settings.chroma_dir / "ingest.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise store.StoreError(
            f"another ingestion is writing to {settings.chroma_dir}; wait for it to finish"
        ) from None
    try:
        yield
    finally:
        lock.release()
