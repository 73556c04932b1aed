"""What every command-line entry point shares: one-line errors and quiet libraries."""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings

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


def docstring_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """A command's parser whose --help shows its module docstring as written."""
    return argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def positive_int(text: str) -> int:
    """argparse type for counts: -k, --limit."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that reads an ingested collection."""
    parser.add_argument("--collection", help="the ingested collection (default: docs)")
    parser.add_argument("--data-dir", type=Path, help="where the store lives (default: data)")
    parser.add_argument(
        "--user", help="sign in as this user to read a restricted collection; the token comes from ASKDOCS_TOKEN"
    )


def settings_problem(exc: Exception) -> str:
    """Any settings error as one line naming the field: pydantic's per-field errors, or
    pydantic-settings' for a variable that must be JSON and isn't."""
    from pydantic import ValidationError

    from core.settings import UnknownVariable

    if isinstance(exc, ValidationError):
        return "; ".join(field_problem(error) for error in exc.errors())
    if isinstance(exc, UnknownVariable):
        return str(exc)
    if field := re.search(r'field "(\w+)"', str(exc)):
        return f"setting {field.group(1)} (ASKDOCS_{field.group(1).upper()}): not valid JSON"
    return f"settings: {one_line(exc)}"


def field_problem(error: Any) -> str:
    """One pydantic error: the field's dotted name, and for an unknown one the closest known name."""
    from core.settings import Settings, closest

    name = ".".join(map(str, error["loc"])) or "value"
    if error["type"] != "extra_forbidden":
        return f"setting {name}: {error['msg']}"
    model: Any = Settings
    for part in error["loc"][:-1]:  # down to the group that was given the unknown key
        model = model.model_fields[part].annotation
    prefix = name.rpartition(".")[0]
    known = [f"{prefix}.{field}" if prefix else field for field in model.model_fields]
    return f"unknown setting {name}{closest(name, known)}"


def cli_settings(**overrides: Any) -> Settings | int:
    """Settings for a command, or the exit code of a one-line error naming the bad setting."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from core.settings import UnknownVariable, load_settings

    try:
        return load_settings(**overrides)
    except (ValidationError, SettingsError, UnknownVariable) as exc:
        return fail(settings_problem(exc))


def ingested_settings(collection: str | None, data_dir: Path | None, user: str | None = None) -> Settings | int:
    """Settings for a command that reads an ingested collection (as `user`, signed in with ASKDOCS_TOKEN,
    where the collection is restricted), or the exit code of a one-line error."""
    from core.access import AccessError, cli_user, opened_for
    from core.store import StoreError, has_collection

    settings = cli_settings(collection=collection, data_dir=data_dir)
    if isinstance(settings, int):
        return settings
    quiet_libraries()
    if not has_collection(settings, settings.collection):
        return fail(str(StoreError(f"no collection '{settings.collection}': run `python -m ingestion DIR` first")))
    try:
        return opened_for(settings, cli_user(settings, user))
    except AccessError as exc:
        return fail(f"{exc} (--user NAME, token in ASKDOCS_TOKEN)")
