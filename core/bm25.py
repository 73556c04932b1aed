"""A BM25 index (bm25s) beside each Chroma collection, derived from it and never out of step.

Chroma is the single source of truth. The index is saved under CHROMA_DIR/bm25/COLLECTION/
in a folder named after a fingerprint of what the collection holds (its chunk ids, which
encode each file's path and content hash, plus how it was chunked). Opening the index checks
the fingerprint and rebuilds from Chroma when it differs — after an ingestion that changed
files, a kill mid-run, a --rebuild — so keyword and dense search always see the same chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core import store
from core.links import LINKS, in_links

if TYPE_CHECKING:
    import bm25s
    import chromadb

# Words, and codes joined by - . / (E-217, KD-400X, v2.3): a code is kept whole and in parts,
# so "E-217" matches exactly while "217" alone still matches.
TOKEN = re.compile(r"\w+(?:[-./]\w+)*")
FORMAT = 3  # bump when what is indexed changes (2: title and section indexed with the text; 3: in-links)
FIELDS = ("source", "file_type")  # per-chunk metadata kept in the index, for filters


@cache
def _stemmer() -> Any:
    import Stemmer

    return Stemmer.Stemmer("english")


@cache
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed terms without stop words; compound codes also as their parts."""
    terms = []
    for match in TOKEN.finditer(text.lower()):
        word = match.group()
        parts = re.split(r"[-./]", word)
        terms += [word, *parts] if len(parts) > 1 else parts
    stopwords = _stopwords()
    return _stemmer().stemWords([t for t in terms if t not in stopwords and (len(t) > 1 or t.isdigit())])


@dataclass
class Bm25Index:
    model: bm25s.BM25
    ids: list[str]
    fields: dict[str, list[str]]  # FIELDS name → value per chunk, aligned with ids
    in_links: dict[str, float] = field(default_factory=dict)  # file → votes of the files linking to it (core/links.py)

    def search(self, query: str, k: int, allowed: np.ndarray | None = None) -> list[tuple[str, float]]:
        """The best `k` (chunk id, BM25 score) pairs with a positive score, among `allowed` rows."""
        terms = tokenize(query)
        if not self.ids or not terms:  # "Is it?" is all stop words: nothing to match (bm25s raises on [])
            return []
        scores = self.model.get_scores(terms)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(self.ids[i], float(scores[i])) for i in top if scores[i] > 0]


def fingerprint(collection: chromadb.Collection) -> str:
    """What the collection holds: its chunk ids (path + content hash + index), its files' links and its index spec."""
    digest = hashlib.sha256(f"bm25 {FORMAT}\n".encode())
    for key, value in sorted((collection.metadata or {}).items()):
        if key.startswith(store.META_PREFIX):
            digest.update(f"{key}={value}\n".encode())
    ids = [i for offset in range(0, collection.count(), store.PAGE) for i in page_ids(collection, offset)]
    for chunk_id in sorted(ids):
        digest.update(chunk_id.encode() + b"\n")
    # a file's links (on its first chunk) come with its chunks, but a --rebuild of a collection read before
    # links were kept stores them under the same chunk ids
    firsts = collection.get(where={"chunk_index": 0}, include=["metadatas"])
    for source, links in sorted((str(m.get("source")), str(m.get(LINKS, ""))) for m in firsts["metadatas"] or []):
        digest.update(f"{source}\n{links}\n".encode())
    return digest.hexdigest()[:20]


def page_ids(collection: chromadb.Collection, offset: int) -> list[str]:
    return collection.get(include=[], limit=store.PAGE, offset=offset)["ids"]


def index_dir(chroma_dir: Path, name: str) -> Path:
    return chroma_dir / "bm25" / name


def open_index(chroma_dir: Path, collection: chromadb.Collection) -> Bm25Index:
    """The collection's BM25 index: loaded if it matches what Chroma holds, else rebuilt and saved."""
    folder = index_dir(chroma_dir, collection.name) / fingerprint(collection)
    if (folder / "fields.json").is_file():
        return load(folder)
    index = build(collection)
    save(index, folder)
    return index


def build(collection: chromadb.Collection) -> Bm25Index:
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: "Building index from tokens"
    ids, texts = [], []
    fields: dict[str, list[str]] = {name: [] for name in FIELDS}
    linked: dict[str, str] = {}  # file → its links as written
    for offset in range(0, collection.count(), store.PAGE):
        batch = collection.get(include=["documents", "metadatas"], limit=store.PAGE, offset=offset)
        for chunk_id, text, meta in zip(batch["ids"], batch["documents"] or [], batch["metadatas"] or [], strict=True):
            ids.append(chunk_id)
            texts.append(f"{meta.get('title', '')}\n{meta.get('section', '')}\n{text}")  # where it sits, too
            for name in FIELDS:
                fields[name].append(str(meta.get(name, "")))
            if meta.get(LINKS):
                linked[str(meta["source"])] = str(meta[LINKS])
    model = bm25s.BM25()
    if texts:
        model.index([tokenize(t) for t in texts], show_progress=False)
    return Bm25Index(model, ids, fields, in_links(linked, set(fields["source"])))


def save(index: Bm25Index, folder: Path) -> None:
    """Write into a temporary folder, then rename it into place; drop older fingerprints (and the
    temporary folders of saves that were killed)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-"))
    if index.ids:
        index.model.save(tmp, show_progress=False)
    (tmp / "fields.json").write_text(json.dumps({"ids": index.ids, **index.fields, "in_links": index.in_links}))
    try:
        tmp.rename(folder)
    except OSError:  # another process saved the same fingerprint first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)
    for old in folder.parent.iterdir():
        if old != folder and (not old.name.startswith(".tmp-") or abandoned(old)):
            shutil.rmtree(old, ignore_errors=True)


def abandoned(tmp: Path) -> bool:
    """A temporary folder an hour old was left by a killed save, not one in progress elsewhere."""
    return time.time() - tmp.stat().st_mtime > 3600


def load(folder: Path) -> Bm25Index:
    import bm25s

    data = json.loads((folder / "fields.json").read_text())
    ids, linked = data.pop("ids"), data.pop("in_links")
    model = bm25s.BM25.load(folder, show_progress=False) if ids else bm25s.BM25()
    return Bm25Index(model, ids, data, linked)
