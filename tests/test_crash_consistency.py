"""kill -9 `python -m ingestion` at seeded points, run again: the store ends as if never interrupted.

A kill lands once a seeded number of the run's new chunks are in Chroma's SQLite file (read
directly, so the test never opens the store while the child writes it), plus a seeded jitter.
The re-run must leave exactly the chunk ids of an uninterrupted run, with no duplicates, and
keep the BM25 index and the vector index in step with them. The seeds' runs go side by side,
each into its own store: their start-up (imports, model load) is most of the time.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from core import bm25, store
from core.settings import OFFLINE_ENV, Settings
from ingestion.pipeline import ingest
from tests.conftest import make_markdown

if TYPE_CHECKING:
    import chromadb

SEEDS = (0, 1, 2)
FILES = 10
# Tiny chunks: 260 of them, so a run writes in three steps (sync.FLUSH_CHUNKS = 128) for little embedding.
CHUNK_SIZE, CHUNK_OVERLAP = 24, 0
RUN_TIMEOUT_S = 300


@dataclass
class Run:
    seed: int
    data_dir: Path
    process: subprocess.Popen[bytes]
    target: int  # new chunks stored before the kill is armed
    jitter: float  # seconds from then to the kill
    kill_at: float = math.inf  # time.monotonic() of the kill, once armed


@dataclass
class Kill:
    seed: int
    killed: bool  # False when the run finished before its kill point
    ids_at_kill: set[str]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crash") / "docs"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"topic{i:02d}.md").write_text(make_markdown(f"topic {i}"))
    return folder


@pytest.fixture(scope="module")
def clean_data_dir(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run, left by a process that exited normally: the reference and re-ingest start."""
    data_dir = tmp_path_factory.mktemp("clean") / "data"
    process = start_ingestion(corpus, data_dir)
    assert process.wait(timeout=RUN_TIMEOUT_S) == 0, log_of(data_dir)
    assert raw_ids(data_dir), "no chunk ids in chroma.sqlite3's `embeddings` table: did Chroma's layout change?"
    return data_dir


