"""python -m ingestion DIR: load, chunk, embed and store a folder of documents, incrementally.

Examples:
    python -m ingestion data/sample_docs
    python -m ingestion ~/company-docs --collection handbook --chunk-size 200 --chunk-overlap 40
    python -m ingestion ~/company-docs --dry-run      # what would change, nothing written
    python -m ingestion ~/company-docs --rebuild      # re-embed everything (new model or chunking)
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from core.cli import cli_settings, fail, quiet_libraries

EXIT_FAILED_FILES = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingestion",
        description="Ingest a folder of documents (md, txt, html, pdf, docx, csv, pptx) into Chroma. "
        "Re-runs only touch files that were added, changed, renamed or removed.",
        epilog="Settings can also come from ASKDOCS_* environment variables or a .env file; flags win. "
        "Exit status: 0 all files ingested, 1 some files failed (the rest were ingested), 2 error.",
    )
    parser.add_argument("folder", type=Path, help="folder of documents (searched recursively; hidden files skipped)")
    parser.add_argument("--collection", help="Chroma collection to write (default: docs)")
    parser.add_argument("--chunk-size", type=int, help="chunk size in embedding-model tokens (default: 200)")
    parser.add_argument("--chunk-overlap", type=int, help="overlap between neighbouring chunks in tokens (default: 40)")
    parser.add_argument("--embedding-model", help="sentence-transformers model id or path (default: bundled MiniLM)")
    parser.add_argument("--data-dir", type=Path, help="where the store and caches live (default: data)")
    parser.add_argument("--store-dir", type=Path, help="Chroma directory (default: DATA_DIR/chroma)")
    parser.add_argument(
        "--rebuild", action="store_true", help="re-embed everything into a fresh collection, then replace the old one"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="report what would be added/changed/removed; write nothing"
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from core.models import ModelError
    from core.store import StoreError

    settings = cli_settings(
        collection=args.collection,
        chunk_size=args.chunk_size,
        chunk_overlap=args.chunk_overlap,
        embedding_model=args.embedding_model,
        data_dir=args.data_dir,
        store_dir=args.store_dir,
    )
    if isinstance(settings, int):
        return settings
    if not args.folder.is_dir():
        return fail(f"{args.folder}: not a folder")

    quiet_libraries()
    from ingestion.pipeline import ingest
    from ingestion.report import print_report

    try:
        report = ingest(args.folder, settings, rebuild=args.rebuild, dry_run=args.dry_run)
    except (StoreError, ModelError) as exc:
        return fail(str(exc))
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print_report(report, dry_run=args.dry_run)
    return EXIT_FAILED_FILES if report.failed else 0
