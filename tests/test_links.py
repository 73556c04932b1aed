"""In-links: how many other files of the folder link to a file (core/links.py)."""

from __future__ import annotations

from core.links import in_links, resolved

SOURCES = {"index.html", "guide/tasks.html", "guide/index.html", "ref/settings.html", "ref/my page.html", "a.md"}


def test_links_are_resolved_from_the_linking_file_to_files_of_the_folder() -> None:
    links = "../ref/settings.html\n./\ntasks.html\n../ref/my%20page.html\n../../outside.html\nmissing.html"
    assert resolved("guide/tasks.html", links, SOURCES) == {"ref/settings.html", "guide/index.html", "ref/my page.html"}


def test_each_file_shares_one_vote_among_the_files_it_links_to_and_site_wide_links_count_for_nothing() -> None:
    linked = {
        "guide/tasks.html": "../ref/settings.html\n../ref/settings.html\n../index.html",
        "guide/index.html": "../ref/settings.html\ntasks.html\n../index.html",
        "ref/my page.html": "settings.html\n../index.html",
        "ref/settings.html": "settings.html\n../index.html",  # itself: not counted
    }
    # index.html is linked from 4 of 6 files, more than half: the theme's link home, dropped before the votes
    # are shared; guide/index.html's vote goes half to settings, half to tasks
    assert in_links(linked, SOURCES) == {"ref/settings.html": 2.5, "guide/tasks.html": 0.5}
