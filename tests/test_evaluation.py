"""`python -m evaluation`: metric functions on hand-computed cases, the question file, the gate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from core import metrics
from evaluation.cli import RETRIEVAL_COLUMNS, main, markdown
from evaluation.data import QuestionError, read_questions
from tests.conftest import ROOT

SAMPLE_QA = ROOT / "data" / "qa" / "eval.jsonl"


def test_hits_count_each_gold_source_once_at_its_first_rank() -> None:
    ranked = [("a.md", None), ("b.md", None), ("a.md", None), ("c.md", "Setup > Install")]
    assert metrics.hits(ranked, ["a.md", "c.md#setup"]) == [True, False, False, True]
    assert metrics.hits(ranked, ["c.md#Usage"]) == [False, False, False, False]


def test_recall_mrr_and_ndcg_on_a_hand_computed_ranking() -> None:
    flags = [False, True, False, True]  # gold sources found at ranks 2 and 4, out of 3 gold sources
    assert metrics.recall_at(flags, 3, 1) == 0
    assert metrics.recall_at(flags, 3, 3) == pytest.approx(1 / 3)
    assert metrics.recall_at(flags, 3, 5) == pytest.approx(2 / 3)
    assert metrics.reciprocal_rank(flags) == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    ideal = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert metrics.ndcg_at(flags, 3, 10) == pytest.approx(dcg / ideal)
    assert metrics.ndcg_at([True], 1, 10) == 1.0
    assert metrics.reciprocal_rank([False, False]) == 0.0


def test_token_f1_and_percentile() -> None:
    assert metrics.token_f1("the cap is 170 EUR", "170 EUR per night") == pytest.approx(2 * (2 / 5) * (2 / 4) / (0.9))
    assert metrics.token_f1("nothing shared", "170 EUR") == 0.0
    assert metrics.percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50) == 3.0
    assert metrics.percentile([float(v) for v in range(1, 101)], 95) == 95.0


@pytest.mark.parametrize(
    ("answer", "correct"),
    [
        ("The Milan Sales Office covers Italy; Luca Bellini manages it [1].", True),
        # the chat's real answer to data/qa's first question (issue 34): accepted, cited, wrong
        ("Luca Bellini is the CEO of Luca Bellini, a company that provides sales support in Italy. [1]", False),
        ("The Munich Sales Office, managed by Luca Bellini.", False),  # a name the reference does not give
        ("The Milan Sales Office at Via Tortona 35.", False),  # a number it does not give
        ("The Milan Sales Office is not managed by Luca Bellini.", False),  # a negation it does not make
    ],
)
def test_an_accepted_answer_is_correct_when_the_reference_vouches_for_it(answer: str, correct: bool) -> None:
    reference = "That's the Milan Sales Office at Via Tortona 33, 20144 Milano, managed by Luca Bellini."
    assert metrics.agrees_with_reference(answer, reference, "Which office covers sales in Italy?") is correct


def test_a_yes_or_no_must_be_the_references() -> None:
    reference = "No. The KD-400 speaks MQTT only."
    assert metrics.agrees_with_reference("No, the KD-400 speaks MQTT only.", reference, "Does it do Modbus?")
    assert not metrics.agrees_with_reference("Yes, the KD-400 speaks MQTT.", reference, "Does it do Modbus?")
    # a reference that opens with no yes or no leaves the answer's to its words (data/qa's support access)
    reference = "Only with your permission: access is limited to 72 hours."
    assert metrics.agrees_with_reference("No, only with your permission.", reference, "Can support see our data?")


def test_the_shipped_question_file_has_gold_sources_and_unanswerable_questions() -> None:
    questions = read_questions(SAMPLE_QA)
    assert sum(not q.answerable for q in questions) >= 10
    assert all(q.gold_sources for q in questions if q.answerable)
    assert all((ROOT / "data" / "sample_docs" / g).is_file() for q in questions for g in q.gold_sources)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: not valid JSON"),
        ('["a"]', "line 2: expected a JSON object"),
        ('{"answer": "x"}', "line 2: field 'question'"),
        ('{"question": "q", "gold_sources": "a.md"}', "line 2: field 'gold_sources'"),
        ('{"question": "q", "answerable": "no"}', "line 2: field 'answerable'"),
    ],
)
def test_a_malformed_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "fine?"}\n' + line + "\n")
    with pytest.raises(QuestionError, match=message.replace("line ", f"{path}:").replace("(", r"\(")):
        read_questions(path)


def test_a_bad_question_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "q.jsonl").write_text("{oops\n")
    assert main([str(tmp_path / "q.jsonl")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.slow
def test_retrieval_evaluation_on_sample_docs_reports_every_mode_and_gates(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "report.md"
    args = [str(SAMPLE_QA), "--data-dir", str(chat_data_dir), "--json", "--report", str(report)]
    assert main([*args, "--min-recall-at-5", "0.95"]) == 0
    results = json.loads(capsys.readouterr().out)
    rows = results["retrieval"]
    assert set(rows) == {"dense", "bm25", "hybrid"}
    assert rows["hybrid"]["recall@5"] >= 0.95
    assert rows["hybrid"]["mrr"] >= max(rows["dense"]["mrr"], rows["bm25"]["mrr"])
    assert "| hybrid |" in report.read_text()
    assert "fusion rrf, rrf_k 60, dense_weight 1.5, bm25_weight 1.0, per_source 0" in report.read_text()

    assert main([*args, "--min-recall-at-5", "1.01", "--modes", "hybrid"]) == 1
    assert "gate failed: recall@5" in capsys.readouterr().err


def test_the_report_lists_the_questions_retrieval_missed() -> None:
    row = dict.fromkeys(RETRIEVAL_COLUMNS, 0.5)
    results = {"questions": "q.jsonl", "collection": "docs", "search": {"rrf_k": 60}}
    results["retrieval"] = {"dense": {**row, "missed@5": ["Does it scale?"]}, "hybrid": {**row, "missed@5": []}}
    assert "Does it scale?" not in markdown(results, "hybrid")
    report = markdown(results, "dense")
    assert "(collection docs; rrf_k 60)" in report
    assert "No gold source in the top 5 (dense):\n\n- Does it scale?" in report


def test_reference_answers_through_retrieval_and_the_check_are_rarely_refused(
    chat_data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The ceiling, no model needed: the question file's own answers, cited and checked like a
    model's. Retrieval or check changes that refuse correct answers fail here (measured: 7 of 61: 2 whose
    first sentence shares no word with the question and is not close to it in meaning, ChatSettings'
    min_answer_relevance; at 0.2 it is 5, but an off-topic answer to an unanswerable question passes)."""
    args = [str(SAMPLE_QA), "--data-dir", str(chat_data_dir), "--modes", "hybrid", "--answers", "reference"]
    report = tmp_path / "report.md"
    assert main([*args, "--json", "--report", str(report), "--max-false-refusal-rate", "0.12"]) == 0
    row = json.loads(capsys.readouterr().out)["answers"]["reference"]
    assert row["citation_precision"] == 1.0
    assert row["accepted_correct"] == 1.0  # the reference vouches for itself
    assert row["refusal_unanswerable"] == 1.0  # by construction: their reference answer is a refusal
    answerable = sum(json.loads(line)["answerable"] for line in SAMPLE_QA.read_text().splitlines())
    reasons = row["false_refusal_reasons"]  # the check's own words for each refused answerable question
    assert sum(reasons.values()) == round(row["false_refusal"] * answerable) > 0
    assert set(reasons) <= {a["reason"] for a in row["answers"] if a["refused"]}
    assert f"- reference: {next(iter(reasons))} ({next(iter(reasons.values()))})" in report.read_text()


