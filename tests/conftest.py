"""Every test runs offline (sockets blocked by pytest-socket) in its own temporary data dir."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from core.settings import OFFLINE_ENV, TELEMETRY_ENV, Settings

os.environ.update(OFFLINE_ENV | TELEMETRY_ENV)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DOCS = ROOT / "data" / "sample_docs"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in [k for k in os.environ if k.startswith("ASKDOCS_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env from the repo
    return Settings(data_dir=tmp_path / "data")


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A small folder of markdown files, enough for several chunks each."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, topic in [("vpn.md", "VPN"), ("expenses.md", "expenses"), ("laptops.md", "laptops")]:
        (folder / name).write_text(make_markdown(topic))
    return folder


def make_markdown(topic: str, paragraphs: int = 12) -> str:
    body = "\n\n".join(
        f"Rule {i} about {topic}: staff must follow step {i} and record reference {topic.upper()}-{i:03d} "
        f"in the ticket before the change window closes on day {i} of the month."
        for i in range(paragraphs)
    )
    return f"# {topic.title()} guide\n\n## Scope\n\nThis guide covers {topic}.\n\n## Rules\n\n{body}\n"


def write_office_qa(folder: Path, count: int, train: int) -> tuple[Path, Path]:
    """Toy Q&A files (train.jsonl with the first `train` rows, eval.jsonl with the rest) the model can learn fast."""
    rows = [
        {"question": f"What is the code of office {i}?", "answer": f"Office {i} has code KX-{i * 7}."}
        for i in range(count)
    ]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:train]))
    (folder / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[train:]))
    return folder / "train.jsonl", folder / "eval.jsonl"


@pytest.fixture(scope="session")
def sample_docs_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sample") / "sample_docs"
    shutil.copytree(SAMPLE_DOCS, target)
    return target


@pytest.fixture(scope="session")
def llm_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose bundled SmolLM2 is converted once for the whole session (about 35 s)."""
    from core.models import bundled_llm_dir

    data_dir = tmp_path_factory.mktemp("llm-data")
    bundled_llm_dir(Settings(data_dir=data_dir).models_dir / "smollm2-135m-instruct")
    return data_dir


@pytest.fixture(scope="session")
def llm_tokenizer(llm_data_dir: Path):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llm_data_dir / "models" / "smollm2-135m-instruct")


@pytest.fixture(scope="session")
def chat_data_dir(tmp_path_factory: pytest.TempPathFactory, llm_data_dir: Path, sample_docs_copy: Path) -> Path:
    """data/sample_docs ingested, with the converted SmolLM2 shared (not the finetune tests' adapters)."""
    from ingestion.pipeline import ingest

    data_dir = tmp_path_factory.mktemp("chat-data")
    (data_dir / "models").symlink_to(llm_data_dir / "models")
    ingest(sample_docs_copy, Settings(data_dir=data_dir, embedding_precision="fp32"))  # the same vectors on every CPU
    return data_dir


@pytest.fixture(scope="session")
def tiny_adapter(chat_data_dir: Path) -> Path:
    """A real QLoRA adapter from two training steps: enough to load, switch to and generate with."""
    from core.settings import TrainSettings
    from finetune.train import train

    cfg = TrainSettings(
        data=ROOT / "data" / "qa" / "train.jsonl", eval_data=None, output="tiny", max_steps=2, batch_size=2
    )
    return train(Settings(data_dir=chat_data_dir, train=cfg))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_healthy(url: str, server: subprocess.Popen, seconds: float = 120) -> None:
    """Wait until a server we started answers 200 on `url`; fail fast if it exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"{server.args[0]} exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"nothing answered on {url}")
