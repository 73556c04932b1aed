"""`--help` of every command prints its usage, exits 0 and writes nothing: no model is prepared, no
store or cache folder made (issue 33)."""

from __future__ import annotations

import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

MODULES = [
    "core.models",
    "ingestion",
    "ingestion.search",
    "finetune",
    "finetune.gguf_lora",
    "finetune.rag_data",
    "finetune.synth",
    "evaluation",
    "benchmarks.ingest",
    "benchmarks.finetune",
    "benchmarks.retrieval",
    "benchmarks.check",
    "benchmarks.generation",
    "benchmarks.answer",
]
SCRIPTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.py"))


def tree(folder: Path) -> set[tuple[str, float]]:
    return {(str(p), p.stat().st_mtime) for p in folder.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts}


@pytest.fixture
def untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Runs in an empty folder; afterwards that folder and the repository's data/ and benchmarks/ are as before."""
    monkeypatch.chdir(tmp_path)
    before = tree(ROOT / "data") | tree(ROOT / "benchmarks")
    yield
    assert not any(tmp_path.iterdir()), sorted(tmp_path.rglob("*"))
    assert tree(ROOT / "data") | tree(ROOT / "benchmarks") == before


@pytest.mark.parametrize("target", MODULES + SCRIPTS)
def test_help_prints_usage_exits_0_and_writes_nothing(
    target: str, untouched: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    is_script = target.endswith(".py")
    monkeypatch.setattr(sys, "argv", [target, "--help"])
    with pytest.raises(SystemExit) as done:
        if is_script:
            monkeypatch.syspath_prepend(str(ROOT / "scripts"))
            runpy.run_path(str(ROOT / target), run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None)
    assert "usage:" in capsys.readouterr().out


def test_the_chat_command_prints_its_help_without_starting(untouched: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app", "--help"],
        cwd=Path.cwd(),
        env={"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
