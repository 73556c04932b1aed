"""Measuring the check itself (issue 34): the planted errors of each kind."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from langchain_core.documents import Document

from core.settings import Settings
from evaluation import checks
from evaluation.checks import claim_of
from evaluation.data import read_questions
from finetune.perturb import KINDS, planted
from tests.conftest import ROOT

OFFICES = Document(
    "The Milan Sales Office is at Via Tortona 33, 20144 Milano. It is managed by Luca Bellini. "
    "The Lyon office opened in 2019 and has 12 employees. Parking is free for visitors.",
    metadata={"source": "company/offices.md", "section": "Offices", "score": 0.7},
)
TRAVEL = Document(
    "The hotel cap is 180 EUR per night in Munich and 280 EUR per night in Paris. Taxis need approval.",
    metadata={"source": "policies/travel.md", "section": "Hotels", "score": 0.6},
)


def test_the_first_sentence_without_citations_is_the_claim() -> None:
    assert claim_of("The cap is 180 EUR [1]. Book early. (Source: travel.md)") == "The cap is 180 EUR."


def test_each_kind_plants_its_error_or_says_it_does_not_apply() -> None:
    rng = random.Random(0)
    claim = "The hotel cap in Paris is 280 EUR per night."
    passages = [OFFICES.page_content, TRAVEL.page_content]
    made = {kind: planted(kind, claim, passages, [claim, "Parking is free."], rng) for kind in KINDS}
    assert made["correct"] == claim
    assert made["negation"] == "The hotel cap in Paris is not 280 EUR per night."
    assert made["unit_changed"] == "The hotel cap in Paris is 280 USD per night."
    assert made["number_absent"] == "The hotel cap in Paris is 847 EUR per night."
    assert made["number_swapped"] != claim and "280" not in made["number_swapped"]  # type: ignore[operator]
    assert made["entity_swapped"] != claim and "Paris" not in made["entity_swapped"]  # type: ignore[operator]
    assert made["other_answer"] == "Parking is free."
    assert planted("negation", "Parking is not free.", [OFFICES.page_content], [], rng) == "Parking is free."
    assert planted("number_absent", "Parking is free.", [OFFICES.page_content], [], rng) is None


@pytest.mark.slow
def test_the_check_is_measured_per_kind_on_the_sample_set(chat_data_dir: Path) -> None:
    questions = read_questions(ROOT / "data" / "qa" / "eval.jsonl")[:16]
    result = checks.evaluate(Settings(data_dir=chat_data_dir, embedding_precision="fp32"), questions)
    kinds = result["kinds"]
    assert set(kinds) == set(KINDS) and result["questions"] >= 12
    assert kinds["correct"]["tried"] == result["questions"] and kinds["correct"]["rate"] >= 0.75
    assert kinds["number_absent"]["rate"] == 0.0  # what it guarantees
    # another question's answer can be true of these passages ("salary review in October ... 1 January"
    # for a question on the pension's salary conversion): issue 34's bound, not a guarantee
    assert kinds["other_answer"]["rate"] <= 0.1
    wrongly = {e["kind"] for e in result["examples"]}
    assert all(kinds[k]["accepted"] > 0 for k in wrongly - {"correct"})  # every example is one it accepted
    assert "| correct | " in "\n".join(checks.markdown({"rules": result}, "sample"))


@pytest.mark.slow
def test_python_m_evaluation_check_reports_the_check_per_kind(
    chat_data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation.cli import main

    questions = str(ROOT / "data" / "qa" / "eval.jsonl")
    assert main([questions, "--data-dir", str(chat_data_dir), "--modes", "hybrid", "--limit", "6", "--check"]) == 0
    report = capsys.readouterr().out
    assert "The answer check on" in report and "| kind | rules | should be |" in report
    assert "| number_absent | 0.000 (" in report  # no passage has the number: always refused
