"""`python -m finetune --compare lora,qlora,...`: LLM-Adapters' comparison on your own data.

Each method trains on the same data, steps and seed in a process of its own (so peak RSS is its
own), then all are evaluated on the same held-out Q&A. One markdown table + a PNG of the eval-loss
curves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from core import adapter, methods
from core.settings import Settings
from finetune import data, evaluate

GENERATION_TOKENS = 64
COLUMNS = {
    "method": "method",
    "trainable": "trainable params",
    "trainable_pct": "% of base",
    "size_mb": "adapter MB",
    "peak_rss_mb": "peak RSS MB",
    "step_seconds": "s/step",
    "eval_loss": "eval loss",
    "token_f1": "answer F1",
    "similarity": "similarity",
    "tokens_per_second": "tokens/s",
}


def compare(settings: Settings, names: list[str], report: Path) -> list[dict[str, Any]]:
    """Train every method in `names`, evaluate each, write `report` (+ .png); return the table's rows."""
    from transformers import AutoTokenizer

    from core.models import llm_model_path, load_causal_lm, load_embedder
    from finetune.train import held_out_examples

    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    examples = held_out_examples(settings)
    base_path = llm_model_path(settings)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    embedder = load_embedder(settings)
    print(f"evaluating the base on {len(examples)} held-out examples ...", file=sys.stderr)
    base = load_causal_lm(base_path, quantize=False)
    rows = [{"method": "base (no adapter)", **measure(base, tokenizer, embedder, examples)}]
    del base
    curves: dict[str, list] = {}
    for n, method in enumerate(names, start=1):
        print(f"[{n}/{len(names)}] training {method} ...", file=sys.stderr)
        folder = settings.adapters_dir / f"compare-{stamp}-{method}"
        code = train_in_own_process(settings, method, folder.name)
        if code != 0:
            rows.append({"method": f"{method} (failed: exit {code}, see above)"})
            continue
        manifest = adapter.read_manifest(folder)
        curves[method] = manifest["eval_loss"]
        model = methods.serving(evaluate.load_with_adapter(settings, folder, method)[0])
        rows.append(trained_row(method, folder, manifest) | measure(model, tokenizer, embedder, examples))
        del model
    write_report(report, rows, curves, settings)
    return rows


def train_in_own_process(settings: Settings, method: str, name: str) -> int:
    """`python -m finetune --method METHOD` with these settings (as ASKDOCS_* variables); its exit code."""
    train = settings.train.model_copy(update={"method": method, "output": name})
    env = os.environ | {
        "ASKDOCS_DATA_DIR": str(settings.data_dir),
        "ASKDOCS_LLM_BASE": settings.llm_base,
        "ASKDOCS_OFFLINE": str(settings.offline).lower(),
        "ASKDOCS_TRAIN": train.model_dump_json(),
    }
    return subprocess.run([sys.executable, "-m", "finetune", "--no-compare"], env=env, check=False).returncode


def trained_row(method: str, folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file() and f.name != adapter.MANIFEST)
    return {
        "method": method,
        "trainable": manifest["trainable_params"],
        "trainable_pct": 100 * manifest["trainable_params"] / manifest["base_params"],
        "size_mb": size / 1e6,
        "peak_rss_mb": manifest["peak_rss_mb"],
        "step_seconds": manifest["train_seconds"] / max(manifest["steps"], 1),
    }


def measure(model: Any, tokenizer: Any, embedder: Any, examples: list[data.Messages]) -> dict[str, Any]:
    """Held-out eval loss, answer F1 and similarity, and greedy generation speed."""
    scores = evaluate.metrics(model.eval(), tokenizer, embedder, examples)
    return {key: scores[key] for key in ("eval_loss", "token_f1", "similarity")} | {
        "tokens_per_second": tokens_per_second(model, tokenizer)
    }


def tokens_per_second(model: Any, tokenizer: Any) -> float:
    """Greedy decoding of exactly GENERATION_TOKENS new tokens after a short chat prompt."""
    import torch

    messages = [{"role": "user", "content": "Summarise the expense policy for a new employee."}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(model.device)
    fixed = {"do_sample": False, "pad_token_id": tokenizer.pad_token_id}
    with torch.no_grad():
        model.generate(**inputs, max_new_tokens=4, **fixed)  # warm-up
        started = time.perf_counter()
        model.generate(**inputs, min_new_tokens=GENERATION_TOKENS, max_new_tokens=GENERATION_TOKENS, **fixed)
    return GENERATION_TOKENS / (time.perf_counter() - started)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS.values()) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(key)) for key in COLUMNS) + " |")
    return "\n".join(lines)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_report(report: Path, rows: list[dict[str, Any]], curves: dict[str, list], settings: Settings) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    plot = report.with_suffix(".png")
    plot_curves(curves, plot)
    cfg = settings.train
    setup = {k: v for k, v in cfg.model_dump(mode="json").items() if k not in ("method", "output")}
    report.write_text(
        f"# PEFT methods compared ({datetime.now():%Y-%m-%d %H:%M})\n\n"
        f"Base `{settings.llm_base}`; each method trained in its own process with the same settings "
        f"(learning rate: per method unless given): `{json.dumps(setup)}`.\n\n"
        f"{markdown_table(rows)}\n\n![eval loss per method]({plot.name})\n"
    )


def plot_curves(curves: dict[str, list], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, points in curves.items():
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, marker="o", label=method)
    ax.set(xlabel="step", ylabel="held-out loss", title="Eval loss per method")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    plt.close(fig)
