"""Adapter folders: `data/adapters/<name>/` = peft adapter files + manifest.json (written last)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"


class AdapterError(RuntimeError):
    """An adapter is missing, incomplete, or belongs to another base model."""


def file_hash(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def base_hash(base_path: str) -> str:
    """Hash of the base's weights when it is a local folder; the id itself for a hub name."""
    weights = sorted(Path(base_path).glob("*.safetensors")) if Path(base_path).is_dir() else []
    if not weights:
        return "id:" + base_path
    digest = hashlib.sha256()
    for weight in weights:
        digest.update(file_hash(weight).encode())
    return digest.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def default_name(method: str) -> str:
    return f"{method}-{datetime.now():%Y%m%d-%H%M%S}"


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Atomic: a reader sees the old manifest or the complete new one."""
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str))
    tmp.replace(folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / MANIFEST).read_text()))
    except (OSError, ValueError) as exc:
        raise AdapterError(f"{folder}: no readable {MANIFEST} ({exc})") from None


def read_manifest_or_none(folder: Path) -> dict[str, Any] | None:
    try:
        return read_manifest(folder)
    except AdapterError:
        return None


def list_adapters(adapters_dir: Path) -> list[dict[str, Any]]:
    """Every adapter folder with its manifest, newest first; unreadable ones marked as such."""
    rows = []
    for folder in sorted(p for p in adapters_dir.glob("*") if p.is_dir()):
        try:
            manifest = read_manifest(folder)
        except AdapterError:
            manifest = {"completed": False}
        rows.append({"name": folder.name, "path": str(folder), **manifest})
    return sorted(rows, key=lambda row: str(row.get("finished_at", "")), reverse=True)


def newest_completed(adapters_dir: Path) -> Path | None:
    completed = [row for row in list_adapters(adapters_dir) if row.get("completed")]
    return Path(completed[0]["path"]) if completed else None


def check_base(folder: Path, base: str, base_digest: str) -> None:
    manifest = read_manifest(folder)
    if not manifest.get("completed"):
        raise AdapterError(f"adapter {folder.name} did not finish training; resume it with --resume or delete it")
    if manifest.get("base_hash") != base_digest:
        raise AdapterError(
            f"adapter {folder.name} was trained on base {manifest.get('base')!r}, not on {base!r}; "
            "choose a matching base (ASKDOCS_LLM_BASE) or another adapter"
        )
