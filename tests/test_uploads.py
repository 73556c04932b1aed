"""Uploads: allowed types checked by extension and content, size limit, sanitised names that can
never leave the upload folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.uploads import UploadError, safe_name, save_upload

MB = 1_000_000


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
