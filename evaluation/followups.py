"""Retrieval for follow-ups (questions with history): each way of searching for one, scored alike.

- as asked: the follow-up alone ("And who runs it?"), what a chain without history would search;
- previous + follow-up: the previous question and the follow-up in one query, no model involved;
- model's rewrite: the model's standalone question as it wrote it (core/chain.py `rewritten_question`);
- rewrite or fallback: the rewrite where usable, else previous + follow-up (`usable_rewrite`): what the
  chain searched alone before it fused;
- fused (chain): what the chain shows the model now (`search_chain`: the search for the rewrite or
  fallback fused with the one for previous + follow-up).

The rewrite runs the chat's model (the newest adapter, or the base model without one), once per
follow-up; the first turn's answer in the history is the set's reference answer.
"""

from __future__ import annotations

import time
from typing import Any

from langchain_core.runnables import Runnable
from tqdm import tqdm

from core.metrics import hits
from core.settings import Settings
from evaluation.data import Question
from evaluation.retrieval import DEPTH, summarize

COLUMNS = ["recall@1", "recall@3", "recall@5", "hit@5", "mrr", "p50_ms"]
STRATEGIES = ("as asked", "previous + follow-up", "model's rewrite", "rewrite or fallback", "fused (chain)")


def evaluate(settings: Settings, questions: list[Question]) -> dict[str, Any]:
    """{"model": .., "rewrites": [..], "unusable_rewrites": n, "strategies": {name: retrieval metrics}}."""
    from core.chain import search_chain
    from core.llm import chat_model, resolve_adapter
    from core.retrieval import retriever

    followups = [q for q in questions if q.history and q.answerable and q.gold_sources]
    search = retriever(settings, k=DEPTH)
    search.invoke("warm-up")  # the embedding model loads here, not inside the first timing
    chain = search_chain(chat_model(settings), search, settings.chat)
    flags: dict[str, list[list[bool]]] = {name: [] for name in STRATEGIES}
    latencies: dict[str, list[float]] = {name: [] for name in STRATEGIES}
    rewrites = []
    for q in tqdm(followups, desc="follow-ups", unit="q", disable=None):
        found, result = search_each_way(q, search, chain)
        for name, (docs, ms) in found.items():
            flags[name].append(hits([(d.metadata["source"], d.metadata.get("section")) for d in docs], q.gold_sources))
            latencies[name].append(ms)
        found5 = {name: any(flags[name][-1][:5]) for name in STRATEGIES}
        rewrites.append(
            {
                "followup": q.question,
                "previous": q.history[-1][0],
                "rewritten": result["rewritten"],
                "query": result["query"],
                "found@5": found5,
            }
        )
    adapter = resolve_adapter(settings)
    return {
        "model": f"{settings.llm_base} + {adapter.name}" if adapter else settings.llm_base,
        "rewrites": rewrites,
        "unusable_rewrites": sum(r["query"] == f"{r['previous']} {r['followup']}" for r in rewrites),
        "strategies": {name: summarize(followups, flags[name], latencies[name]) for name in STRATEGIES},
    }


def search_each_way(q: Question, search: Runnable, chain: Runnable) -> tuple[dict[str, tuple[list, float]], dict]:
    """{strategy: (documents, milliseconds)} for one follow-up, and the search chain's output."""
    from core.chain import with_previous_question

    inputs = {"question": q.question, "history": list(q.history)}
    result, chain_ms = timed(chain, inputs)  # its time includes the model's rewrite
    found = {
        "as asked": timed(search, q.question),
        "previous + follow-up": timed(search, with_previous_question(inputs)),
        "model's rewrite": timed(search, result["rewritten"]),
        "rewrite or fallback": timed(search, result["query"]),
        "fused (chain)": (result["docs"], chain_ms),
    }
    return found, result


def timed(runnable: Runnable, inputs: Any) -> tuple[Any, float]:
    """The runnable's output for `inputs` and how long it took in milliseconds."""
    started = time.perf_counter()
    output = runnable.invoke(inputs)
    return output, (time.perf_counter() - started) * 1000


def markdown(results: dict[str, Any]) -> list[str]:
    """The follow-up table for the report; nothing when the set has no follow-ups."""
    found = results.get("followups")
    if not found:
        return []
    rows = found["strategies"]
    count = next(iter(rows.values()))["questions"]
    lines = [
        "",
        f"Follow-ups ({count}; rewrites by {found['model']}, {found['unusable_rewrites']} unusable and replaced by "
        "previous + follow-up):",
        "",
        f"| search | {' | '.join(COLUMNS)} |",
        "|---" + "|---:" * len(COLUMNS) + "|",
    ]
    lines += [f"| {name} | " + " | ".join(cell(row[c]) for c in COLUMNS) + " |" for name, row in rows.items()]
    missed = [r for r in found["rewrites"] if not r["found@5"]["fused (chain)"]]
    lines += ["", "No gold source in the top 5 (fused):", ""] if missed else []
    lines += [f"- {r['previous']} → {r['followup']} (model's rewrite: {r['rewritten']!r})" for r in missed]
    return lines


def cell(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
