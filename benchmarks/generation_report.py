"""The generation benchmark's report: python -m benchmarks.generation writes it to RESULTS.md."""

from __future__ import annotations

import time


def report(results: dict[str, dict], header: str, default: str) -> str:
    """The benchmark's section of RESULTS.md: a row per variant, then the ratios to llama.cpp."""
    from core.models import cpu_has_bf16

    peer = results["llama.cpp"]
    ours = results[default]
    return "\n".join(
        [
            f"## Generation benchmark — {time.strftime('%Y-%m-%d')}",
            "",
            header,
            "Command: `make bench` (`python -m benchmarks.generation`).",
            "",
            "| variant | TTFT s | tokens/s | tokens/s ÷ llama.cpp | peak RSS MB |",
            "| --- | ---: | ---: | ---: | ---: |",
            *(
                f"| {name} | {r['ttft_s']:.2f} | {r['tokens_per_s']:.1f} | "
                f"{r['tokens_per_s'] / peer['tokens_per_s']:.3f} | {r['peak_rss_mb']:.0f} |"
                for name, r in results.items()
            ),
            "",
            "| ratio | value | target |",
            "| --- | ---: | --- |",
            f"| chat default here ({default}) tokens/s ÷ llama.cpp | {ours['tokens_per_s'] / peer['tokens_per_s']:.3f} "
            "| ≥ 0.5 |",
            f"| nf4+lora tokens/s ÷ llama.cpp | {results['nf4+lora']['tokens_per_s'] / peer['tokens_per_s']:.3f} "
            "| ≥ 0.5 |",
            f"| chat via openai-compatible server tokens/s ÷ llama.cpp | "
            f"{results['server']['tokens_per_s'] / peer['tokens_per_s']:.3f} | ≥ 0.5 |",
            f"| chat + adapter via llama.cpp's server (server+lora) tokens/s ÷ llama.cpp | "
            f"{results['server+lora']['tokens_per_s'] / peer['tokens_per_s']:.3f} | ≥ 0.5 |",
            f"| llama.cpp+lora tokens/s ÷ llama.cpp | "
            f"{results['llama.cpp+lora']['tokens_per_s'] / peer['tokens_per_s']:.3f} | (info) |",
            f"| chat default here ({default}) TTFT ÷ llama.cpp TTFT | {ours['ttft_s'] / peer['ttft_s']:.3f} | (info) |",
            f"| CPU computes bf16 natively | {cpu_has_bf16()} | (info) |",
            "",
            "bitsandbytes' CPU 4-bit path dequantizes every weight for every token; llama.cpp computes on",
            "the Q4_1 blocks directly with fused SIMD kernels. The chat's `llm_precision=auto` takes fp32",
            "on CPUs without native bf16, where it is the fastest unmerged variant; merging (`--merge`) is",
            "faster still but fixes one adapter per process. The server row's TTFT is not a prefill: the",
            "server caches the prompt, and every run sends the same one; its peak RSS is the client's only.",
            "For CPU speed, serve the model and its adapter with llama.cpp (`python -m finetune.gguf_lora`",
            "exports the adapter; `llama_cpp.server --lora_path` loads it) and set",
            "`ASKDOCS_LLM_BACKEND=openai-compatible` (README, Scaling out): the server+lora row.",
        ]
    )