@pytest.mark.slow
def test_ingest_killed_at_seeded_points_is_finished_exactly_by_the_next_run(
    corpus: Path, clean_data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    expected = raw_ids(clean_data_dir)
    data_dirs = {seed: tmp_path / f"seed{seed}" for seed in SEEDS}
    kills = kill_at_seeded_points(corpus, data_dirs, set(), expected)
    for kill in kills:
        report = ingest(corpus, settings_for(settings, data_dirs[kill.seed]))
        assert not report.failed
        assert report.chunks_embedded <= len(expected - kill.ids_at_kill), "stored chunks are not embedded again"
        assert_store_holds(settings_for(settings, data_dirs[kill.seed]), expected)
    assert_some_kill_was_mid_write(kills, before=set(), expected=expected)


@pytest.mark.slow
def test_reingest_of_changed_files_killed_at_seeded_points_is_finished_exactly_by_the_next_run(
    corpus: Path, clean_data_dir: Path, settings: Settings, tmp_path: Path
) -> None:
    changed = tmp_path / "changed"
    shutil.copytree(corpus, changed)
    change_files(changed)
    before = raw_ids(clean_data_dir)
    reference = copy_store(clean_data_dir, tmp_path / "reference")
    ingest(changed, settings_for(settings, reference))
    expected = set(chroma_ids(settings_for(settings, reference)))
    data_dirs = {seed: copy_store(clean_data_dir, tmp_path / f"seed{seed}") for seed in SEEDS}
    kills = kill_at_seeded_points(changed, data_dirs, before, expected)
    for kill in kills:
        assert not ingest(changed, settings_for(settings, data_dirs[kill.seed])).failed
        assert_store_holds(settings_for(settings, data_dirs[kill.seed]), expected)
    assert_some_kill_was_mid_write(kills, before=before, expected=expected)


def change_files(folder: Path) -> None:
    """Half the files rewritten (about 150 new chunks: two write steps), one removed, one added, one renamed."""
    for i in range(FILES // 2):
        (folder / f"topic{i:02d}.md").write_text(make_markdown(f"revised topic {i}"))
    (folder / f"topic{FILES - 1:02d}.md").unlink()
    (folder / "new.md").write_text(make_markdown("new topic"))
    (folder / "archive").mkdir()
    (folder / f"topic{FILES - 2:02d}.md").rename(folder / "archive" / "old.md")


def kill_at_seeded_points(folder: Path, data_dirs: dict[int, Path], before: set[str], expected: set[str]) -> list[Kill]:
    """Ingest `folder` into each seed's store at once; SIGKILL each run at its seeded point."""
    new_chunks = len(expected - before)
    runs = [start_run(folder, data_dir, seed, new_chunks) for seed, data_dir in data_dirs.items()]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while any(run.process.poll() is None for run in runs):
        assert time.monotonic() < deadline, [log_of(run.data_dir) for run in runs]
        for run in runs:
            if run.kill_at == math.inf and len(raw_ids(run.data_dir) - before) >= run.target:
                run.kill_at = time.monotonic() + run.jitter
            if time.monotonic() >= run.kill_at:
                run.process.kill()  # SIGKILL; a no-op once the run has finished
        time.sleep(0.02)
    return [ended(run) for run in runs]


def start_run(folder: Path, data_dir: Path, seed: int, new_chunks: int) -> Run:
    rng = random.Random(seed)
    target = rng.randint(1, new_chunks - 1)
    jitter = rng.uniform(0, 0.3)  # well under one write step's embedding time, so the kill lands inside the run
    return Run(seed, data_dir, start_ingestion(folder, data_dir), target, jitter)


def ended(run: Run) -> Kill:
    returncode = run.process.wait()
    assert returncode in (0, -9), log_of(run.data_dir)
    return Kill(run.seed, killed=returncode == -9, ids_at_kill=raw_ids(run.data_dir, mode="rw"))


def start_ingestion(folder: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m ingestion` as a user runs it, without the test's ASKDOCS_* settings or a stray .env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASKDOCS_")} | OFFLINE_ENV
    chunking = ["--chunk-size", str(CHUNK_SIZE), "--chunk-overlap", str(CHUNK_OVERLAP)]
    command = [sys.executable, "-m", "ingestion", str(folder), "--data-dir", str(data_dir), *chunking]
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / "ingest.log").open("ab") as log:
        return subprocess.Popen(command, cwd=data_dir, env=env, stdout=log, stderr=subprocess.STDOUT)


def log_of(data_dir: Path) -> str:
    return (data_dir / "ingest.log").read_text(errors="replace")[-3000:]


def raw_ids(data_dir: Path, mode: str = "ro") -> set[str]:
    """Chunk ids in Chroma's SQLite file, read without Chroma; empty while it doesn't exist yet or is locked.

    Read-only while the child writes; "rw" once it is dead, so that SQLite may roll back the
    transaction the kill cut (as Chroma's next start would) instead of refusing to read."""
    database = data_dir / "chroma" / "chroma.sqlite3"
    try:
        with sqlite3.connect(f"file:{database}?mode={mode}", uri=True, timeout=0.05) as connection:
            return {row[0] for row in connection.execute("SELECT embedding_id FROM embeddings")}
    except sqlite3.OperationalError:  # not created yet, no table yet, or busy with a write
        return set()


def copy_store(data_dir: Path, target: Path) -> Path:
    shutil.copytree(data_dir, target, ignore=shutil.ignore_patterns("ingest.log"))
    return target


def settings_for(settings: Settings, data_dir: Path) -> Settings:
    return settings.model_copy(update={"data_dir": data_dir, "chunk_size": CHUNK_SIZE, "chunk_overlap": CHUNK_OVERLAP})


def chroma_ids(settings: Settings) -> list[str]:
    return collection_of(settings).get(include=[])["ids"]


def collection_of(settings: Settings) -> chromadb.Collection:
    return store.client(settings).get_collection(settings.collection, embedding_function=None)


def assert_store_holds(settings: Settings, expected: set[str]) -> None:
    """Chroma's rows, its vector index and the BM25 index all hold exactly `expected`, once each."""
    ids = chroma_ids(settings)
    assert len(ids) == len(set(ids)) and set(ids) == expected
    collection = collection_of(settings)
    assert collection.count() == len(expected)
    probe = collection.get(ids=ids[:1], include=["embeddings"])["embeddings"]
    nearest = collection.query(query_embeddings=probe, n_results=len(expected), include=[])["ids"][0]
    assert sorted(nearest) == sorted(expected), "the vector index must hold the same chunks as the rows"
    assert sorted(bm25.open_index(settings.chroma_dir, collection).ids) == sorted(expected)


def assert_some_kill_was_mid_write(kills: list[Kill], *, before: set[str], expected: set[str]) -> None:
    """At least one seed must have cut the run with the store half-written, or the test proved little."""
    mid_write = [k.seed for k in kills if k.killed and k.ids_at_kill not in (before, expected)]
    assert mid_write, [(k.seed, k.killed, len(k.ids_at_kill)) for k in kills]
