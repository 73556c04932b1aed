"""What every command-line entry point shares: one-line errors and quiet libraries."""

from __future__ import annotations

import logging
import sys

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
