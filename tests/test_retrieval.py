"""Hybrid retrieval: BM25 beside Chroma, fused by score or by reciprocal rank, with filters, over collections."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from core import bm25, store
from core.models import QuestionEmbeddings
from core.retrieval import VECTOR, by_score, retriever, rrf, spread
from core.settings import Settings
from ingestion.pipeline import ingest

CAUSES = [
    "the coolant valve sticks",
    "the spindle overheats",
    "the door interlock is open",
    "the air pressure drops",
    "the encoder cable is loose",
    "the lubricant tank is empty",
    "the tool changer jams",
    "the fan filter is clogged",
]


@pytest.fixture
def planted(settings: Settings, tmp_path: Path) -> Path:
    """Eight fault pages alike but for their code, a travel page and a look-alike about money back."""
    root = tmp_path / "planted"
    (root / "faults").mkdir(parents=True)
    for n, cause in enumerate(CAUSES):
        code = f"E-{4417 + n}"
        (root / "faults" / f"{code.lower()}.md").write_text(
            f"# Fault {code}\n\nThe controller reports fault {code} when {cause}. Stop and call maintenance.\n"
        )
    (root / "travel.md").write_text(
        "# Business trips\n\nEmployees on business trips are reimbursed for hotels, trains and meals once receipts "
        "are submitted in the expenses portal.\n"
    )
    (root / "guarantee.md").write_text(
        "# Customer guarantee\n\nCustomers who are unhappy get their money back within 30 days; "
        "our support team takes the call.\n"
    )
    ingest(root, settings)
    return root


def search(
    settings: Settings, mode: str, query: str, k: int = 4, fusion: str = "scores", **filters: object
) -> list[str]:
    options = settings.retrieval.model_copy(update={"mode": mode, "fusion": fusion})
    chosen = settings.model_copy(update={"retrieval": options})
    return [d.metadata["source"] for d in retriever(chosen, k=k, **filters).invoke(query)]


@pytest.mark.parametrize("fusion", ["scores", "rrf"])
def test_hybrid_finds_an_exact_code_that_dense_search_ranks_below_its_look_alikes(
    settings: Settings, planted: Path, fusion: str
) -> None:
    question = "What does fault E-4421 mean?"
    assert search(settings, "dense", question)[0] != "faults/e-4421.md"  # the planted trap works
    assert search(settings, "hybrid", question, fusion=fusion)[0] == "faults/e-4421.md"


def test_dense_search_sees_the_page_and_section_a_chunk_sits_under(settings: Settings, tmp_path: Path) -> None:
    """The same spec table deep in two product pages: only the page title and section, embedded with
    each chunk, tell the two apart."""
    root = tmp_path / "products"
    root.mkdir()
    filler = " ".join(f"Step {n}: mount the unit, connect it and check the status light." for n in range(1, 16))
    table = "| Operating temperature | -20 °C to +60 °C |\n| Ingress protection | IP30 |"
    for name in ("KD-GW2 Industrial Gateway", "KD-400 Vibration Sensor"):
        page = f"# {name}\n\n## Installation\n\n{filler}\n\n## Technical specifications\n\n{table}\n"
        (root / f"{name.split()[0].lower()}.md").write_text(page)
    ingest(root, settings)
    for product, source in [("KD-GW2 gateway", "kd-gw2.md"), ("KD-400 vibration sensor", "kd-400.md")]:
        chosen = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"mode": "dense"})})
        found = retriever(chosen, k=4).invoke(f"What operating temperature does the {product} allow?")
        tables = [d for d in found if "Operating temperature" in d.page_content]
        assert "KD" not in tables[0].page_content  # the table alone does not name its product
        assert tables[0].metadata["source"] == source


def test_small_to_big_continues_each_chunk_with_the_ones_after_it(settings: Settings, tmp_path: Path) -> None:
    """An action-item list whose last row sits in a chunk after the one that matches the question."""
    root = tmp_path / "postmortems"
    root.mkdir()
    rows = "\n".join(f"PM-{n} Recolour dashboard widget number {n} in the style guide. Done." for n in range(2, 15))
    text = f"PM-1 Add certificate expiry monitoring for MQTT. Done.\n{rows}\nPM-15 Reconnect backoff. Open.\n"
    (root / "outage.txt").write_text(f"Action items\n------------\n\n{text}")
    ingest(root, settings)
    question = "Which action item adds certificate expiry monitoring?"
    alone = retriever(settings, k=1).invoke(question)[0]
    assert "PM-15" not in alone.page_content
    grown = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"neighbours": 2})})
    found = retriever(grown, k=1).invoke(question)[0]
    assert found.page_content.startswith(alone.page_content) and "PM-15 Reconnect backoff" in found.page_content
    lines = found.page_content.splitlines()
    assert len(lines) == len(set(lines)), "the chunks' overlap is written once"
    assert found.metadata["score"] == alone.metadata["score"]


def test_per_source_lets_other_files_in_ahead_of_one_long_page(settings: Settings, tmp_path: Path) -> None:
    """A long manual whose every section is about the spindle, and a short note that is too."""
    root = tmp_path / "spindle"
    root.mkdir()
    steps = " ".join(f"Step {n}: check the spindle temperature and write it down." for n in range(30))
    sections = "\n\n".join(f"## Spindle check {n}\n\n{steps}" for n in range(4))  # a chunk or more each
    (root / "manual.md").write_text(f"# Spindle manual\n\n{sections}\n")
    (root / "note.md").write_text("# Night shift\n\nThe spindle ran warm tonight; log its temperature.\n")
    ingest(root, settings)
    question = "spindle temperature check"
    assert search(settings, "hybrid", question, k=3) == ["manual.md"] * 3
    spread_out = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"per_source": 1})})
    found = [d.metadata["source"] for d in retriever(spread_out, k=3).invoke(question)]
    assert found == ["manual.md", "note.md", "manual.md"]


PAGE = "<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>"


def test_a_page_other_pages_link_to_goes_ahead_of_a_look_alike_nobody_links_to(
    settings: Settings, tmp_path: Path
) -> None:
    root = tmp_path / "site"
    (root / "guide").mkdir(parents=True)
    text = "Set how many tasks a worker runs at once with the concurrency option; it defaults to the CPU count."
    (root / "guide" / "workers.html").write_text(PAGE.format(title="Workers", text=text))
    # the same words and one more of the question's: ahead on its own
    (root / "old_workers.html").write_text(PAGE.format(title="Workers", text=f"{text} Worker concurrency."))
    for n, topic in enumerate(["routing messages to queues", "retrying failed calls", "periodic schedules"]):
        link = '<a href="workers.html#concurrency">the workers guide</a>'
        (root / "guide" / f"topic{n}.html").write_text(PAGE.format(title=topic, text=f"About {topic}; see {link}."))
    for n, topic in enumerate(["the changelog", "the glossary", "the license", "the authors"]):
        (root / f"other{n}.html").write_text(PAGE.format(title=topic, text=f"This page lists {topic}."))
    ingest(root, settings)
    assert retriever(settings).searchables[0].index.in_links == {"guide/workers.html": 3.0}  # a vote each

    def found(link_prior: float) -> list[str]:
        options = settings.retrieval.model_copy(update={"link_prior": link_prior})
        return [
            d.metadata["source"]
            for d in retriever(settings.model_copy(update={"retrieval": options}), k=6).invoke("worker concurrency")
        ]

    assert found(0).index("old_workers.html") < found(0).index("guide/workers.html")
    assert settings.retrieval.link_prior > 0
    linked_first = found(settings.retrieval.link_prior)
    assert linked_first.index("guide/workers.html") < linked_first.index("old_workers.html")


@pytest.mark.parametrize("fusion", ["scores", "rrf"])
def test_hybrid_finds_a_paraphrase_that_bm25_misses(settings: Settings, planted: Path, fusion: str) -> None:
    question = "How do I get my money back after a work journey?"
    assert "travel.md" not in search(settings, "bm25", question)  # no shared word
    assert "travel.md" in search(settings, "hybrid", question, k=2, fusion=fusion)


def test_a_question_of_stop_words_only_is_searched_by_meaning_not_a_crash(settings: Settings, planted: Path) -> None:
    assert search(settings, "bm25", "Is it?") == []  # bm25s raised IndexError on an empty query
    assert search(settings, "hybrid", "Is it?", k=2)  # the dense half still finds something


def test_every_chunk_keeps_its_cosine_score_whichever_search_found_it(settings: Settings, planted: Path) -> None:
    chosen = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"mode": "bm25"})})
    docs = retriever(chosen, k=3).invoke("fault E-4421")
    assert docs and all(0 < d.metadata["score"] <= 1 for d in docs)
    assert {d.metadata["collection"] for d in docs} == {settings.collection}


def test_every_chunk_carries_its_stored_vector_for_the_check(settings: Settings, planted: Path) -> None:
    docs = retriever(settings, k=3).invoke("fault E-4421")
    question = QuestionEmbeddings(settings).embed_query("fault E-4421")
    for doc in docs:
        vector = np.asarray(doc.metadata[VECTOR])
        assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1) < 1e-3
        assert abs(float(vector @ question) - doc.metadata["score"]) < 1e-3  # the vector the score came from


def test_filters_by_source_glob_and_file_type(settings: Settings, planted: Path) -> None:
    assert set(search(settings, "hybrid", "money back", k=10, source_glob="faults/*")) <= {
        f"faults/e-{4417 + n}.md" for n in range(8)
    }
    assert search(settings, "hybrid", "money back", file_types=["pdf"]) == []
    assert search(settings, "hybrid", "money back", k=1, file_types=[".MD"]) == ["guarantee.md"]


def test_one_retriever_searches_several_collections(settings: Settings, planted: Path, docs: Path) -> None:
    other = settings.model_copy(update={"collection": "guides"})
    ingest(docs, other)
    found = retriever(settings, collection=[settings.collection, "guides"], k=4).invoke("VPN rule and fault E-4421")
    assert {d.metadata["collection"] for d in found} == {settings.collection, "guides"}


def stored_ids(settings: Settings) -> set[str]:
    collection = store.client(settings).get_collection(settings.collection, embedding_function=None)
    return set(collection.get(include=[])["ids"])


def index_of(settings: Settings) -> bm25.Bm25Index:
    collection = store.client(settings).get_collection(settings.collection, embedding_function=None)
    return bm25.open_index(settings.chroma_dir, collection)


def test_incremental_ingestion_keeps_bm25_in_step_with_chroma(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    assert set(index_of(settings).ids) == stored_ids(settings)

    (docs / "new.md").write_text("# Printers\n\nThe QX-77 printer on floor 3 needs toner code TN-5512.\n")  # added
    (docs / "vpn.md").write_text("# VPN\n\nThe VPN gateway moved to host zebra-gw-19.\n")  # changed
    (docs / "laptops.md").unlink()  # removed
    ingest(docs, settings)
    index = index_of(settings)
    assert set(index.ids) == stored_ids(settings)
    assert set(index.fields["source"]) == {"new.md", "vpn.md", "expenses.md"}
    sources = dict(zip(index.ids, index.fields["source"], strict=True))
    assert [sources[i] for i, _ in index.search("TN-5512", 1)] == ["new.md"]
    assert [sources[i] for i, _ in index.search("zebra-gw-19", 1)] == ["vpn.md"]
    assert index.search("laptops", 5) == []


def test_an_index_out_of_step_with_chroma_is_rebuilt_not_trusted(settings: Settings, docs: Path) -> None:
    ingest(docs, settings)
    collection = store.client(settings).get_collection(settings.collection, embedding_function=None)
    victim = sorted(stored_ids(settings))[0]
    collection.delete(ids=[victim])  # as if a run died after Chroma changed and before the index did
    folder = settings.chroma_dir / "bm25" / settings.collection
    killed_save, running_save = folder / ".tmp-killed", folder / ".tmp-running"  # left by other processes
    killed_save.mkdir()
    running_save.mkdir()
    os.utime(killed_save, (time.time() - 7200, time.time() - 7200))
    assert set(index_of(settings).ids) == stored_ids(settings)
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-running", bm25.fingerprint(collection)]


def test_tokenizer_keeps_codes_whole_and_in_parts() -> None:
    assert bm25.tokenize("Error E-217 on KD-400X") == ["error", "e-217", "217", "kd-400x", "kd", "400x"]
    assert bm25.tokenize("the running of the sensors") == ["run", "sensor"]


def keys(scored: list[tuple[str, float]]) -> list[str]:
    return [key for key, _ in scored]


def test_reciprocal_rank_fusion_adds_weighted_reciprocal_ranks() -> None:
    # a: 1/61 + 1/62; b: 1/62 + 1/61 (tie, first seen first); c: 1/63
    assert keys(rrf([(1.0, ["a", "b", "c"]), (1.0, ["b", "a"])], k=60))[:2] in (["a", "b"], ["b", "a"])
    assert rrf([(1.0, ["a", "b"]), (3.0, ["b"])], k=60) == [("b", pytest.approx(1 / 62 + 3 / 61)), ("a", 1 / 61)]
    assert keys(rrf([(0.0, ["a"]), (1.0, ["b"])], k=60)) == ["b", "a"]


def test_score_fusion_adds_each_lists_scores_as_a_share_of_its_best() -> None:
    # a: 1.5 * 0.8/0.8 = 1.5; b: 1.5 * 0.4/0.8 + 1.0 * 10/10 = 1.75; c: 1.0 * 5/10 = 0.5
    assert by_score([(1.5, [("a", 0.8), ("b", 0.4)]), (1.0, [("b", 10.0), ("c", 5.0)])]) == [
        ("b", 1.75),
        ("a", pytest.approx(1.5)),
        ("c", 0.5),
    ]
    # BM25's scale does not matter, only each score's share of the best: x100 changes nothing
    assert keys(by_score([(1.5, [("a", 0.8), ("b", 0.4)]), (1.0, [("b", 1000.0), ("c", 500.0)])])) == ["b", "a", "c"]
    assert keys(by_score([(1.0, [("a", 0.0)]), (1.0, [])])) == ["a"]  # no best above 0: kept, last


def test_spread_moves_a_sources_extra_keys_behind_every_other_sources_first() -> None:
    ranked = [("a1", 6.0), ("a2", 5.0), ("b1", 4.0), ("a3", 3.0), ("c1", 2.0), ("b2", 1.0)]
    assert spread(ranked, lambda key: key[0], 1) == ["a1", "b1", "c1", "a2", "a3", "b2"]
    # a weighs 6 + 5 + 3, b 4 + 1, c 2: two of each in that order, then a's third
    assert spread(ranked, lambda key: key[0], 2) == ["a1", "a2", "b1", "b2", "c1", "a3"]
    assert spread(ranked, lambda key: key[0], 0) == keys(ranked)


def test_spread_ranks_a_source_by_its_best_three_chunks_not_its_best_one() -> None:
    # a: 0.9 + 0.1 = 1.0; b: 0.5 + 0.45 + 0.4 = 1.35 (its fourth, 0.35, does not count); c: 0.3
    ranked = [("a1", 0.9), ("b1", 0.5), ("b2", 0.45), ("b3", 0.4), ("b4", 0.35), ("c1", 0.3), ("a2", 0.1)]
    assert spread(ranked, lambda key: key[0], 1) == ["b1", "a1", "c1", "b2", "b3", "b4", "a2"]


def test_bm25_indexes_the_title_and_section_a_chunk_sits_under() -> None:
    import chromadb

    collection = chromadb.EphemeralClient().create_collection("titles", embedding_function=None)
    collection.add(
        ids=["a", "b"],
        embeddings=[[1.0, 0.0], [0.0, 1.0]],
        documents=["Send the form within 14 days.", "The canteen opens at noon."],
        metadatas=[{"source": "a.md", "title": "Travel", "section": "Refunds"}, {"source": "b.md", "title": "Food"}],
    )
    assert [chunk_id for chunk_id, _ in bm25.build(collection).search("refund", 2)] == ["a"]


def test_the_keyword_index_is_rebuilt_when_the_same_chunks_come_back_with_their_links(tmp_path: Path) -> None:
    """A --rebuild of a collection read before links were kept stores them under the same chunk ids."""
    import chromadb

    collection = chromadb.EphemeralClient().create_collection("relinked", embedding_function=None)
    pages = {"a.html": "b.html", "b.html": "", "c.html": "b.html", "d.html": ""}
    collection.add(
        ids=list(pages),
        embeddings=[[1.0, 0.0]] * len(pages),
        documents=[f"Page {name}." for name in pages],
        metadatas=[{"source": name, "chunk_index": 0} for name in pages],
    )
    assert bm25.open_index(tmp_path, collection).in_links == {}
    collection.update(ids=list(pages), metadatas=[{"links": links} for links in pages.values()])
    assert bm25.open_index(tmp_path, collection).in_links == {"b.html": 2.0}
