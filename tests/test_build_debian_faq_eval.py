"""The Debian FAQ evaluation sets' builder: both FAQ layouts (a folder of pages, one page), the corpus."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("build_debian_faq_eval", ROOT / "scripts" / "build_debian_faq_eval.py")
assert spec and spec.loader
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)

# SQLAlchemy's layout: faq/*.html, one question per h2, some answers in h3 parts.
SESSIONS = """<html><body><section id="sessions"><h1>Sessions / Queries<a class="headerlink" href="#s">¶</a></h1>
<p>Intro text of the page, not a question.</p>
<section id="rolled-back"><h2>“This Session's transaction has been rolled back”
<a class="headerlink" href="#r">¶</a></h2>
<p>See <a href="../orm/session_api.html#Session.flush">flush()</a> and the
<a href="../glossary.html#term-unit-of-work">unit of work</a>.</p>
<section id="but-why"><h3>But why does flush() insist on issuing a ROLLBACK?<a class="headerlink" href="#b">¶</a></h3>
<p>Because of <a href="../orm/session_transaction.html">transactions</a>, and
<a href="connections.html#retry">another FAQ</a>.</p></section></section>
<section id="pooled"><h2>How do I pool connections?   Are my connections pooled?</h2>
<p>Yes, see <a href="../core/pooling.html">pooling</a> (<a href="#rolled-back">above</a>,
<a href="../../../elsewhere.html">outside</a>, <a href="https://www.sqlalchemy.org/">the site</a>).</p></section>
<section id="filter"><h2>How do I make a Query that always adds a certain filter?</h2><p>See the wiki.</p></section>
</section></body></html>"""

# Celery's layout: one faq.html, h2 topics over h3 questions, "**Answer**:" openings, h4 parts.
CELERY = """<html><body><section id="faq"><h1>Frequently Asked Questions</h1>
<section id="misconceptions"><h2>Misconceptions<a class="headerlink" href="#m">¶</a></h2>
<section id="deps"><h3><a class="toc-backref" href="#id3">Does Celery have many dependencies?</a></h3>
<p>A common criticism. See <a href="getting-started/introduction.html">the introduction</a>.</p>
<section id="kombu"><h4>kombu<a class="headerlink" href="#k">¶</a></h4>
<p>Kombu is part of the Celery ecosystem.</p></section>
</section>
<section id="pickle"><h3>Is Celery dependent on pickle?</h3>
<p><strong>Answer</strong>: No, see <a href="userguide/security.html#serializers">serializers</a>
and <a href="faq.html#deps">the question above</a>.</p></section></section>
<section id="windows"><h2>Windows</h2>
<section id="win"><h3>Does Celery support Windows?</h3><p><strong>Answer</strong>: No.</p></section></section>
</section></body></html>"""


def test_a_question_is_the_outermost_section_with_text_of_its_own() -> None:
    rolled_back, pooled, unlinked = builder.faq_sections(SESSIONS, "faq/sessions.html", "faq")
    assert rolled_back["question"] == "“This Session's transaction has been rolled back”"  # its h3 is part of it
    assert rolled_back["answer"] == (
        "See flush() and the unit of work. But why does flush() insist on issuing a ROLLBACK? "
        "Because of transactions, and another FAQ."
    )
    assert rolled_back["gold_sources"] == ["glossary.html", "orm/session_api.html", "orm/session_transaction.html"]
    assert pooled["question"] == "How do I pool connections? Are my connections pooled?"
    assert pooled["gold_sources"] == ["core/pooling.html"]  # not the same page, outside the root or the web
    assert (unlinked["question"], unlinked["gold_sources"]) == (
        "How do I make a Query that always adds a certain filter?",
        [],
    )
    assert [q["question"] for q in builder.faq_questions(SESSIONS, "faq/sessions.html", "faq")] == [
        rolled_back["question"],
        pooled["question"],
    ]


def test_topics_group_questions_on_a_one_page_faq() -> None:
    deps, pickle, windows = builder.faq_sections(CELERY, "faq.html", "faq.html")  # not "Misconceptions", "kombu"
    assert deps["question"] == "Does Celery have many dependencies?"
    assert deps["answer"] == "A common criticism. See the introduction. kombu Kombu is part of the Celery ecosystem."
    assert deps["gold_sources"] == ["getting-started/introduction.html"]
    assert pickle["answer"] == "No, see serializers and the question above."  # "Answer:" dropped
    assert pickle["gold_sources"] == ["userguide/security.html"]  # not the FAQ page itself
    assert (windows["answer"], windows["gold_sources"]) == ("No.", [])


def test_build_leaves_the_faq_out_of_the_corpus_and_keeps_questions_with_corpus_gold(tmp_path: Path) -> None:
    root = tmp_path / "html"
    for page, text in {
        "faq.html": CELERY,
        "index.html": "<p>Contents</p>",
        "getting-started/introduction.html": "<p>Celery is a task queue.</p>",
        "_static/searchtools.js": "",
    }.items():
        (root / page).parent.mkdir(parents=True, exist_ok=True)
        (root / page).write_text(text, encoding="utf-8")
    (root / "userguide").mkdir()
    (root / "userguide" / "security.html").symlink_to(root / "index.html")  # a link: not copied
    corpus, out = tmp_path / "celery_docs", tmp_path / "qa" / "celery_faq.jsonl"
    counts = builder.build(root, corpus, out, "faq.html")
    assert sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file()) == [
        "getting-started/introduction.html",
        "index.html",
    ]
    assert counts == {"found": 3, "kept": 1, "no link": 1, "link outside the corpus": 1}
    (line,) = [json.loads(text) for text in out.read_text(encoding="utf-8").splitlines()]
    assert line["gold_sources"] == ["getting-started/introduction.html"]
    assert line["faq_page"] == "faq.html"
    # The check's set: the FAQ page is its corpus, and every question (unlinked ones too) has it as gold.
    pages = sorted(
        p.relative_to(tmp_path / "celery_faq_pages").as_posix() for p in tmp_path.glob("celery_faq_pages/**/*.html")
    )
    assert pages == ["faq.html"]
    checked = [json.loads(text) for text in (tmp_path / "qa" / "celery_faq_check.jsonl").read_text().splitlines()]
    assert [(q["question"], q["gold_sources"]) for q in checked] == [
        ("Does Celery have many dependencies?", ["faq.html"]),
        ("Is Celery dependent on pickle?", ["faq.html"]),
        ("Does Celery support Windows?", ["faq.html"]),
    ]


def test_a_faq_folder_is_its_pages_but_the_index(tmp_path: Path) -> None:
    for page in ("faq/index.html", "faq/sessions.html", "faq/connections.html", "intro.html"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("", encoding="utf-8")
    assert [p.name for p in builder.faq_pages(tmp_path, "faq")] == ["connections.html", "sessions.html"]
    assert builder.faq_pages(tmp_path, "intro.html") == [tmp_path / "intro.html"]
    assert builder.is_faq("faq/sessions.html", "faq") and not builder.is_faq("faqs.html", "faq")


@pytest.mark.parametrize(("name", "at_least"), [("sqlalchemy", 40), ("celery", 20), ("python", 80)])
def test_shipped_question_files_are_valid(name: str, at_least: int) -> None:
    faq = builder.PACKAGES[name].faq
    text = (ROOT / "data" / "qa" / f"{name}_faq.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) >= at_least
    assert len({r["question"] for r in rows}) == len(rows)
    assert all(r["answer"] and r["gold_sources"] and builder.is_faq(r["faq_page"], faq) for r in rows)
    assert not any(builder.is_faq(g, faq) or not g.endswith(".html") for r in rows for g in r["gold_sources"])


@pytest.mark.parametrize("name", ["django", "sqlalchemy", "celery", "python"])
def test_shipped_check_sets_have_every_faq_question_with_its_own_page_as_gold(name: str) -> None:
    text = (ROOT / "data" / "qa" / f"{name}_faq_check.jsonl").read_text(encoding="utf-8")
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) >= 45
    assert all(r["answer"] and r["gold_sources"] == [r["faq_page"]] for r in rows)
    linked = (ROOT / "data" / "qa" / f"{name}_faq.jsonl").read_text(encoding="utf-8").splitlines()
    assert {json.loads(line)["question"] for line in linked} <= {r["question"] for r in rows}


def test_a_package_whose_documentation_folder_is_not_its_name() -> None:
    assert builder.PACKAGES["python"].html_root.as_posix() == "usr/share/doc/python3.11/html"
    assert builder.PACKAGES["celery"].html_root.as_posix() == "usr/share/doc/python-celery-doc/html"
