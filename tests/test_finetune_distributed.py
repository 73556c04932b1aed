"""Two processes (torchrun, gloo on CPU) train the same LoRA adapter as one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from core import adapter
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow
STEPS = 4
# Measured: 0.0 (bit-identical) on these answers. Answers of unequal token counts give ~3e-2 for lora_B:
# each process averages the loss over its own answer tokens, one process over the whole batch's.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def equal_length_qa(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """32 examples whose answers all tokenize to 13 tokens, so a mean of per-process means is the batch mean.

    32 examples also give group_by_length the same 8-example mega-batches with batch 4 as with 2 x 2,
    so both runs see the same global batches.
    """
    folder = tmp_path_factory.mktemp("qa")
    # Two-digit offices with three-digit codes: every answer is 13 tokens long.
    rows = [
        {"question": f"What is the code of office {i}?", "answer": f"Office {i} has code KX-{i * 7}."}
        for i in range(15, 51)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[32:]))
    return folder / "train.jsonl", folder / "eval.jsonl"


def run_training(launcher: list[str], data_dir: Path, files: tuple[Path, Path], output: str, batch: int) -> str:
    flags = ["--lora", "--no-compare", "--data-dir", str(data_dir), "--output", output, "--data", str(files[0])]
    flags += ["--eval-data", str(files[1]), "--max-steps", str(STEPS), "--save-steps", str(STEPS)]
    flags += ["--dropout", "0", "--lr", "5e-4", "--batch-size", str(batch)]
    # One thread per process: two processes on two cores must not oversubscribe them.
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [*launcher, "-m", "finetune", *flags], cwd=data_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def lora_weights(folder: Path) -> dict:
    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.enable_socket
@pytest.mark.allow_hosts(["127.0.0.1"])
def test_two_processes_train_the_same_adapter_as_one(
    llm_data_dir: Path, equal_length_qa: tuple[Path, Path], tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(llm_data_dir / "models")
    run_training([sys.executable], data_dir, equal_length_qa, "one", batch=4)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2"]
    torchrun += ["--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    out = run_training(torchrun, data_dir, equal_length_qa, "two", batch=2)

    assert sorted(p.name for p in (data_dir / "adapters").iterdir()) == ["one", "two"]
    assert out.count("adapter ") == 1, "only the main process reports"
    one, two = (data_dir / "adapters" / name for name in ("one", "two"))
    assert not (two / "checkpoints").exists()
    for folder in (one, two):
        manifest = adapter.read_manifest(folder)
        assert manifest["completed"] and manifest["steps"] == STEPS
        assert manifest["train_loss"][-1][1] < manifest["train_loss"][0][1]
    expected, got = lora_weights(one), lora_weights(two)
    assert expected.keys() == got.keys()
    worst = max(float((expected[k] - got[k]).norm() / expected[k].norm()) for k in expected)
    assert worst < TOLERANCE, f"relative difference {worst:.1e}"
