"""👍/👎 on the chat's answers, kept as JSONL in the data dir: one object per rating, appended.

`python -m finetune.rag_data --from-feedback` and the evaluation's regression set read this file,
so the keys of a record are fixed (RECORD_KEYS). Nothing is sent anywhere.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FEEDBACK_FILE = Path("feedback/feedback.jsonl")  # relative to settings.data_dir
RECORD_KEYS = (
    "time",
    "collection",
    "adapter",
    "question",
    "query",
    "history",
    "sources",
    "raw_answer",
    "answer",
    "refused",
    "rating",
    "correction",
)
RATINGS = ("down", "up")  # st.feedback("thumbs") returns 0 for 👎 and 1 for 👍


def feedback_record(
    *,
    collection: str,
    adapter: str,
    history: list[tuple[str, str]],
    checked: Any,
    rating: str,
    correction: str | None = None,
) -> dict[str, Any]:
    """One rating of one answer (`checked`, a CheckedAnswer) with what the model saw and said."""
    if rating not in RATINGS:
        raise ValueError(f"rating must be one of {RATINGS}, not {rating!r}")
    return {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "collection": collection,
        "adapter": adapter,
        "question": checked.question,
        "query": checked.query,
        "history": [[question, answer] for question, answer in history],
        "sources": list(checked.sources),
        "raw_answer": checked.raw_answer,
        "answer": checked.answer,
        "refused": checked.refused,
        "rating": rating,
        "correction": (correction or "").strip() or None,
    }


def save_feedback(data_dir: Path, record: dict[str, Any]) -> Path:
    """Append `record` as one line of <data_dir>/feedback/feedback.jsonl; returns the file's path."""
    if tuple(record) != RECORD_KEYS:
        raise ValueError(f"a feedback record has exactly the keys {RECORD_KEYS}, got {tuple(record)}")
    path = data_dir / FEEDBACK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False, default=plain) + "\n").encode("utf-8")
    # One write() on an O_APPEND descriptor: two sessions saving at once never interleave their lines.
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)
    return path


def plain(value: Any) -> Any:
    """JSON for what json cannot write: numpy scalars (retrieval scores) as numbers, the rest as text."""
    return value.item() if hasattr(value, "item") else str(value)
