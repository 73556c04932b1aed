"""Build an evaluation set from a Debian documentation package whose HTML documentation has a FAQ.

    python scripts/build_debian_faq_eval.py {django,sqlalchemy,celery,python} [--deb FILE] [--corpus DIR] [--out FILE]

Downloads the package with `apt-get download` (unless --deb is given) and unpacks it. The corpus
(default data/<name>_docs) is the HTML pages as shipped minus the FAQ pages; ingest it with
`python -m ingestion data/<name>_docs --collection <name>`. The questions (default
data/qa/<name>_faq.jsonl) are the FAQ's question headings; the reference answer is the FAQ text
under the heading, sub-sections included; gold_sources are the corpus pages that answer links to,
relative to the corpus folder (the `source` names ingestion stores). Questions whose answer links
to no page, or to one that is not in the corpus, are left out (the counts are printed).

A second set measures the answer check (`python -m evaluation ... --check`), whose "correct" claims must
be stated in a retrieved passage: the FAQ pages themselves (default data/<name>_faq_pages; ingest them as
collection <name>_faq) and every FAQ question with its own page as gold (data/qa/<name>_faq_check.jsonl).
The documentation corpus above is no use for it: the FAQ's answers are not written in it.
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
from typing import NamedTuple

from bs4 import BeautifulSoup, Tag


class Package(NamedTuple):
    deb: str  # the Debian package
    faq: str  # the FAQ, relative to the HTML root: a folder of pages ("faq") or one page ("faq.html")
    doc: str = ""  # its folder under /usr/share/doc, where that is not the package's name

    @property
    def html_root(self) -> Path:
        return Path("usr/share/doc") / (self.doc or self.deb) / "html"


PACKAGES = {
    "django": Package("python-django-doc", "faq"),  # faq/admin.html, faq/general.html, ...
    "sqlalchemy": Package("python-sqlalchemy-doc", "faq"),  # faq/sessions.html, faq/ormconfiguration.html, ...
    "celery": Package("python-celery-doc", "faq.html"),  # one page, questions grouped under h2 topics
    "python": Package("python3.11-doc", "faq", "python3.11"),  # faq/programming.html, faq/library.html, ...
}

HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]


def is_faq(page: str, faq: str) -> bool:
    """Whether a page (relative to the HTML root) belongs to the FAQ, and so not to the corpus."""
    return page == faq or page.startswith(f"{faq}/")


def is_section(tag: Tag) -> bool:
    return tag.name == "section" or (tag.name == "div" and "section" in (tag.get("class") or []))


def own_text(section: Tag) -> bool:
    """Whether a section has text of its own besides its heading and its sub-sections."""
    for child in section.children:
        if isinstance(child, Tag):
            if child.name not in HEADINGS and not is_section(child) and child.get_text(strip=True):
                return True
        elif str(child).strip():
            return True
    return False


def faq_questions(html: str, page: str, faq: str) -> list[dict]:
    """The question sections of a FAQ page that link to documentation pages (see faq_sections)."""
    return [q for q in faq_sections(html, page, faq) if q["gold_sources"]]


def faq_sections(html: str, page: str, faq: str) -> list[dict]:
    """One line per question section of a FAQ page (`page` is its path relative to the HTML root).

    A question is a section below the page's title that has text of its own; its sub-sections are
    part of its answer ("Step one - ...", "kombu"). A section with only sub-sections under its
    heading is a group of questions ("Miscellaneous", "Troubleshooting") and is not one itself.
    """
    soup = BeautifulSoup(html, "lxml")
    for permalink in soup.select("a.headerlink"):
        permalink.decompose()
    questions = []
    for section in soup.select("div.section div.section, section section"):
        heading = section.find(HEADINGS)
        if not isinstance(heading, Tag) or not own_text(section):
            continue  # no heading, or a group heading over question sections
        if any(own_text(parent) for parent in [p for p in section.find_parents() if is_section(p)][:-1]):
            continue  # part of a question's answer (the outermost, the page's title section, excepted)
        question = " ".join(heading.get_text(" ", strip=True).rstrip("¶").split())
        heading.decompose()
        links = (gold_page(str(a["href"]), page, faq) for a in section.find_all("a", href=True))
        gold = sorted({link for link in links if link})
        answer = re.sub(r"\s+([.,;:!?)])", r"\1", " ".join(section.get_text(" ", strip=True).split()))
        answer = re.sub(r"^Answer:\s*", "", answer)  # Celery's answers begin "**Answer**: Yes, ..."
        if question and answer:
            questions.append({"question": question, "answer": answer, "gold_sources": gold, "faq_page": page})
    return questions


def gold_page(href: str, page: str, faq: str) -> str | None:
    """A link's target page relative to the HTML root, if it is a documentation page outside the FAQ."""
    if href.startswith(("#", "http:", "https:", "mailto:")):
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(page), href.split("#")[0]))
    if not target.endswith(".html") or is_faq(target, faq) or target.startswith(".."):
        return None
    return target


