"""`llm_backend = openai-compatible`: the chain sends its prompt to a real OpenAI-compatible server —
llama-cpp-python's server on the bundled SmolLM2 GGUF, started on loopback — and streams, cites and
checks the same way as with the local model."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.chain import chain_from_settings, stream_answer
from core.check import REFUSAL, CheckedAnswer
from core.models import ModelError, smollm2_gguf
from core.served_llm import served_models
from core.settings import LlmServerSettings, Settings
from tests.conftest import free_port, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.enable_socket, pytest.mark.allow_hosts(["127.0.0.1"])]
MAX_NEW_TOKENS = 48


@pytest.fixture(scope="module")
def llm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmServerSettings]:
    port = free_port()
    log = (tmp_path_factory.mktemp("llama-server") / "server.log").open("w")
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf()), "--model_alias", "smollm2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(os.cpu_count())]
    server = subprocess.Popen(command, stdout=log, stderr=log)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/v1/models", server, seconds=120)
        yield LlmServerSettings(url=f"http://127.0.0.1:{port}/v1")
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def served(chat_data_dir: Path, llm_server: LlmServerSettings) -> Settings:
    return Settings(data_dir=chat_data_dir, llm_backend="openai-compatible", llm_server=llm_server)


@pytest.fixture(scope="module")
def chain(served: Settings) -> Any:
    return chain_from_settings(served, max_new_tokens=MAX_NEW_TOKENS)


def test_the_server_lists_its_model(served: Settings) -> None:
    assert served_models(served) == ["smollm2"]


def test_answer_streams_from_the_server_and_is_checked(chain: Any) -> None:
    async def collect() -> list[Any]:
        inputs = {"question": "How do I reset my VPN password?", "history": []}
        return [item async for item in stream_answer(chain, inputs)]

    asyncio.run(collect())  # each chat question streams in an event loop of its own, as in Streamlit
    items = asyncio.run(collect())
    tokens = [i for i in items if isinstance(i, str) and i]
    checked = items[-1]
    assert 1 < len(tokens) <= MAX_NEW_TOKENS  # a chunk per token, and the limit holds
    assert isinstance(checked, CheckedAnswer)
    assert checked.raw_answer == "".join(tokens).strip()
    assert checked.sources and checked.sources[0]["source"] == "it/runbooks/password_reset.txt"


def test_the_server_gets_the_local_models_repetition_penalty(served: Settings) -> None:
    """llama.cpp's repeat_penalty covers the answer, as the local model's does; vLLM's repetition_penalty
    would also cover the prompt (the passages an answer must copy), so it is not sent."""
    from core.llm import REPETITION_PENALTY, chat_model

    body = chat_model(served).extra_body  # type: ignore[attr-defined]
    assert body["repeat_penalty"] == REPETITION_PENALTY
    assert "repetition_penalty" not in body


def test_question_the_documents_cannot_answer_is_refused(chain: Any) -> None:
    result = chain.invoke({"question": "What is the capital of Mars?", "history": []})
    assert result.refused and result.answer == REFUSAL


def test_an_adapter_the_server_does_not_serve_is_one_clear_line(served: Settings) -> None:
    with pytest.raises(ModelError, match=r"does not serve 'hr-lora'; it serves \['smollm2'\]"):
        chain_from_settings(served, adapter="hr-lora")


def test_an_answer_the_server_drops_midway_is_an_error_not_an_empty_answer(served: Settings) -> None:
    """llama.cpp's server (default --interrupt_requests True) ends a running stream when another
    request comes in; an empty or cut answer must not pass for the model's (nor become a refusal)."""
    from core.llm import chat_model

    model = chat_model(served, chat=served.chat.model_copy(update={"max_new_tokens": 200}))
    failure: list[BaseException] = []

    def long_answer() -> None:
        try:
            "".join(str(chunk.content) for chunk in model.stream("Tell a long story about a cat. " * 30))
        except ModelError as error:
            failure.append(error)

    first = threading.Thread(target=long_answer)
    first.start()
    time.sleep(2)
    model.invoke("Name a colour.")  # the server drops the first stream for this one
    first.join()
    assert failure and "ended the answer without finishing it" in str(failure[0])


def test_unreachable_server_is_one_clear_line(served: Settings) -> None:
    down = served.model_copy(update={"llm_server": LlmServerSettings(url=f"http://127.0.0.1:{free_port()}/v1")})
    with pytest.raises(ModelError, match=r"cannot reach the LLM server at http://127\.0\.0\.1:\d+/v1") as error:
        served_models(down)
    assert "\n" not in str(error.value)


def test_chat_ui_answers_through_the_server(
    served: Settings, llm_server: LlmServerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("ASKDOCS_DATA_DIR", str(served.data_dir))
    monkeypatch.setenv("ASKDOCS_LLM_BACKEND", "openai-compatible")
    monkeypatch.setenv("ASKDOCS_LLM_SERVER__URL", llm_server.url)
    monkeypatch.setenv("ASKDOCS_CHAT__MAX_NEW_TOKENS", "32")
    app = AppTest.from_file(str(ROOT / "app" / "ui.py"), default_timeout=300).run()
    assert app.sidebar.selectbox[1].options == ["smollm2"]  # the server's models are the adapter choices
    assert f"Model server: {llm_server.url}" in app.sidebar.caption[0].value.replace("\\", "")
    app.chat_input[0].set_value("How do I reset my VPN password?").run()
    assert not app.exception
    sources = [e for e in app.expander if e.label.startswith("Sources")]
    assert sources and sources[0].label != "Sources (0)"
