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
    """Validate and write one upload; returns its path under root/uploads/."""
    from ingestion.loaders import LOADERS

    clean = safe_name(name)
    suffix = Path(clean).suffix.lower()
    if suffix not in LOADERS:
        raise UploadError(f"{name}: type {suffix or '(none)'} is not allowed; allowed: {', '.join(allowed_types())}")
    if len(data) > max_bytes:
        raise UploadError(f"{name}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB limit")
    if not data:
        raise UploadError(f"{name}: the file is empty")
    if problem := content_problem(suffix, data[:8192]):
        raise UploadError(f"{name}: {problem}")
    folder = (root / UPLOAD_DIR).resolve()
    target = (folder / clean).resolve()
    if target.parent != folder:  # cannot happen after safe_name; kept as the last line of defence
        raise UploadError(f"{name}: refused, it would be written outside {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(data)
    partial.replace(target)  # a reader never sees half a file
    return target
