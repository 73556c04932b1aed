"""Uploaded files: checked by extension *and* content, size-limited, saved under a sanitised name
inside `<collection folder>/uploads/` and nowhere else."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

UPLOAD_DIR = "uploads"
ZIP_TYPES = {".docx", ".pptx"}  # Office Open XML files are zip archives
TEXT_TYPES = {".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".csv"}


class UploadError(ValueError):
    """An upload was refused; the message names the file and why."""


def allowed_types() -> list[str]:
    from ingestion.loaders import LOADERS

    return sorted(suffix.lstrip(".") for suffix in LOADERS)


def safe_name(name: str) -> str:
    """A plain file name: no folders, no leading dots or dashes, only word characters, '.', '-', ' '."""
    name = unicodedata.normalize("NFKC", name).replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = name.rpartition(".")
    stem = re.sub(r"[^\w.\- ]+", "_", stem if dot else name).strip(" .-_")[:100]
    suffix = re.sub(r"[^\w]+", "", suffix).lower() if dot else ""
    return f"{stem or 'upload'}.{suffix}" if suffix else stem or "upload"


def content_problem(suffix: str, head: bytes) -> str:
    """Why the first bytes do not look like a `suffix` file ('' when they do)."""
    if suffix == ".pdf" and not head.startswith(b"%PDF-"):
        return "does not start like a PDF"
    if suffix in ZIP_TYPES and not head.startswith(b"PK\x03\x04"):
        return f"is not a {suffix[1:]} (Office files are zip archives)"
    if suffix in TEXT_TYPES and b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "contains binary data, not text"
    return ""


def save_upload(name: str, data: bytes, root: Path, max_bytes: int) -> Path:
    """Validate and write one upload under root/uploads/; an upload never replaces another file."""
    from ingestion.loaders import LOADERS

    clean = safe_name(name)
    suffix = Path(clean).suffix.lower()
    if suffix not in LOADERS:
        raise UploadError(f"{name}: type {suffix or '(none)'} is not allowed; allowed: {', '.join(allowed_types())}")
    if len(data) > max_bytes:
        given, limit = size(len(data)), size(max_bytes)
        if given == limit:  # just over: the exact counts say why
            given, limit = f"{len(data):,} bytes", f"{max_bytes:,} bytes"
        raise UploadError(f"{name}: {given} is over the {limit} limit")
    if not data:
        raise UploadError(f"{name}: the file is empty")
    if problem := content_problem(suffix, data[:8192]):
        raise UploadError(f"{name}: {problem}")
    folder = upload_folder(root)
    target = free_name(folder, clean, data)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)  # a reader never sees half a file
    return target.resolve()


def upload_folder(root: Path) -> Path:
    """root/uploads, made if missing; refused when it is a link (ingestion would not read it, and
    the upload would land outside the collection's folder)."""
    folder = root / UPLOAD_DIR
    if folder.is_symlink() or not folder.resolve().is_relative_to(root.resolve()):
        raise UploadError(f"{folder} is a link out of the collection's folder: uploads refused (make it a folder)")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def free_name(folder: Path, name: str, data: bytes) -> Path:
    """`name` in `folder`, or "stem (2).ext", "stem (3).ext", ... when another file already has it.
    The same bytes uploaded again land on the file that holds them (ingestion sees no change)."""
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in range(1, 10_000):
        target = folder / (name if n == 1 else f"{stem} ({n}){suffix}")
        if not target.exists() or (target.is_file() and target.read_bytes() == data):
            return target
    raise UploadError(f"{name}: too many uploads with this name in {folder}")


def size(n: int) -> str:
    """Bytes as people read them, in the units ingestion's limit uses (MB = 2**20 bytes)."""
    for unit, scale in (("MB", 2**20), ("KB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}".replace(".0 ", " ")
    return f"{n} bytes"
