"""The commands as a user runs them: ingest a folder, search it, survive a kill -9 mid-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import store
from core.settings import Settings
from ingestion import search
from tests.conftest import ROOT


def run_ingestion(folder: Path, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "ingestion", str(folder), "--data-dir", str(data_dir), *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stored_ids(data_dir: Path) -> list[str]:
    settings = Settings(data_dir=data_dir)
    return sorted(store.client(settings).get_collection(settings.collection).get(include=[])["ids"])


@pytest.mark.slow
def test_ingest_then_search_from_the_command_line(sample_docs_copy: Path, tmp_path: Path) -> None:
    process = run_ingestion(sample_docs_copy, tmp_path / "data", "--json")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    report = json.loads(out)
    assert report["counts"]["failed"] == 0 and report["chunks_total"] > 100
    assert "DEBUG" not in err  # bm25s sets its own logger to DEBUG when imported

    query = "What is the most I can pay per night for a hotel in Munich?"
    result = subprocess.run(
        [sys.executable, "-m", "ingestion.search", query, "-k", "3", "--json", "--data-dir", str(tmp_path / "data")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and all({"source", "score", "text"} <= hit.keys() for hit in hits)
    assert not any("vector" in hit for hit in hits)  # the stored embedding is for the check, not for people
    assert hits[0]["source"] == "policies/travel_policy.md"
    assert any("170" in hit["text"] for hit in hits)

    filtered = ["KD-400 price", "--mode", "bm25", "--type", "csv", "--json", "--data-dir", str(tmp_path / "data")]
    only_csv = subprocess.run(
        [sys.executable, "-m", "ingestion.search", *filtered],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert {hit["file_type"] for hit in json.loads(only_csv.stdout)} == {"csv"}  # price_list_2025.csv


def test_search_without_a_store_says_what_to_run(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert search.main(["anything", "--data-dir", str(tmp_path)]) == 2
    assert "run `python -m ingestion DIR` first" in capsys.readouterr().err


@pytest.mark.slow
def test_kill_9_during_ingestion_is_finished_by_the_next_run(sample_docs_copy: Path, tmp_path: Path) -> None:
    clean = run_ingestion(sample_docs_copy, tmp_path / "clean")
    assert clean.wait(timeout=600) == 0
    killed = run_ingestion(sample_docs_copy, tmp_path / "killed")
    time.sleep(9)  # past start-up, into reading and embedding
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    again = run_ingestion(sample_docs_copy, tmp_path / "killed")
    assert again.wait(timeout=600) == 0
    assert stored_ids(tmp_path / "killed") == stored_ids(tmp_path / "clean")
