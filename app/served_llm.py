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

from langchain_core.outputs import ChatGenerationChunk
from langchain_openai import ChatOpenAI

from app.models import ModelError

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
