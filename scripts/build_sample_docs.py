"""Build the sample PDF and DOCX documents from their markdown-like sources.

Run from the repository root:

    .venv/bin/python scripts/build_sample_docs.py

Reads data/sample_sources/*.md and writes the files listed in OUTPUTS below
into data/sample_docs/. The output is byte-reproducible: PDFs are written with
reportlab's invariant mode, DOCX files get fixed core properties and fixed
timestamps inside the zip container. No network access is needed.

Source format (deliberately small):
    # / ## / ###        headings (Heading 1 / 2 / 3)
    blank lines         separate paragraphs
    - item / 1. item    bullet and numbered lists
    | a | b |           tables (first row = header, |---| rows are skipped)
    **text**            bold
    <<<PAGEBREAK>>>     forced page break (PDF only)
"""

from __future__ import annotations

import datetime as dt
import re
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = ROOT / "data" / "sample_sources"
OUTPUT_DIR = ROOT / "data" / "sample_docs"

# Source file (in data/sample_sources) -> output path (relative to data/sample_docs).
# The extension of the output path selects the format.
OUTPUTS = {
    "warranty_terms.md": "policies/warranty_terms.pdf",
    "data_retention_policy.md": "policies/data_retention_policy.pdf",
    "hardware_safety_manual.md": "products/hardware_safety_manual.pdf",
    "benefits_summary_2025.md": "hr/benefits_summary_2025.pdf",
    "code_of_conduct.md": "policies/code_of_conduct.docx",
    "remote_work_policy.md": "policies/remote_work_policy.docx",
    "procurement_procedure.md": "policies/procurement_procedure.docx",
    "parental_leave_policy.md": "hr/parental_leave_policy.docx",
}

AUTHOR = "Kestrel Dynamics GmbH"
FIXED_DATE = dt.datetime(2025, 1, 15, 9, 0, 0)
PAGEBREAK = "<<<PAGEBREAK>>>"


# --------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------


@dataclass
class Block:
    kind: str  # heading | para | bullet | number | table | pagebreak
    text: str = ""
    level: int = 0
    rows: list[list[str]] = field(default_factory=list)


def parse_source(text: str) -> list[Block]:
    """Turn the markdown-like source into a flat list of blocks."""
    blocks: list[Block] = []
    para: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if para:
            blocks.append(Block("para", " ".join(para)))
            para.clear()
        if table:
            blocks.append(Block("table", rows=[r[:] for r in table]))
            table.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            flush()
        elif line == PAGEBREAK:
            flush()
            blocks.append(Block("pagebreak"))
        elif line.startswith("|"):
            if para:
                flush()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                table.append(cells)
        elif m := re.match(r"(#{1,3})\s+(.*)", line):
            flush()
            blocks.append(Block("heading", m.group(2), level=len(m.group(1))))
        elif m := re.match(r"[-*]\s+(.*)", line):
            flush()
            blocks.append(Block("bullet", m.group(1)))
        elif m := re.match(r"\d+\.\s+(.*)", line):
            flush()
            blocks.append(Block("number", m.group(1)))
        elif para == [] and blocks and blocks[-1].kind in ("bullet", "number") and raw.startswith(" "):
            blocks[-1].text += " " + line  # continuation of a list item
        else:
            if table:
                flush()
            para.append(line)
    flush()
    return blocks


def split_bold(text: str) -> list[tuple[str, bool]]:
    """Split '**bold**' markup into (text, is_bold) runs."""
    parts = re.split(r"\*\*(.+?)\*\*", text)
    return [(p, i % 2 == 1) for i, p in enumerate(parts) if p]


def document_title(blocks: list[Block]) -> str:
    return next((b.text for b in blocks if b.kind == "heading"), "Untitled")


# --------------------------------------------------------------------------
# PDF (reportlab)
# --------------------------------------------------------------------------


def _pdf_markup(text: str) -> str:
    """Escape for reportlab paragraphs and convert **bold** to <b>."""
    return "".join(f"<b>{escape(t)}</b>" if b else escape(t) for t, b in split_bold(text))


def _pdf_styles():
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet

    base = getSampleStyleSheet()
    body = ParagraphStyle("Body", parent=base["BodyText"], fontSize=9.5, leading=12.5, spaceAfter=5)
    return {
        1: ParagraphStyle("H1", parent=base["Heading1"], fontSize=17, spaceAfter=8),
        2: ParagraphStyle("H2", parent=base["Heading2"], fontSize=12.5, spaceBefore=8, spaceAfter=4),
        3: ParagraphStyle("H3", parent=base["Heading3"], fontSize=10.5, spaceBefore=6, spaceAfter=3),
        "body": body,
        "list": ParagraphStyle("List", parent=body, leftIndent=14, bulletIndent=4, spaceAfter=2),
        "cell": ParagraphStyle("Cell", parent=body, fontSize=8.5, leading=10.5, spaceAfter=0),
    }