@pytest.mark.slow
def test_answer_evaluation_runs_the_chain_and_caches_each_answer(
    chat_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from evaluation import answers

    monkeypatch.setenv("ASKDOCS_CHAT__MAX_NEW_TOKENS", "32")
    questions = tmp_path / "q.jsonl"
    rows = [json.loads(line) for line in SAMPLE_QA.read_text().splitlines()]
    picked = [rows[0], next(r for r in rows if not r["answerable"])]
    questions.write_text("".join(json.dumps(r) + "\n" for r in picked))
    args = [str(questions), "--data-dir", str(chat_data_dir), "--modes", "hybrid", "--answers", "no-rag,rag", "--json"]
    args += ["--min-refusal-rate", "1.0"]
    code = main(args)
    first = json.loads(capsys.readouterr().out)["answers"]
    assert set(first) == {"no-rag", "rag"}
    assert first["rag"]["questions"] == 2
    assert first["rag"]["answers"][1]["refused"] and first["rag"]["answers"][1]["reason"]  # the unanswerable one
    assert code == (0 if first["rag"]["refusal_unanswerable"] == 1.0 else 1)

    def no_model(self: object, question: str) -> dict:
        raise AssertionError("a cached answer was recomputed")

    monkeypatch.setattr(answers.Answerer, "__call__", no_model)
    main(args)
    assert json.loads(capsys.readouterr().out)["answers"] == first
