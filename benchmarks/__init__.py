"""Benchmarks against named peers; run with `make bench`, never part of the test suite."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

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
