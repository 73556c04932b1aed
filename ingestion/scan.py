"""Which files of a folder are read: supported, inside the folder (symlinks resolved), readable, with a
name that is one safe line; each file hashed, and every entry left out recorded with its reason."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.cli import one_line
from ingestion import loaders
from ingestion.report import UNSUPPORTED, FileResult

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # in a file name: escaped in the report, refused as a source
LINKED_FOLDER = "link to a folder: not followed"


@dataclass
class SourceFile:
    path: Path
    source: str  # POSIX path relative to the ingested folder: the chunk's citation
    file_hash: str = ""
    error: str = ""


def scan(root: Path, max_bytes: int) -> tuple[list[SourceFile], list[FileResult]]:
    """Supported files under `root` (hashed, or with the reason they can't be) and skipped entries,
    each with its reason. Nothing whose real path lies outside `root` is read."""
    root = root.resolve()
    files: list[SourceFile] = []
    skipped: list[FileResult] = []
    for path in walk(root, skipped):
        raw = path.relative_to(root).as_posix()
        source = printable(raw)
        if not loaders.is_supported(path):
            skipped.append(FileResult(source, "skipped", f"{UNSUPPORTED} {path.suffix.lower() or '(none)'}"))
        elif reason := outside(path, root):
            skipped.append(FileResult(source, "skipped", reason))
        elif source != raw:
            files.append(SourceFile(path, source, error=f"file name {name_problem(raw)}: rename the file"))
        else:
            files.append(hashed(SourceFile(path, source), max_bytes))
    return files, skipped


def printable(source: str) -> str:
    """A name as one safe line: bytes that aren't UTF-8 (kept by Python as surrogates, which Chroma,
    hashing and the terminal all refuse) and control characters (a newline would split a report
    line) escaped: caf\\xe9.md, a\\nb.md."""
    text = source.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode(), text)


def name_problem(raw: str) -> str:
    return "has control characters" if CONTROL.search(raw) else "is not valid UTF-8"


def walk(root: Path, skipped: list[FileResult]) -> Iterator[Path]:
    """Files under root in a stable order; hidden entries skipped silently; symlinked folders are
    not followed (os.walk's default), and each one is recorded in `skipped`."""
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for link in [d for d in dirs if (here / d).is_symlink()]:
            skipped.append(FileResult(printable((here / link).relative_to(root).as_posix()), "skipped", LINKED_FOLDER))
        yield from (here / name for name in sorted(names) if not name.startswith("."))


def outside(path: Path, root: Path) -> str:
    """Why a symlinked file is not read ('' when it may be): its target must lie inside `root`.
    A loop or a dangling link is left to `hashed`, which reports it as unreadable."""
    if not path.is_symlink():
        return ""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return ""
    if target.is_relative_to(root):
        return ""
    return "link to a file outside the folder: not read"


def hashed(file: SourceFile, max_bytes: int) -> SourceFile:
    try:
        size = file.path.stat().st_size
        if size == 0:
            file.error = "empty file"
        elif size > max_bytes:
            file.error = f"too large: {size / 2**20:.1f} MB > {max_bytes / 2**20:.0f} MB (raise ASKDOCS_MAX_FILE_MB)"
        else:
            with file.path.open("rb") as handle:
                file.file_hash = hashlib.file_digest(handle, "sha256").hexdigest()
    except PermissionError:
        file.error = "permission denied"
    except OSError as exc:
        file.error = f"cannot read: {exc.strerror or one_line(exc)}"
    return file
