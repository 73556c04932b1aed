"""QLoRA training speed and memory against a plain TRL SFTTrainer script, in one run.

`python -m benchmarks.finetune` (part of `make bench`). Same base (bundled SmolLM2, 4-bit NF4),
same LoRA (r=16 on attention + MLP), same data (data/qa/train.jsonl), same batch size and
steps. The peer is SFTTrainer as TRL's docs show it: a `messages` dataset, `peft_config`,
SFTConfig defaults otherwise. Each side runs in its own process (peak RSS per process); step
time is the median of steps after the first. Achieved FLOP/s = 6 x params x tokens per second
(+ one forward more for gradient checkpointing: 8 x), against a bf16 matmul measured here.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import write_section

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / ".work" / "finetune"
STEPS, BATCH = 12, 8


def step_timer() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.tokens = 0

        def on_step_begin(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
            self.times.append(time.perf_counter() - self.started)

    return StepTimer()


def base_path() -> str:
    from core.models import llm_model_path
    from core.settings import load_settings

    return llm_model_path(load_settings())


def phase_ours() -> dict:
    from core.settings import TrainSettings, load_settings
    from finetune.train import train

    shutil.rmtree(WORK / "adapters", ignore_errors=True)
    settings = load_settings(data_dir=WORK, llm_base=base_path())  # adapters stay out of data/adapters
    settings.train = TrainSettings(
        max_steps=STEPS, batch_size=BATCH, save_steps=10_000, output="bench-ours", eval_data=None
    )
    timer = step_timer()
    train(settings, callbacks=[timer])
    return {"step_seconds": statistics.median(timer.times[1:])}


def phase_trl() -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from finetune.data import read_jsonl

    path = base_path()
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(path, quantization_config=quantization, device_map="cpu")
    dataset = Dataset.from_list([{"messages": m} for m in read_jsonl(ROOT / "data" / "qa" / "train.jsonl")])
    lora = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.05,
        task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    config = SFTConfig(
        output_dir=str(WORK / "trl"),
        per_device_train_batch_size=BATCH,
        max_steps=STEPS,
        learning_rate=2e-4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
    )
    timer = step_timer()
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        peft_config=lora,
        processing_class=AutoTokenizer.from_pretrained(path),
        callbacks=[timer],
    )
    trainer.train()
    return {"step_seconds": statistics.median(timer.times[1:])}


def phase_peak() -> dict:
    """bf16 matmul FLOP/s on this CPU, the practical ceiling for training."""
    import torch

    a, b = torch.randn(2048, 2048, dtype=torch.bfloat16), torch.randn(2048, 2048, dtype=torch.bfloat16)
    a @ b
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    return {"flops": 10 * 2 * 2048**3 / (time.perf_counter() - started)}


PHASES = {"ours": phase_ours, "trl": phase_trl, "peak": phase_peak}


def run_phase(name: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.finetune", name], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"phase {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def tokens_per_step() -> float:
    """Mean tokens of a batch of training examples as rendered by the chat template (no padding)."""
    from transformers import AutoTokenizer

    from finetune.data import read_jsonl, tokenize

    tokenizer = AutoTokenizer.from_pretrained(base_path())
    lengths = [len(tokenize(m, tokenizer)["input_ids"]) for m in read_jsonl(ROOT / "data" / "qa" / "train.jsonl")]
    return BATCH * statistics.mean(lengths)


def main(argv: list[str] | None = None) -> int:
    from core.cli import docstring_parser

    parser = docstring_parser("python -m benchmarks.finetune", __doc__)
    parser.add_argument("phase", nargs="?", choices=PHASES, help="one side in this process (the benchmark runs each)")
    phase = parser.parse_args(argv).phase
    if phase:
        from core.settings import apply_environment, load_settings

        apply_environment(load_settings())
        result = PHASES[phase]()
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return 0
    results = {name: run_phase(name) for name in PHASES}
    params = 134.5e6  # SmolLM2-135M
    flops = 8 * params * tokens_per_step() / results["ours"]["step_seconds"]
    ours, trl = results["ours"], results["trl"]
    text = "\n".join(
        [
            "## QLoRA training benchmark",
            "",
            f"SmolLM2-135M 4-bit NF4 + LoRA r=16, batch {BATCH}, {STEPS} steps, data/qa/train.jsonl. "
            "Command: `make bench`.",
            "",
            "| | step s (median) | peak RSS MB |",
            "| --- | ---: | ---: |",
            f"| ours (`python -m finetune --qlora`) | {ours['step_seconds']:.2f} | {ours['peak_rss_mb']:.0f} |",
            f"| TRL SFTTrainer as documented | {trl['step_seconds']:.2f} | {trl['peak_rss_mb']:.0f} |",
            "",
            "| ratio | value | target |",
            "| --- | ---: | --- |",
            f"| step time ours ÷ TRL | {ours['step_seconds'] / trl['step_seconds']:.3f} | ≤ 0.8 |",
            f"| peak RSS ours ÷ TRL | {ours['peak_rss_mb'] / trl['peak_rss_mb']:.3f} | ≤ 0.8 |",
            f"| achieved training FLOP/s ÷ measured bf16 matmul peak ({results['peak']['flops'] / 1e9:.0f} GFLOP/s) "
            f"| {flops / results['peak']['flops']:.3f} | (info) |",
        ]
    )
    print(text)
    write_section("QLoRA training benchmark", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
