"""Question → checked answer, as a chat user waits for it: python -m benchmarks.answer.

Every data/qa/eval.jsonl question through the whole chain (retrieval, the answer streamed by the model with
the sample company's adapter, the check), 64 new tokens at most, one after another, for each variant in one
run: transformers with the 4-bit NF4 base + LoRA (`llm_backend=local`), the same in fp32, and llama.cpp in
process (the NF4 base in Q8_0 blocks + the adapter as a GGUF LoRA, `llm_backend=llama-cpp`), and the same two
files served by llama.cpp's server in a second process (`llm_backend=openai-compatible`; the server applies the
GGUF's chat template and its own repeat penalty, and is started by hand in real use). A warm-up
question first (loads). Reports the median and p95 seconds, the time to the answer's first token, the answers'
median length in streamed pieces (tokens) and the pieces per second from the first to the checked answer, and the
answers' quality in the same run: held-out questions answered with the gold source and the key fact
(scripts/chain_held_out.py's), answerable questions refused, accepted answers that state what the reference
states, unanswerable questions refused.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import llama_server, machine, write_section

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = str(ROOT / "data" / "sample_adapters" / "sample-company")
# (backend, base precision): today's default first, then the same stack in fp32 (how far two numerically close
# models' greedy answers drift apart), then llama.cpp's server, then llama.cpp in the chat's process.
VARIANTS = {
    "nf4+lora (transformers)": ("local", "nf4"),
    "fp32+lora (transformers)": ("local", "fp32"),
    "llama.cpp server+lora (second process)": ("server", "nf4"),
    "llama.cpp+lora (in process)": ("llama-cpp", "nf4"),
}


@dataclass
class Timed:
    seconds: float
    first_token: float  # seconds to the answer's first token (nan when the model wrote none)
    tokens: int
    result: Any  # CheckedAnswer


async def timed_answer(chain: Any, question: str) -> Timed:
    from core.chain import stream_answer

    started, first, tokens, result = time.perf_counter(), float("nan"), 0, None
    async for item in stream_answer(chain, {"question": question, "history": []}):
        if isinstance(item, str):
            tokens += 1
            if tokens == 1:
                first = time.perf_counter() - started
        else:
            result = item
    return Timed(time.perf_counter() - started, first, tokens, result)


def run_backend(backend: str, questions: list[Any], precision: str = "nf4") -> list[Timed]:
    from core.settings import load_settings

    if backend == "server":
        with served_adapter(load_settings()) as served:
            return run_chain(served, None, questions)  # the server has the adapter
    return run_chain(load_settings(llm_backend=backend, llm_precision=precision), ADAPTER, questions)


def served_adapter(settings: Any) -> Any:
    """llama.cpp's server with the in-process backend's two files: the NF4 base in Q8_0 blocks, the adapter's
    GGUF LoRA."""
    from core.gguf_lora import adapter_gguf
    from core.llama_llm import CONTEXT_TOKENS, nf4_gguf
    from core.models import llm_model_path

    base = llm_model_path(settings)
    threads = str(len(os.sched_getaffinity(0)))
    args = [
        "--model",
        str(nf4_gguf(settings.models_dir, base)),
        "--lora_path",
        str(adapter_gguf(Path(ADAPTER), Path(base))),
    ]
    args += [
        "--n_ctx",
        str(CONTEXT_TOKENS),
        "--n_threads",
        threads,
        "--n_threads_batch",
        threads,
        "--flash_attn",
        "true",
    ]
    return llama_server(settings, args, start_seconds=120)


def run_chain(settings: Any, adapter: str | None, questions: list[Any]) -> list[Timed]:
    from core.chain import chain_from_settings

    backend = settings.llm_backend
    chain = chain_from_settings(settings, adapter=adapter, max_new_tokens=64)
    asyncio.run(timed_answer(chain, questions[0].question))  # warm-up: loads the model, first-call allocations
    runs = []
    for n, question in enumerate(questions, start=1):
        runs.append(asyncio.run(timed_answer(chain, question.question)))
        print(f"{backend}: {n}/{len(questions)} {runs[-1].seconds:.2f} s", file=sys.stderr, flush=True)
    return runs


def row(name: str, runs: list[Timed], questions: list[Any]) -> str:
    from core.metrics import agrees_with_reference
    from scripts.chain_held_out import KEY_FACTS, answered_with

    seconds = sorted(r.seconds for r in runs)
    first = [r.first_token for r in runs if r.tokens]
    tokens = statistics.median(r.tokens for r in runs)
    after_first = sum(r.tokens - 1 for r in runs if r.tokens) / sum(r.seconds - r.first_token for r in runs if r.tokens)
    held_out = sum(
        answered_with(r.result, q.gold_sources[0], KEY_FACTS[q.question])
        for q, r in zip(questions, runs, strict=True)
        if q.question in KEY_FACTS
    )
    answerable = [r for q, r in zip(questions, runs, strict=True) if q.answerable]
    unanswerable = [r for q, r in zip(questions, runs, strict=True) if not q.answerable]
    false_refusals = sum(r.result.refused for r in answerable) / len(answerable)
    accepted = [(q, r) for q, r in zip(questions, runs, strict=True) if q.answerable and not r.result.refused]
    correct = sum(agrees_with_reference(r.result.answer, q.answer, q.question) for q, r in accepted)
    refused = sum(r.result.refused for r in unanswerable)
    return (
        f"| {name} | {statistics.median(seconds):.2f} | {seconds[int(0.95 * (len(seconds) - 1))]:.2f} | "
        f"{statistics.median(first):.2f} | {tokens:.0f} | {after_first:.1f} | "
        f"{held_out} of {len(KEY_FACTS)} | {false_refusals:.3f} | "
        f"{correct} of {len(accepted)} | {refused} of {len(unanswerable)} |"
    )


def main(argv: list[str] | None = None) -> int:
    from core.cli import docstring_parser, quiet_libraries
    from evaluation.data import read_questions

    docstring_parser("python -m benchmarks.answer", __doc__).parse_args(argv)
    quiet_libraries()
    questions = read_questions(ROOT / "data" / "qa" / "eval.jsonl")
    runs = {name: run_backend(backend, questions, precision) for name, (backend, precision) in VARIANTS.items()}
    names = list(runs)
    medians = [statistics.median(r.seconds for r in runs[name]) for name in names]
    lines = [
        f"## Answer latency benchmark — {time.strftime('%Y-%m-%d')}",
        "",
        f"{machine()} The chain with the sample company's adapter, {len(questions)} data/qa/eval.jsonl questions,",
        "64 new tokens at most. Command: `make bench` (`python -m benchmarks.answer`). Goals: median ≤ 2.5 s,",
        "p95 ≤ 4 s, first token ≤ 1.0 s, at least 2x faster than nf4+lora, quality at least equal.",
        "",
        "| backend | median s | p95 s | first token s | tokens (median) | tokens/s after the first "
        "| held-out right | answerable refused | accepted correct | unanswerable refused |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(row(name, runs[name], questions) for name in names),
        "",
        f"Median speed-up, {names[-1]} over {names[0]}: {medians[0] / medians[-1]:.2f}x.",
    ]
    print("\n".join(lines))
    write_section("Answer latency benchmark", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
