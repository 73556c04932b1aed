"""The Streamlit chat: `python -m app` (or `make chat`) starts it on 127.0.0.1.

Document text and model output are shown as text only: markdown is escaped (no remote images,
links or Streamlit directives from a document) and no HTML is ever allowed through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from app.ui_turns import answer_question, escape, keep_stopped_question, show_history
from core.settings import SEARCH_MODES, Settings, load_settings

NO_ADAPTER_LABEL = "none (base model)"
SEARCH_HELP = "hybrid: meaning and exact words fused; dense: meaning only; bm25: exact words only."
NO_DOCUMENTS = "No documents yet. Add documents in the sidebar or run `python -m ingestion DIR`."
FIRST_SCREEN = (
    "Ask a question below. Answers come only from the documents of the collection chosen in the sidebar, "
    "with the passages they rest on. :material/thumb_up: / :material/thumb_down: under an answer is saved on this "
    "machine to improve the next adapter."
)


@st.cache_resource(show_spinner="Loading the model and the collection ...")
def cached_chain(
    collection: str,
    adapter: str,
    top_k: int,
    temperature: float,
    max_new_tokens: int,
    search: str,
    source_glob: str,
    user: str | None,
) -> Any:
    """One chain per configuration; all of them share one copy of the model weights. `user` is the
    signed-in user: the retriever refuses restricted collections to anyone else."""
    from core.chain import chain_from_settings

    settings = load_settings(collection=collection)
    settings = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"mode": search})})
    return chain_from_settings(
        settings,
        adapter=adapter,
        filters={"source_glob": source_glob or None},
        user=user,
        top_k=top_k,
        temperature=temperature,
        max_new_tokens=max_new_tokens,
    )


def adapter_choices(settings: Settings) -> list[str]:
    """Completed local adapters, or the models an OpenAI-compatible server serves (its LoRA modules)."""
    from core.adapter import list_adapters
    from core.served_llm import served_models

    if settings.llm_backend == "openai-compatible":
        return served_models(settings)
    return [row["name"] for row in list_adapters(settings.adapters_dir) if row.get("completed")] + [NO_ADAPTER_LABEL]


def sidebar(settings: Settings) -> dict[str, Any]:
    from core.access import readable
    from core.llm import NO_ADAPTER
    from core.store import collection_names

    st.sidebar.title("askdocs")
    user = signed_in_user(settings)
    collections = collection_names(settings)
    if not collections:
        first_documents(settings)
    collections = readable(settings, collections, user)
    if not collections:
        st.info("Every collection here is restricted: sign in (sidebar) to see yours.")
        st.stop()
    default = collections.index(settings.collection) if settings.collection in collections else 0
    adapters = adapter_choices(settings)
    choice: dict[str, Any] = {
        "collection": st.sidebar.selectbox("Collection", collections, index=default),
        "adapter": st.sidebar.selectbox("Adapter", adapters, help="Newest completed adapter first."),
        "top_k": st.sidebar.slider("Passages retrieved (top-k)", 1, 10, settings.chat.top_k),
        "search": st.sidebar.selectbox(
            "Search", SEARCH_MODES, index=SEARCH_MODES.index(settings.retrieval.mode), help=SEARCH_HELP
        ),
        "source_glob": st.sidebar.text_input("Only sources matching", placeholder="e.g. hr/* or *.pdf").strip(),
        "temperature": st.sidebar.slider("Temperature", 0.0, 1.5, settings.chat.temperature, 0.1),
        "max_new_tokens": st.sidebar.slider("Max new tokens", 32, 512, settings.chat.max_new_tokens, 32),
        "user": user,
    }
    if choice["adapter"] == NO_ADAPTER_LABEL:
        choice["adapter"] = NO_ADAPTER
    if st.sidebar.button("New chat", icon=":material/add_comment:"):
        st.session_state.messages = []
    st.sidebar.caption(model_caption(settings, choice["adapter"]))
    upload_form(settings, choice["collection"])
    return choice


def signed_in_user(settings: Settings) -> str | None:
    """Only when some collection is restricted (settings.access): who is asking, checked by token."""
    from core.access import sign_in

    if not settings.access.collections:
        return None
    with st.sidebar.expander("Sign in", expanded=False):
        name = st.text_input("User", key="user").strip()
        token = st.text_input("Token", type="password", key="token")
    user = sign_in(settings, name, token)
    if name and token and user is None:
        st.sidebar.error("Unknown user or wrong token.")
    elif user:
        st.sidebar.caption(f"Signed in as {escape(user)}")
    return user


def model_caption(settings: Settings, adapter: str) -> str:
    from core.llm import llm_precision

    if settings.llm_backend == "openai-compatible":
        return f"Model server: {escape(settings.llm_server.url)}  \nModel: {escape(adapter)}"
    return f"Base model: {escape(settings.llm_base)} ({llm_precision(settings)})  \nAdapter: {escape(adapter)}"


def first_documents(settings: Settings) -> None:
    """The first screen of an empty store: how to add documents, then a way into the chat."""
    from core.store import collection_names

    st.info(NO_DOCUMENTS)
    upload_form(settings, settings.collection, expanded=True)
    if collection_names(settings):
        st.button("Start asking", type="primary", icon=":material/chat:")  # its click reruns into the chat
    st.stop()


def upload_form(settings: Settings, collection: str, expanded: bool = False) -> None:
    from app.uploads import allowed_types

    with st.sidebar.expander("Add documents", expanded=expanded):
        files = st.file_uploader(
            "Documents", type=allowed_types(), accept_multiple_files=True, key=f"upload-{collection}"
        )
        if files and st.button("Ingest into " + collection):
            ingest_uploads(settings, collection, files)


def upload_root(settings: Settings, collection: str) -> Path | None:
    """The folder uploads are saved in: the collection's own, or for a first collection one in the data dir."""
    from core.store import has_collection, source_root

    if not has_collection(settings, collection):
        return settings.data_dir / "documents" / collection
    root = source_root(settings, collection)
    return root if root is not None and root.is_dir() else None


