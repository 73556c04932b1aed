"""Split Documents into overlapping chunks measured in tokens of the embedding model.

Structure first (markdown headings, paragraphs, lines, sentences), then size, using LangChain's
recursive splitter with the embedding tokenizer as its length function.
"""

from __future__ import annotations

import bisect
import re
from typing import Any, cast

from langchain_core.documents import Document
from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ #\t]*$", re.MULTILINE)
# A line underlined with === (level 1) or --- (level 2), as markdown allows and plain-text runbooks
# and postmortems write their headings ("3. ROOT CAUSE" over "-------------"); not a list item's.
SETEXT = re.compile(r"^(?![ \t]*[-*+>|][ \t])[ \t]*(\S[^\n]*?)[ \t]*\n(={3,}|-{3,})[ \t]*$", re.MULTILINE)
# A fenced code block: its "# comment" lines and "-----" under test output are not headings.
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1[ \t]*$", re.MULTILINE | re.DOTALL)
# Markdown headings and rules (--- === ***), and a plain-text heading line ("3. ROOT CAUSE"): the
# splitter leaves them alone in a chunk when the text under them fills the next chunk.
RULE_OR_HEADING = re.compile(r"#{1,6}[ \t].*|[-=_*]{3,}")
SHORT_LINE = re.compile(r"[^.!?:|\n]{1,60}")


def make_splitter(tokenizer: Any, chunk_size: int, chunk_overlap: int) -> RecursiveCharacterTextSplitter:
    splitter = RecursiveCharacterTextSplitter.from_huggingface_tokenizer(
        tokenizer,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        separators=RecursiveCharacterTextSplitter.get_separators_for_language(Language.MARKDOWN),
        is_separator_regex=True,
    )
    return cast(RecursiveCharacterTextSplitter, splitter)


def split(docs: list[Document], splitter: RecursiveCharacterTextSplitter) -> list[Document]:
    """Chunks of every Document, each tagged with the heading path in force where it starts."""
    chunks = []
    for doc in docs:
        headings = heading_index(doc.page_content)
        pieces = located(doc.page_content, splitter.split_text(doc.page_content))
        for n, (start, text) in enumerate(pieces):
            if n + 1 < len(pieces) and bare(text):
                continue  # a heading with its text in the next chunk: it would fill a search result with nothing
            metadata = dict(doc.metadata)
            section = section_at(headings, start)
            if section and "section" not in metadata:
                metadata["section"] = section
            chunks.append(Document(text, metadata=metadata))
    return chunks


def bare(text: str) -> bool:
    """Only headings and rules, or one short line that is not a sentence: nothing to answer from."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) == 1 and SHORT_LINE.fullmatch(lines[0]):
        return True
    return all(RULE_OR_HEADING.fullmatch(line) for line in lines)


def located(text: str, pieces: list[str]) -> list[tuple[int, str]]:
    """Each piece with its offset in `text`.

    LangChain's own `add_start_index` assumes the overlap is counted in characters, so with a
    token length function it loses track; chunks come in order, so search forward instead.
    """
    result, start = [], -1
    for piece in pieces:
        found = text.find(piece, start + 1)
        start = found if found >= 0 else max(start, 0)
        result.append((start, piece))
    return result


def heading_index(text: str) -> list[tuple[int, int, str]]:
    """(offset, level, title) of every heading, `# ...` or underlined, outside code blocks, in order."""
    code = [m.span() for m in FENCE.finditer(text)]
    marked = [(m.start(), len(m.group(1)), m.group(2).strip()) for m in HEADING.finditer(text)]
    underlined = [(m.start(), 1 if m.group(2)[0] == "=" else 2, m.group(1)) for m in SETEXT.finditer(text)]
    return sorted(h for h in marked + underlined if not any(start <= h[0] < end for start, end in code))


def section_at(headings: list[tuple[int, int, str]], offset: int) -> str:
    """The 'H1 > H2 > H3' path of the headings above `offset` (a chunk starting on a heading takes it)."""
    path: list[tuple[int, str]] = []
    for _, level, title in headings[: bisect.bisect_right(headings, (offset, 7, ""))]:
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
    return " > ".join(title for _, title in path)


def first_heading(docs: list[Document]) -> str:
    headings = heading_index(docs[0].page_content)
    return headings[0][2] if headings else ""
