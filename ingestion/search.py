"""python -m ingestion.search "question" [-k 5] [--mode hybrid|dense|bm25]: look into the store.

Prints the chunks the chat's retriever finds, with source, section/page and cosine similarity to
the question (1 = identical).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli import add_store_options, cli_settings, fail, positive_int, quiet_libraries
from core.settings import SEARCH_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ingestion.search", description=__doc__.splitlines()[0])
    parser.add_argument("query", help="what to look for, in plain words")
    parser.add_argument("-k", type=positive_int, default=5, help="how many chunks to show (default: 5)")
    parser.add_argument("--mode", choices=SEARCH_MODES, help="search mode (default: hybrid)")
    parser.add_argument("--source", help="only sources matching this glob, e.g. 'hr/*'")
    parser.add_argument("--type", action="append", default=[], help="only this file type (repeatable), e.g. pdf")
    add_store_options(parser)
    parser.add_argument("--store-dir", type=Path, help="Chroma directory (default: DATA_DIR/chroma)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from core.access import AccessError, cli_user
    from core.retrieval import VECTOR, retriever
    from core.store import StoreError

    settings = cli_settings(collection=args.collection, data_dir=args.data_dir, store_dir=args.store_dir)
    if isinstance(settings, int):
        return settings
    quiet_libraries()
    if args.mode:
        settings.retrieval.mode = args.mode
    try:
        user = cli_user(settings, args.user)
        search = retriever(settings, k=args.k, user=user, source_glob=args.source, file_types=tuple(args.type))
    except (AccessError, StoreError) as exc:
        return fail(str(exc))
    hits = search.invoke(args.query)
    rows = [{"text": d.page_content, **{k: v for k, v in d.metadata.items() if k != VECTOR}} for d in hits]
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
