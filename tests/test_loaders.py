"""Each format becomes clean text with its structure: headings, pages, rows."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from ingestion import loaders

HTML = """<html><head><title>Support FAQ</title><style>body {color: red}</style>
<script>window.track('pageview');</script></head>
<body><header><a href="/">Home</a> | <a href="/shop">Shop</a></header>
<nav><ul><li>Products</li><li>Careers</li></ul></nav>
<main><h1>Support FAQ</h1><h2>How do I reset the sensor?</h2>
<p>Hold the <b>reset</b> button for <a href="/x">ten seconds</a>.</p>
<table><tr><th>Tier</th><th>Hours</th></tr><tr><td>Gold</td><td>24/7</td></tr></table></main>
<footer>(c) 2026 Kestrel. Imprint</footer></body></html>"""


def test_html_keeps_main_text_and_headings_but_not_navigation_or_scripts(tmp_path: Path) -> None:
    path = tmp_path / "faq.html"
    path.write_text(HTML)
    [doc] = loaders.load(path)
    assert doc.metadata["title"] == "Support FAQ"
    assert "## How do I reset the sensor?" in doc.page_content
    assert "Hold the **reset** button for ten seconds." in doc.page_content
    assert "Gold" in doc.page_content and "24/7" in doc.page_content
    for boilerplate in ("pageview", "color: red", "Careers", "Shop", "Imprint"):
        assert boilerplate not in doc.page_content


def test_xhtml_is_read_as_html_without_a_warning_per_page(tmp_path: Path) -> None:
    path = tmp_path / "sect.html"  # Debian's handbook: XHTML with an XML declaration
    path.write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + HTML.replace("<html>", '<html xmlns="http://www.w3.org/1999/xhtml">')
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [doc] = loaders.load(path)
    assert "## How do I reset the sensor?" in doc.page_content


def test_html_link_lists_outside_nav_are_dropped_as_navigation(tmp_path: Path) -> None:
    toc = "".join(f'<li><a href="p{i}.html">Chapter {i}</a></li>' for i in range(8))
    cited = "<ul><li>Read <a href='a.html'>the guide</a> before you start the pump and log the pressure.</li></ul>"
    path = tmp_path / "page.html"
    path.write_text(f"<html><body><div class='sidebar'><ul>{toc}</ul></div><p>Pump manual.</p>{cited}</body></html>")
    [doc] = loaders.load(path)
    assert "Chapter" not in doc.page_content
    assert "Pump manual." in doc.page_content and "the guide" in doc.page_content


def test_html_from_a_docs_generator_loses_its_link_bar_and_permalink_marks(tmp_path: Path) -> None:
    """Sphinx's pages (Django's documentation): a header bar of links in plain <div>s, and a ¶
    link after every heading."""
    bar = " | ".join(f'<a href="{page}.html">{page}</a>' for page in ("Home", "Contents", "Index", "Modules"))
    path = tmp_path / "migrations.html"
    path.write_text(
        f'<html><body><div id="hd"><h1><a href="index.html">Docs 3.2</a></h1><div>{bar}</div>'
        '<div class="nav">&laquo; <a href="a.html">previous</a> | <a href="b.html">next</a> &raquo;</div></div>'
        '<div class="section"><h1>Migrations<a class="headerlink" href="#migrations">¶</a></h1>'
        '<p>Run <a href="#migrate">migrate</a> to apply them; see the <a href="#">#</a> notes.</p></div></body></html>'
    )
    [doc] = loaders.load(path)
    assert doc.page_content.startswith("# Migrations\n")
    assert "Run migrate to apply them" in doc.page_content  # an in-page link that is words stays
    for boilerplate in ("Docs 3.2", "Modules", "previous", "¶"):
        assert boilerplate not in doc.page_content


def test_html_loses_a_bar_of_a_few_links_and_a_layout_sidebar_but_not_contacts(tmp_path: Path) -> None:
    """Django's theme: a "« previous | up | next »" footer (under LINK_LIST_MIN links) and a
    <div id="sidebar"> whose "Last update" was its own chunk on every page."""
    path = tmp_path / "page.html"
    path.write_text(
        '<html><body><div class="section"><h1>Caching</h1><p>Use memcached.</p>'
        '<div><a href="mailto:ops@kestrel.example">ops@kestrel.example</a> | <a href="tel:+4930">+49 30</a></div>'
        '<div>See <a href="db.html">databases</a> and <a href="c.html">cache</a>.</div></div>'
        '<div id="sidebar"><h3>Last update:</h3><p>May 26, 2026</p></div>'
        '<div id="ft"><div class="nav">&laquo; <a href="a.html">previous</a> | <a href="b.html">up</a></div></div>'
        "</body></html>"
    )
    [doc] = loaders.load(path)
    assert "ops@kestrel.example | +49 30" in doc.page_content
    assert "See databases and cache." in doc.page_content  # links inside a sentence
    assert "Last update" not in doc.page_content and "May 26" not in doc.page_content
    assert not {"previous", "up"} & set(doc.page_content.split())


def test_html_loses_a_lone_navigation_link_with_a_keyboard_shortcut(tmp_path: Path) -> None:
    """Sphinx's source listings (Django's `_modules` pages) end in one "up" link carrying an
    accesskey; a lone link without one is content."""
    path = tmp_path / "module.html"
    path.write_text(
        '<html><body><div class="section"><h1>Source code for cache</h1><pre>def get(key): ...</pre>'
        '<div><a href="guide.html">Read the caching guide</a></div></div>'
        '<div id="ft"><div class="nav"><a href="../index.html" title="Module code" accesskey="U">up</a></div></div>'
        "</body></html>"
    )
    [doc] = loaders.load(path)
    assert doc.page_content.endswith("Read the caching guide")


def test_pdf_has_one_document_per_page_numbered_from_one(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    path = tmp_path / "manual.pdf"
    pdf = canvas.Canvas(str(path), invariant=1)
    for page in (1, 2, 3):
        pdf.drawString(72, 720, f"Torque for bolt size M{page + 5} is {page * 10} Nm.")
        pdf.showPage()
    pdf.save()
    docs = loaders.load(path)
    assert [d.metadata["page"] for d in docs] == [1, 2, 3]
    assert "M7 is 20 Nm" in docs[1].page_content


def test_docx_headings_become_markdown_and_tables_stay_readable(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.core_properties.title = "Remote work"
    document.add_heading("Remote work policy", level=1)
    document.add_paragraph("Staff may work remotely up to three days a week.")
    document.add_heading("Equipment", level=2)
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Item", "Budget"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "Monitor", "EUR 250"
    path = tmp_path / "remote.docx"
    document.save(str(path))
    [doc] = loaders.load(path)
    assert doc.metadata["title"] == "Remote work"
    assert doc.page_content.startswith("# Remote work policy\n\nStaff may work remotely")
    assert "## Equipment" in doc.page_content
    assert "Monitor | EUR 250" in doc.page_content


def test_csv_rows_keep_their_headers(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text('SKU,Product,Price EUR\nKD-400,"Vibration sensor, wireless",349\nKD-GW2,Gateway,899\n')
    docs = loaders.load(path)
    assert [d.metadata["section"] for d in docs] == ["row 1", "row 2"]
    assert docs[0].page_content == "SKU: KD-400\nProduct: Vibration sensor, wireless\nPrice EUR: 349"


def test_pptx_has_one_document_per_slide(tmp_path: Path) -> None:
    from pptx import Presentation

    deck = Presentation()
    for title in ("Kick-off", "Roadmap 2027"):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
    path = tmp_path / "deck.pptx"
    deck.save(str(path))
    docs = loaders.load(path)
    assert [(d.metadata["page"], d.page_content) for d in docs] == [(1, "Kick-off"), (2, "Roadmap 2027")]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("Grüße aus Köln, café".encode("latin-1"), "Grüße aus Köln, café"),
        ("Grüße aus Köln".encode("utf-16"), "Grüße aus Köln"),
        ("\ufeffBOM text".encode(), "BOM text"),
    ],
)
def test_text_in_other_encodings_is_decoded(tmp_path: Path, data: bytes, expected: str) -> None:
    path = tmp_path / "note.txt"
    path.write_bytes(data)
    assert loaders.load(path)[0].page_content == expected


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("random.txt", bytes(range(256)) * 8, "binary content, not text"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\ngarbage", "cannot parse pdf"),
        ("broken.docx", b"PK\x03\x04 not really a zip", "cannot parse docx"),
        ("blank.md", b"   \n\n  ", "no text"),
    ],
)
def test_bad_files_raise_one_line_reasons(tmp_path: Path, name: str, data: bytes, reason: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(loaders.LoadError, match=reason) as error:
        loaders.load(path)
    assert "\n" not in str(error.value)


def test_html_keeps_the_pages_its_text_links_to_but_not_navigation_sites_or_anchors(tmp_path: Path) -> None:
    page = tmp_path / "calling.html"
    menu = "".join(f'<li><a href="p{n}.html">Page {n}</a></li>' for n in range(6))
    page.write_text(
        f"<html><body><nav><a href='index.html'>Home</a></nav><ul>{menu}</ul><main><h1>Calling</h1>"
        "<p>See <a href='../ref/settings.html#task-serializer'>the serializer setting</a>, "
        "<a href='tasks.html?highlight=retry'>retrying</a> and <a href='tasks.html'>tasks</a>, "
        "<a href='https://example.com/x.html'>a site</a>, <a href='mailto:a@b.org'>us</a>, "
        "<a href='//cdn.example.com/y.html'>a mirror</a> and <a href='#top'>the top</a>.</p></main></body></html>"
    )
    [doc] = loaders.load(page)
    assert doc.metadata["links"] == ["../ref/settings.html", "tasks.html"]
    assert "Page 1" not in doc.page_content  # the menu went as navigation, and its links with it
