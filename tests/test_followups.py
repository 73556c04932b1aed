"""Follow-ups: the set in data/qa, the chain's fused search, and their place in python -m evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import BaseMessage

from core.chain import asked_question, fuse_rankings, search_chain, usable_rewrite
from core.settings import ChatSettings, Settings
from evaluation.data import QuestionError, read_questions

ROOT = Path(__file__).resolve().parents[1]
FOLLOWUPS = ROOT / "data" / "qa" / "followups.jsonl"
MILAN = [("Which office covers sales in Italy?", "The Milan Sales Office at Via Tortona 33, 20144 Milano.")]


def test_the_followup_set_is_twenty_conversations_over_the_sample_docs() -> None:
    questions = read_questions(FOLLOWUPS)
    assert len(questions) >= 20
    for q in questions:
        (first, first_answer), *more = q.history
        assert not more and first and first_answer and q.answer and q.question != first
        assert all((ROOT / "data" / "sample_docs" / gold).is_file() for gold in q.gold_sources), q.gold_sources
    assert "And from how many pieces is there a discount?" in {q.question for q in questions}


def test_a_followup_line_without_its_reference_is_named(tmp_path: Path) -> None:
    line = json.loads(FOLLOWUPS.read_text().splitlines()[0])
    path = tmp_path / "f.jsonl"
    path.write_text(json.dumps(line) + "\n" + json.dumps(line | {"followup_answer": ""}) + "\n")
    with pytest.raises(QuestionError, match=r"f\.jsonl:2: field 'followup_answer' must be a non-empty string"):
        read_questions(path)


def doc(chunk_id: str, source: str = "a.md") -> Document:
    return Document(page_content=chunk_id, id=chunk_id, metadata={"source": source, "collection": "docs"})


def test_fusion_puts_a_chunk_both_searches_found_first_and_keeps_the_length() -> None:
    with_previous = [doc("shared"), doc("z"), doc("w")]
    rewritten = [doc("x"), doc("y"), doc("shared")]
    fused = fuse_rankings({"with_previous": with_previous, "rewritten": rewritten})
    assert [d.id for d in fused] == ["shared", "x", "z"]


def test_an_unusable_rewrite_falls_back_to_the_previous_question_and_a_first_question_stays() -> None:
    followup = {"question": "And who runs it?", "history": MILAN}
    assert usable_rewrite(followup | {"rewritten": "Luca Bellini runs it, at Via Tortona 33."}) == (
        "Which office covers sales in Italy? And who runs it?"
    )
    assert usable_rewrite(followup | {"rewritten": "Who runs the Milan Sales Office?"}) == (
        "Who runs the Milan Sales Office?"
    )
    assert usable_rewrite({"question": "Who runs it?", "history": [], "rewritten": None}) == "Who runs it?"


def test_the_model_is_asked_the_rewrite_or_the_question_as_written_never_two_questions() -> None:
    followup = {"question": "And who runs it?", "history": MILAN}
    assert (
        asked_question(followup | {"query": "Who runs the Milan Sales Office?"}) == "Who runs the Milan Sales Office?"
    )
    assert asked_question(followup | {"query": "Which office covers sales in Italy? And who runs it?"}) == (
        "And who runs it?"
    )
    assert asked_question({"question": "Q?", "history": [], "query": "Q?"}) == "Q?"


def searched(chat_data_dir: Path, question: str, history: list[tuple[str, str]], rewrite: str) -> dict:
    """The search chain's output over the sample store, with a model that rewrites as told."""
    from core.retrieval import retriever

    search = retriever(Settings(data_dir=chat_data_dir), k=4)
    chain = search_chain(FakeListChatModel(responses=[rewrite]), search, ChatSettings())
    return chain.invoke({"question": question, "history": history}) | {"search": search}


