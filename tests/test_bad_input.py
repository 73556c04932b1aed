"""Bad files get a one-line reason each; good files are ingested; stored data is never lost."""

from __future__ import annotations

import json
import os
import pathlib
from pathlib import Path

import pytest

from app.cli import EXIT_ERROR
from app.settings import Settings
from ingestion import cli
from ingestion.pipeline import ingest
from tests.conftest import make_markdown


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch) -> str:
    """chmod 000 stops ordinary users; root (as in CI) reads anyway, so there the open is refused by a patch."""
    name = "secret.md"
    if os.geteuid() == 0:
        real_open = pathlib.Path.open

        def refusing_open(self: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
            mode = args[0] if args else kwargs.get("mode", "r")
            if self.name == name and "r" in mode:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(pathlib.Path, "open", refusing_open)
    return name


def test_folder_of_bad_files_reports_each_and_ingests_the_good_ones(
    settings: Settings, tmp_path: Path, unreadable: str
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text(make_markdown("printers"))
    (folder / "latin.txt").write_bytes("Kantine öffnet um 11:30, Café im 2. Stock.".encode("latin-1"))
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n%broken beyond repair")
    (folder / "zero.docx").write_bytes(b"")
    (folder / "disguised.txt").write_bytes(os.urandom(4096).replace(b"\x00", b"\x01") + b"\x00" * 16)
    (folder / "huge.txt").write_text("x " * 700_000)
    (folder / unreadable).write_text("top secret")
    (folder / unreadable).chmod(0)
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")

    report = ingest(folder, settings.model_copy(update={"max_file_mb": 1.0}))

    reasons = {r.source: r.detail for r in report.failed}
    assert reasons == {
        "corrupt.pdf": reasons["corrupt.pdf"],
        "zero.docx": "empty file",
        "disguised.txt": "binary content, not text",
        "huge.txt": "too large: 1.3 MB > 1 MB (raise ASKDOCS_MAX_FILE_MB)",
        unreadable: "permission denied",
    }
    assert reasons["corrupt.pdf"].startswith("cannot parse pdf")
    assert all("\n" not in reason for reason in reasons.values())
    assert {r.source for r in report.results if r.status == "added"} == {"good.md", "latin.txt"}
    assert report.skipped == ["photo.jpg"]


def test_file_that_turns_bad_keeps_its_stored_chunks(settings: Settings, docs: Path) -> None:
    first = ingest(docs, settings)
    stored = {r.source: r.chunks for r in first.results}
    (docs / "vpn.md").write_bytes(b"\x00\x01\x02 binary now")
    report = ingest(docs, settings)
    [failed] = report.failed
    assert failed.source == "vpn.md"
    assert failed.detail == f"binary content, not text (kept its {stored['vpn.md']} previously stored chunks)"
    assert report.chunks_total == first.chunks_total


def test_cli_exit_status_and_json_report_name_the_failures(settings: Settings, docs: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (docs / "bad.txt").write_bytes(b"\x00" * 64)
    code = cli.main([str(docs), "--data-dir", str(settings.data_dir), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == cli.EXIT_FAILED_FILES
    assert report["counts"]["added"] == 3 and report["counts"]["failed"] == 1
    assert [r["source"] for r in report["results"] if r["status"] == "failed"] == ["bad.txt"]


def test_cli_rejects_a_bad_setting_with_one_line(settings: Settings, docs: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = cli.main([str(docs), "--chunk-size", "50", "--chunk-overlap", "60"])
    error = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert error.count("\n") == 1 and "chunk_overlap (60) must be smaller than chunk_size (50)" in error


def test_cli_rejects_a_missing_folder(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main([str(tmp_path / "nope")]) == EXIT_ERROR
    assert "not a folder" in capsys.readouterr().err
