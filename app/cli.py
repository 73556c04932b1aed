"""What every command-line entry point shares: one-line errors and quiet libraries."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.settings import Settings

EXIT_ERROR = 2


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_ERROR


def one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200] or "no details"


def quiet_libraries() -> None:
    """Silence what is noise for our commands: the tokenizer's length warning (the chunker measures
    long texts on purpose), weight-loading bars, and bitsandbytes' note about optional GPU kernels."""
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


def ingested_settings(collection: str | None, data_dir: Path | None) -> Settings | int:
    """Settings for a command that reads an ingested collection, or the exit code of a one-line error."""
    from pydantic import ValidationError

    from app.settings import load_settings
    from app.store import StoreError, has_collection

    try:
        settings = load_settings(collection=collection, data_dir=data_dir)
    except ValidationError as exc:
        return fail(str(exc.errors()[0]["msg"]))
    quiet_libraries()
    if not has_collection(settings, settings.collection):
        return fail(str(StoreError(f"no collection '{settings.collection}': run `python -m ingestion DIR` first")))
    return settings
