"""Uploads: allowed types checked by extension and content, size limit, sanitised names that can
never leave the upload folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.uploads import UploadError, safe_name, save_upload

MB = 2**20  # as ingestion's max_file_mb counts


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.md", "passwd.md"),
        ("..\\..\\windows\\evil.txt", "evil.txt"),
        ("-rf report.pdf", "rf report.pdf"),
        (".hidden.md", "hidden.md"),
        ("Grüße & <script>.md", "Grüße _ _script.md"),
        ("noext", "noext"),
        ("/", "upload"),
    ],
)
def test_names_are_sanitised(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_text_upload_is_saved_inside_the_upload_folder(tmp_path: Path) -> None:
    path = save_upload("../../escape.md", b"# Hello\n\nText.", tmp_path, MB)
    assert path == (tmp_path / "uploads" / "escape.md").resolve()
    assert path.read_bytes() == b"# Hello\n\nText."
    assert not (tmp_path.parent / "escape.md").exists()


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("tool.exe", b"MZ\x90\x00", "not allowed"),
        ("report.pdf", b"<html>not a pdf</html>", "PDF"),
        ("notes.docx", b"plain text", "zip"),
        ("notes.txt", b"\x7fELF\x00\x00\x00binary", "binary"),
        ("empty.md", b"", "empty"),
        ("big.txt", b"x" * (MB + 1), "limit"),
    ],
)
def test_bad_uploads_are_refused_with_the_file_name(tmp_path: Path, name: str, data: bytes, message: str) -> None:
    with pytest.raises(UploadError, match=message) as error:
        save_upload(name, data, tmp_path, MB)
    assert str(error.value).startswith(name)
    assert not (tmp_path / "uploads").exists() or not any((tmp_path / "uploads").iterdir())


def test_utf16_text_is_allowed(tmp_path: Path) -> None:
    assert save_upload("memo.txt", "Hallo Welt".encode("utf-16"), tmp_path, MB).exists()


def test_uploads_with_the_same_name_never_replace_each_other(tmp_path: Path) -> None:
    names = ["same.md", "same.md", "/etc/same.md", "same.MD", ".md", "....md"]
    paths = [save_upload(name, f"# Upload {i}\n\nText {i}.".encode(), tmp_path, MB) for i, name in enumerate(names)]
    assert len(set(paths)) == len(names)
    assert [p.read_text() for p in paths] == [f"# Upload {i}\n\nText {i}." for i in range(len(names))]
    assert {p.name for p in paths} >= {"same.md", "same (2).md", "same (3).md", "same (4).md", "upload.md"}


def test_the_same_upload_twice_lands_on_one_file(tmp_path: Path) -> None:
    assert save_upload("a.md", b"# A", tmp_path, MB) == save_upload("a.md", b"# A", tmp_path, MB)
    assert len(list((tmp_path / "uploads").iterdir())) == 1


def test_an_upload_folder_that_links_elsewhere_is_refused(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "docs", tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    (root / "uploads").symlink_to(elsewhere)
    with pytest.raises(UploadError, match="link"):
        save_upload("a.md", b"# A", root, MB)
    assert not any(elsewhere.iterdir())


@pytest.mark.parametrize(
    ("limit", "expected"),
    [(100, "2 KB is over the 100 bytes limit"), (2**20, "1,048,577 bytes is over the 1,048,576 bytes limit")],
)
def test_size_limit_message_gives_real_sizes(tmp_path: Path, limit: int, expected: str) -> None:
    with pytest.raises(UploadError, match=expected):
        save_upload("big.txt", b"x" * max(2048, limit + 1), tmp_path, limit)
