"""Training fails safely on the real SmolLM2: a diverging run stops with one line and saves nothing,
and a resume never loads a corrupt checkpoint."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback

from core import adapter
from core.cli import EXIT_ERROR
from core.settings import Settings, TrainSettings
from finetune import cli, guard
from finetune.train import train

pytestmark = pytest.mark.slow
STEPS, CUT_AT = 4, 3  # checkpoints every step; save_total_limit=2 keeps checkpoint-2 and -3 at the cut


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("qa")
    rows = [{"question": f"Code of office {i}?", "answer": f"Office {i} has code KX-{i * 7}."} for i in range(34)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return folder / "train.jsonl", folder / "eval.jsonl"


def quick_settings(data_dir: Path, files: tuple[Path, Path], output: str, lr: float = 5e-4) -> Settings:
    cfg = TrainSettings(
        data=files[0], eval_data=files[1], output=output, max_steps=STEPS, save_steps=1, batch_size=2, lr=lr
    )
    return Settings(data_dir=data_dir, train=cfg)


def cli_flags(data_dir: Path, files: tuple[Path, Path], output: str) -> list[str]:
    return [
        *("--qlora", "--no-compare", "--data-dir", str(data_dir), "--output", output),
        *("--data", str(files[0]), "--eval-data", str(files[1])),
        *("--max-steps", str(STEPS), "--save-steps", "1", "--batch-size", "2"),
    ]


def test_nan_loss_stops_training_with_one_line_and_leaves_no_adapter(
    llm_data_dir: Path, qa_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main([*cli_flags(llm_data_dir, qa_files, "nan"), "--lr", "1e30"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == EXIT_ERROR and len(errors) == 1
    # Seen: "error: training diverged: eval loss is nan at step 1 (learning rate 1e+30 is too high?); ..."
    assert re.fullmatch(
        r"error: training diverged: (eval loss|loss|grad norm) is nan at step \d "
        r"\(learning rate 1e\+30 is too high\?\); nothing was saved",
        errors[0],
    )
    assert not (llm_data_dir / "adapters" / "nan").exists(), "checkpoint-1 and the manifest are gone too"


def test_loss_worse_than_random_stops_training_even_though_it_stays_finite(
    llm_data_dir: Path, qa_files: tuple[Path, Path]
) -> None:
    settings = quick_settings(llm_data_dir, qa_files, "lr1e4", lr=1e4)
    # Seen: train loss 3.95 at step 1, then "eval loss 20.1 is worse than guessing at random (10.8) at step 1"
    worse = r"loss [\d.]+ is worse than guessing at random \(10\.8\) at step \d \(learning rate 10000 is too high\?\)"
    with pytest.raises(guard.DivergedError, match=worse):
        train(settings)
    assert not (llm_data_dir / "adapters" / "lr1e4").exists()


class StepRecorder(TrainerCallback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        self.steps.append(state.global_step)


class Cut(Exception):
    """Stands in for a kill right after a checkpoint."""


class CutAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == CUT_AT:
            raise Cut


@pytest.fixture(scope="module")
def cut_run(llm_data_dir: Path, qa_files: tuple[Path, Path]) -> Path:
    """An adapter folder as a killed run leaves it: manifest not completed, checkpoint-2 and -3."""
    with pytest.raises(Cut):
        train(quick_settings(llm_data_dir, qa_files, "cut-run"), callbacks=[CutAfterSave()])
    folder = llm_data_dir / "adapters" / "cut-run"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-3"]
    return folder


def copy_of(cut_run: Path, name: str) -> Path:
    target = cut_run.with_name(name)
    shutil.copytree(cut_run, target)
    return target


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def nan_weights(path: Path) -> None:
    weights = load_file(str(path))
    first = sorted(weights)[0]
    weights[first] = torch.full_like(weights[first], float("nan"))
    save_file(weights, str(path))


FAULTS: dict[str, tuple[str, Callable[[Path], None], str]] = {
    "truncated weights": ("adapter_model.safetensors", truncate, "adapter_model.safetensors is unreadable"),
    "nan weights": ("adapter_model.safetensors", nan_weights, "adapter_model.safetensors has non-finite values"),
    "garbled state": ("trainer_state.json", lambda p: p.write_text("{not json"), "trainer_state.json is unreadable"),
    "truncated optimizer": ("optimizer.pt", truncate, "optimizer.pt is unreadable"),
    "flipped optimizer byte": ("optimizer.pt", flip_middle_byte, "optimizer.pt is damaged in "),
    "missing scheduler": ("scheduler.pt", Path.unlink, "scheduler.pt is missing"),
    "truncated rng state": ("rng_state.pth", truncate, "rng_state.pth is unreadable"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_kind_of_checkpoint_damage_is_named(cut_run: Path, tmp_path: Path, fault: str) -> None:
    checkpoint = shutil.copytree(cut_run / "checkpoints" / "checkpoint-3", tmp_path / "checkpoint-3")
    keys = set(load_file(str(checkpoint / "adapter_model.safetensors")))
    assert guard.checkpoint_problem(checkpoint, keys) is None
    name, damage, message = FAULTS[fault]
    damage(checkpoint / name)
    assert message in (guard.checkpoint_problem(checkpoint, keys) or "")


def test_resume_skips_a_corrupt_last_checkpoint_with_a_warning_and_finishes(
    cut_run: Path, llm_data_dir: Path, qa_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    folder = copy_of(cut_run, "resume-past-damage")
    truncate(folder / "checkpoints" / "checkpoint-3" / "optimizer.pt")
    recorder = StepRecorder()
    with caplog.at_level(logging.WARNING, logger="finetune.guard"):
        train(quick_settings(llm_data_dir, qa_files, folder.name), resume=True, callbacks=[recorder])
    warning = next(r.getMessage() for r in caplog.records if r.name == "finetune.guard")
    assert "checkpoint-3 is corrupt (optimizer.pt is unreadable: File is not a zip file)" in warning
    assert warning.endswith("resuming from checkpoint-2")
    manifest = adapter.read_manifest(folder)
    assert manifest["completed"] and manifest["steps"] == STEPS
    assert recorder.steps == [3, 4], "steps 1-2 came from checkpoint-2"


def test_resume_with_every_checkpoint_corrupt_is_one_line_and_keeps_the_folder(
    cut_run: Path, llm_data_dir: Path, qa_files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = copy_of(cut_run, "all-damaged")
    truncate(folder / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors")
    (folder / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("")
    code = cli.main([*cli_flags(llm_data_dir, qa_files, folder.name), "--resume"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code == EXIT_ERROR and len(errors) == 1
    error = errors[0]
    assert "no intact checkpoint" in error
    assert "checkpoint-3: adapter_model.safetensors is unreadable" in error
    assert "checkpoint-2: trainer_state.json is unreadable" in error
    assert not adapter.read_manifest(folder)["completed"]
