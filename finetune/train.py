"""Training: tokenized Q&A → transformers Trainer on CPU → adapter folder with its manifest."""

from __future__ import annotations

import resource
import shutil
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core import adapter, methods
from core.cli import one_line
from core.models import ModelError, llm_model_path
from core.settings import Settings
from finetune import data
from finetune.model import answer_loss_trainer, load_base

LIBRARIES_BYTES = 1.2 * 2**30  # torch, transformers, peft, bitsandbytes resident


@dataclass
class Prepared:
    train: Any  # datasets.Dataset of input_ids/labels
    eval: Any
    truncated: int  # examples longer than max_seq_len, cut at it


def split(settings: Settings) -> tuple[list[data.Messages], list[data.Messages]]:
    """Training and held-out examples: the eval file when there is one, else a seeded split."""
    cfg = settings.train
    examples = data.read_jsonl(cfg.data)
    if cfg.eval_data is not None and cfg.eval_data.is_file():
        return examples, data.read_jsonl(cfg.eval_data)
    return data.split_eval(examples, cfg.eval_fraction, cfg.seed)


def held_out_examples(settings: Settings) -> list[data.Messages]:
    return split(settings)[1]


def prepare_data(settings: Settings, tokenizer: Any) -> Prepared:
    train_cfg = settings.train
    examples, held_out = split(settings)
    train_rows, cut_train = tokenize_all(examples, tokenizer, train_cfg.max_seq_len)
    eval_rows, cut_eval = tokenize_all(held_out, tokenizer, train_cfg.max_seq_len)
    from datasets import Dataset

    return Prepared(Dataset.from_list(train_rows), Dataset.from_list(eval_rows), cut_train + cut_eval)


def tokenize_all(examples: list[data.Messages], tokenizer: Any, max_len: int) -> tuple[list[dict], int]:
    """Rows cut to `max_len` tokens, and how many were longer. A row whose answer the cut removes
    entirely is left out: it teaches nothing, and a batch of such rows has no loss at all (NaN)."""
    rows = [data.tokenize(messages, tokenizer) for messages in examples]
    too_long = sum(len(row["input_ids"]) > max_len for row in rows)
    cut = [{key: value[:max_len] for key, value in row.items()} for row in rows]
    kept = [row | {"length": len(row["input_ids"])} for row in cut if any(t != data.IGNORE for t in row["labels"])]
    if rows and not kept:
        starts = [next((i for i, t in enumerate(row["labels"]) if t != data.IGNORE), max_len) for row in rows]
        raise data.DataError(
            f"--max-seq-len {max_len} cuts off every answer: the earliest starts at token {min(starts)}"
        )
    return kept, too_long


def train(settings: Settings, *, resume: bool = False, callbacks: list[Any] | None = None) -> Path:
    """Train an adapter and return its folder; the manifest's `completed` is set only at the end.

    Under torchrun (or accelerate launch) every process trains on its share of each batch; only the
    main one writes files.
    """
    from transformers import DataCollatorForSeq2Seq, set_seed

    from finetune import guard

    cfg = settings.train
    base_path = llm_model_path(settings)
    name = cfg.output or adapter.default_name(cfg.method)
    folder = settings.adapters_dir / name
    existing = adapter.read_manifest_or_none(folder)
    if existing and not resume:
        raise adapter.AdapterError(f"adapter {name} exists; use --resume to continue it or another --output")
    if existing and existing["completed"]:
        raise adapter.AdapterError(f"adapter {name} already finished training; choose another --output")
    tokenizer = load_tokenizer(base_path)
    check_memory(base_path, cfg.method)
    prepared = prepare_data(settings, tokenizer)
    manifest = start_manifest(settings, base_path, tokenizer, prepared)

    started = time.perf_counter()
    set_seed(cfg.seed)  # LoRA's A matrices (and other methods' new weights) are drawn at random
    base = load_base(base_path, cfg.method)
    manifest["base_params"] = methods.parameter_count(base)
    model = methods.attach(base, cfg, base_path)
    manifest["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    trainer = answer_loss_trainer()(
        model=model,
        args=training_arguments(settings, folder / "checkpoints", has_eval=len(prepared.eval) > 0),
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        data_collator=DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=data.IGNORE, padding=True),
        callbacks=[guard.DivergenceGuard(len(tokenizer)), guard.ReleaseFreedMemory(), *(callbacks or [])],
    )
    main = trainer.is_world_process_zero()
    trainer.accelerator.wait_for_everyone()  # every process has read `existing` before the main one writes
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        adapter.write_manifest(folder, manifest)
    keys = set(methods.adapter_state(model))
    with trainer.args.main_process_first(desc="choosing a checkpoint"):  # only the main one renames corrupt ones
        checkpoint = guard.resume_checkpoint(folder / "checkpoints", keys) if resume else None
    try:
        train_seconds = trainer.train(resume_from_checkpoint=checkpoint).metrics["train_runtime"]
        final_eval = final_evaluation(trainer) if len(prepared.eval) else {}
    except guard.DivergedError:
        if main:  # its checkpoints lead to the same divergence; free the name for a lower --lr
            shutil.rmtree(folder)
        raise
    if main:
        manifest["train_seconds"] = round(train_seconds, 1)  # this run's training loop, without loading or eval
        complete(folder, manifest, trainer, final_eval, wall_seconds=time.perf_counter() - started)
    trainer.accelerator.wait_for_everyone()  # no process returns before the adapter is complete
    return folder


