"""The chat's Streamlit setup without running it: no magic (a bare expression would be written to the
page), no Deploy button, from any working directory."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tests.conftest import ROOT

UI_FILES = [ROOT / "app" / "ui.py", ROOT / "app" / "ui_turns.py"]


def bare_expressions(path: Path) -> list[str]:
    """Expression statements Streamlit's magic would st.write: anything but a call, a docstring, await, yield."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.name}:{node.lineno}: {ast.unparse(node)}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and magic_writes(node.value)
    ]


def magic_writes(value: ast.expr) -> bool:
    if isinstance(value, ast.Call | ast.Await | ast.Yield | ast.YieldFrom):
        return False
    return not (isinstance(value, ast.Constant) and isinstance(value.value, str))  # docstrings stay


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_the_chat_has_no_statement_that_magic_would_write_to_the_page(path: Path) -> None:
    assert bare_expressions(path) == []


def test_the_check_finds_a_conditional_expression_statement(tmp_path: Path) -> None:
    script = tmp_path / "replay.py"
    script.write_text('"""doc"""\nshow(a) if user else other(b)\nst.markdown("x")\n')
    assert bare_expressions(script) == ["replay.py:2: show(a) if user else other(b)"]


def test_streamlit_reads_the_apps_config_from_any_working_directory(tmp_path: Path) -> None:
    from streamlit import config

    saved = config._main_script_path
    here = Path.cwd()
    try:
        os.chdir(tmp_path)  # `python -m app` started from elsewhere: only the script's own folder matches
        config._main_script_path = str(ROOT / "app" / "ui.py")  # what `streamlit run app/ui.py` sets
        config.get_config_options(force_reparse=True)
        assert config.get_option("runner.magicEnabled") is False
        assert config.get_option("client.toolbarMode") == "minimal"
    finally:
        os.chdir(here)
        config._main_script_path = saved
        config.get_config_options(force_reparse=True)


def test_python_m_app_passes_the_same_settings_as_flags() -> None:
    from app.__main__ import FLAGS

    pairs = dict(zip(FLAGS[::2], FLAGS[1::2], strict=True))
    assert pairs["--runner.magicEnabled"] == "false"
    assert pairs["--client.toolbarMode"] == "minimal"
    assert pairs["--server.address"] == "127.0.0.1"
