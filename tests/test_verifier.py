"""The answer check's learned verifier (issue 34): its training pairs, its training and use, and the
refusal reasons that name the conflict, on passages of documentation nobody here tuned the check on."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from core.adapter import write_manifest
from core.check import check
from core.conflict import conflict
from core.settings import Settings
from core.text import window
from core.verifier import SHIPPED, load_verifier, trained_dir, verifier_dir
from finetune.verifier import train_verifier
from finetune.verifier_data import Chunk, build_pairs, pairs_for

# Real passages from documentation nobody here trained or tuned the check on (Celery 5.2 and SQLAlchemy 1.4,
# Debian's python-celery-doc / python-sqlalchemy-doc), as retrieval returns them.
CELERY = Document(
    "The default visibility timeout for Redis is 1 hour. If a task isn't acknowledged within the visibility "
    "timeout the message will be redelivered to another worker and executed. This causes problems with ETA, "
    "countdown and retry tasks where the time to execute exceeds the visibility timeout; in fact if that happens "
    "it will be executed again, and again in a loop.",
    metadata={"source": "getting-started/backends-and-brokers/redis.html", "section": "Caveats", "score": 0.41},
)
POOL = Document(
    "The QueuePool class is the default pool used by create_engine(). It maintains a fixed number of open "
    "connections: pool_size defaults to 5 and max_overflow defaults to 10, so at most 15 connections are open "
    "at once. Connections are returned to the pool when they are closed.",
    metadata={"source": "core/pooling.html", "section": "Connection Pooling", "score": 0.22},
)
WORKERS = Document(
    "By default Celery starts as many worker processes as there are CPUs on the machine. The number can be "
    "changed with the --concurrency argument. Beat is the scheduler that sends periodic tasks to the broker.",
    metadata={"source": "userguide/workers.html", "section": "Concurrency", "score": 0.35},
)
DOCS = [CELERY, POOL, WORKERS]


def test_the_window_is_the_sentence_nearest_the_claim_and_its_neighbours() -> None:
    body = "Alpha is one. Beta is two. The hotel cap in Paris is 280 EUR per night. Gamma is three. Delta is four."
    text = window("The Paris hotel cap is 280 EUR.", "travel.md", body, budget=12)
    assert text == "travel.md\nThe hotel cap in Paris is 280 EUR per night. Gamma is three."
    assert window("anything", "head", "", budget=12) == "head"


def test_training_pairs_hold_supported_claims_and_planted_errors_read_against_the_chunk() -> None:
    chunk = Chunk("core/pooling.html\nConnection Pooling", POOL.page_content)
    pairs = pairs_for(0, chunk, [CELERY.page_content, WORKERS.page_content], random.Random(1))
    supported = [p for p in pairs if p.label == 1]
    refused = [p for p in pairs if p.label == 0]
    assert supported and refused and {p.kind for p in supported} <= {"verbatim", "shortened", "reply"}
    verbatim = next(p.claim for p in supported if p.kind == "verbatim")
    assert verbatim in POOL.page_content
    assert all(p.claim != verbatim for p in refused)
    assert all(p.passage.startswith("core/pooling.html\nConnection Pooling\n") for p in pairs)
    for pair in refused:
        if pair.kind == "neighbour_sentence":
            assert pair.claim not in POOL.page_content


def test_pairs_are_built_from_sampled_chunks_and_their_nearest_neighbours() -> None:
    chunks = [Chunk(f"doc{i}.md", d.page_content) for i, d in enumerate(DOCS)]
    vectors = np.eye(3, dtype=np.float32)
    pairs = build_pairs(chunks, vectors, sample=2, seed=0)
    assert len({p.chunk for p in pairs}) == 2 and {p.label for p in pairs} == {0, 1}


def checked(answer: str, verify: object) -> object:
    return check(
        {"question": "q", "docs": DOCS, "answer": answer},
        Settings().chat,
        embed=lambda texts: np.ones((len(texts), 4), dtype=np.float32) / 2,  # the verifier decides, not this
        verify=verify,  # type: ignore[arg-type]
    )


def test_a_refusal_names_what_the_answer_says_and_what_the_passage_says() -> None:
    result = checked("The default visibility timeout for Redis is 25 hours.", None)
    assert result.refused  # type: ignore[attr-defined]
    assert "the answer says 25 hours; [1] (getting-started/backends-and-brokers/redis.html) says 1 hour" in (
        result.reason  # type: ignore[attr-defined]
    )


@pytest.mark.parametrize(
    ("claim", "passage", "reason"),
    [
        (
            "The cap in Paris is 130 EUR.",
            "The hotel cap in Paris is 280 EUR.",
            "the answer says 130 EUR; p says 280 EUR",
        ),
        (
            "Milan is managed by Anna Rossi.",
            "Milan is managed by Luca Bellini.",
            "names Anna Rossi; p names Luca Bellini",
        ),
        (
            "Taxis do not need approval.",
            "Taxis need approval.",
            "the answer negates what p says: 'Taxis need approval.'",
        ),
        (
            "Parking is free.",
            "Taxis need approval.",
            "no passage states it; the closest, p, says 'Taxis need approval.'",
        ),
    ],
)
def test_the_conflict_is_put_in_words(claim: str, passage: str, reason: str) -> None:
    assert reason in conflict(claim, passage, "p")


def test_the_verifier_in_use_is_the_collections_own_else_the_shipped_one_else_none(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, collection="handbook")
    shipped = verifier_dir(settings)
    assert shipped == (SHIPPED if (SHIPPED / "manifest.json").exists() else None)
    own = trained_dir(settings)
    own.mkdir(parents=True)
    write_manifest(own, {"kind": "verifier"})
    assert verifier_dir(settings) == own
    assert verifier_dir(settings, "another") == shipped
    rules = settings.model_copy(update={"chat": settings.chat.model_copy(update={"verifier": "none"})})
    assert verifier_dir(rules) is None


@pytest.mark.slow
def test_a_verifier_trained_on_a_collection_is_used_by_the_check(chat_data_dir: Path, tmp_path: Path) -> None:
    settings = Settings(data_dir=chat_data_dir, embedding_precision="fp32")
    manifest = train_verifier(settings, tmp_path / "verifier", chunks=12)
    assert manifest["pairs"]["train"] > 20 and 0 <= manifest["validation_accuracy"]["all"] <= 1
    assert {"verbatim", "all"} <= set(manifest["validation_accuracy"])
    chosen = settings.model_copy(
        update={"chat": settings.chat.model_copy(update={"verifier": str(tmp_path / "verifier")})}
    )
    verify = load_verifier(chosen)
    assert verify is not None
    [score] = verify([("pool_size defaults to 5.", POOL.page_content)])
    assert 0.0 <= score <= 1.0
    result = checked("pool_size defaults to 5 and max_overflow defaults to 10.", verify)
    assert result.sentences[0].verified is not None  # type: ignore[attr-defined]


def test_training_a_verifier_on_a_missing_collection_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune.cli import main

    assert main(["--verifier", "--collection", "nosuch", "--data-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: no collection 'nosuch': run `python -m ingestion DIR` first"
    assert not list(tmp_path.iterdir())
