"""Generation speed of the chain's model against llama.cpp, in one run: python -m benchmarks.generation.

Prompt: the chain's own prompt (system, few-shot, 4 retrieved passages, question) for a held-out
question, rendered with the model's chat template — the same text for every variant. Each variant
writes exactly NEW_TOKENS tokens (end-of-text suppressed), greedy, the chat's repetition penalty (1.1, on
the answer only), on all cores, in its own process (peak RSS is per variant); the median of RUNS runs
after a warm-up.
- nf4+lora:      SmolLM2 4-bit NF4 (bitsandbytes) + the LoRA adapter (peft), the chat with llm_precision=nf4;
- nf4:           the same without the adapter, to show what LoRA costs;
- fp32+lora:     fp32 base + the LoRA adapter, the chat with llm_precision=fp32;
- merged-fp32:   the adapter merged into the fp32 base (`--merge`'s result);
- merged-bf16:   the same in bf16;
- llama.cpp:     the peer: llama-cpp-python on the bundled GGUF (Q4_1), the same weights as our base;
- llama.cpp+lora: the same with the adapter exported to a GGUF LoRA (`python -m finetune.gguf_lora`);
- server:        the chat with llm_backend=openai-compatible (langchain-openai, streaming over HTTP)
                 against llama-cpp-python's server on the same GGUF. The server keeps the prompt's
                 shared prefix cached between requests, as it does for chat users, so its TTFT after
                 the warm-up is not a cold prefill.
- server+lora:   the same server started with `--lora_path` (the adapter's GGUF LoRA): the chat with
                 its adapter on the 4-bit base, at llama.cpp's speed.
TTFT = time from the call to the first new token (the prompt's prefill); tokens/s = decode rate after it.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import cache
from pathlib import Path
from typing import Any

from benchmarks import llama_server, machine, write_section
from benchmarks.generation_report import report

ROOT = Path(__file__).resolve().parents[1]
NEW_TOKENS = 64
RUNS = 3
THREADS = len(os.sched_getaffinity(0))


@cache
def settings() -> Any:
    from core.settings import apply_environment, load_settings

    loaded = load_settings()
    apply_environment(loaded)
    return loaded


@cache
def prompt_messages() -> list[Any]:
    """The chain's prompt for the first held-out question (LangChain messages)."""
    from core.chain import format_docs, rag_prompt
    from core.retrieval import retriever

    question = json.loads((ROOT / "data" / "qa" / "eval.jsonl").read_text().splitlines()[0])["question"]
    docs = retriever(settings()).invoke(question)
    return rag_prompt().format_messages(context=format_docs(docs), question=question)


def prompt_text() -> str:
    """The chain's prompt as the model sees it, rendered with its chat template."""
    from transformers import AutoTokenizer

    from core.llm import chat_dicts
    from core.models import llm_model_path

    tokenizer = AutoTokenizer.from_pretrained(llm_model_path(settings()))
    return tokenizer.apply_chat_template(chat_dicts(prompt_messages()), add_generation_prompt=True, tokenize=False)


def adapter_name() -> str:
    from core.llm import resolve_adapter

    folder = resolve_adapter(settings())
    return folder.name if folder else "none trained yet, so an untrained LoRA of the training defaults"


def adapter_gguf() -> Path:
    """The chat's adapter (or an untrained LoRA of the same shape) as a GGUF LoRA under benchmarks/.work."""
    from core.llm import resolve_adapter
    from finetune.gguf_lora import export_lora

    scratch = ROOT / "benchmarks" / ".work" / "generation"
    scratch.mkdir(parents=True, exist_ok=True)
    folder = resolve_adapter(settings())
    if folder is None:
        folder = scratch
        hf_model("fp32+lora")[0].save_pretrained(folder)
    return export_lora(folder, scratch / "adapter.gguf")


def with_adapter(model: Any) -> Any:
    """The chat's adapter (newest completed), or an untrained LoRA of the same shape: same speed."""
    from peft import LoraConfig, PeftModel, get_peft_model

    from core.llm import resolve_adapter

    folder = resolve_adapter(settings())
    if folder is not None:
        return PeftModel.from_pretrained(model, str(folder))
    cfg = settings().train
    return get_peft_model(model, LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=cfg.target_modules))


def hf_model(variant: str) -> tuple[Any, Any]:
    import torch
    from transformers import AutoTokenizer

    from core.models import llm_model_path, load_causal_lm

    path = llm_model_path(settings())
    model = load_causal_lm(path, quantize=variant.startswith("nf4"))
    if variant != "nf4":
        model = with_adapter(model)
    if variant.startswith("merged"):
        model = model.merge_and_unload()
    if variant == "merged-bf16":
        model = model.to(torch.bfloat16)
    return model.eval(), AutoTokenizer.from_pretrained(path)


