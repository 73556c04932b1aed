"""One turn of the chat on screen: the answer streamed under a status line and a Stop button, then
the checked answer with its sources, the time it took and 👍/👎 (core/feedback.py).

No expression statements here or in app/ui.py: Streamlit's magic would write their values to the
page (a help table for a widget, "None" for a function's result). The app's config turns magic
off as well (app/.streamlit/config.toml, and the flags `python -m app` passes).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Generator, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import streamlit as st

MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>:$~=^])")
STOPPED = "Stopped before the answer was finished."


def escape(text: str) -> str:
    """Markdown-inert text: every character markdown or Streamlit could interpret is escaped."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", text)


def where(source: dict[str, Any]) -> str:
    return " · ".join(str(source[k]) for k in ("source", "section", "page") if k in source)


def show_answer(checked: Any) -> None:
    """The checked answer, sentence by sentence, unsupported ones marked; then sources and details."""
    if checked.refused:
        st.markdown(escape(checked.answer))
        st.caption(escape(checked.reason))
        if checked.sources:  # visible without opening anything: where the user could look instead
            st.caption("Closest passages: " + "; ".join(escape(where(s)) for s in checked.sources))
    else:
        st.markdown(
            " ".join(escape(s.text) + (f" \\[{s.source}\\]" if s.supported else " ⚠️") for s in checked.sentences)
        )
        if checked.unsupported:
            st.caption("⚠️ not supported by the retrieved passages; check before relying on it.")
    with st.expander(f"Sources ({len(checked.sources)})"):
        for source in checked.sources:
            st.markdown(f"**\\[{source['n']}\\]** {escape(where(source))} — score {source.get('score', 0):.2f}")
            st.text(source["snippet"][:600])
    with st.expander("Details"):
        st.text(f"search query: {checked.query}")
        st.text(f"model's answer before the check: {checked.raw_answer}")
        if checked.removed_citations:
            st.text(f"removed citations to passages that were not shown: {checked.removed_citations}")


def show_turn(message: dict[str, Any], key: int, data_dir: Path) -> None:
    """An assistant message as it was first shown, with its time and feedback buttons."""
    if message.get("stopped"):
        st.caption(STOPPED)
        return
    show_answer(message["checked"])
    st.caption(f":material/timer: {message['seconds']:.1f} s")
    show_feedback(message, key, data_dir)


def show_history(messages: list[dict[str, Any]], data_dir: Path) -> None:
    for key, message in enumerate(messages):
        with st.chat_message(message["role"]):
            if message["role"] == "user":
                st.markdown(escape(message["content"]))
            else:
                show_turn(message, key, data_dir)


def past_turns(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(question, answer) of the answered turns: the history a follow-up is read against."""
    return [(m["question"], m["checked"].answer) for m in messages if m["role"] == "assistant" and "checked" in m]


def keep_stopped_question(messages: list[dict[str, Any]]) -> None:
    """A question whose answer was interrupted (Stop, or a click elsewhere mid-answer) stays on the page."""
    question = st.session_state.pop("pending", None)
    if question is not None:
        messages += [
            {"role": "user", "content": question},
            {"role": "assistant", "question": question, "stopped": True, "content": STOPPED},
        ]


def answer_question(
    chain: Any, question: str, messages: list[dict[str, Any]], choice: dict[str, Any], data_dir: Path
) -> None:
    """Show the question, stream and check its answer, and add both to the history."""
    with st.chat_message("user"):
        st.markdown(escape(question))
    history = past_turns(messages)
    st.session_state.pending = question  # until the answer is in: see keep_stopped_question
    with st.chat_message("assistant"):
        checked, seconds = ask(chain, question, history)
        message = {
            "role": "assistant",
            "question": question,
            "checked": checked,
            "content": checked.answer,
            "seconds": seconds,
            "history": history,
            "collection": choice["collection"],
            "adapter": choice["adapter"],
        }
        messages += [{"role": "user", "content": question}, message]
        del st.session_state.pending
        show_turn(message, len(messages) - 1, data_dir)


def ask(chain: Any, question: str, history: list[tuple[str, str]]) -> tuple[Any, float]:
    """Stream the answer's tokens under a status line and a Stop button; returns the checked answer
    and the seconds it took. The streamed text is then replaced by the checked answer."""
    from core.chain import stream_answer

    started = time.monotonic()
    result: list[Any] = []
    placeholder = st.empty()
    with placeholder.container():
        status = st.status("Searching the documents …")
        # Any click reruns the script, which stops this one mid-answer (Streamlit's fast reruns).
        st.button("Stop", key="stop", icon=":material/stop_circle:", help="Stop this answer")
        with closing(sync_stream(stream_answer(chain, {"question": question, "history": history}))) as items:
            st.write_stream(tokens(items, status, result))
    placeholder.empty()
    return result[0], time.monotonic() - started


def tokens(items: Iterator[Any], status: Any, result: list[Any]) -> Iterator[str]:
    """The answer's text for st.write_stream; the checked answer at the end goes into `result`."""
    writing = False
    for item in items:
        if not isinstance(item, str):
            result.append(item)
        else:
            if not writing:
                status.update(label="Writing the answer …")
                writing = True
            yield escape(item)


def sync_stream(stream: AsyncIterator[Any]) -> Generator[Any, None, None]:
    """The async stream as a plain generator. Closed early (Stop), it closes the stream too, so the
    model stops generating and frees its lock for the next question (Streamlit's own conversion
    leaves the stream open)."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(anext(stream))  # type: ignore[arg-type]
            except StopAsyncIteration:
                return
    finally:
        try:
            finish(loop, stream)
        finally:
            loop.close()


def finish(loop: asyncio.AbstractEventLoop, stream: AsyncIterator[Any]) -> None:
    """Close a stream that may have stopped half-way, and everything it started on `loop`."""
    loop.run_until_complete(stream.aclose())  # type: ignore[attr-defined]
    # aclose() leaves what the stream was reading running (LangChain's tasks and event streams, the
    # model's token stream): they stop here, which ends the generation and releases the model's lock.
    if pending := asyncio.all_tasks(loop):
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.run_until_complete(loop.shutdown_default_executor())


def show_feedback(message: dict[str, Any], key: int, data_dir: Path) -> None:
    """👍/👎 under an answer; 👎 asks for an optional correction before it is saved."""
    rating = st.feedback(
        "thumbs", key=f"rating-{key}", on_change=rated, args=(message, key, data_dir), disabled="saved" in message
    )
    if "saved" in message:
        st.caption(f"Feedback saved: :material/thumb_{message['saved']}:")
    elif rating == 0:
        with st.form(f"correction-{key}", border=False):
            st.text_area("What should the answer have been? (optional)", key=f"correction-{key}-text")
            st.form_submit_button(
                "Save", icon=":material/thumb_down:", on_click=corrected, args=(message, key, data_dir)
            )


def rated(message: dict[str, Any], key: int, data_dir: Path) -> None:
    if st.session_state[f"rating-{key}"] == 1:  # 👎 waits for its correction form
        save(message, "up", None, data_dir)


def corrected(message: dict[str, Any], key: int, data_dir: Path) -> None:
    save(message, "down", st.session_state[f"correction-{key}-text"], data_dir)


def save(message: dict[str, Any], rating: str, correction: str | None, data_dir: Path) -> None:
    from core.feedback import feedback_record, save_feedback

    record = feedback_record(
        collection=message["collection"],
        adapter=message["adapter"],
        history=message["history"],
        checked=message["checked"],
        rating=rating,
        correction=correction,
    )
    save_feedback(data_dir, record)
    message["saved"] = rating
