"""The packages import in one direction (app | benchmarks > evaluation > ingestion | finetune > core):
import-linter's layers contract in pyproject.toml, run here as `make lint` runs it, and shown to fail
on a planted back-edge."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["core", "ingestion", "finetune", "evaluation", "app", "benchmarks"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True)


def copy_of_the_packages(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc", "__pycache__", ".*"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_packages_import_in_one_direction() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-2000:]
    assert "1 kept, 0 broken" in result.stdout


def test_a_back_edge_from_core_to_the_chat_fails_the_lint(tmp_path: Path) -> None:
    root = copy_of_the_packages(tmp_path)
    with (root / "core" / "jsonl.py").open("a") as module:
        module.write("\n\ndef planted() -> None:\n    from app import uploads  # noqa: F401\n")
    result = lint_imports(root)
    assert result.returncode == 1
    assert "0 kept, 1 broken" in result.stdout
    assert "core.jsonl -> app.uploads" in result.stdout


def test_ingestion_and_finetune_may_not_import_each_other(tmp_path: Path) -> None:
    root = copy_of_the_packages(tmp_path)
    with (root / "finetune" / "data.py").open("a") as module:
        module.write("\n\ndef planted() -> None:\n    from ingestion import chunking  # noqa: F401\n")
    assert "finetune.data -> ingestion.chunking" in lint_imports(root).stdout


def test_the_readme_layout_names_every_module_of_the_packages() -> None:
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout") : readme.index("## Development")]
    rows = {line.split("|")[1].strip(" `/"): line for line in layout.splitlines() if line.startswith("| `")}
    for package in ["core", "ingestion", "finetune", "evaluation", "app"]:
        modules = {p.stem for p in (ROOT / package).glob("*.py")} - {"__init__", "__main__"}
        missing = sorted(m for m in modules if f"`{m}`" not in rows[package])
        assert not missing, f"README's layout does not name {package}/{missing}"