def _pdf_table(rows: list[list[str]], styles, width: float):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    ncols = max(len(r) for r in rows)
    data = [[Paragraph(_pdf_markup(c), styles["cell"]) for c in r + [""] * (ncols - len(r))] for r in rows]
    table = Table(data, colWidths=[width / ncols] * ncols, repeatRows=1, hAlign="LEFT")
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9aa5b1")),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e3e8ee")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def _pdf_flowables(blocks: list[Block], styles, width: float) -> list:
    from reportlab.platypus import PageBreak, Paragraph, Spacer

    flow: list = []
    number = 0
    for b in blocks:
        number = number + 1 if b.kind == "number" else 0
        if b.kind == "heading":
            flow.append(Paragraph(_pdf_markup(b.text), styles[b.level]))
        elif b.kind == "para":
            flow.append(Paragraph(_pdf_markup(b.text), styles["body"]))
        elif b.kind == "bullet":
            flow.append(Paragraph(_pdf_markup(b.text), styles["list"], bulletText="\u2022"))
        elif b.kind == "number":
            flow.append(Paragraph(_pdf_markup(b.text), styles["list"], bulletText=f"{number}."))
        elif b.kind == "table":
            flow += [_pdf_table(b.rows, styles, width), Spacer(1, 6)]
        elif b.kind == "pagebreak":
            flow.append(PageBreak())
    return flow


def build_pdf(blocks: list[Block], out: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import cm
    from reportlab.platypus import SimpleDocTemplate

    title = document_title(blocks)

    class FooterDocTemplate(SimpleDocTemplate):
        def afterPage(self) -> None:
            # Drawn after the page content, so text extraction yields it last.
            canvas = self.canv
            canvas.saveState()
            canvas.setFont("Helvetica", 8)
            canvas.drawString(2 * cm, 1.2 * cm, f"{AUTHOR} \u2013 {title}")
            canvas.drawRightString(A4[0] - 2 * cm, 1.2 * cm, f"Page {self.page}")
            canvas.restoreState()

    doc = FooterDocTemplate(
        str(out),
        pagesize=A4,
        invariant=1,
        title=title,
        author=AUTHOR,
        creator="scripts/build_sample_docs.py",
        subject=title,
        leftMargin=2 * cm,
        rightMargin=2 * cm,
        topMargin=1.8 * cm,
        bottomMargin=2 * cm,
    )
    doc.build(_pdf_flowables(blocks, _pdf_styles(), doc.width))


# --------------------------------------------------------------------------
# DOCX (python-docx)
# --------------------------------------------------------------------------


def _docx_runs(paragraph, text: str) -> None:
    for part, bold in split_bold(text):
        paragraph.add_run(part).bold = bold or None


def _docx_table(document, rows: list[list[str]]) -> None:
    ncols = max(len(r) for r in rows)
    table = document.add_table(rows=len(rows), cols=ncols)
    table.style = "Table Grid"
    for i, row in enumerate(rows):
        for j, text in enumerate(row):
            cell_par = table.cell(i, j).paragraphs[0]
            _docx_runs(cell_par, text)
            if i == 0:
                for run in cell_par.runs:
                    run.bold = True


def build_docx(blocks: list[Block], out: Path) -> None:
    import docx

    document = docx.Document()
    for b in blocks:
        if b.kind == "heading":
            document.add_heading(b.text, level=b.level)
        elif b.kind == "para":
            _docx_runs(document.add_paragraph(), b.text)
        elif b.kind == "bullet":
            _docx_runs(document.add_paragraph(style="List Bullet"), b.text)
        elif b.kind == "number":
            _docx_runs(document.add_paragraph(style="List Number"), b.text)
        elif b.kind == "table":
            _docx_table(document, b.rows)
        # page breaks are ignored for DOCX

    props = document.core_properties
    props.title = document_title(blocks)
    props.author = props.last_modified_by = AUTHOR
    props.created = props.modified = FIXED_DATE
    props.last_printed = FIXED_DATE
    props.revision = 1
    document.save(str(out))
    _normalize_zip(out)


def _normalize_zip(path: Path) -> None:
    """Rewrite the zip with fixed timestamps so the DOCX is byte-reproducible."""
    with zipfile.ZipFile(path) as zin:
        entries = [(info.filename, zin.read(info.filename)) for info in zin.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=FIXED_DATE.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zout.writestr(info, data)


# --------------------------------------------------------------------------


def build_one(source_name: str, target: str) -> Path:
    blocks = parse_source((SOURCE_DIR / source_name).read_text(encoding="utf-8"))
    out = OUTPUT_DIR / target
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".pdf":
        build_pdf(blocks, out)
    elif out.suffix == ".docx":
        build_docx(blocks, out)
    else:
        raise ValueError(f"unsupported output type: {target}")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    missing = [name for name in OUTPUTS if not (SOURCE_DIR / name).exists()]
    if missing:
        print(f"missing sources: {', '.join(missing)}", file=sys.stderr)
        return 1
    for source_name, target in OUTPUTS.items():
        out = build_one(source_name, target)
        print(f"{source_name} -> {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
