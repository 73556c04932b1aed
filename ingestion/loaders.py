"""Turn one file into LangChain Documents, keeping titles, headings (as markdown) and pages.

Every failure becomes a `LoadError` with a one-line reason; nothing here crashes a run.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from langchain_core.documents import Document

from core.cli import one_line
from core.links import LINKS

HEADING_STYLE = re.compile(r"^Heading (\d)$")
HEADINGS = ["h1", "h2", "h3", "h4", "h5", "h6"]
WESTERN = ("cp1252", "latin_1", "iso8859_15")  # the most common legacy text: preferred when as clean
BOM_ENCODINGS = {b"\xef\xbb\xbf": "utf-8-sig", b"\xff\xfe": "utf-16", b"\xfe\xff": "utf-16"}
LINK_LIST_MIN = 5  # links in a list or table before it can count as navigation
BOILERPLATE_TAGS = ["script", "style", "nav", "header", "footer", "aside", "form", "noscript", "iframe", "svg"]
BOILERPLATE_ROLES = ["navigation", "banner", "contentinfo", "search", "complementary"]  # the same, as ARIA roles
BOILERPLATE_IDS = ["sidebar", "footer"]  # the same, as a theme's layout <div id=...>
BLOCKS = ["p", "ul", "ol", "dl", "table", "pre", "blockquote", *HEADINGS]
CONTACT_LINKS = ("mailto:", "tel:")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:|^//")  # http:, mailto:, //host/...: not a page of the folder
PERMALINK_MARKS = {"¶", "#", "§", "🔗"}  # a heading's link to itself (Sphinx, MkDocs, ...): not its text


WARNING = "warning"  # a Document's metadata key for what a loader repaired; reported, not stored


class LoadError(Exception):
    """A file could not be turned into text; the message is the one-line reason."""


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 by BOM, else the encoding charset-normalizer finds, where a
    Western code page wins a tie: "Caf\\xe9 cr\\xe8me" reads as well in cp1250 ("crčme") by its measure."""
    for bom, encoding in BOM_ENCODINGS.items():
        if data.startswith(bom):
            return data.decode(encoding)
    if b"\x00" in data[:8192]:
        raise LoadError("binary content, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:  # no code page reads it without a mess of symbols: refuse rather than store garbage
        raise LoadError("unknown text encoding (no code page reads it cleanly): save it as UTF-8")
    western = [m for m in matches if m.encoding in WESTERN and m.chaos <= best.chaos]
    return str(western[0] if western else best)


def load_text(path: Path) -> list[Document]:
    return [Document(decode_text(path.read_bytes()))]


def load_html(path: Path) -> list[Document]:
    """The page's main content as markdown: navigation, scripts and styles dropped."""
    from bs4 import BeautifulSoup, XMLParsedAsHTMLWarning
    from markdownify import MarkdownConverter

    with warnings.catch_warnings():  # XHTML (Debian's handbook) is HTML to us: no warning per page
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        soup = BeautifulSoup(decode_text(path.read_bytes()), "lxml")
    title = soup.title.get_text(strip=True) if soup.title else ""
    for tag in [*soup(BOILERPLATE_TAGS), *soup(role=BOILERPLATE_ROLES), *soup(id=BOILERPLATE_IDS)]:
        tag.decompose()
    for link in soup("a", href=re.compile("^#")):
        if link.get_text(strip=True) in PERMALINK_MARKS:
            link.decompose()
    drop_link_lists(soup)
    main = soup.find("main") or soup.find("article") or soup.body or soup
    metadata: dict[str, Any] = {"title": title} if title else {}
    if links := page_links(main):
        metadata[LINKS] = links
    text = MarkdownConverter(heading_style="ATX", strip=["a", "img"]).convert_soup(main)
    return [Document(re.sub(r"\n{3,}", "\n\n", text).strip(), metadata=metadata)]


def page_links(main: Any) -> list[str]:
    """The pages the text links to, as written (relative), without their #anchor or ?query: not other sites,
    e-mail addresses or the page's own anchors. Navigation is gone by now, so these are the author's own."""
    found = {re.split(r"[#?]", str(a["href"]), maxsplit=1)[0] for a in main("a", href=True)}
    return sorted(href for href in found if href and not SCHEME.match(href))


def drop_link_lists(soup: Any) -> None:
    """Navigation that is not in a <nav>: lists, tables and blocks that are mostly links (a table
    of contents, an index, a sidebar, a "Home | Index | next" bar). They match every question by
    title and answer none."""
    for tag in soup(["ul", "ol", "dl", "table", "div"]):
        if tag.decomposed:
            continue
        links = tag("a")
        if link_bar(tag, links) or link_list(tag, links):
            tag.decompose()


def link_bar(tag: Any, links: list[Any]) -> bool:
    """A <div> of two or more links to pages and nothing else: "« previous | up | next »",
    "Home > HR" (not a line of e-mail addresses or phone numbers); or of one link with a keyboard
    shortcut (`accesskey`, which Sphinx gives its navigation: the lone "up" under source listings)."""
    return (
        tag.name == "div"
        and (len(links) >= 2 or any(a.has_attr("accesskey") for a in links))
        and not any(str(a.get("href", "")).startswith(CONTACT_LINKS) for a in links)
        and link_share(tag, links) == 1
        and not tag.find(BLOCKS)
    )


def link_list(tag: Any, links: list[Any]) -> bool:
    """At least LINK_LIST_MIN links, most of the text. A <div> that holds a heading of its own (not a
    link) is the page's content, whose link lists go one by one."""
    if len(links) < LINK_LIST_MIN or link_share(tag, links) <= 0.8:
        return False
    return tag.name != "div" or all(link_share(h, h("a")) == 1 for h in tag(HEADINGS))


def link_share(tag: Any, links: list[Any]) -> float:
    """How much of what a tag says is the text of `links`: word characters, not the | » between them."""
    text = letters(tag)
    return sum(letters(a) for a in links) / text if text else 1.0


def letters(tag: Any) -> int:
    return len(re.sub(r"\W", "", tag.get_text()))


def load_pdf(path: Path) -> list[Document]:
    """One Document per page, pages numbered from 1 as a reader counts them."""
    from langchain_community.document_loaders import PyPDFLoader

    pages = PyPDFLoader(str(path), mode="page").load()
    return [Document(page.page_content, metadata={"page": page.metadata["page"] + 1}) for page in pages]


def load_docx(path: Path) -> list[Document]:
    """Paragraphs and tables in document order; Word heading styles become markdown headings."""
    import docx
    from docx.table import Table

    document = docx.Document(str(path))
    lines = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            lines.append("\n".join(" | ".join(cell.text.strip() for cell in row.cells) for row in block.rows))
            continue
        level = HEADING_STYLE.match(block.style.name if block.style is not None else "")
        lines.append(f"{'#' * int(level.group(1))} {block.text}" if level else block.text)
    title = document.core_properties.title
    return [Document("\n\n".join(line for line in lines if line.strip()), metadata={"title": title} if title else {})]


def load_csv(path: Path) -> list[Document]:
    """One Document per row, each value next to its column header (as LangChain's CSVLoader writes it).
    A row with more fields than the header keeps the extra ones as "column N", one with fewer keeps
    what it has; either way the row is stored and the file's report says which line was uneven."""
    rows = csv.reader(io.StringIO(decode_text(path.read_bytes()), newline=""))
    header = [name.strip() for name in next(rows, [])]
    docs = []
    for number, values in enumerate((row for row in rows if row), start=1):
        names = header + [f"column {i}" for i in range(len(header) + 1, len(values) + 1)]
        metadata = {"section": f"row {number}"}
        if len(values) != len(header):
            metadata[WARNING] = f"line {rows.line_num}: {len(values)} fields, the header has {len(header)}"
        text = "\n".join(f"{name}: {value.strip()}" for name, value in zip(names, values, strict=False))
        docs.append(Document(text, metadata=metadata))
    return docs


def load_pptx(path: Path) -> list[Document]:
    """One Document per slide, slide number as the page."""
    from pptx import Presentation

    slides = []
    for number, slide in enumerate(Presentation(str(path)).slides, start=1):
        texts = [shape.text_frame.text.strip() for shape in slide.shapes if shape.has_text_frame]
        texts = [text for text in texts if text]
        slides.append(Document("\n\n".join(texts), metadata={"page": number}))
    return slides


LOADERS: dict[str, Callable[[Path], list[Document]]] = {
    ".md": load_text,
    ".markdown": load_text,
    ".txt": load_text,
    ".rst": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
    ".docx": load_docx,
    ".csv": load_csv,
    ".pptx": load_pptx,
}


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in LOADERS


def load(path: Path) -> list[Document]:
    """Non-empty Documents of `path`, or LoadError with a one-line reason."""
    try:
        docs = LOADERS[path.suffix.lower()](path)
    except LoadError:
        raise
    except PermissionError:
        raise LoadError("permission denied") from None
    except FileNotFoundError:  # it was there when the folder was scanned: not a parse error
        raise LoadError("cannot read: deleted during the run") from None
    except Exception as exc:  # a corrupt file may raise anything from deep inside a parser
        raise LoadError(f"cannot parse {path.suffix.lower()[1:]}: {type(exc).__name__}: {one_line(exc)}") from exc
    docs = [doc for doc in docs if doc.page_content.strip()]
    if not docs:
        raise LoadError(
            "no extractable text (a scanned PDF needs OCR first)" if path.suffix.lower() == ".pdf" else "no text"
        )
    return docs
