"""Every known error is one line naming the field, file or line, and every exit status means one
thing: 0 ok, 1 some files failed (ingestion) or a gate failed (evaluation), 2 usage or settings error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core import store
from core.cli import EXIT_ERROR
from core.settings import Settings
from evaluation import cli as evaluation_cli
from ingestion import cli as ingestion_cli
from ingestion import search


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: "), captured.err
    return captured.err


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("ASKDOCS_CHAT", "notjson", "setting chat (ASKDOCS_CHAT): not valid JSON"),
        ("ASKDOCS_CHAT__TOP_K", "abc", "setting chat.top_k: Input should be a valid integer"),
        ("ASKDOCS_CHUNK_SIZE", "-5", "setting chunk_size: Input should be greater than 8"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_in_every_command(
    settings: Settings,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
    named: str,
) -> None:
    questions = docs / "q.jsonl"
    questions.write_text(json.dumps({"question": "How do I reset the VPN?"}) + "\n")
    monkeypatch.setenv(variable, value)
    data = ["--data-dir", str(settings.data_dir)]
    for run in (
        lambda: ingestion_cli.main([str(docs), *data]),
        lambda: search.main(["vpn", *data]),
        lambda: evaluation_cli.main([str(questions), *data]),
    ):
        assert run() == EXIT_ERROR
        assert named in one_line_error(capsys)


def test_a_file_as_data_dir_is_a_settings_error(docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert ingestion_cli.main([str(docs), "--data-dir", str(docs / "vpn.md")]) == EXIT_ERROR
    assert "setting data_dir: Value error, " in one_line_error(capsys)


@pytest.mark.parametrize(
    "argv",
    [
        ["python -m ingestion.search", "vpn", "-k", "-3"],
        ["python -m evaluation", "q.jsonl", "--limit", "-1"],
        ["python -m evaluation", "q.jsonl", "--limit", "0"],
    ],
)
def test_a_count_below_one_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    main = search.main if argv[0].endswith("search") else evaluation_cli.main
    with pytest.raises(SystemExit) as exit_:
        main(argv[1:])
    assert exit_.value.code == EXIT_ERROR
    assert "must be 1 or more" in capsys.readouterr().err


def test_a_bad_embedding_model_records_nothing_and_the_next_run_works(
    settings: Settings, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(settings.data_dir)]
    assert ingestion_cli.main([str(docs), *data, "--embedding-model", "/nonexistent"]) == EXIT_ERROR
    assert "embedding_model '/nonexistent' cannot be loaded" in one_line_error(capsys)
    assert not store.has_collection(settings, settings.collection)
    assert ingestion_cli.main([str(docs), *data]) == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("Caf\xe9?".encode("latin-1"), ":1: not UTF-8 text (byte 4); save the file as UTF-8"),
        (b'{"question": "ok?"}\n{"question": "caf\xe9?"}\n', ":2: not UTF-8 text (byte 18)"),
    ],
)
def test_a_question_file_that_is_not_utf8_names_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    questions = tmp_path / "q.jsonl"
    questions.write_bytes(content)
    assert evaluation_cli.main([str(questions)]) == EXIT_ERROR
    assert f"{questions}{message}" in one_line_error(capsys)


def test_a_question_file_with_a_utf8_bom_is_read(tmp_path: Path) -> None:
    from evaluation.data import read_questions

    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "Wie spät?"}) + "\n", encoding="utf-8-sig")
    assert [q.question for q in read_questions(questions)] == ["Wie spät?"]


@pytest.mark.parametrize(
    ("variable", "message"),
    [
        ("ASKDOCS_CHAT__TOP_KK", "unknown setting chat.top_kk; did you mean chat.top_k?"),
        ("ASKDOCS_CHUNK_SIZ", "unknown variable ASKDOCS_CHUNK_SIZ; did you mean ASKDOCS_CHUNK_SIZE?"),
        ("ASKDOCS_RETRIEVAL__FUSSION", "unknown setting retrieval.fussion; did you mean retrieval.fusion?"),
    ],
)
def test_an_unknown_variable_is_one_line_naming_it_and_the_closest_known_one(
    settings: Settings,
    docs: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    message: str,
) -> None:
    monkeypatch.setenv(variable, "3")
    assert ingestion_cli.main([str(docs), "--data-dir", str(settings.data_dir)]) == EXIT_ERROR
    assert one_line_error(capsys) == f"error: {message}\n"


def test_an_unknown_keyword_or_env_file_key_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pydantic import ValidationError

    from core.cli import settings_problem
    from core.settings import load_settings

    with pytest.raises(ValidationError) as error:
        load_settings(chunk_szie=5)
    assert settings_problem(error.value) == "unknown setting chunk_szie; did you mean chunk_size?"
    (tmp_path / ".env").write_text("ASKDOCS_CHAT__TOPK=3\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValidationError) as error:
        load_settings()
    assert settings_problem(error.value) == "unknown setting chat.topk; did you mean chat.top_k?"


def test_the_sign_in_token_variable_is_not_a_setting(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import load_settings

    monkeypatch.setenv("ASKDOCS_TOKEN", "secret")
    assert "secret" not in repr(load_settings().model_dump())
