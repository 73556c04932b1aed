"""Build the Django evaluation set from Debian's python-django-doc (Django's HTML documentation).

    python scripts/build_django_eval.py [--deb FILE] [--corpus data/django_docs] [--out data/qa/django_faq.jsonl]

The same as `python scripts/build_debian_faq_eval.py django`: the corpus is the HTML pages as
shipped minus the FAQ pages (ingest it with `python -m ingestion data/django_docs --collection
django`); the questions are the FAQ's question headings, the reference answer the FAQ text under
the heading, gold_sources the documentation pages that answer links to.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import build_debian_faq_eval as debian_faq  # a sibling script, not a package

FAQ = debian_faq.PACKAGES["django"].faq


def faq_questions(html: str, page: str) -> list[dict]:
    """One line per question section of a Django FAQ page that links to documentation pages."""
    return debian_faq.faq_questions(html, page, FAQ)


def main(argv: list[str] | None = None) -> int:
    """The command line of build_debian_faq_eval.py for Django: --deb, --corpus, --out."""
    return debian_faq.main(argv, name="django")


if __name__ == "__main__":
    sys.exit(main())
