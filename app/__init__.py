"""Shared pieces of the RAG application: settings, models, the vector store (and later the chain and UI)."""
