"""Guards around the Trainer: stop a run that diverges, resume only from an intact checkpoint, and give
each step's freed memory back."""

from __future__ import annotations

import json
import logging
import math
import re
import zipfile
from pathlib import Path

from safetensors import SafetensorError, safe_open
from transformers import TrainerCallback

from core.adapter import AdapterError
from core.cli import one_line

log = logging.getLogger(__name__)
# Without these the Trainer resumes anyway: with a fresh optimizer, or from the base weights.
REQUIRED_FILES = ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt")


class DivergedError(RuntimeError):
    """Training produced a non-finite or worse-than-random loss; its weights are garbage."""


class DivergenceGuard(TrainerCallback):
    """Raise DivergedError from the first log that shows divergence.

    Logs come before the checkpoint of the same step is saved, so no diverged weights are saved.
    """

    def __init__(self, vocab_size: int) -> None:
        self.random_loss = math.log(vocab_size)

    def on_log(self, args, state, control, logs=None, **kwargs):  # type: ignore[no-untyped-def]
        problem = divergence(logs or {}, self.random_loss)
        if problem:
            raise DivergedError(
                f"training diverged: {problem} at step {state.global_step} "
                f"(learning rate {args.learning_rate:g} is too high?); nothing was saved"
            )


def divergence(logs: dict[str, float], random_loss: float) -> str | None:
    """What in one Trainer log shows divergence, or None.

    A fine-tuned model whose loss exceeds ln(vocabulary), the loss of a uniform guess, has
    forgotten its pretraining: lr 1e4 on SmolLM2 goes 3.2 -> 29.8 -> 10.8 with grad norm 0, never NaN.
    """
    for key in ("loss", "eval_loss", "grad_norm"):
        value = logs.get(key)
        if value is not None and not math.isfinite(value):
            return f"{key.replace('_', ' ')} is {value}"
    for key in ("loss", "eval_loss"):
        value = logs.get(key)
        if value is not None and value > random_loss:
            return f"{key.replace('_', ' ')} {value:.1f} is worse than guessing at random ({random_loss:.1f})"
    return None


def resume_checkpoint(folder: Path, expected_keys: set[str]) -> str | None:
    """The newest intact checkpoint in `folder` (None when there is none yet).

    Corrupt newer ones are renamed `corrupt-checkpoint-N` (out of the Trainer's sight) with a
    warning; when every checkpoint is corrupt, AdapterError says which and why.
    """
    problems: list[tuple[Path, str]] = []
    for checkpoint in checkpoints_newest_first(folder):
        problem = checkpoint_problem(checkpoint, expected_keys)
        if problem is None:
            for bad, why in problems:
                log.warning("checkpoint %s is corrupt (%s); resuming from %s", bad, why, checkpoint.name)
                bad.rename(bad.with_name("corrupt-" + bad.name))
            return str(checkpoint)
        problems.append((checkpoint, problem))
    if problems:
        found = "; ".join(f"{bad.name}: {why}" for bad, why in problems)
        raise AdapterError(f"no intact checkpoint in {folder} to resume from ({found}); delete it and train again")
    return None


def checkpoints_newest_first(folder: Path) -> list[Path]:
    """Same naming as transformers' get_last_checkpoint: `checkpoint-<step>` folders."""
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and re.fullmatch(r"checkpoint-\d+", p.name)]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def checkpoint_problem(checkpoint: Path, expected_keys: set[str]) -> str | None:
    """Why `checkpoint` cannot be resumed from, or None when every file it needs reads back whole."""
    missing = [name for name in REQUIRED_FILES if not (checkpoint / name).is_file()]
    if missing:
        return f"{missing[0]} is missing"
    try:
        int(json.loads((checkpoint / "trainer_state.json").read_text())["global_step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"trainer_state.json is unreadable: {one_line(exc)}"
    archives = [checkpoint / "optimizer.pt", checkpoint / "scheduler.pt", *sorted(checkpoint.glob("rng_state*.pth"))]
    weights = checkpoint / "adapter_model.safetensors"
    problems = [weights_problem(weights, expected_keys), *map(archive_problem, archives)]
    return next((problem for problem in problems if problem), None)


def weights_problem(path: Path, expected_keys: set[str]) -> str | None:
    """Whether the adapter file opens, holds exactly the model's LoRA tensors, and all are finite."""
    import torch

    try:
        with safe_open(str(path), "pt") as weights:
            keys = set(weights.keys())
            if keys != expected_keys:
                return f"{path.name} holds {len(keys)} tensors, the model has {len(expected_keys)}"
            bad = next((k for k in sorted(keys) if not torch.isfinite(weights.get_tensor(k)).all()), None)
    except (OSError, SafetensorError) as exc:
        return f"{path.name} is unreadable: {one_line(exc)}"
    return f"{path.name} has non-finite values in {bad}" if bad else None


def archive_problem(path: Path) -> str | None:
    """torch.save writes a zip: its CRCs catch truncated or garbled files without unpickling them."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        return f"{path.name} is unreadable: {one_line(exc)}"
    return f"{path.name} is damaged in {bad}" if bad else None


class ReleaseFreedMemory(TrainerCallback):
    """Hand the memory a step freed back to the system after each step (glibc's `malloc_trim`).

    Batches differ in length, so each step's activations are allocated in new sizes, and glibc keeps
    the freed ones in its heaps: without this, QLoRA on SmolLM2 peaked 180 to 350 MB higher on data/qa
    (benchmarks/RESULTS.md, "Where QLoRA's memory went"). Elsewhere (no glibc) it does nothing.
    """

    def __init__(self) -> None:
        import ctypes
        import ctypes.util

        try:
            self.trim = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), "malloc_trim", None)
        except OSError:  # no C library by that name (Windows)
            self.trim = None

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if self.trim is not None:
            self.trim(0)
