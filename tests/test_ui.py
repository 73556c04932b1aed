"""The Streamlit chat through AppTest, with the real models over data/sample_docs: ask, get a
checked answer with sources; switch adapter; upload a file into the collection; several turns
replayed cleanly; 👍/👎 saved; the first screen of an empty store."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from app.ui_turns import STOPPED
from core.feedback import FEEDBACK_FILE
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
    from core.settings import Settings
    from core.store import client, source_root

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


def page_nodes(node: Any) -> Iterator[Any]:
    """Every element and block on the page (AppTest's tree), depth first."""
    yield node
    for child in getattr(node, "children", {}).values():
        yield from page_nodes(child)


def page_junk(app: AppTest) -> list[str]:
    """What a broken page shows: help tables, JSON dumps, exceptions, stray "None" / "DeltaGenerator"."""
    junk = []
    for node in page_nodes(app._tree):
        if node.type in ("help", "help_info", "json", "exception"):  # help_info: st.help's element
            junk.append(f"a {node.type} element")
        text = node.value if isinstance(getattr(node, "value", None), str) else getattr(node, "label", "") or ""
        if re.search(r"\bNone\b|DeltaGenerator", text):
            junk.append(text[:80])
    return junk


def test_two_turns_replay_as_they_were_said(app: AppTest) -> None:
    app.sidebar.selectbox[1].select("none (base model)").run()
    app.chat_input[0].set_value("How do I reset my VPN password?").run()
    app.chat_input[0].set_value("And who do I call if that fails?").run()
    app.run()  # one more run: now both turns come from the history
    assert not app.exception
    assert page_junk(app) == []
    messages: Sequence[Any] = app.get("chat_message")
    assert [m.name for m in messages] == ["user", "assistant", "user", "assistant"]
    for message in messages[1::2]:  # every answer keeps its sources, details and time
        labels = [e.label for e in message.expander]
        assert labels[0].startswith("Sources (") and labels[0] != "Sources (0)" and labels[1] == "Details"
        assert any(c.value.endswith(" s") for c in message.caption)
    assert "reset" in messages[0].markdown[0].value and "fails" in messages[2].markdown[0].value


def test_page_junk_sees_what_magic_writes() -> None:
    script = "import streamlit as st\nst.markdown('hi') if True else None\nNone\n"
    broken = AppTest.from_string(script).run()  # magic is on in AppTest: both lines write something
    assert page_junk(broken)[0] == "a help_info element"
    assert page_junk(broken)[1].startswith("DeltaGenerator") and page_junk(broken)[2] == "`None`"


def test_each_answer_takes_a_thumb_and_a_correction(app: AppTest, chat_data_dir: Path) -> None:
    feedback = chat_data_dir / FEEDBACK_FILE
    feedback.unlink(missing_ok=True)
    app.sidebar.selectbox[1].select("none (base model)").run()
    app.chat_input[0].set_value("How do I reset my VPN password?").run()
    app.feedback[0].set_value(1).run()  # 👍: saved at once
    app.chat_input[0].set_value("How many vacation days do I get?").run()
    app.feedback[1].set_value(0).run()  # 👎: asks for a correction first
    assert len(feedback.read_text().splitlines()) == 1
    app.text_area[0].input("30 days a year.")
    next(b for b in app.button if b.label == "Save").click().run()
    assert not app.exception
    up, down = (json.loads(line) for line in feedback.read_text().splitlines())
    assert (up["rating"], up["correction"], up["history"]) == ("up", None, [])
    assert (
        up["question"] == "How do I reset my VPN password?" and up["adapter"] == "none" and up["collection"] == "docs"
    )
    assert (down["rating"], down["correction"]) == ("down", "30 days a year.")
    assert down["history"] == [[up["question"], up["answer"]]]
    assert [c.value for c in app.caption if c.value.startswith("Feedback saved")] == [
        "Feedback saved: :material/thumb_up:",
        "Feedback saved: :material/thumb_down:",
    ]


def test_an_interrupted_question_stays_on_the_page_with_a_note(app: AppTest) -> None:
    app.session_state["pending"] = "How do I reset my VPN password?"  # what a Stop mid-answer leaves behind
    app.run()
    messages: Sequence[Any] = app.get("chat_message")
    assert [m.name for m in messages] == ["user", "assistant"]
    assert "VPN" in messages[0].markdown[0].value
    assert messages[1].caption[0].value == STOPPED
    app.run()
    assert len(app.get("chat_message")) == 2  # noted once


def test_the_first_screen_without_documents_says_how_to_add_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASKDOCS_DATA_DIR", str(tmp_path / "data"))
    app = AppTest.from_file(UI, default_timeout=300).run()
    assert not app.exception
    assert app.title[0].value == "Ask your documents"
    assert "Add documents in the sidebar or run `python -m ingestion DIR`" in app.info[0].value
    app.sidebar.file_uploader[0].upload(  # type: ignore[attr-defined]
        "canteen.md", b"# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00 on weekdays.\n", "text/markdown"
    ).run()
    app.sidebar.button[0].click().run()  # "Ingest into docs": the first collection, in the data dir
    assert not app.exception
    assert (tmp_path / "data" / "documents" / "docs" / "uploads" / "canteen.md").is_file()
    app.button[-1].click().run()  # "Start asking"
    assert not app.info and app.chat_input


def test_an_answer_stopped_half_way_frees_the_model_for_the_next_question(chat_data_dir: Path) -> None:
    from app.ui_turns import sync_stream
    from core.chain import chain_from_settings, stream_answer
    from core.settings import Settings

    chain = chain_from_settings(Settings(data_dir=chat_data_dir), adapter="none", max_new_tokens=200)
    long_answer = {"question": "Describe the KD-400 sensor and every one of its features in detail.", "history": []}
    items = sync_stream(stream_answer(chain, long_answer))
    first = [next(items) for _ in range(3)]
    assert all(isinstance(item, str) for item in first)  # still writing
    items.close()  # what Stop (a rerun mid-answer) does to the stream
    answers: list[Any] = []
    question = {"question": "How do I reset my VPN password?", "history": []}
    thread = threading.Thread(target=lambda: answers.append(chain.invoke(question)), daemon=True)
    thread.start()
    thread.join(timeout=180)  # a stream left open would hold the model's lock for ever
    assert answers, "the next question waited for the stopped one"


def test_an_upload_while_another_ingestion_writes_says_so(app: AppTest, chat_data_dir: Path) -> None:
    from filelock import FileLock

    app.sidebar.file_uploader[0].upload(  # type: ignore[attr-defined]
        "parking.md", b"# Parking\n\nVisitors park on level -1 of the garage.\n", "text/markdown"
    ).run()
    with FileLock(str(chat_data_dir / "chroma" / "ingest.lock")):  # as `python -m ingestion` holds it
        app.sidebar.button[1].click().run()
    assert not app.exception
    labels = [status.label for status in app.sidebar.status]
    assert any(label.startswith("Not ingested: another ingestion is writing") for label in labels), labels
