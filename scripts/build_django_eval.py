"""Build the Django evaluation set from Debian's python-django-doc (Django's HTML documentation).

    python scripts/build_django_eval.py [--deb FILE] [--corpus data/django_docs] [--out data/qa/django_faq.jsonl]

Downloads the package with `apt-get download` (unless --deb is given) and unpacks it. The corpus
is the HTML pages as shipped minus the FAQ pages (ingest it with `python -m ingestion data/django_docs
--collection django`). The questions are the FAQ's question headings; the reference answer is the
FAQ text under the heading; gold_sources are the documentation pages that answer links to
(relative to the corpus folder). Questions whose answer links to no page are left out.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bs4 import BeautifulSoup, Tag

HTML_ROOT = Path("usr/share/doc/python-django-doc/html")
FAQ = "faq"


def faq_questions(html: str, page: str) -> list[dict]:
    """One line per question section of a FAQ page (`page` is its path relative to the HTML root)."""
    soup = BeautifulSoup(html, "lxml")
    questions = []
    for section in soup.select("div.section div.section, section section"):
        heading = section.find(["h2", "h3", "h4"])
        if not isinstance(heading, Tag) or section.select_one("div.section, section"):
            continue  # no heading, or a group heading ("Miscellaneous") over question sections
        question = heading.get_text(" ", strip=True).rstrip("¶").strip()
        heading.decompose()
        gold = sorted({link for a in section.find_all("a", href=True) if (link := gold_page(str(a["href"]), page))})
        answer = re.sub(r"\s+([.,;:!?)])", r"\1", " ".join(section.get_text(" ", strip=True).split()))
        if question and answer and gold:
            questions.append({"question": question, "answer": answer, "gold_sources": gold, "faq_page": page})
    return questions


def gold_page(href: str, page: str) -> str | None:
    """A link's target page relative to the HTML root, if it is a documentation page outside the FAQ."""
    if href.startswith(("#", "http:", "https:", "mailto:")):
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), href.split("#")[0]))
    if not target.endswith(".html") or target.startswith((f"{FAQ}/", "..")):
        return None
    return target


def unpack(deb: Path | None, work: Path) -> Path:
    if deb is None:
        subprocess.run(["apt-get", "download", "python-django-doc"], cwd=work, check=True)
        deb = next(work.glob("python-django-doc_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
    return work / "x" / HTML_ROOT


def build(html_root: Path, corpus: Path, out: Path) -> int:
    shutil.rmtree(corpus, ignore_errors=True)
    for page in html_root.rglob("*.html"):  # the pages only: _static holds links to Debian's JS packages
        relative = page.relative_to(html_root)
        if relative.parts[0] != FAQ and not page.is_symlink():
            (corpus / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, corpus / relative)
    questions = []
    for page in sorted((html_root / FAQ).glob("*.html")):
        if page.name != "index.html":
            questions += faq_questions(page.read_text(encoding="utf-8"), f"{FAQ}/{page.name}")
    questions = [q for q in questions if all((corpus / g).is_file() for g in q["gold_sources"])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    return len(questions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deb", type=Path, help="a downloaded python-django-doc .deb (default: apt-get download)")
    parser.add_argument("--corpus", type=Path, default=Path("data/django_docs"))
    parser.add_argument("--out", type=Path, default=Path("data/qa/django_faq.jsonl"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        count = build(unpack(args.deb and args.deb.resolve(), Path(work)), args.corpus, args.out)
    pages = sum(1 for _ in args.corpus.rglob("*.html"))
    print(f"{count} FAQ questions -> {args.out}; {pages} HTML pages -> {args.corpus}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
