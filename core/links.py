"""How much a file is pointed at: the files of the same folder whose text links to it, each giving one vote
shared among the files it links to (a release note that links to fifty pages gives each a fiftieth; a page
that links to one gives it a whole vote, as PageRank's first step does).

Documentation is written around a few pages the rest refer to (a settings reference, the guide to tasks), and
those are where most questions are answered: the pages the Celery, SQLAlchemy and Django FAQs send readers to
have 12, 39 and 20 in-links at the median, against 1, 4 and 1 for a page of their folders. Retrieval raises a
chunk by 1 + link_prior * ln(1 + its file's votes) (core/retrieval.py); a folder without links (Markdown
notes, PDFs) ranks as before. Measured on five sets: benchmarks/RESULTS.md, "Retrieval quality".
"""

from __future__ import annotations

import posixpath
from collections import Counter, defaultdict
from urllib.parse import unquote

LINKS = "links"  # chunk metadata: the links of a file's text as written, one per line, on its first chunk
SITE_WIDE = 0.5  # a page linked from more than this share of the files is the theme's (home, copyright)


def resolved(source: str, links: str, sources: set[str]) -> set[str]:
    """The files of the folder that `links` (as written in `source`, one per line) point to, `source` not."""
    here = posixpath.dirname(source)
    found = set()
    for link in filter(None, links.split("\n")):
        page = posixpath.normpath(posixpath.join(here, unquote(link)))
        page = page if page in sources else posixpath.join(page, "index.html")  # "guide/" is guide/index.html
        if page in sources and page != source:
            found.add(page)
    return found


def in_links(linked: dict[str, str], sources: set[str]) -> dict[str, float]:
    """{file: its votes from the other files}; `linked`: {file: its links as written}; `sources`: every file
    of the collection. Site-wide links (more than SITE_WIDE of the files have them) are the theme's: dropped."""
    targets = {source: resolved(source, links, sources) for source, links in linked.items()}
    counts = Counter(page for pages in targets.values() for page in pages)
    theme = {page for page, n in counts.items() if n > SITE_WIDE * len(sources)}
    votes: dict[str, float] = defaultdict(float)
    for pages in targets.values():
        kept = pages - theme
        for page in kept:
            votes[page] += 1 / len(kept)
    return dict(votes)
