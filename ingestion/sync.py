"""Incremental ingestion: make a collection hold exactly the chunks of the files in a folder.

The store is its own manifest: every chunk carries its file's path and content hash, and the
number of chunks that file has. A file is unchanged when a complete set of chunks with its
hash is stored under its path; a known hash under a new path is a rename or copy, whose
vectors are copied instead of re-embedded. New chunks are written before stale ones are
deleted and chunk ids are deterministic, so a run killed anywhere is finished by the next one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from core import store
from core.injection import planted_instruction
from core.links import LINKS
from core.models import encode, load_embedder
from core.settings import Settings
from ingestion import chunking, loaders
from ingestion.report import FileResult, Report
from ingestion.scan import SourceFile, scan

if TYPE_CHECKING:
    import chromadb
    from langchain_core.documents import Document

FLUSH_CHUNKS = 128  # chunks embedded and written per step: bounds memory, moves the progress bar


@dataclass
class Group:
    """The stored chunks of one version (hash) of one file."""

    source: str
    file_hash: str
    chunk_count: int
    ids: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return len(self.ids) == self.chunk_count


@dataclass
class Chunk:
    id: str
    text: str
    metadata: dict[str, Any]


def stored_groups(collection: chromadb.Collection) -> dict[tuple[str, str], Group]:
    groups: dict[tuple[str, str], Group] = {}
    for chunk_id, meta in store.iter_metadatas(collection):
        key = (str(meta["source"]), str(meta["file_hash"]))
        group = groups.setdefault(key, Group(*key, chunk_count=int(meta["chunk_count"])))
        group.ids.append(chunk_id)
    return groups


def chunk_ids(source: str, file_hash: str, count: int) -> list[str]:
    stem = hashlib.sha256(f"{source}\n{file_hash}".encode()).hexdigest()[:24]
    return [f"{stem}-{index}" for index in range(count)]


class Ingestor:
    """One run over one folder into one collection."""

    def __init__(self, settings: Settings, collection: chromadb.Collection | None, *, dry_run: bool = False):
        self.settings = settings
        self.collection = collection
        self.dry_run = dry_run
        self.report = Report()
        self.to_copy: list[tuple[SourceFile, Group, FileResult]] = []
        self.to_embed: list[tuple[SourceFile, FileResult]] = []

    @cached_property
    def embedder(self) -> Any:
        return load_embedder(self.settings)

    @cached_property
    def splitter(self) -> Any:
        return chunking.make_splitter(self.embedder.tokenizer, self.settings.chunk_size, self.settings.chunk_overlap)

    def run(self, root: Path) -> Report:
        with self.report.timed("scan"):
            files, self.report.skipped = scan(root, int(self.settings.max_file_mb * 2**20))
            groups = stored_groups(self.collection) if self.collection is not None else {}
            keep = self.plan(files, groups)
        if not self.dry_run:
            self.write(groups, keep)
        return self.report

    def plan(self, files: list[SourceFile], groups: dict[tuple[str, str], Group]) -> set[tuple[str, str]]:
        """Decide each file's fate; return the (source, hash) groups the store must end with."""
        by_source: dict[str, list[Group]] = defaultdict(list)
        for group in groups.values():
            by_source[group.source].append(group)
        complete = {g.file_hash: g for g in groups.values() if g.complete}
        current = {f.source: f.file_hash for f in files}
        keep: set[tuple[str, str]] = set()
        for file in files:
            old = by_source.get(file.source, [])
            if file.error:
                self.report.add(FileResult(file.source, "failed", file.error + kept_note(old)))
                keep |= {(g.source, g.file_hash) for g in old}
                continue
            key = (file.source, file.file_hash)
            keep.add(key)
            if key in groups and groups[key].complete:
                self.report.add(FileResult(file.source, "unchanged", chunks=groups[key].chunk_count))
                continue
            result = FileResult(file.source, "changed" if any(g.file_hash != file.file_hash for g in old) else "added")
            twin = complete.get(file.file_hash)
            if twin is None:
                self.to_embed.append((file, result))
                continue
            if result.status == "added" and current.get(twin.source) != twin.file_hash:
                result.status, result.detail = "renamed", f"from {twin.source}"
            self.to_copy.append((file, twin, result))
        for source in sorted(set(by_source) - set(current)):
            self.report.add(FileResult(source, "removed", chunks=sum(len(g.ids) for g in by_source[source])))
        for _, result in self.to_embed:
            self.report.add(result)
        for _, _, result in self.to_copy:
            self.report.add(result)
        return keep

    def write(self, groups: dict[tuple[str, str], Group], keep: set[tuple[str, str]]) -> None:
        assert self.collection is not None
        with self.report.timed("copy"):
            for file, twin, result in self.to_copy:
                self.copy_group(file, twin, result)
        if self.to_embed:
            with self.report.timed("load model"):
                self.splitter.split_text("warm-up")  # the model loads here, not inside the phases below
        with self.report.timed("read and chunk"):
            stored = {i for group in groups.values() for i in group.ids}
            pending = [chunk for chunk in self.read_all(groups, keep) if chunk.id not in stored]  # resume a cut run
        self.embed_and_store(pending)
        stale = [i for key, group in groups.items() if key not in keep for i in group.ids]
        with self.report.timed("delete"):
            store.delete_ids(self.collection, stale)
        self.report.chunks_deleted = len(stale)

    def copy_group(self, file: SourceFile, twin: Group, result: FileResult) -> None:
        """Store a renamed or copied file under its new path with the vectors it already has."""
        assert self.collection is not None
        old: Any = self.collection.get(ids=twin.ids, include=["documents", "metadatas", "embeddings"])
        metadatas: list[Mapping[str, Any]] = [{**meta, "source": file.source} for meta in old["metadatas"]]
        new_ids = chunk_ids(file.source, file.file_hash, twin.chunk_count)
        self.collection.upsert(
            ids=[new_ids[int(meta["chunk_index"])] for meta in metadatas],
            embeddings=old["embeddings"],
            documents=old["documents"],
            metadatas=metadatas,
        )
        result.chunks = twin.chunk_count
        self.report.chunks_reused += twin.chunk_count

    def read_all(self, groups: dict[tuple[str, str], Group], keep: set[tuple[str, str]]) -> list[Chunk]:
        """Load and chunk every file that needs embedding; a failure keeps that file's old chunks."""
        chunks: list[Chunk] = []
        for file, result in tqdm(self.to_embed, desc="reading", unit="file", disable=None):
            try:
                new = self.chunks_of(file, result)
            except loaders.LoadError as exc:
                keep.discard((file.source, file.file_hash))
                old = [g for g in groups.values() if g.source == file.source and g.file_hash != file.file_hash]
                keep |= {(g.source, g.file_hash) for g in old}
                result.status, result.detail = "failed", str(exc) + kept_note(old)
                continue
            result.chunks = len(new)
            chunks.extend(new)
        return chunks

    def chunks_of(self, file: SourceFile, result: FileResult) -> list[Chunk]:
        docs = loaders.load(file.path)
        result.detail = "; ".join(notes(docs))
        pieces = chunking.split(docs, self.splitter)
        title = docs[0].metadata.get("title") or chunking.first_heading(docs) or file.path.stem.replace("_", " ")
        ids = chunk_ids(file.source, file.file_hash, len(pieces))
        chunks = [
            Chunk(chunk_id, piece.page_content, chunk_metadata(file, piece, title, index, len(pieces)))
            for index, (chunk_id, piece) in enumerate(zip(ids, pieces, strict=True))
        ]
        if chunks and (links := docs[0].metadata.get(LINKS)):  # the file's first chunk keeps them
            chunks[0].metadata[LINKS] = "\n".join(links)  # as written: core/links.py resolves them
        return chunks

    def embed_and_store(self, chunks: list[Chunk]) -> None:
        """Embed longest-first (least padding per batch) and write each step as soon as it is done."""
        assert self.collection is not None
        chunks = sorted(chunks, key=lambda c: len(c.text), reverse=True)
        with tqdm(total=len(chunks), desc="embedding", unit="chunk", disable=None) as bar:
            for start in range(0, len(chunks), FLUSH_CHUNKS):
                step = chunks[start : start + FLUSH_CHUNKS]
                with self.report.timed("embed"):
                    vectors = encode(self.settings, self.embedder, [embedded_text(c) for c in step])
                with self.report.timed("store"):
                    self.collection.upsert(
                        ids=[c.id for c in step],
                        embeddings=vectors,
                        documents=[c.text for c in step],
                        metadatas=[c.metadata for c in step],
                    )
                bar.update(len(step))
        self.report.chunks_embedded += len(chunks)


