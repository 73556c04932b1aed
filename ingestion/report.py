"""What an ingestion run did, per file, as a table for people or JSON for scripts."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("added", "changed", "renamed", "unchanged", "removed", "failed")
UNSUPPORTED = "unsupported type"  # the start of a skipped file's reason: listed in short


@dataclass
class FileResult:
    source: str
    status: str  # one of STATUSES
    detail: str = ""
    chunks: int = 0


@dataclass
class Report:
    results: list[FileResult] = field(default_factory=list)
    skipped: list[FileResult] = field(default_factory=list)  # not read: unsupported type, links (with why)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[phase] = self.timings.get(phase, 0.0) + time.perf_counter() - started

    def add(self, result: FileResult) -> None:
        self.results.append(result)

    def counts(self) -> dict[str, int]:
        counter = Counter(r.status for r in self.results)
        return {status: counter[status] for status in STATUSES} | {"skipped": len(self.skipped)}

    @property
    def failed(self) -> list[FileResult]:
        return [r for r in self.results if r.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"counts": self.counts()}


def print_report(report: Report, *, dry_run: bool = False) -> None:
    """A summary table, then one line per file that was not unchanged."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False)
    for result in sorted(report.results, key=lambda r: (STATUSES.index(r.status), r.source)):
        if result.status != "unchanged":
            detail = f"  {result.detail}" if result.detail else ""
            style = "red" if result.status == "failed" else None
            console.print(f"{result.status:>9}  {result.source}{detail}", style=style, markup=False, highlight=False)
    table = Table(title="plan (dry run: nothing written)" if dry_run else "ingestion summary")
    table.add_column("files / chunks")
    table.add_column("count", justify="right")
    chunk_rows = {
        "chunks embedded": report.chunks_embedded,
        "chunks reused (rename/copy)": report.chunks_reused,
        "chunks deleted": report.chunks_deleted,
        "chunks in collection": report.chunks_total,
    }
    for name, count in (report.counts() | ({} if dry_run else chunk_rows)).items():
        table.add_row(name, str(count), style="red" if name == "failed" and count else None)
    console.print(table)
    for result in report.skipped:
        if not result.detail.startswith(UNSUPPORTED):
            console.print(f"  skipped  {result.source}  {result.detail}", markup=False, highlight=False)
    if unsupported := [r.source for r in report.skipped if r.detail.startswith(UNSUPPORTED)]:
        console.print(f"skipped {len(unsupported)} file(s) of unsupported types, e.g. {', '.join(unsupported[:3])}")
    phases = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.timings.items() if seconds >= 0.05)
    console.print(f"done in {report.seconds:.1f} s" + (f" ({phases})" if phases else ""))
