"""The retriever: dense (Chroma), keyword (BM25) or both fused (by score or reciprocal rank), with filters.

Each returned chunk carries `score`, the cosine similarity of the question and the chunk (the
chain refuses when the best one is too low), whichever search found it, and `vector`, its stored
embedding, so the answer check does not embed the passages again.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from fnmatch import fnmatchcase
from functools import cached_property
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from core.bm25 import Bm25Index
from core.settings import RetrievalSettings, Settings

VECTOR = "vector"  # the metadata key of a chunk's stored embedding (normalised)
MIN_OVERLAP = 10  # characters: a shorter match between two chunks' edges is chance ("the" + "each")


class Searchable:
    """One collection: its Chroma collection and its BM25 index."""

    def __init__(self, collection: Any, index: Bm25Index):
        self.collection = collection
        self.index = index

    def in_links(self, chunk_id: str) -> float:
        """The votes of the other files of the collection that link to the chunk's file (core/links.py)."""
        return self.index.in_links.get(self.source[chunk_id], 0)

    @cached_property
    def source(self) -> dict[str, str]:
        """Chunk id -> file, built the first time per_source or the link prior asks."""
        return dict(zip(self.index.ids, self.index.fields["source"], strict=True))

    def allowed(self, source_glob: str | None, file_types: tuple[str, ...]) -> np.ndarray | None:
        """Which chunks pass the filters (None: all)."""
        if not source_glob and not file_types:
            return None
        mask = np.ones(len(self.index.ids), dtype=bool)
        if source_glob:
            mask &= np.array([fnmatchcase(s, source_glob) for s in self.index.fields["source"]], dtype=bool)
        if file_types:
            mask &= np.isin(self.index.fields["file_type"], [t.lower().lstrip(".") for t in file_types])
        return mask

    def dense(self, vector: list[float], k: int, allowed: np.ndarray | None) -> list[tuple[str, float]]:
        """(id, cosine similarity) of the k nearest chunks."""
        where = None
        if allowed is not None:  # file type follows from the source, so the sources say it all
            if not allowed.any():
                return []
            where = {"source": {"$in": sorted({self.index.fields["source"][n] for n in np.flatnonzero(allowed)})}}
            k = min(k, int(allowed.sum()))
        result = self.collection.query(query_embeddings=[vector], n_results=k, where=where, include=["distances"])
        ids, distances = result["ids"][0], result["distances"][0]
        return [(chunk_id, 1 - distance) for chunk_id, distance in zip(ids, distances, strict=True)]

    def keyword(self, query: str, k: int, allowed: np.ndarray | None) -> list[tuple[str, float]]:
        """(id, BM25 score) of the k best-matching chunks."""
        return self.index.search(query, k, allowed)


Scored = list[tuple[Any, float]]  # (key, score), best first
PAGE_DEPTH = 3  # a file is ranked by its best three chunks' fused scores when spreading


def fuse(rankings: list[tuple[float, Scored]], options: RetrievalSettings) -> Scored:
    """The keys of several (weight, scored keys) lists in one order, by `options.fusion`, with their fused scores."""
    if options.fusion == "rrf":
        return rrf([(weight, [key for key, _ in scored]) for weight, scored in rankings], options.rrf_k)
    return by_score(rankings)


def by_score(rankings: list[tuple[float, Scored]]) -> Scored:
    """Each list's scores as a share of its best one, weighted and added up per key: BM25's scale
    changes from query to query, cosine's hardly (Bruch et al. 2023, convex combination)."""
    scores: dict[Any, float] = defaultdict(float)
    for weight, scored in rankings:
        best = max((score for _, score in scored), default=0.0)
        for key, score in scored:
            scores[key] += weight * score / best if best > 0 else 0.0
    return best_first(scores)


def rrf(rankings: list[tuple[float, list[Any]]], k: int) -> Scored:
    """Reciprocal-rank fusion: each (weight, ranked keys) list adds weight / (k + rank) to a key."""
    scores: dict[Any, float] = defaultdict(float)
    for weight, ranked in rankings:
        for rank, key in enumerate(ranked, start=1):
            scores[key] += weight / (k + rank)
    return best_first(scores)


def best_first(scores: dict[Any, float]) -> Scored:
    return sorted(scores.items(), key=lambda item: -item[1])


def linked_higher(ranked: Scored, in_links: Callable[[Any], float], weight: float) -> Scored:
    """Each key's score times 1 + weight * ln(1 + its file's in-link votes), best first (core/links.py)."""
    if not weight:
        return ranked
    return best_first({key: score * (1 + weight * math.log1p(in_links(key))) for key, score in ranked})


def spread(ranked: Scored, source: Callable[[Any], Any], per_source: int) -> list[Any]:
    """The keys with at most `per_source` of one source ahead of any other source's keys (0: `ranked` as it
    is). Sources go in the order of their best PAGE_DEPTH scores added up, so a page with three matching
    chunks goes before a page with one slightly better chunk; a source's keys keep their order."""
    if not per_source:
        return [key for key, _ in ranked]
    weight: dict[Any, float] = defaultdict(float)
    counted: dict[Any, int] = defaultdict(int)
    for key, score in ranked:
        origin = source(key)
        if counted[origin] < PAGE_DEPTH:
            weight[origin] += score
            counted[origin] += 1
    taken: dict[Any, int] = defaultdict(int)
    ahead: list[Any] = []
    behind: list[Any] = []
    for key, _ in sorted(ranked, key=lambda item: -weight[source(item[0])]):  # stable: rank order within a source
        origin = source(key)
        taken[origin] += 1
        (ahead if taken[origin] <= per_source else behind).append(key)
    return ahead + behind


