"""The Chroma store: one collection per document set, stamped with how its vectors were made.

Opening a collection with another embedding model or chunking than it was built with is an
error, never a silent mix of vector spaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    import chromadb

# Bump when chunks or their vectors change for the same files and settings (2: link lists dropped;
# 3: heading-only chunks dropped, vectors made from title > section + text; 4: underlined headings;
# 5: HTML without ARIA navigation, link bars and ¶ permalinks; 6: short link bars, <div id="sidebar">;
# 7: a lone navigation link with an accesskey).
CHUNKER_VERSION = 7
META_PREFIX = "askdocs_"
ROOT_KEY = "source_root"  # not IndexSpec: the folder may move without changing the vectors
PAGE = 5000  # rows per Chroma get/delete call, well under SQLite's variable limit


class StoreError(RuntimeError):
    """The collection is missing or was built with other settings than the ones asked for."""


@dataclass(frozen=True)
class IndexSpec:
    """What makes vectors and chunks comparable; recorded in the collection's metadata."""

    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    chunker_version: int = CHUNKER_VERSION

    @classmethod
    def from_settings(cls, settings: Settings) -> IndexSpec:
        return cls(settings.embedding_model, settings.chunk_size, settings.chunk_overlap)

    def as_metadata(self) -> dict[str, Any]:
        return {META_PREFIX + key: value for key, value in asdict(self).items()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> IndexSpec | None:
        fields = {k.removeprefix(META_PREFIX): v for k, v in (metadata or {}).items() if k.startswith(META_PREFIX)}
        return cls(**fields) if fields else None


def client(settings: Settings) -> chromadb.ClientAPI:
    """Chroma in this process (embedded, on CHROMA_DIR) or a Chroma server (`store.mode = server`)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    no_telemetry = ChromaSettings(anonymized_telemetry=False)
    if settings.store.mode == "embedded":
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=no_telemetry)
    server = settings.store
    try:
        return chromadb.HttpClient(host=server.host, port=server.port, ssl=server.ssl, settings=no_telemetry)
    except Exception as error:  # chromadb raises ValueError or httpx errors, wrapped differently per version
        raise StoreError(
            f"cannot reach the Chroma server at {server.url} ({type(error).__name__}); start one with "
            f"`chroma run --path DIR --host {server.host} --port {server.port}` or set ASKDOCS_STORE__MODE=embedded"
        ) from None


def open_collection(chroma: chromadb.ClientAPI, name: str, spec: IndexSpec) -> chromadb.Collection:
    """Get or create `name`; refuse it if it was built with another spec."""
    collection = chroma.get_or_create_collection(
        name,
        embedding_function=None,  # never chromadb's default: it downloads a model
        metadata=spec.as_metadata(),
        configuration={"hnsw": {"space": "cosine"}},
    )
    check_spec(collection, spec)
    return collection


def check_spec(collection: chromadb.Collection, spec: IndexSpec) -> None:
    stored = IndexSpec.from_metadata(collection.metadata)
    if stored is not None and stored != spec:
        raise StoreError(
            f"collection '{collection.name}' was built with {describe(stored)}, but the settings ask for "
            f"{describe(spec)}; re-run ingestion with --rebuild (re-embeds everything) or use another --collection"
        )


def describe(spec: IndexSpec) -> str:
    return (
        f"embedding model {spec.embedding_model!r}, chunks {spec.chunk_size}/{spec.chunk_overlap} tokens, "
        f"chunker version {spec.chunker_version}"
    )


def record_root(collection: chromadb.Collection, root: Path) -> None:
    """Remember the folder a collection mirrors, so the chat can add uploads to it."""
    metadata = dict(collection.metadata or {})
    if metadata.get(ROOT_KEY) != str(root.resolve()):
        collection.modify(metadata={**metadata, ROOT_KEY: str(root.resolve())})


def source_root(settings: Settings, name: str) -> Path | None:
    """The folder `name` was last ingested from, if known."""
    root = client(settings).get_collection(name, embedding_function=None).metadata or {}
    return Path(root[ROOT_KEY]) if root.get(ROOT_KEY) else None


def collection_names(settings: Settings) -> list[str]:
    """Collections a user can chat with (not the side copies of a --rebuild in progress)."""
    return sorted(name for name in all_names(settings) if not name.endswith("-rebuild"))


def has_collection(settings: Settings, name: str) -> bool:
    return name in all_names(settings)


def location(settings: Settings) -> str:
    """Where the store is, for messages: its folder or its server."""
    return (
        str(settings.chroma_dir) if settings.store.mode == "embedded" else f"the Chroma server at {settings.store.url}"
    )


def all_names(settings: Settings) -> set[str]:
    if settings.store.mode == "embedded" and not settings.chroma_dir.exists():
        return set()  # don't create an empty store just to list it
    return {c.name for c in client(settings).list_collections()}


def iter_metadatas(collection: chromadb.Collection) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every (id, metadata) pair, page by page."""
    for offset in range(0, collection.count(), PAGE):
        batch = collection.get(include=["metadatas"], limit=PAGE, offset=offset)
        yield from zip(batch["ids"], batch["metadatas"] or [], strict=True)


def delete_ids(collection: chromadb.Collection, ids: list[str]) -> None:
    for start in range(0, len(ids), PAGE):
        collection.delete(ids=ids[start : start + PAGE])


def checked_collection(settings: Settings, name: str) -> chromadb.Collection:
    """An existing collection built with the settings' embedding model and chunking."""
    if not has_collection(settings, name):
        raise StoreError(f"no collection '{name}' in {location(settings)}: run `python -m ingestion DIR` first")
    collection = client(settings).get_collection(name, embedding_function=None)
    check_spec(collection, IndexSpec.from_settings(settings))
    return collection
