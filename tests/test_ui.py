"""The Streamlit chat through AppTest, with the real models over data/sample_docs: ask, get a
checked answer with sources; switch adapter; upload a file into the collection."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
UI = str(ROOT / "app" / "ui.py")


@pytest.fixture
def app(chat_data_dir: Path, tiny_adapter: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("ASKDOCS_DATA_DIR", str(chat_data_dir))
    monkeypatch.setenv("ASKDOCS_CHAT__MAX_NEW_TOKENS", "48")
    at = AppTest.from_file(UI, default_timeout=300)
    return at.run()


def test_question_gets_an_answer_with_sources(app: AppTest) -> None:
    app.sidebar.selectbox[1].select("none (base model)").run()
    app.chat_input[0].set_value("How do I reset my VPN password?").run()
    assert not app.exception
    texts = [m.value for m in app.markdown]
    assert "How do I reset my VPN password?" in " ".join(t.replace("\\", "") for t in texts)
    sources = [e for e in app.expander if e.label.startswith("Sources")]
    assert sources and sources[0].label != "Sources (0)"
    assert any("vpn" in t.value.lower() for t in app.text)


def test_search_mode_and_source_filter_narrow_the_passages(app: AppTest) -> None:
    app.sidebar.selectbox[1].select("none (base model)")
    app.sidebar.selectbox[2].select("bm25")
    app.sidebar.text_input[0].input("hr/*").run()
    app.chat_input[0].set_value("How do I reset my VPN password?").run()
    assert not app.exception
    listed = [m.value.replace("\\", "") for m in app.markdown if m.value.startswith("**\\[")]
    assert listed and all(" hr/" in line for line in listed)  # the VPN runbook is outside hr/


def test_adapter_can_be_switched(app: AppTest, tiny_adapter: Path) -> None:
    adapter = app.sidebar.selectbox[1]
    assert adapter.options[0] == tiny_adapter.name  # newest completed adapter is the default
    adapter.select("none (base model)").run()
    assert not app.exception
    assert "Adapter: none" in app.sidebar.caption[0].value


def test_upload_is_ingested_into_the_collection(app: AppTest, chat_data_dir: Path) -> None:
    from app.settings import Settings
    from app.store import client, source_root

    settings = Settings(data_dir=chat_data_dir)
    before = client(settings).get_collection("docs").count()
    app.sidebar.file_uploader[0].upload(  # type: ignore[attr-defined]
        "canteen.md", b"# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00 on weekdays.\n", "text/markdown"
    ).run()
    app.sidebar.button[1].click().run()
    assert not app.exception
    root = source_root(settings, "docs")
    assert root is not None and (root / "uploads" / "canteen.md").is_file()
    assert client(settings).get_collection("docs").count() > before
