"""Retrieval latency at 20,000 chunks against exact search, in one run: python -m benchmarks.retrieval.

Corpus: 20,000 distinct chunks, each three sentences drawn (seeded) from data/sample_docs' text
files, embedded once with our embedder (cached under benchmarks/.work) and written to a Chroma
collection exactly as ingestion makes it (cosine HNSW). Queries: the 239 questions of data/qa.
- ours:   `core.retrieval.retriever(...).invoke(question)`, what the chain calls: embeds the
          question with MiniLM, searches Chroma's HNSW index and the BM25 index (`candidates` each)
          and fuses them (the default hybrid mode, top 4);
- embed:  the question embedding alone (ONNX Runtime, `embedding_query_runtime` onnx, the default);
- embed_torch: the same through sentence-transformers on PyTorch (`embedding_query_runtime` torch);
- search: the Chroma query alone, question vector given;
- exact:  the peer, brute-force cosine top 4 with numpy over the same 20,000 vectors.
The HNSW top 4 is also scored against the exact top 4 (recall), so speed is not bought with misses.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks import machine, write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "retrieval"
CHUNKS = 20_000
K = 4
COLLECTION = "bench20k"


def corpus_texts() -> list[str]:
    sources = sorted(p for p in (ROOT / "data" / "sample_docs").rglob("*") if p.suffix in {".md", ".txt"})
    sentences = [
        s.strip() for p in sources for s in re.split(r"(?<=[.!?])\s+|\n{2,}", p.read_text()) if len(s.split()) >= 4
    ]
    rng = random.Random(0)
    return [f"{' '.join(rng.sample(sentences, 3))} (chunk {i})" for i in range(CHUNKS)]


def build_store(settings) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The collection and its vectors (embedded once, then cached)."""
    from core import store
    from core.models import encode, load_embedder

    cached = WORK / "vectors.npy"
    texts = corpus_texts()
    if not cached.exists():
        print(f"embedding {CHUNKS} chunks (once) ...", file=sys.stderr)
        WORK.mkdir(parents=True, exist_ok=True)
        np.save(cached, encode(settings, load_embedder(settings), texts))
    vectors = np.load(cached)
    shutil.rmtree(settings.chroma_dir, ignore_errors=True)
    collection = store.open_collection(store.client(settings), COLLECTION, store.IndexSpec.from_settings(settings))
    for start in range(0, CHUNKS, 5000):
        rows = range(start, min(start + 5000, CHUNKS))
        collection.add(
            ids=[f"c{i}" for i in rows],
            embeddings=vectors[start : rows.stop],
            documents=[texts[i] for i in rows],
            metadatas=[{"source": f"synthetic/{i // 50}.md"} for i in rows],
        )
    return vectors


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))]}


def timed(function, items) -> tuple[list, list[float]]:  # type: ignore[no-untyped-def]
    results, seconds = [], []
    for item in items:
        started = time.perf_counter()
        results.append(function(item))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def run() -> dict:
    from core.models import QuestionEmbeddings, encode, load_embedder
    from core.retrieval import retriever
    from core.settings import load_settings
    from core.store import client

    settings = load_settings(data_dir=WORK / "store", collection=COLLECTION)
    vectors = build_store(settings)
    qa = [ROOT / "data" / "qa" / f"{name}.jsonl" for name in ("train", "eval")]
    questions = [json.loads(line)["question"] for path in qa for line in path.read_text().splitlines()]
    ours = retriever(settings, k=K)
    embedder = load_embedder(settings)
    query_vectors = encode(settings, embedder, questions)
    collection = client(settings).get_collection(COLLECTION)
    for question in questions[:20]:  # warm-up: HNSW index loaded, model kernels compiled
        ours.invoke(question)

    _, ours_s = timed(ours.invoke, questions)
    _, embed_s = timed(ours.embeddings.embed_query, questions)
    torch_runtime = QuestionEmbeddings(settings.model_copy(update={"embedding_query_runtime": "torch"}))
    torch_runtime.embed_query(questions[0])
    _, embed_torch_s = timed(torch_runtime.embed_query, questions)
    hnsw, search_s = timed(
        lambda v: collection.query(query_embeddings=[v], n_results=K, include=[])["ids"][0], query_vectors
    )
    normed = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    exact, exact_s = timed(lambda v: [f"c{i}" for i in np.argsort(-(normed @ v))[:K]], query_vectors)
    recall = statistics.mean(len(set(h) & set(e)) / K for h, e in zip(hnsw, exact, strict=True))
    return {
        "ours": percentiles(ours_s),
        "embed": percentiles(embed_s),
        "embed_torch": percentiles(embed_torch_s),
        "search": percentiles(search_s),
        "exact": percentiles(exact_s),
        "recall": recall,
        "queries": len(questions),
    }


def report(r: dict) -> str:
    names = ("ours", "embed", "embed_torch", "search", "exact")
    rows = [(name, r[name]["p50"], r[name]["p95"]) for name in names]
    labels = {
        "ours": "ours: retriever.invoke (embed question, HNSW + BM25, fuse; top 4)",
        "embed": "of which: embedding the question (MiniLM on ONNX Runtime, one at a time)",
        "embed_torch": "the same on PyTorch (sentence-transformers; `embedding_query_runtime=torch`)",
        "search": "Chroma HNSW query alone (vector given)",
        "exact": "exact numpy cosine top 4 (peer)",
    }
    return "\n".join(
        [
            f"## Retrieval latency benchmark — {date.today()}",
            "",
            f"{machine()} {CHUNKS:,} chunks, {r['queries']} questions from data/qa, top {K}.",
            "Command: `make bench` (`python -m benchmarks.retrieval`).",
            "",
            "| | p50 ms | p95 ms |",
            "| --- | ---: | ---: |",
            *(f"| {labels[name]} | {p50:.2f} | {p95:.2f} |" for name, p50, p95 in rows),
            "",
            "| ratio | value | target |",
            "| --- | ---: | --- |",
            f"| ours p50 (ms) | {r['ours']['p50']:.2f} | < 25 |",
            f"| embedding p50, ONNX Runtime ÷ PyTorch | {r['embed']['p50'] / r['embed_torch']['p50']:.3f} | (info) |",
            f"| Chroma search p50 ÷ exact search p50 | {r['search']['p50'] / r['exact']['p50']:.3f} | (info) |",
            f"| HNSW top {K} ∩ exact top {K} (recall) | {r['recall']:.3f} | (info) |",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    from core.cli import docstring_parser, quiet_libraries

    docstring_parser("python -m benchmarks.retrieval", __doc__).parse_args(argv)
    quiet_libraries()
    text = report(run())
    print(text)
    write_section("Retrieval latency benchmark", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