def unpack(package: Package, deb: Path | None, work: Path) -> Path:
    if deb is None:
        subprocess.run(["apt-get", "download", package.deb], cwd=work, check=True)
        deb = next(work.glob(f"{package.deb}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", str(deb), str(work / "x")], check=True)
    return work / "x" / package.html_root


def faq_pages(html_root: Path, faq: str) -> list[Path]:
    """The FAQ's question pages: the page itself, or the folder's pages but its index."""
    if (html_root / faq).is_file():
        return [html_root / faq]
    return [page for page in sorted((html_root / faq).glob("*.html")) if page.name != "index.html"]


def build(html_root: Path, corpus: Path, out: Path, faq: str) -> dict[str, int]:
    """Write the corpus and the questions; returns how many questions were found, kept and left out."""
    shutil.rmtree(corpus, ignore_errors=True)
    for page in html_root.rglob("*.html"):  # the pages only: _static holds links to Debian's JS packages
        relative = page.relative_to(html_root)
        if not is_faq(relative.as_posix(), faq) and not page.is_symlink():
            (corpus / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, corpus / relative)
    found = []
    for page in faq_pages(html_root, faq):
        found += faq_sections(page.read_text(encoding="utf-8"), page.relative_to(html_root).as_posix(), faq)
    linked = [q for q in found if q["gold_sources"]]
    questions = [q for q in linked if all((corpus / g).is_file() for g in q["gold_sources"])]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in questions), encoding="utf-8")
    write_check_set(html_root, faq, found, faq_corpus(corpus), check_set(out))
    return {
        "found": len(found),
        "kept": len(questions),
        "no link": len(found) - len(linked),
        "link outside the corpus": len(linked) - len(questions),
    }


def faq_corpus(corpus: Path) -> Path:
    """data/django_docs -> data/django_faq_pages"""
    return corpus.with_name(corpus.name.removesuffix("_docs") + "_faq_pages")


def check_set(out: Path) -> Path:
    """data/qa/django_faq.jsonl -> data/qa/django_faq_check.jsonl"""
    return out.with_name(f"{out.stem}_check{out.suffix}")


def write_check_set(html_root: Path, faq: str, found: list[dict], pages: Path, out: Path) -> None:
    """The FAQ pages as a corpus, and every FAQ question with its own page as gold (see the docstring)."""
    shutil.rmtree(pages, ignore_errors=True)
    for page in faq_pages(html_root, faq):
        relative = page.relative_to(html_root)
        (pages / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(page, pages / relative)
    lines = [{**q, "gold_sources": [q["faq_page"]]} for q in found]
    out.write_text("".join(json.dumps(q, ensure_ascii=False) + "\n" for q in lines), encoding="utf-8")


def main(argv: list[str] | None = None, name: str | None = None) -> int:
    """The command line; `name` fixes the documentation set (build_django_eval.py) instead of an argument."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if name is None:
        parser.add_argument("name", choices=sorted(PACKAGES), help="the documentation set")
    parser.add_argument("--deb", type=Path, help="a downloaded .deb of the package (default: apt-get download)")
    parser.add_argument("--corpus", type=Path, help="default: data/<name>_docs")
    parser.add_argument("--out", type=Path, help="default: data/qa/<name>_faq.jsonl")
    args = parser.parse_args(argv)
    name = name or args.name
    package = PACKAGES[name]
    corpus = args.corpus or Path(f"data/{name}_docs")
    out = args.out or Path(f"data/qa/{name}_faq.jsonl")
    with tempfile.TemporaryDirectory() as work:
        html_root = unpack(package, args.deb and args.deb.resolve(), Path(work))
        counts = build(html_root, corpus, out, package.faq)
    pages = sum(1 for _ in corpus.rglob("*.html"))
    print(
        f"{counts['kept']} of {counts['found']} FAQ questions -> {out} (left out, linking to no page: "
        f"{counts['no link']}; to a page not in the corpus: {counts['link outside the corpus']}); "
        f"{pages} HTML pages -> {corpus}; for the check: {counts['found']} questions -> {check_set(out)}, the FAQ "
        f"pages -> {faq_corpus(corpus)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
