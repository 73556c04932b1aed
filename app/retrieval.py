"""The retriever: top-k chunks from the Chroma collection ingestion built, each with its score."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from app.settings import Settings


class StoreRetriever(BaseRetriever):
    """Dense search; the cosine similarity goes into each document's metadata as `score`."""

    store: Any  # langchain_chroma.Chroma
    k: int = 4

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        hits = self.store.similarity_search_with_relevance_scores(query, k=self.k)
        return [
            Document(page_content=doc.page_content, metadata={**doc.metadata, "score": round(score, 4)}, id=doc.id)
            for doc, score in hits
        ]


def retriever(settings: Settings, collection: str | None = None, k: int | None = None) -> StoreRetriever:
    from app.store import vectorstore

    return StoreRetriever(store=vectorstore(settings, collection), k=k or settings.chat.top_k)
