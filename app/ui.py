"""The Streamlit chat: `python -m app` (or `make chat`) starts it on 127.0.0.1.

Document text and model output are shown as text only: markdown is escaped (no remote images,
links or Streamlit directives from a document) and no HTML is ever allowed through.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from app.settings import SEARCH_MODES, Settings, load_settings

NO_ADAPTER_LABEL = "none (base model)"
SEARCH_HELP = "hybrid: meaning and exact words fused; dense: meaning only; bm25: exact words only."
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:$~=^])")


def escape(text: str) -> str:
    """Markdown-inert text: every character markdown or Streamlit could interpret is escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


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
    from app.chain import chain_from_settings

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
    from app.llm import served_models
    from finetune.adapter import list_adapters

    if settings.llm_backend == "openai-compatible":
        return served_models(settings)
    return [row["name"] for row in list_adapters(settings.adapters_dir) if row.get("completed")] + [NO_ADAPTER_LABEL]


def sidebar(settings: Settings) -> dict[str, Any]:
    from app.access import readable
    from app.llm import NO_ADAPTER
    from app.store import collection_names

    st.sidebar.title("askdocs")
    user = signed_in_user(settings)
    collections = collection_names(settings)
    if not collections:
        st.error("No documents yet: run `python -m ingestion YOUR_FOLDER` (or `make demo`) first.")
        st.stop()
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
    from app.access import sign_in

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
    from app.llm import llm_precision

    if settings.llm_backend == "openai-compatible":
        return f"Model server: {escape(settings.llm_server.url)}  \nModel: {escape(adapter)}"
    return f"Base model: {escape(settings.llm_base)} ({llm_precision(settings)})  \nAdapter: {escape(adapter)}"


def upload_form(settings: Settings, collection: str) -> None:
    from app.uploads import allowed_types

    with st.sidebar.expander("Add documents"):
        files = st.file_uploader(
            "Documents", type=allowed_types(), accept_multiple_files=True, key=f"upload-{collection}"
        )
        if files and st.button("Ingest into " + collection):
            ingest_uploads(settings, collection, files)


def ingest_uploads(settings: Settings, collection: str, files: list[Any]) -> None:
    from app.store import source_root
    from app.uploads import UploadError, save_upload
    from ingestion.pipeline import ingest

    root = source_root(settings, collection)
    if root is None or not root.is_dir():
        st.error(f"The folder of '{collection}' is unknown here: run `python -m ingestion FOLDER` once.")
        return
    limit = int(settings.max_file_mb * 1e6)
    with st.status(f"Ingesting {len(files)} file(s) ...", expanded=True) as status:
        for upload in files:
            try:
                save_upload(upload.name, upload.getvalue(), root, limit)
                st.text(f"saved {upload.name}")
            except UploadError as exc:
                st.text(f"refused: {exc}")
        report = ingest(root, load_settings(collection=collection))
        counts = {k: v for k, v in report.counts().items() if v}
        st.text(", ".join(f"{k} {v}" for k, v in counts.items()) + f"; {report.chunks_total} chunks in total")
        for result in report.failed:
            st.text(f"failed: {result.source}: {result.detail}")
        status.update(label=f"Ingested into {collection}", state="error" if report.failed else "complete")
    cached_chain.clear()  # the retriever must see the new chunks


def show_answer(checked: Any) -> None:
    """The checked answer, sentence by sentence, unsupported ones marked; then sources and details."""
    if checked.refused:
        st.markdown(escape(checked.answer))
        st.caption(escape(checked.reason))
    else:
        st.markdown(
            " ".join(escape(s.text) + (f" \\[{s.source}\\]" if s.supported else " ⚠️") for s in checked.sentences)
        )
        if checked.unsupported:
            st.caption("⚠️ not supported by the retrieved passages; check before relying on it.")
    with st.expander(f"Sources ({len(checked.sources)})"):
        for source in checked.sources:
            where = " · ".join(str(source[k]) for k in ("source", "section", "page") if k in source)
            st.markdown(f"**\\[{source['n']}\\]** {escape(where)} — score {source.get('score', 0):.2f}")
            st.text(source["snippet"][:600])
    with st.expander("Details"):
        st.text(f"search query: {checked.query}")
        st.text(f"model's answer before the check: {checked.raw_answer}")
        if checked.removed_citations:
            st.text(f"removed citations to passages that were not shown: {checked.removed_citations}")


def ask(chain: Any, question: str, history: list[tuple[str, str]]) -> Any:
    """Stream the answer's tokens, then replace them with the checked answer."""
    from app.chain import stream_answer

    result: list[Any] = []

    async def tokens() -> Any:
        async for item in stream_answer(chain, {"question": question, "history": history}):
            if isinstance(item, str):
                yield escape(item)
            else:
                result.append(item)

    placeholder = st.empty()
    with placeholder.container():
        st.write_stream(tokens())
    placeholder.empty()
    show_answer(result[0])
    return result[0]


def main() -> None:
    st.set_page_config(page_title="askdocs", page_icon=":material/description:")
    settings = load_settings()
    choice = sidebar(settings)
    from app.access import AccessError
    from app.models import ModelError
    from app.store import StoreError
    from finetune.adapter import AdapterError

    try:
        chain = cached_chain(**choice)
    except (AccessError, AdapterError, ModelError, StoreError) as exc:  # e.g. an adapter trained on another base
        st.error(str(exc))
        st.stop()
    messages = st.session_state.setdefault("messages", [])
    for message in messages:
        with st.chat_message(message["role"]):
            st.markdown(escape(message["content"])) if message["role"] == "user" else show_answer(message["checked"])
    if question := st.chat_input("Ask about your documents"):
        with st.chat_message("user"):
            st.markdown(escape(question))
        history = [(m["question"], m["checked"].answer) for m in messages if m["role"] == "assistant"]
        with st.chat_message("assistant"):
            checked = ask(chain, question, history)
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "question": question, "checked": checked, "content": checked.answer},
        ]


main()
