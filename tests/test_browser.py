"""What a person sees: the real Streamlit server on loopback, driven by headless Chromium
(Debian's chromium + chromium-driver): ask a question, wait for the checked answer and its
sources, keep a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, free_port, wait_healthy

CHROMEDRIVER = shutil.which("chromedriver")
MAX_NEW_TOKENS = 32
pytestmark = [
    pytest.mark.slow,
    pytest.mark.enable_socket,
    pytest.mark.allow_hosts(["127.0.0.1"]),
    pytest.mark.skipif(CHROMEDRIVER is None, reason="needs Debian's chromium-driver (apt-get install chromium-driver)"),
]


@contextmanager
def streamlit_app(data_dir: Path, log: Path, **settings: str) -> Iterator[str]:
    """The chat as a user starts it (`python -m app`) on a free loopback port, by default with the base
    model and short answers; `settings` are more ASKDOCS_ variables (ADAPTER="" for the newest adapter)."""
    port = free_port()
    env = os.environ | {"ASKDOCS_DATA_DIR": str(data_dir), "ASKDOCS_ADAPTER": "none"}
    env["ASKDOCS_CHAT__MAX_NEW_TOKENS"] = str(MAX_NEW_TOKENS)
    env |= {f"ASKDOCS_{name}": value for name, value in settings.items()}
    env = {name: value for name, value in env.items() if value != ""}
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "app", "--server.port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", server)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            server.wait(timeout=30)


@contextmanager
def chromium(*, log_network: bool = False) -> Iterator[Any]:
    """Debian's headless Chromium; with log_network, DevTools logs every request the page makes."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
    ):
        options.add_argument(flag)
    if log_network:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def click_in_view(browser: Any, element: Any) -> None:
    """Scrolled to the middle of the window first, as a person would: at the window's edge the chat
    input's bar can cover it and take the click (seen in CI). While an expander opened just before
    is still growing, the page moves under the pointer and another message takes the click (also
    seen in CI), so the click is tried again, scrolled again, until the page holds still."""
    from selenium.common.exceptions import ElementClickInterceptedException
    from selenium.webdriver.support.ui import WebDriverWait

    def clicked(_: Any) -> bool:
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
        element.click()
        return True

    WebDriverWait(browser, 10, poll_frequency=0.3, ignored_exceptions=[ElementClickInterceptedException]).until(clicked)


@pytest.fixture
def chat_url(chat_data_dir: Path, tmp_path: Path) -> Iterator[str]:
    with streamlit_app(chat_data_dir, tmp_path / "streamlit.log") as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    with chromium() as driver:
        yield driver


def test_browser_user_asks_and_sees_a_cited_answer(chat_url: str, browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(chat_url)
    box = WebDriverWait(browser, 180).until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']"))
    )
    box.send_keys("How do I reset my VPN password?", Keys.ENTER)
    sources = WebDriverWait(browser, 300).until(
        ready.presence_of_element_located((By.XPATH, "//*[@data-testid='stExpander']//summary[contains(., 'Sources')]"))
    )
    click_in_view(browser, sources)
    time.sleep(1)
    shot = tmp_path / "chat.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")
    messages = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
    assert len(messages) == 2
    answer = messages[1].text
    assert "Sources (" in answer and "Sources (0)" not in answer
    assert "vpn" in answer.lower()  # the cited passage (file name and snippet) is on screen
    assert shot.stat().st_size > 10_000


def test_eight_browser_sessions_at_once_get_their_own_uncorrupted_answers(
    chat_url: str, browser, chat_data_dir: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    from core.chain import chain_from_settings
    from core.settings import Settings
    from tests.test_chain import HELD_OUT

    questions = [row["question"] for row in HELD_OUT if row["source"]][:8]
    tabs = []
    for question in questions:  # eight tabs = eight Streamlit sessions (websockets) on one server
        if tabs:
            browser.switch_to.new_window("tab")
        browser.get(chat_url)
        box = WebDriverWait(browser, 180).until(
            ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']"))
        )
        box.send_keys(question, Keys.ENTER)
        tabs.append(browser.current_window_handle)
    shown = []
    for tab in tabs:
        browser.switch_to.window(tab)
        wait = WebDriverWait(browser, 600, ignored_exceptions=(StaleElementReferenceException,))
        shown.append(wait.until(answer_details))
    chain = chain_from_settings(Settings(data_dir=chat_data_dir), adapter="none", max_new_tokens=MAX_NEW_TOKENS)
    for question, text in zip(questions, shown, strict=True):
        alone = chain.invoke({"question": question, "history": []})
        assert f"model's answer before the check: {alone.raw_answer}" in text, question
    loads = (tmp_path / "streamlit.log").read_text().count("Loading the chat model")
    assert loads == 1  # one model in the server, shared by every session


def answer_details(browser) -> str | None:  # type: ignore[no-untyped-def]
    """The answer's text once its Details (rendered after the checked answer) are on the page."""
    from selenium.webdriver.common.by import By

    messages = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
    text = messages[1].get_attribute("textContent") if len(messages) > 1 else ""
    return text if "model's answer before the check:" in text else None
