"""The Django evaluation set's builder: FAQ headings become questions, linked doc pages their gold."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("build_django_eval", ROOT / "scripts" / "build_django_eval.py")
assert spec and spec.loader
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)

FAQ_PAGE = """<html><body><div class="section" id="faq">
<h1>FAQ: Using Django</h1>
<div class="section" id="q1"><h2>Why does X fail?<a class="headerlink" href="#q1">¶</a></h2>
<p>Set <a href="../topics/settings.html#envvar-X">X</a> and read <a href="../ref/models/fields.html">fields</a>,
not <a href="https://example.com/">this</a> or <a href="general.html">another FAQ</a>.</p></div>
<div class="section" id="q2"><h2>Do I have to use it?</h2><p>Nope, no links here.</p></div>
<div class="section" id="misc"><h2>Miscellaneous</h2>
<div class="section" id="q3"><h3>Why Y?</h3><p>See <a href="../ref/y.html">Y</a>.</p></div></div>
</div></body></html>"""


def test_faq_sections_become_questions_with_the_pages_they_link_to() -> None:
    line, nested = builder.faq_questions(FAQ_PAGE, "faq/usage.html")  # not the group "Miscellaneous"
    assert (nested["question"], nested["gold_sources"]) == ("Why Y?", ["ref/y.html"])
    assert line["question"] == "Why does X fail?"
    assert line["answer"] == "Set X and read fields, not this or another FAQ."
    assert line["gold_sources"] == ["ref/models/fields.html", "topics/settings.html"]


def test_shipped_question_file_is_valid() -> None:
    rows = [json.loads(line) for line in (ROOT / "data" / "qa" / "django_faq.jsonl").read_text().splitlines()]
    assert len(rows) >= 25
    assert len({r["question"] for r in rows}) == len(rows)
    assert all(r["answer"] and r["gold_sources"] and not g.startswith("faq/") for r in rows for g in r["gold_sources"])
