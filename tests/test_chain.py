"""The chain with the real models over data/sample_docs: it streams, rewrites follow-ups from
the history, refuses what the documents can't answer, and cites the passage it answers from."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from core.chain import chain_from_settings, stream_answer
from core.check import REFUSAL, CheckedAnswer
from core.settings import Settings
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
HELD_OUT = [json.loads(line) for line in (ROOT / "data" / "qa" / "eval.jsonl").read_text().splitlines()]


def fixed(data_dir: Path) -> Settings:
    """fp32 on every CPU. `auto` takes nf4 and bf16 where bf16 is native (AVX512-BF16), and there the
    base model answers differently: it writes "12" when asked to count to 12, and refuses the three
    CHECK_LEAKS questions. These tests assert what the model says, so the numbers must not vary."""
    return Settings(data_dir=data_dir, llm_precision="fp32", embedding_precision="fp32")


@pytest.fixture(scope="module")
def chain(chat_data_dir: Path) -> Any:
    return chain_from_settings(fixed(chat_data_dir), adapter="none", max_new_tokens=64)


def ask(chain: Any, question: str, history: list[tuple[str, str]] | None = None) -> CheckedAnswer:
    return chain.invoke({"question": question, "history": history or []})


def test_answer_streams_token_by_token_then_the_checked_answer(chain: Any) -> None:
    async def collect() -> list[Any]:
        return [
            item async for item in stream_answer(chain, {"question": "How do I reset my VPN password?", "history": []})
        ]

    items = asyncio.run(collect())
    tokens = [i for i in items if isinstance(i, str)]
    assert len(tokens) > 1
    assert isinstance(items[-1], CheckedAnswer)
    assert items[-1].raw_answer == "".join(tokens).strip()


def test_the_local_model_stops_before_a_stop_string(chat_data_dir: Path) -> None:
    from core.llm import chat_model

    llm = chat_model(fixed(chat_data_dir), adapter="none")
    question = "Count from 1 to 12, separated by commas."
    assert "7" in llm.invoke(question, max_new_tokens=40).content  # type: ignore[call-arg]
    assert "7" not in llm.invoke(question, stop=["7"]).content
    tokens = list(llm.stream(question, stop=["7"]))
    assert len(tokens) > 1 and "7" not in "".join(str(t.content) for t in tokens)


def test_the_local_model_takes_limits_per_call(chat_data_dir: Path) -> None:
    from core.llm import chat_model

    llm = chat_model(fixed(chat_data_dir), adapter="none")  # max_new_tokens 256 in settings
    answer = str(llm.invoke("Count from 1 to 12, separated by commas.", max_new_tokens=4).content)  # type: ignore[call-arg]
    assert "1" in answer and "7" not in answer
    assert len(llm.loaded.tokenizer(answer).input_ids) <= 4  # type: ignore[attr-defined]


def test_the_local_model_can_copy_a_name_from_the_prompt(chat_data_dir: Path) -> None:
    """The repetition penalty covers the answer only. Over the whole prompt it penalised every word of
    the passages an answer must copy (seen: "The CFO is the one who approves orders above 10,000 EUR.")."""
    from core.llm import chat_model

    llm = chat_model(fixed(chat_data_dir), adapter="none")
    passage = "Passage: Orders above 10,000 EUR need approval from the CFO, Margarethe Lindqvist-Obermaier."
    question = f"{passage}\n\nQuestion: Who approves orders above 10,000 EUR? Copy the name exactly."
    assert "Margarethe Lindqvist-Obermaier" in str(llm.invoke(question).content)


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        (["An", "swer.", "\n", "[5", "] (it/x.md)"], "Answer."),  # the stop spans pieces
        (["No stop", " here."], "No stop here."),
        (["\n[1]"], ""),
    ],
)
def test_streamed_text_ends_before_the_first_stop_string(pieces: list[str], expected: str) -> None:
    from core.chain import ANSWER_STOP
    from core.llm import until_stop

    assert "".join(until_stop(iter(pieces), ANSWER_STOP)) == expected


def test_a_held_out_question_is_answered_from_the_passage_it_cites(chain: Any) -> None:
    """Retrieval, prompt, model, check and citations end to end. The base model answers 1 of the 16 key
    facts of scripts/chain_held_out.py (this one) and `make adapter`'s adapter 3-6; issue 4 asks for 10,
    beyond a 135M model here (benchmarks/RESULTS.md, "Training the chain's adapter")."""
    row = next(r for r in HELD_OUT if r["question"].startswith("What ambient temperature range applies to the KD-400X"))
    result = ask(chain, row["question"])
    assert not result.refused, result.reason
    assert row["source"] in {s["source"] for s in result.sources}  # the verified citations
    assert "+70" in " ".join(s.text for s in result.sentences if s.supported)


def test_follow_up_is_rewritten_with_the_history(chain: Any) -> None:
    history = [("How do I reset my VPN password?", "Open the self-service portal and choose Reset [1].")]
    result = ask(chain, "Who owns that runbook?", history)
    assert result.query != "Who owns that runbook?"
    assert "vpn" in result.query.lower() or "password" in result.query.lower()


# Every unanswerable held-out question is refused. The last leak, "Jonas Brenner is the CEO of Kestrel Dynamics
# [4]." for the IPO (the model restating the question around a passage's words), is refused since a name must
# stand near another word of the claim in its passage (core/facts.py). The antivirus answer is refused since a
# claim rests on one span of a passage, the drone's "payload is 10" since a PDF's wrapped lines are read as
# sentences (its span says 25).
UNANSWERABLE = [r for r in HELD_OUT if r["source"] is None]


@pytest.mark.parametrize("row", UNANSWERABLE, ids=lambda r: r["question"][:40])
def test_questions_the_documents_cannot_answer_are_refused(chain: Any, row: dict[str, Any]) -> None:
    result = ask(chain, row["question"])
    assert result.refused and result.answer == REFUSAL
    assert result.sources  # the closest passages are still listed


def test_eight_sessions_at_once_get_the_answers_they_would_get_alone(chain: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from core.llm import load_model

    questions = [row["question"] for row in HELD_OUT if row["source"]][:8]
    alone = [ask(chain, q).raw_answer for q in questions]
    loaded = load_model.cache_info()
    with ThreadPoolExecutor(max_workers=8) as pool:
        together = list(pool.map(lambda q: ask(chain, q).raw_answer, questions))
    assert together == alone
    assert load_model.cache_info().currsize == loaded.currsize  # no second copy of the model