class HybridRetriever(BaseRetriever):
    """Top-k chunks over one or more collections by `mode`: dense, bm25 or hybrid (both, fused)."""

    searchables: list[Any]  # Searchable, one per collection
    names: list[str]
    embeddings: Any  # LangChain Embeddings, the model the collections were built with
    k: int = 4
    options: RetrievalSettings = RetrievalSettings()
    source_glob: str | None = None  # e.g. "hr/*" or "*.pdf", matched against the chunk's source
    file_types: tuple[str, ...] = ()  # e.g. ["pdf", "docx"]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        """`k` for this call only (`invoke(query, k=1)`, LangChain's retriever contract); default `self.k`."""
        k = k or self.k
        vector = self.embeddings.embed_query(query)
        pooled = self.options.mode == "hybrid" or self.options.per_source  # fusion's or spreading's pool
        depth = max(self.options.candidates, k) if pooled else k
        rankings: list[tuple[float, Scored]] = []
        for n, searchable in enumerate(self.searchables):
            allowed = searchable.allowed(self.source_glob, self.file_types)
            if self.options.mode != "bm25":
                hits = searchable.dense(vector, depth, allowed)
                rankings.append((self.options.dense_weight, [((n, i), score) for i, score in hits]))
            if self.options.mode != "dense":
                hits = searchable.keyword(query, depth, allowed)
                rankings.append((self.options.bm25_weight, [((n, i), score) for i, score in hits]))
        fused = linked_higher(
            fuse(rankings, self.options), lambda key: self.searchables[key[0]].in_links(key[1]), self.options.link_prior
        )
        ranked = spread(fused, lambda key: (key[0], self.searchables[key[0]].source[key[1]]), self.options.per_source)
        return self.documents(ranked[:k], vector)

    def documents(self, keys: list[tuple[int, str]], vector: list[float]) -> list[Document]:
        """The chunks for (collection number, id) keys, in order, scored by cosine similarity."""
        found: dict[tuple[int, str], Document] = {}
        for n in sorted({n for n, _ in keys}):
            ids = [i for m, i in keys if m == n]
            got = self.searchables[n].collection.get(ids=ids, include=["documents", "metadatas", "embeddings"])
            for chunk_id, text, meta, emb in zip(
                got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True
            ):
                score = round(float(np.dot(vector, emb)), 4)  # both normalised: cosine
                metadata = {**meta, "score": score, "collection": self.names[n], VECTOR: emb.tolist()}
                found[(n, chunk_id)] = Document(page_content=text, metadata=metadata, id=chunk_id)
        kept = [key for key in keys if key in found]
        return self.with_neighbours(kept, found) if self.options.neighbours else [found[key] for key in kept]

    def with_neighbours(self, keys: list[tuple[int, str]], found: dict[tuple[int, str], Document]) -> list[Document]:
        """Small-to-big: each chunk's text continued by the chunks after it in its file (ids are
        FILE-INDEX), minus their overlap; a following chunk that was found itself stays on its own."""
        following = {}
        for n, chunk_id in keys:
            stem, index = chunk_id.rsplit("-", 1)
            following[(n, chunk_id)] = [(n, f"{stem}-{int(index) + i}") for i in range(1, self.options.neighbours + 1)]
        wanted = {key for keys_after in following.values() for key in keys_after} - set(keys)
        texts = {}
        for n in sorted({n for n, _ in wanted}):
            got = self.searchables[n].collection.get(ids=[i for m, i in wanted if m == n], include=["documents"])
            texts.update({(n, i): text for i, text in zip(got["ids"], got["documents"], strict=True)})
        for key in keys:
            for after in following[key]:
                if after not in texts:
                    break  # the end of the file, or a chunk shown on its own: keep the text contiguous
                found[key].page_content = join_overlapping(found[key].page_content, texts[after])
        return [found[key] for key in keys]


def join_overlapping(text: str, following: str) -> str:
    """`text` then `following`, the part they share (the chunker's overlap) written once."""
    for size in range(min(len(text), len(following)), MIN_OVERLAP - 1, -1):
        if text.endswith(following[:size]):
            return text + following[size:]
    return f"{text}\n{following}"


def retriever(
    settings: Settings,
    collection: str | list[str] | None = None,
    k: int | None = None,
    user: str | None = None,
    **filters: Any,
) -> HybridRetriever:
    """The retriever over `collection` (default: the settings') for a signed-in `user` (None: anonymous);
    `filters`: source_glob, file_types. Restricted collections raise `AccessError` for anyone else."""
    from core.access import require
    from core.bm25 import open_index
    from core.models import QuestionEmbeddings
    from core.store import checked_collection

    names = [collection] if isinstance(collection, str) else collection or [settings.collection]
    require(settings, names, user)
    searchables = []
    for name in names:
        chroma = checked_collection(settings, name)
        searchables.append(Searchable(chroma, open_index(settings.chroma_dir, chroma)))
    return HybridRetriever(
        searchables=searchables,
        names=names,
        embeddings=QuestionEmbeddings(settings),
        k=k or settings.chat.top_k,
        options=settings.retrieval,
        **filters,
    )
