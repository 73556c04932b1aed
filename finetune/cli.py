"""python -m finetune --qlora: train a LoRA adapter on domain Q&A over a 4-bit NF4 base, on CPU;
--method picks any other parameter-efficient method, --compare trains several side by side.

Examples:
    python -m finetune --qlora                                # data/qa/train.jsonl, eval on data/qa/eval.jsonl
    python -m finetune --qlora --data my.jsonl --max-steps 50 --output support-v1
    python -m finetune --lora --rank 32                       # same adapter on the unquantized base
    python -m finetune --output support-v1 --resume           # continue after a kill
    python -m finetune --method prefix --virtual-tokens 20    # or prompt, ia3, series-adapter, parallel-adapter, peqa
    python -m finetune --method peqa --peqa-bits 3            # 3-bit integers, only the scales train
    python -m finetune --compare lora,qlora,prefix,prompt,ia3,series-adapter,parallel-adapter,peqa --max-steps 30
    python -m finetune --list                                 # adapters, newest first
    python -m finetune --verifier --collection docs           # the answer check's verifier, from your documents

Several processes on one CPU machine (gloo; each takes --batch-size examples of every step):
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 -m finetune --lora --batch-size 4
    OMP_NUM_THREADS=1 accelerate launch --multi_gpu --num_processes 2 -m finetune --lora --batch-size 4
(`accelerate launch --cpu` starts a single process unless mpirun is configured.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from core.cli import add_store_options, cli_settings, fail, ingested_settings, positive_int, quiet_libraries
from core.settings import METHODS

TRAIN_FLAGS = {
    "data": (Path, "training JSONL: chat 'messages', alpaca or question/answer lines (default: data/qa/train.jsonl)"),
    "eval_data": (Path, "held-out JSONL (default: data/qa/eval.jsonl; missing → a split of --data)"),
    "output": (str, "adapter name under DATA_DIR/adapters (default: METHOD-DATE-TIME)"),
    "epochs": (float, "passes over the data (default: 3)"),
    "max_steps": (int, "optimizer steps; overrides --epochs when > 0"),
    "lr": (float, "learning rate (default: per method: LoRA 2e-4, IA3 3e-3, prefix 1e-2, prompt 3e-2, PEQA 2e-5)"),
    "rank": (int, "LoRA rank r (default: 16)"),
    "alpha": (int, "LoRA alpha (default: 32)"),
    "dropout": (float, "LoRA dropout (default: 0.05)"),
    "virtual_tokens": (int, "prefix/prompt tuning: virtual tokens (default: 10)"),
    "bottleneck": (int, "series/parallel adapters: bottleneck width (default: hidden size / 16)"),
    "peqa_bits": (int, "PEQA: 3 or 4 bits for the frozen integer weights (default: 4)"),
    "peqa_group_size": (int, "PEQA: one scale per N inputs of each output channel (default: per channel)"),
    "max_seq_len": (int, "tokens per example; longer ones are cut and counted (default: 512)"),
    "batch_size": (int, "examples per step (default: 8)"),
    "grad_accum": (int, "gradient accumulation steps (default: 1)"),
    "save_steps": (int, "checkpoint and evaluate every N steps (default: 25)"),
    "seed": (int, "random seed (default: 42)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m finetune",
        description="Fine-tune the chat model on domain Q&A with a parameter-efficient method: "
        "lora, qlora (4-bit NF4 base + LoRA), prefix, prompt, ia3, series-adapter, parallel-adapter or "
        "peqa (b-bit integer weights, trained scales).",
        epilog="Every flag can also be set as ASKDOCS_TRAIN__<NAME> (e.g. ASKDOCS_TRAIN__RANK=8).",
    )
    method = parser.add_mutually_exclusive_group()
    method.add_argument("--qlora", dest="method", action="store_const", const="qlora", help="4-bit NF4 base + LoRA")
    method.add_argument("--lora", dest="method", action="store_const", const="lora", help="fp32 base + LoRA")
    method.add_argument("--method", choices=METHODS, help="any parameter-efficient method (see below)")
    method.add_argument("--list", action="store_true", help="list adapters (newest first) and exit")
    method.add_argument(
        "--verifier",
        action="store_true",
        help="train the answer check's verifier on --collection's own documents (DATA_DIR/verifiers/COLLECTION)",
    )
    method.add_argument("--merge", metavar="NAME", help="merge adapter NAME into the full-precision base and save it")
    method.add_argument(
        "--compare", metavar="M1,M2,...", help="train each method on the same data and steps; one table + plot"
    )
    for name, (kind, text) in TRAIN_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    parser.add_argument("--target-modules", help="comma-separated module names (default: all attention + MLP)")
    parser.add_argument("--base", help="base model: HF id or path (default: bundled SmolLM2-135M-Instruct)")
    add_store_options(parser)  # --data-dir: where models and adapters live too; --collection, --user: --verifier's
    parser.add_argument("--chunks", type=positive_int, default=3000, help="--verifier: chunks sampled (default: 3000)")
    parser.add_argument("--peqa-train-zeros", action="store_true", help="PEQA: train the zero points too")
    parser.add_argument("--report", type=Path, help="--compare: markdown report (default: DATA_DIR/compare-DATE.md)")
    parser.add_argument("--resume", action="store_true", help="continue --output from its last checkpoint")
    parser.add_argument("--no-compare", action="store_true", help="skip the base vs adapter comparison after training")
    parser.add_argument("--json", action="store_true", help="print the manifest / list as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from core.settings import TrainSettings

    overrides = {name: getattr(args, name) for name in TRAIN_FLAGS if getattr(args, name) is not None}
    if args.method:
        overrides["method"] = args.method
    if args.peqa_train_zeros:
        overrides["peqa_train_zeros"] = True
    if args.target_modules:
        overrides["target_modules"] = [m.strip() for m in args.target_modules.split(",") if m.strip()]
    settings = cli_settings(data_dir=args.data_dir, llm_base=args.base)
    if isinstance(settings, int):
        return settings
    try:
        settings.train = TrainSettings(**settings.train.model_dump() | overrides)
    except ValidationError as exc:
        return fail("; ".join(f"--{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()))
    if args.list:
        return show_adapters(settings.adapters_dir, as_json=args.json)
    if args.verifier:
        return run_verifier(args)
    if args.merge:
        return run_merge(settings, args.merge)
    if args.compare:
        return run_compare(settings, args.compare, args.report)
    if args.resume and not settings.train.output:
        return fail("--resume needs --output NAME (the adapter to continue)")
    return run_training(settings, resume=args.resume, compare=not args.no_compare, as_json=args.json)


def run_training(settings, *, resume: bool, compare: bool, as_json: bool) -> int:  # type: ignore[no-untyped-def]
    quiet_libraries()
    from core.adapter import AdapterError, read_manifest, write_manifest
    from core.methods import MethodError
    from core.models import ModelError
    from finetune import evaluate
    from finetune.data import DataError
    from finetune.guard import DivergedError
    from finetune.train import held_out_examples, is_main_process, train

    try:
        folder = train(settings, resume=resume)
        if not is_main_process():
            return 0  # one report, from the main process
        manifest = read_manifest(folder)
        if compare:
            examples = held_out_examples(settings)
            print(f"comparing base and adapter on {len(examples)} held-out examples ...", file=sys.stderr)
            manifest["comparison"] = evaluate.compare(settings, folder, settings.train.method, examples)
            write_manifest(folder, manifest)
    except (DataError, AdapterError, ModelError, MemoryError, DivergedError, MethodError) as exc:
        return fail(str(exc))
    if as_json:
        print(json.dumps(manifest, indent=2))
        return 0
    first, last = manifest["train_loss"][0][1], manifest["train_loss"][-1][1]
    print(
        f"adapter {folder} ({manifest['steps']} steps, {manifest['wall_seconds']} s, "
        f"peak RSS {manifest['peak_rss_mb']} MB): train loss {first:.3f} -> {last:.3f}"
    )
    if manifest["truncated_examples"]:
        print(f"note: {manifest['truncated_examples']} examples were longer than --max-seq-len and were cut to it")
    if "comparison" in manifest:
        print(evaluate.format_table(manifest["comparison"]))
    return 0


def run_verifier(args: argparse.Namespace) -> int:
    from core.store import StoreError
    from finetune.verifier import train_verifier

    settings = ingested_settings(args.collection, args.data_dir, args.user)  # the collection exists, may be read
    if isinstance(settings, int):
        return settings

    output = settings.data_dir / "verifiers" / args.output if args.output else None
    try:
        manifest = train_verifier(
            settings, output, chunks=args.chunks, epochs=int(args.epochs or 1), lr=args.lr or 5e-4
        )
    except StoreError as exc:
        return fail(str(exc))
    accuracy = ", ".join(f"{kind} {value:.3f}" for kind, value in manifest["validation_accuracy"].items())
    print(json.dumps(manifest, indent=2) if args.json else f"verifier for {settings.collection}: held-out {accuracy}")
    return 0


def run_compare(settings, names: str, report: Path | None) -> int:  # type: ignore[no-untyped-def]
    quiet_libraries()
    from datetime import datetime

    from finetune.compare import compare, markdown_table
    from finetune.data import DataError

    chosen = [name.strip() for name in names.split(",") if name.strip()]
    if unknown := [name for name in chosen if name not in METHODS]:
        return fail(f"--compare: unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    report = report or settings.data_dir / f"compare-{datetime.now():%Y%m%d-%H%M%S}.md"
    try:
        rows = compare(settings, chosen, report)
    except DataError as exc:
        return fail(str(exc))
    print(markdown_table(rows))
    print(f"report: {report} (plot: {report.with_suffix('.png')})")
    return 0 if all("trainable" in row for row in rows[1:]) else 1


def run_merge(settings, name: str) -> int:  # type: ignore[no-untyped-def]
    quiet_libraries()
    from core.adapter import AdapterError
    from core.models import ModelError
    from finetune.merge import merge

    try:
        target, difference = merge(settings, name)
    except (AdapterError, ModelError) as exc:
        return fail(str(exc))
    print(f"merged {name} into {target}; max logit difference vs base + adapter: {difference:.1e}")
    return 0


def show_adapters(adapters_dir: Path, *, as_json: bool) -> int:
    from core.adapter import list_adapters

    rows = list_adapters(adapters_dir)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no adapters in {adapters_dir}: train one with python -m finetune --qlora")
    for row in rows:
        state = "completed" if row.get("completed") else "incomplete"
        loss = row.get("final_eval_loss")
        print(
            f"{row['name']:40} {row.get('method', '?'):16} {state:10} {row.get('finished_at', ''):19}  "
            f"eval loss {'-' if loss is None else f'{loss:.3f}'}"
        )
    return 0
