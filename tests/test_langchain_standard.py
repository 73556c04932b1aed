"""LangChain's own standard test suites (langchain-tests) against our chat model and retriever: the
contracts the ecosystem expects of an integration (issue 33). Features a 135M model doesn't have
(tool calling, structured output, images, usage metadata) are declared off, so those tests skip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests, RetrieversIntegrationTests

from core.llm import LocalChatModel, shared_model
from core.retrieval import retriever
from core.settings import Settings

pytestmark = pytest.mark.slow
DATA: dict[str, Path] = {}  # the session's data dirs, for the suites' constructor properties


@pytest.fixture(autouse=True, scope="module")
def data_dirs(chat_data_dir: Path) -> None:
    DATA["chat"] = chat_data_dir


def sample_retriever(k: int = 4, **_: Any) -> Any:
    """The retriever the chain uses, over the ingested sample documents."""
    return retriever(Settings(data_dir=DATA["chat"], embedding_precision="fp32"), k=k)


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> Any:
        return sample_retriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {}

    @property
    def retriever_query_example(self) -> str:
        return "How many vacation days do employees get?"


class TestLocalChatModelStandard(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[LocalChatModel]:
        return LocalChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        settings = Settings(data_dir=DATA["chat"], llm_precision="fp32")
        return {"loaded": shared_model(settings), "max_new_tokens": 24}

    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    @property
    def returns_usage_metadata(self) -> bool:
        return False