def ingest_uploads(settings: Settings, collection: str, files: list[Any]) -> None:
    from app.uploads import UploadError, save_upload
    from core.store import StoreError
    from ingestion.pipeline import ingest

    root = upload_root(settings, collection)
    if root is None:
        st.error(f"The folder of '{collection}' is unknown here: run `python -m ingestion FOLDER` once.")
        return
    limit = int(settings.max_file_mb * 2**20)  # MB as ingestion counts them
    with st.status(f"Ingesting {len(files)} file(s) ...", expanded=True) as status:
        for upload in files:
            try:
                save_upload(upload.name, upload.getvalue(), root, limit)
                st.text(f"saved {upload.name}")
            except UploadError as exc:
                st.text(f"refused: {exc}")
        try:
            report = ingest(root, load_settings(collection=collection))
        except StoreError as exc:  # e.g. another ingestion is writing to the store: the files wait in the folder
            status.update(label=f"Not ingested: {exc}", state="error")
            return
        counts = {k: v for k, v in report.counts().items() if v}
        st.text(", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {report.chunks_total} chunks in total")
        for result in report.failed:
            st.text(f"failed: {result.source}: {result.detail}")
        status.update(label=f"Ingested into {collection}", state="error" if report.failed else "complete")
    cached_chain.clear()  # the retriever must see the new chunks


def main() -> None:
    st.set_page_config(page_title="askdocs", page_icon=":material/description:")
    st.title("Ask your documents")
    settings = load_settings()
    choice = sidebar(settings)
    from core.access import AccessError
    from core.adapter import AdapterError
    from core.models import ModelError
    from core.store import StoreError

    try:
        chain = cached_chain(**choice)
    except (AccessError, AdapterError, ModelError, StoreError) as exc:  # e.g. an adapter trained on another base
        st.error(str(exc))
        st.stop()
    messages = st.session_state.setdefault("messages", [])
    keep_stopped_question(messages)
    if not messages:
        st.caption(FIRST_SCREEN)
    show_history(messages, settings.data_dir)
    if question := st.chat_input("Ask about your documents"):
        answer_question(chain, question, messages, choice, settings.data_dir)


main()
