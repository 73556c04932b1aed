"""JSONL files of objects, read with errors that name the file and the line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_objects(path: Path, error: type[Exception], noun: str) -> list[tuple[str, dict[str, Any]]]:
    """("file:line", object) for every non-blank line; `error` for a missing or empty file, or a bad line."""
    if not path.is_file():
        raise error(f"{path}: no such file")
    records = []
    for number, raw in enumerate(path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        where = f"{path}:{number}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{where}: not UTF-8 text (byte {exc.start + 1}); save the file as UTF-8") from None
        if line.strip():
            records.append((where, parse_object(line, where, error)))
    if not records:
        raise error(f"{path}: no {noun} (empty file)")
    return records


def parse_object(line: str, where: str, error: type[Exception]) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise error(f"{where}: expected a JSON object, got {type(record).__name__}")
    return record
