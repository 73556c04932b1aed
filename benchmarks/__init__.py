"""Benchmarks against named peers; run with `make bench`, never part of the test suite."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(heading: str, text: str) -> None:
    """Replace the `## heading…` section of RESULTS.md with `text` (or append it), keeping the others."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    sections = [s.strip() for s in re.split(r"\n(?=## )", old.strip())]
    kept = [s for s in sections if not s.startswith(f"## {heading}")]
    at = next((i for i, s in enumerate(sections) if s.startswith(f"## {heading}")), len(sections))
    RESULTS.write_text("\n\n".join([*kept[:at], text.strip(), *kept[at:]]) + "\n")


def machine() -> str:
    return f"Machine: {platform.machine()}, {len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}."


@contextlib.contextmanager
def llama_server(settings: Any, args: list[str], start_seconds: float) -> Iterator[Any]:
    """llama-cpp-python's server (`args`: its model, LoRA, threads ...) on a free loopback port, waited for
    up to `start_seconds`; yields `settings` pointing the chat at it (llm_backend openai-compatible)."""
    from core.models import ModelError
    from core.served_llm import served_models
    from core.settings import LlmServerSettings

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "llama_cpp.server", *args, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = LlmServerSettings(url=f"http://127.0.0.1:{port}/v1")
    served = settings.model_copy(update={"llm_backend": "openai-compatible", "llm_server": url})
    try:
        for _ in range(int(start_seconds * 2)):
            try:
                served_models(served)
                break
            except ModelError:
                time.sleep(0.5)
        yield served
    finally:
        server.terminate()
        server.wait(timeout=30)