def time_hf(variant: str) -> list[tuple[float, float]]:
    import torch
    from transformers import LogitsProcessorList
    from transformers.generation.streamers import BaseStreamer

    from core.llm import answer_repetition_penalty

    class Clock(BaseStreamer):
        """put() is called with the prompt first, then once per new token."""

        def __init__(self) -> None:
            self.times: list[float] = []

        def put(self, value: Any) -> None:
            self.times.append(time.perf_counter())

        def end(self) -> None:
            pass

    torch.set_num_threads(THREADS)
    model, tokenizer = hf_model(variant)
    inputs = tokenizer(prompt_text(), return_tensors="pt", add_special_tokens=False)
    runs = []
    for _ in range(RUNS + 1):
        clock = Clock()
        started = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                **inputs,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                do_sample=False,
                logits_processor=LogitsProcessorList([answer_repetition_penalty(inputs["input_ids"].shape[1])]),
                pad_token_id=tokenizer.pad_token_id,
                streamer=clock,
            )
        assert out.shape[1] - inputs["input_ids"].shape[1] == NEW_TOKENS
        new = clock.times[1:]
        runs.append((new[0] - started, (len(new) - 1) / (new[-1] - new[0])))
    return runs[1:]


def time_llama_cpp(lora: bool) -> list[tuple[float, float]]:
    from llama_cpp import Llama

    from core.llm import REPETITION_PENALTY
    from core.models import smollm2_gguf

    lora_path = str(adapter_gguf()) if lora else None
    llm = Llama(model_path=str(smollm2_gguf()), lora_path=lora_path, n_ctx=2048, n_threads=THREADS, verbose=False)
    prompt = prompt_text()
    runs = []
    for _ in range(RUNS + 1):
        llm.reset()  # no prompt cache across runs: every run pays the prefill, like ours
        times = []
        started = time.perf_counter()
        for chunk in llm.create_completion(
            prompt,
            max_tokens=NEW_TOKENS,
            temperature=0.0,
            repeat_penalty=REPETITION_PENALTY,
            logit_bias={llm.token_eos(): -1e9},
            stream=True,
        ):
            if chunk["choices"][0]["finish_reason"] is None:  # one chunk per token, then a closing one
                times.append(time.perf_counter())
        assert len(times) == NEW_TOKENS, len(times)
        runs.append((times[0] - started, (len(times) - 1) / (times[-1] - times[0])))
    return runs[1:]


def time_server(lora: bool) -> list[tuple[float, float]]:
    """The chat's own openai-compatible model object, streaming from llama.cpp's server."""
    from core.llm import chat_model
    from core.models import smollm2_gguf

    args = ["--model", str(smollm2_gguf()), "--n_ctx", "2048", "--n_threads", str(THREADS)]
    if lora:
        args += ["--lora_path", str(adapter_gguf())]
    with llama_server(settings(), args, start_seconds=60) as served:
        chat = served.chat.model_copy(update={"max_new_tokens": NEW_TOKENS, "temperature": 0.0})
        # End-of-turn and end-of-text suppressed so that every run writes exactly NEW_TOKENS tokens.
        llm = chat_model(served, chat=chat).bind(logit_bias={0: -100, 2: -100})
        runs = []
        for _ in range(RUNS + 1):
            started = time.perf_counter()
            times = [time.perf_counter() for chunk in llm.stream(prompt_messages()) if chunk.content]
            assert len(times) >= NEW_TOKENS * 0.9, len(times)  # a chunk per token (a few may merge)
            runs.append((times[0] - started, (len(times) - 1) / (times[-1] - times[0])))
        return runs[1:]


VARIANTS = ["nf4+lora", "nf4", "fp32+lora", "merged-fp32", "merged-bf16"]
VARIANTS += ["llama.cpp", "llama.cpp+lora", "server", "server+lora"]
TIMERS = {
    "llama.cpp": lambda: time_llama_cpp(lora=False),
    "llama.cpp+lora": lambda: time_llama_cpp(lora=True),
    "server": lambda: time_server(lora=False),
    "server+lora": lambda: time_server(lora=True),
}


def run_variant(name: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.generation", name]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(name: str) -> dict:
    runs = TIMERS[name]() if name in TIMERS else time_hf(name)
    return {
        "ttft_s": statistics.median(r[0] for r in runs),
        "tokens_per_s": statistics.median(r[1] for r in runs),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    from core.cli import docstring_parser, quiet_libraries

    parser = docstring_parser("python -m benchmarks.generation", __doc__)
    parser.add_argument(
        "variant", nargs="?", choices=VARIANTS, help="one variant in this process (the benchmark runs each)"
    )
    variant = parser.parse_args(argv).variant
    quiet_libraries()
    if variant:
        print(json.dumps(measure(variant)))
        return 0
    results = {}
    for name in VARIANTS:
        print(f"running {name} ...", file=sys.stderr)
        results[name] = run_variant(name)
    from transformers import AutoTokenizer

    from core.models import llm_model_path

    prompt_tokens = len(AutoTokenizer.from_pretrained(llm_model_path(settings()))(prompt_text())["input_ids"])
    from core.llm import llm_precision

    header = (
        f"{machine()} SmolLM2-135M-Instruct, the chain's prompt ({prompt_tokens} tokens), {NEW_TOKENS} new "
        f"tokens, greedy, {THREADS} threads, median of {RUNS} runs. Adapter: {adapter_name()}."
    )
    text = report(results, header, default=f"{llm_precision(settings())}+lora")
    print(text)
    write_section("Generation benchmark", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