def final_evaluation(trainer: Any) -> dict[str, Any]:
    """The held-out metrics of the finished adapter: the trainer's own when its last step was an eval
    step (an evaluation takes minutes on CPU), else a new evaluation."""
    logged = [h for h in trainer.state.log_history if "eval_loss" in h]
    if logged and logged[-1]["step"] == trainer.state.global_step:
        return logged[-1]
    return dict(trainer.evaluate())


def complete(folder: Path, manifest: dict[str, Any], trainer: Any, final_eval: dict, *, wall_seconds: float) -> None:
    """Save the adapter, drop its checkpoints (only a cut run needs them), then mark the manifest completed."""
    methods.save(trainer.model, folder)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    manifest.update(
        completed=True,
        finished_at=datetime.now().isoformat(timespec="seconds"),
        wall_seconds=round(wall_seconds, 1),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        steps=trainer.state.global_step,
        train_loss=[(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h],
        eval_loss=[(h["step"], h["eval_loss"]) for h in trainer.state.log_history if "eval_loss" in h],
        final_eval_loss=final_eval.get("eval_loss"),
    )
    adapter.write_manifest(folder, manifest)


def is_main_process() -> bool:
    """False in the other processes of a multi-process run, which leave reporting to the main one."""
    from accelerate import PartialState

    return PartialState().is_main_process


def load_tokenizer(base_path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(base_path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"base model {base_path!r} not found or unreadable: give a local folder or an HF id "
            f"(downloads need ASKDOCS_OFFLINE=false) [{one_line(exc)}]"
        ) from None


def check_memory(base_path: str, method: str) -> None:
    """Refuse before loading when the predicted peak exceeds the memory available now.

    Measured on SmolLM2-135M (538 MB of fp32 weights): QLoRA peaks at ~1.8 GB RSS, most of it
    the libraries; LoRA on the fp32 base adds the weights and their activations.
    """
    weights = sum(p.stat().st_size for p in Path(base_path).glob("*.safetensors")) if Path(base_path).is_dir() else 0
    predicted = LIBRARIES_BYTES + weights * (0.6 if method == "qlora" else 3.0)
    available = available_memory()
    if available and predicted > available:
        raise MemoryError(
            f"training {method} on {base_path} needs about {predicted / 2**30:.1f} GiB, only "
            f"{available / 2**30:.1f} GiB are free: use --qlora, a smaller base, --batch-size or --max-seq-len"
        )


def available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def start_manifest(settings: Settings, base_path: str, tokenizer: Any, prepared: Prepared) -> dict[str, Any]:
    cfg = settings.train
    files = [p for p in (cfg.data, cfg.eval_data) if p is not None and p.is_file()]
    return {
        "completed": False,
        "method": cfg.method,
        "base": settings.llm_base,
        "base_path": base_path,
        "base_hash": adapter.base_hash(base_path),
        "hyperparameters": cfg.model_dump(mode="json"),
        "data_files": {str(p): adapter.file_hash(p) for p in files},
        "train_examples": len(prepared.train),
        "eval_examples": len(prepared.eval),
        "truncated_examples": prepared.truncated,
        "chat_template_hash": adapter.text_hash(tokenizer.chat_template or ""),
        "eos_token": tokenizer.eos_token,
    }


def training_arguments(settings: Settings, output_dir: Path, *, has_eval: bool) -> Any:
    from transformers import TrainingArguments

    from core.models import llm_device

    cfg = settings.train
    return TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        lr_scheduler_type="cosine",
        # Batches of similar lengths: ~2 % padding instead of ~25 % with random batches on data/qa.
        train_sampling_strategy="group_by_length",
        warmup_steps=min(10, max(cfg.max_steps, 1) // 10),
        logging_steps=1,
        logging_nan_inf_filter=False,  # log a NaN loss as NaN (not the previous mean) so the guard sees it
        eval_strategy="steps" if has_eval else "no",
        eval_steps=cfg.save_steps,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        seed=cfg.seed,
        use_cpu=llm_device().type == "cpu",  # a GPU per process where there are GPUs
        report_to=[],
        dataloader_num_workers=0,
    )
