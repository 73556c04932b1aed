"""python -m ingestion.search "question" [-k 5]: look into the store from the terminal.

Prints the top chunks with their source, section/page and similarity score (1 = identical).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from app.cli import fail, quiet_libraries


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingestion.search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help="what to look for, in plain words")
    parser.add_argument("-k", type=int, default=5, help="how many chunks to show (default: 5)")
    parser.add_argument("--collection", help="Chroma collection to search (default: docs)")
    parser.add_argument("--data-dir", type=Path, help="where the store lives (default: data)")
    parser.add_argument("--store-dir", type=Path, help="Chroma directory (default: DATA_DIR/chroma)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from app.settings import load_settings
    from app.store import StoreError, vectorstore

    try:
        settings = load_settings(collection=args.collection, data_dir=args.data_dir, store_dir=args.store_dir)
    except ValidationError as exc:
        return fail(str(exc.errors()[0]["msg"]))
    quiet_libraries()
    try:
        hits = vectorstore(settings).similarity_search_with_relevance_scores(args.query, k=args.k)
    except StoreError as exc:
        return fail(str(exc))
    rows = [{"score": round(score, 3), "text": doc.page_content, **doc.metadata} for doc, score in hits]
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    else:
        print_hits(rows)
    return 0


def print_hits(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    console = Console()
    for rank, row in enumerate(rows, start=1):
        where = " · ".join(
            str(p) for p in (row["source"], row.get("section"), row.get("page") and f"page {row['page']}") if p
        )
        console.print(
            Panel(
                Text(row["text"]), title=f"[{rank}] {where}", subtitle=f"score {row['score']:.3f}", title_align="left"
            )
        )
    if not rows:
        console.print("no chunks in the collection")


if __name__ == "__main__":
    sys.exit(main())
