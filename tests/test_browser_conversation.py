"""A real conversation in a real browser (`python -m app`, headless Chromium, the sample company's
adapter): three turns (a question, a follow-up, one the documents can't answer), the sources
opened, an answer stopped half-way, the adapter switched to the base model, a document uploaded and
asked about. Asserts what a person sees; CHAT_SCREENSHOT_DIR=benchmarks keeps the three turns'
screenshot there (README)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.ui_turns import STOPPED
from tests import test_browser
from tests.conftest import ROOT
from tests.test_browser import chromium, click_in_view, streamlit_app

pytestmark = test_browser.pytestmark  # slow, loopback only, needs Debian's chromium-driver

QUESTIONS = [
    "How much does the ATEX sensor cost?",
    "And from how many pieces is there a discount?",
    "Who won the football world cup in 1998?",  # nothing in the documents
]
UPLOAD = "# Canteen\n\nThe canteen on the second floor serves lunch from 11:30 to 14:00 on weekdays.\n"
SCREENSHOT_WIDTH = 1000
HIDDEN_HEIGHT = """return Math.max(0, ...[...document.querySelectorAll('*')]
    .filter(e => /auto|scroll/.test(getComputedStyle(e).overflowY))
    .map(e => e.scrollHeight - e.clientHeight));"""  # how much of the page a scrolling element hides


@pytest.fixture
def conversation_data_dir(tmp_path: Path, llm_data_dir: Path, sample_docs_copy: Path) -> Path:
    """data/sample_docs ingested from a folder of its own (the upload lands there), with the sample adapter."""
    from core.settings import Settings
    from ingestion.pipeline import ingest

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "models").symlink_to(llm_data_dir / "models")
    shutil.copytree(ROOT / "data" / "sample_adapters" / "sample-company", data_dir / "adapters" / "sample-company")
    docs = shutil.copytree(sample_docs_copy, tmp_path / "docs")
    ingest(docs, Settings(data_dir=data_dir, embedding_precision="fp32"))
    return data_dir


@pytest.fixture
def conversation(conversation_data_dir: Path, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    with (
        streamlit_app(conversation_data_dir, tmp_path / "streamlit.log", ADAPTER="", CHAT__MAX_NEW_TOKENS="64") as url,
        chromium() as browser,
    ):
        try:
            yield url, browser
        finally:  # what the page showed last, to read when the test fails
            browser.save_screenshot(str(tmp_path / "last.png"))


def test_browser_conversation_of_three_turns_then_stop_base_model_and_upload(
    conversation: tuple[str, Any], tmp_path: Path
) -> None:
    url, browser = conversation
    browser.get(url)
    status = ask(browser, QUESTIONS[0], watch=True)
    assert "Stop" in status and re.search(r"Searching the documents|Writing the answer", status)
    for question in QUESTIONS[1:]:
        ask(browser, question)
    answers = assistant_texts(browser)
    assert len(answers) == 3 and all(has_answer_block(text) for text in answers)  # the follow-up's content may vary
    assert "649" in answers[0]
    assert "I couldn't find this in the documents." in answers[2] and "Closest passages:" in answers[2]
    open_sources(browser, [0, 2])
    keep_screenshot(browser, tmp_path)

    stop_mid_answer(browser, "Describe the KD-400 sensor and every one of its features in detail.")
    switch_adapter(browser, "none (base model)")
    ask(browser, QUESTIONS[0])  # answered: the stopped answer left the model free
    upload(browser, tmp_path / "canteen.md")
    ask(browser, "When does the canteen serve lunch?")
    answers = assistant_texts(browser)
    assert len(answers) == 6 and answers[3].strip().endswith(STOPPED)
    assert all(has_answer_block(text) for text in answers[:3] + answers[4:])
    assert "uploads/canteen.md" in answers[5]  # cited or among the closest passages
    assert_clean_page(browser)


def has_answer_block(text: str) -> bool:
    """An answer as show_turn draws it: text, sources, details and the time it took."""
    return (
        "Sources (" in text and "model's answer before the check:" in text and re.search(r"\d\.\d s", text) is not None
    )


def ask(browser: Any, question: str, watch: bool = False) -> str:
    """Ask, wait until the answer and its run are complete; with watch, what the answer showed meanwhile."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    turns = len(assistant_texts(browser)) + 1
    box = WebDriverWait(browser, 300).until(
        ready.element_to_be_clickable((By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']"))
    )
    box.send_keys(question, Keys.ENTER)
    wait = WebDriverWait(browser, 600, poll_frequency=0.2, ignored_exceptions=(StaleElementReferenceException,))
    shown = wait.until(lambda b: answering(b, turns)) if watch else ""
    wait.until(lambda b: len(texts := assistant_texts(b)) == turns and has_answer_block(texts[-1]))
    wait_idle(browser)
    return shown or ""


def assistant_texts(browser: Any) -> list[str]:
    """Each answer's whole text, closed expanders included; a traceback on the page fails at once."""
    from selenium.webdriver.common.by import By

    if errors := browser.find_elements(By.CSS_SELECTOR, "[data-testid='stException']"):
        raise AssertionError(errors[0].text)
    messages = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
    return [m.get_attribute("textContent") for m in messages[1::2]]


def stop_mid_answer(browser: Any, question: str) -> None:
    """Ask, press Stop once the answer is being written, wait for the note that replaces it."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    turns = len(assistant_texts(browser)) + 1
    browser.find_element(By.CSS_SELECTOR, "[data-testid='stChatInputTextArea']").send_keys(question, Keys.ENTER)
    wait = WebDriverWait(browser, 600, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda b: "Writing the answer" in (answering(b, turns) or ""))
    stop = browser.find_element(By.XPATH, "//*[@data-testid='stChatMessage']//button[contains(., 'Stop')]")
    click_in_view(browser, stop)  # not under the input box
    wait.until(lambda b: len(texts := assistant_texts(b)) == turns and STOPPED in texts[-1])
    wait_idle(browser)


def answering(browser: Any, turns: int) -> str | None:
    """The answer's visible text while it is being written (status line and Stop button)."""
    from selenium.webdriver.common.by import By

    messages = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")
    text = messages[-1].text if len(messages) == 2 * turns else ""
    return text if "Stop" in text else None


def wait_idle(browser: Any) -> None:
    """Until the script run is over (the page's own flag; Streamlit's running widget is hidden with the toolbar)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = (By.CSS_SELECTOR, "[data-testid='stApp']")
    WebDriverWait(browser, 600).until(
        lambda b: b.find_element(*app).get_attribute("data-test-script-state") == "notRunning"
    )


def open_sources(browser: Any, answers: list[int]) -> None:
    from selenium.webdriver.common.by import By

    messages = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stChatMessage']")[1::2]
    for index in answers:
        click_in_view(browser, messages[index].find_element(By.XPATH, ".//summary[contains(., 'Sources')]"))


def switch_adapter(browser: Any, label: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    boxes = browser.find_elements(By.CSS_SELECTOR, "[data-testid='stSidebar'] [data-testid='stSelectbox']")
    next(box for box in boxes if box.text.startswith("Adapter")).find_element(By.CSS_SELECTOR, "input").click()
    option = (By.XPATH, f"//*[@role='option'][contains(., '{label}')]")
    WebDriverWait(browser, 30).until(ready.element_to_be_clickable(option)).click()
    sidebar = browser.find_element(By.CSS_SELECTOR, "[data-testid='stSidebar']")
    WebDriverWait(browser, 300).until(lambda b: "Adapter: none" in sidebar.text)
    wait_idle(browser)


def upload(browser: Any, path: Path) -> None:
    """Through the sidebar's "Add documents": choose the file, ingest it, wait for the report."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    path.write_text(UPLOAD)
    sidebar = browser.find_element(By.CSS_SELECTOR, "[data-testid='stSidebar']")
    click_in_view(browser, sidebar.find_element(By.XPATH, ".//summary[contains(., 'Add documents')]"))
    sidebar.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(path))
    ingest = (By.XPATH, "//*[@data-testid='stSidebar']//button[contains(., 'Ingest into docs')]")
    WebDriverWait(browser, 60).until(ready.element_to_be_clickable(ingest)).click()
    WebDriverWait(browser, 600).until(lambda b: "Ingested into docs" in sidebar.text)
    wait_idle(browser)


def assert_clean_page(browser: Any) -> None:
    """No help table, JSON or traceback; no "None" or "DeltaGenerator" outside quoted document text; no Deploy."""
    from selenium.webdriver.common.by import By

    for kind in ("stHelp", "stJson", "stException"):
        assert not browser.find_elements(By.CSS_SELECTOR, f"[data-testid='{kind}']"), kind
    # st.text blocks quote passages and the model verbatim (a manual's table may say "None"); the rest is ours.
    ours = browser.execute_script(
        "const app = document.querySelector('[data-testid=\"stApp\"]').cloneNode(true);"
        "app.querySelectorAll('[data-testid=\"stText\"]').forEach(e => e.remove());"
        "return app.textContent;"
    )
    assert not re.search(r"\bNone\b|DeltaGenerator", ours)
    assert "DeltaGenerator" not in browser.find_element(By.TAG_NAME, "body").get_attribute("textContent")
    assert not browser.find_elements(By.CSS_SELECTOR, "[data-testid='stAppDeployButton']")
    assert not browser.find_elements(By.XPATH, "//button[normalize-space(.)='Deploy']")


def keep_screenshot(browser: Any, tmp_path: Path) -> Path:
    """The whole conversation (the window grown to its height), at most 1000 px wide, as a small PNG."""
    from PIL import Image

    for _ in range(4):  # Streamlit scrolls inside the page: grow the window until nothing scrolls
        hidden = browser.execute_script(HIDDEN_HEIGHT)
        if hidden <= 0:
            break
        size = browser.get_window_size()
        browser.set_window_size(size["width"], min(size["height"] + hidden + 50, 8000))
    wait_idle(browser)
    raw = tmp_path / "raw.png"
    browser.save_screenshot(str(raw))
    image = Image.open(raw).convert("RGB")
    height = round(image.height * SCREENSHOT_WIDTH / image.width)
    image = image.resize((SCREENSHOT_WIDTH, height), Image.Resampling.LANCZOS)
    target = ROOT / os.environ.get("CHAT_SCREENSHOT_DIR", tmp_path) / "chat_three_turns.png"
    image.quantize(colors=64).save(target, optimize=True)  # a UI screenshot: few colours, small file
    assert target.stat().st_size < 400_000
    print(f"screenshot: {target}")
    return target