def embedded_text(chunk: Chunk) -> str:
    """What the vector is made from: the chunk under its document title and section path, so a
    passage deep in a long page still says which page and section it belongs to."""
    title, section = chunk.metadata.get("title", ""), chunk.metadata.get("section", "")
    where = section if section.startswith(title) else " > ".join(p for p in (title, section) if p)
    return f"{where}\n\n{chunk.text}" if where else chunk.text


def chunk_metadata(file: SourceFile, piece: Document, title: str, index: int, count: int) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "source": file.source,
        "file_type": file.path.suffix.lower().lstrip("."),
        "file_hash": file.file_hash,
        "chunk_index": index,
        "chunk_count": count,
        "title": title,
        "chunk_hash": hashlib.sha256(piece.page_content.encode()).hexdigest()[:16],
    }
    meta.update({k: v for k, v in piece.metadata.items() if k in ("section", "page") and v not in (None, "")})
    return meta


def notes(docs: list[Document]) -> list[str]:
    """What the report says about a stored file: rows a loader repaired, and text that gives the model
    orders (stored, but no passage of it can vouch for an answer: core/check.py)."""
    repaired = [str(doc.metadata.pop(loaders.WARNING)) for doc in docs if loaders.WARNING in doc.metadata]
    planted = next((found for doc in docs if (found := planted_instruction(doc.page_content))), "")
    steering = [f"text that gives the model instructions ({planted!r}): check the file"] if planted else []
    return repaired[:3] + [f"{len(repaired) - 3} more uneven rows"] * (len(repaired) > 3) + steering


def kept_note(old: list[Group]) -> str:
    count = sum(len(g.ids) for g in old)
    return f" (kept its {count} previously stored chunks)" if count else ""
