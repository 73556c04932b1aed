"""Optional access control: a restricted collection is searchable only by its named users, checked
where the retriever is built (server-side), and the chat lists only what the signed-in user may read."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from streamlit.testing.v1 import AppTest

from core.access import AccessError, sign_in
from core.retrieval import retriever
from core.settings import Settings
from tests.conftest import ROOT, make_markdown

USERS = {"alice": "correct horse", "bob": "battery staple"}
RESTRICTED = {"hrdocs": ["alice"]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory, llm_data_dir: Path) -> Path:
    """Two collections: 'hr' (alice only) and 'public' (everyone)."""
    from ingestion.pipeline import ingest

    root = tmp_path_factory.mktemp("access")
    (root / "data").mkdir()
    (root / "data" / "models").symlink_to(llm_data_dir / "models")
    for name, topic in [("hrdocs", "salaries"), ("public", "holidays")]:
        (root / name).mkdir()
        (root / name / f"{topic}.md").write_text(make_markdown(topic))
        ingest(root / name, Settings(data_dir=root / "data", collection=name))
    return root / "data"


def restricted(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, access={"users": USERS, "collections": RESTRICTED})  # type: ignore[arg-type]


def test_sign_in_needs_the_users_own_token(data_dir: Path) -> None:
    settings = restricted(data_dir)
    assert sign_in(settings, "alice", "correct horse") == "alice"
    assert sign_in(settings, "alice", "battery staple") is None  # bob's token
    assert sign_in(settings, "alice", "") is None
    assert sign_in(settings, "mallory", "correct horse") is None


def test_restricting_to_an_unknown_user_is_a_settings_error(data_dir: Path) -> None:
    with pytest.raises(ValidationError, match=r"access\.collections\.hrdocs: unknown user\(s\) eve"):
        Settings(data_dir=data_dir, access={"users": USERS, "collections": {"hrdocs": ["alice", "eve"]}})  # type: ignore[arg-type]


def test_retriever_refuses_a_restricted_collection_to_anyone_else(data_dir: Path) -> None:
    settings = restricted(data_dir)
    for user in (None, "bob"):
        with pytest.raises(AccessError, match="collection 'hrdocs' is restricted"):
            retriever(settings, "hrdocs", user=user)
        with pytest.raises(AccessError):  # no way round it by searching several collections at once
            retriever(settings, ["public", "hrdocs"], user=user)
    assert retriever(settings, "public").invoke("When is the office closed for holidays?")
    found = retriever(settings, "hrdocs", user="alice").invoke("salaries rule 3")
    assert found and all(doc.metadata["collection"] == "hrdocs" for doc in found)


def test_chain_checks_access_before_loading_the_model(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import llm
    from core.chain import chain_from_settings

    monkeypatch.setattr(llm, "chat_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(AccessError):
        chain_from_settings(restricted(data_dir).model_copy(update={"collection": "hrdocs"}), user="bob")


@pytest.fixture
def app(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    for key in [k for k in os.environ if k.startswith("ASKDOCS_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("ASKDOCS_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ASKDOCS_ADAPTER", "none")
    monkeypatch.setenv("ASKDOCS_CHAT__MAX_NEW_TOKENS", "24")
    monkeypatch.setenv("ASKDOCS_ACCESS__USERS", json.dumps(USERS))
    monkeypatch.setenv("ASKDOCS_ACCESS__COLLECTIONS", json.dumps(RESTRICTED))
    return AppTest.from_file(str(ROOT / "app" / "ui.py"), default_timeout=300).run()


@pytest.mark.slow
def test_chat_lists_only_what_the_signed_in_user_may_read(app: AppTest) -> None:
    assert not app.exception
    assert app.sidebar.selectbox[0].options == ["public"]  # anonymous
    app.sidebar.text_input(key="user").input("alice")
    app.sidebar.text_input(key="token").input("battery staple").run()  # bob's token
    assert app.sidebar.selectbox[0].options == ["public"]
    assert "Unknown user or wrong token." in [e.value for e in app.sidebar.error]
    app.sidebar.text_input(key="token").input("correct horse").run()
    assert app.sidebar.selectbox[0].options == ["hrdocs", "public"]
    app.sidebar.selectbox[0].select("hrdocs").run()
    app.chat_input[0].set_value("What must staff record about salaries?").run()
    assert not app.exception
    listed = [m.value.replace("\\", "") for m in app.markdown if m.value.startswith("**\\[")]
    assert listed and all("salaries.md" in line for line in listed)


def restricted_env(monkeypatch: pytest.MonkeyPatch, data_dir: Path, token: str | None) -> None:
    monkeypatch.chdir(data_dir.parent)  # no stray .env
    monkeypatch.setenv("ASKDOCS_ACCESS__USERS", json.dumps(USERS))
    monkeypatch.setenv("ASKDOCS_ACCESS__COLLECTIONS", json.dumps(RESTRICTED))
    if token is None:
        monkeypatch.delenv("ASKDOCS_TOKEN", raising=False)
    else:
        monkeypatch.setenv("ASKDOCS_TOKEN", token)


@pytest.mark.parametrize("command", ["search", "evaluation"])
def test_command_line_tools_enforce_access_with_a_one_line_error_and_sign_in_by_token(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    from evaluation import cli as evaluation_cli
    from ingestion import search

    questions = data_dir.parent / "q.jsonl"
    questions.write_text(json.dumps({"question": "salaries rule 3", "gold_sources": ["salaries.md"]}) + "\n")

    def run(*extra: str) -> int:
        common = ["--collection", "hrdocs", "--data-dir", str(data_dir), *extra]
        if command == "search":
            return search.main(["salaries rule 3", "--json", *common])
        return evaluation_cli.main([str(questions), "--modes", "bm25", *common])

    for user, token in [(None, None), ("bob", USERS["bob"]), ("alice", "wrong")]:
        restricted_env(monkeypatch, data_dir, token)
        assert run(*(["--user", user] if user else [])) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and error.startswith("error: ") and "Traceback" not in error
    restricted_env(monkeypatch, data_dir, USERS["alice"])
    assert run("--user", "alice") == 0
    assert ("salaries.md" if command == "search" else "| bm25 | 1.000 |") in capsys.readouterr().out


def test_a_user_with_an_empty_token_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="empty token for user\\(s\\) bob"):
        Settings(data_dir=tmp_path, access={"users": {"alice": "x", "bob": " "}})  # type: ignore[arg-type]
