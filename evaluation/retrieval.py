"""Retrieval quality per mode: recall@k, MRR, nDCG@10 and latency over the answerable questions."""

from __future__ import annotations

import time

from tqdm import tqdm

from core.metrics import hits, mean, ndcg_at, percentile, recall_at, reciprocal_rank
from core.settings import Settings
from evaluation.data import Question

KS = (1, 3, 5, 10)
DEPTH = 10


def evaluate(settings: Settings, questions: list[Question], modes: list[str]) -> dict[str, dict]:
    """{mode: {"recall@1": .., "mrr": .., "ndcg@10": .., "p50_ms": .., "p95_ms": .., "missed@5": [..]}}."""
    from core.retrieval import retriever

    scored = [q for q in questions if q.answerable and q.gold_sources]
    if not scored:  # e.g. the feedback regression set: no gold sources, nothing to score
        return {}
    base = retriever(settings, k=DEPTH)
    base.invoke("warm-up")  # the embedding model loads here, not inside the first timing
    results = {}
    for mode in modes:
        search = base.model_copy(update={"options": settings.retrieval.model_copy(update={"mode": mode})})
        flags, latencies = [], []
        for q in tqdm(scored, desc=f"retrieval ({mode})", unit="q", disable=None):
            started = time.perf_counter()
            docs = search.invoke(q.question)
            latencies.append((time.perf_counter() - started) * 1000)
            flags.append(hits([(d.metadata["source"], d.metadata.get("section")) for d in docs], q.gold_sources))
        results[mode] = summarize(scored, flags, latencies)
    return results


def summarize(questions: list[Question], flags: list[list[bool]], latencies: list[float]) -> dict:
    pairs = list(zip(questions, flags, strict=True))
    row: dict = {f"recall@{k}": mean(recall_at(f, len(q.gold_sources), k) for q, f in pairs) for k in KS}
    row["hit@5"] = mean(float(any(f[:5])) for _, f in pairs)  # any gold source in the top 5
    row["mrr"] = mean(reciprocal_rank(f) for _, f in pairs)
    row["ndcg@10"] = mean(ndcg_at(f, len(q.gold_sources), 10) for q, f in pairs)
    row["p50_ms"], row["p95_ms"] = percentile(latencies, 50), percentile(latencies, 95)
    row["questions"] = len(pairs)
    row["missed@5"] = [q.question for q, f in pairs if not any(f[:5])]
    return row
