"""The chat model behind `llm_backend = openai-compatible`: langchain-openai's, streaming, and loud
when the server ends a stream without finishing the answer.

llama.cpp's server (llama-cpp-python, `interrupt_requests` on by default) drops a running answer when
another request arrives: the stream just ends, empty or cut short, with no finish reason.
Passed on silently, that reads as an empty answer, which the check would turn into "I couldn't find
this in the documents" and an evaluation would score as the model's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI
from openai import OpenAI, OpenAIError

from core.llm import NO_ADAPTER, REPETITION_PENALTY
from core.models import ModelError
from core.settings import ChatSettings, Settings

UNFINISHED = (
    "the LLM server ended the answer without finishing it (llama.cpp's server does when another request "
    "arrives, unless started with --interrupt_requests False); ask again"
)


class ServedChatModel(ChatOpenAI):
    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        finished = False
        for chunk in super()._stream(*args, **kwargs):
            finished = finished or is_last(chunk)
            yield chunk
        if not finished:
            raise ModelError(UNFINISHED)

    async def _astream(self, *args: Any, **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        finished = False
        async for chunk in super()._astream(*args, **kwargs):
            finished = finished or is_last(chunk)
            yield chunk
        if not finished:
            raise ModelError(UNFINISHED)


def is_last(chunk: ChatGenerationChunk) -> bool:
    return bool((chunk.generation_info or {}).get("finish_reason"))


def server_chat_model(settings: Settings, adapter: str | None, chat: ChatSettings) -> BaseChatModel:
    """An OpenAI-compatible server's model (langchain-openai); the server applies the chat template."""
    server = settings.llm_server
    return ServedChatModel(
        base_url=server.url,
        api_key=server.api_key,
        model=served_model(settings, adapter),
        temperature=chat.temperature,
        max_tokens=chat.max_new_tokens,
        # ChatOpenAI sends max_tokens as max_completion_tokens, which llama.cpp's server ignores: say both.
        # The penalty has no OpenAI name. llama.cpp's repeat_penalty covers the answer; vLLM's
        # repetition_penalty would cover the prompt too (answer_repetition_penalty), so vLLM gets none.
        extra_body={"max_tokens": chat.max_new_tokens, "repeat_penalty": REPETITION_PENALTY},
        timeout=server.timeout,
        max_retries=1,
        streaming=True,
        # Each chat question streams in an event loop of its own (Streamlit's write_stream, asyncio.run):
        # a kept-alive connection from the previous, closed loop fails with "Event loop is closed".
        http_async_client=httpx.AsyncClient(timeout=server.timeout, limits=httpx.Limits(max_keepalive_connections=0)),
    )


def served_model(settings: Settings, adapter: str | None = None) -> str:
    """The server's model for `adapter`: an adapter is a model name there (vLLM serves each
    --lora-modules NAME as one); none or unset means the base (`llm_server.model`, else the first listed)."""
    name = adapter if adapter is not None else settings.adapter
    models = served_models(settings)
    if name in (None, NO_ADAPTER):
        name = settings.llm_server.model or models[0]
    if name not in models:
        raise ModelError(f"the LLM server at {settings.llm_server.url} does not serve {name!r}; it serves {models}")
    return name


def served_models(settings: Settings) -> list[str]:
    """The model names an OpenAI-compatible server offers (GET /models)."""
    server = settings.llm_server
    client = OpenAI(base_url=server.url, api_key=server.api_key.get_secret_value(), timeout=10, max_retries=0)
    try:
        models = [model.id for model in client.models.list()]
    except OpenAIError as error:
        raise ModelError(
            f"cannot reach the LLM server at {server.url} ({type(error).__name__}): start it "
            "(README, 'Scaling out') or set ASKDOCS_LLM_BACKEND=local"
        ) from None
    if not models:
        raise ModelError(f"the LLM server at {server.url} serves no model")
    return models