def test_a_followup_keeps_the_previous_turns_source_when_the_rewrite_loses_it(chat_data_dir: Path) -> None:
    """A rewrite that reads as a question but forgets the office: searched alone it misses the office
    list; fused with the previous question + follow-up, the office list comes first."""
    result = searched(chat_data_dir, "And who runs it?", MILAN, "Who runs the company?")
    assert result["query"] == "Who runs the company?"
    assert "company/office_locations.csv" not in sources(result["search"].invoke(result["query"]))  # the weak link
    assert sources(result["docs"])[0] == "company/office_locations.csv"
    assert len(result["docs"]) == 4


def test_an_answer_instead_of_a_rewrite_searches_with_the_previous_question(chat_data_dir: Path) -> None:
    result = searched(chat_data_dir, "And who runs it?", MILAN, "Luca Bellini runs it.")
    assert result["query"] == "Which office covers sales in Italy? And who runs it?"
    assert sources(result["docs"])[0] == "company/office_locations.csv"


def test_the_answer_prompt_asks_the_question_as_written_after_an_unusable_rewrite(chat_data_dir: Path) -> None:
    """After a change of topic the model must not be asked the previous question again."""
    from core.chain import build_chain
    from core.retrieval import retriever

    prompts = Prompts()
    llm = FakeListChatModel(responses=["The first six months of employment.", "In February 2024 [1]."])
    chain = build_chain(llm, retriever(Settings(data_dir=chat_data_dir), k=4), fake_embed, ChatSettings())
    history = [("How long is the probation period?", "The first six months of employment.")]
    result = chain.invoke(
        {"question": "When did the US data region launch?", "history": history}, {"callbacks": [prompts]}
    )
    assert result.query == "How long is the probation period? When did the US data region launch?"
    rewrite_prompt, answer_prompt = prompts.seen
    assert "Last question: When did the US data region launch?" in rewrite_prompt
    assert answer_prompt.endswith("\n\nQuestion: When did the US data region launch?")
    assert "probation period?" not in answer_prompt.rsplit("Question:", 1)[1]


class Prompts(BaseCallbackHandler):
    """The last message of each chat-model call, in order."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def on_chat_model_start(self, serialized: dict, messages: list[list[BaseMessage]], **kwargs: Any) -> None:
        self.seen.append(str(messages[0][-1].content))


def fake_embed(texts: list[str]) -> np.ndarray:
    """MiniLM's width: the check multiplies these with the stored vectors retrieval brings."""
    return np.ones((len(texts), 384)) / np.sqrt(384)


def test_a_first_question_is_searched_as_asked_without_the_model(chat_data_dir: Path) -> None:
    from core.retrieval import retriever

    search = retriever(Settings(data_dir=chat_data_dir), k=4)
    chain = search_chain(FakeListChatModel(responses=[]), search, ChatSettings())  # any call would fail
    result = chain.invoke({"question": "Which office covers sales in Italy?", "history": []})
    assert result["query"] == "Which office covers sales in Italy?" and result["rewritten"] is None
    assert [d.id for d in result["docs"]] == [d.id for d in search.invoke("Which office covers sales in Italy?")]


def sources(docs: list[Document]) -> list[str]:
    return [d.metadata["source"] for d in docs]


@pytest.mark.slow
def test_evaluation_scores_each_way_of_searching_for_a_followup(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.cli import main

    questions = tmp_path / "f.jsonl"
    questions.write_text("".join(FOLLOWUPS.read_text().splitlines(keepends=True)[:2]))
    assert main([str(questions), "--data-dir", str(chat_data_dir), "--modes", "hybrid", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["followups"]
    rows = found["strategies"]
    assert list(rows) == ["as asked", "previous + follow-up", "model's rewrite", "rewrite or fallback", "fused (chain)"]
    assert rows["previous + follow-up"]["hit@5"] == rows["fused (chain)"]["hit@5"] == 1.0
    assert [r["followup"] for r in found["rewrites"]] == [
        "And who runs it?",
        "And from how many pieces is there a discount?",
    ]
