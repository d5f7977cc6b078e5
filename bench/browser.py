"""make bench-browser: what a user waits for in the browser, measured in Debian's Chromium.

Starts `python -m kbqa serve` (what `make run` runs) on a free loopback port with a fresh
knowledge base, uploads a document through the page's upload box, then asks questions in
the chat box and times each from pressing Enter to the first answer text on screen.
Data: ../shared/data/docs/text/norwich-city.txt (public sample, not copied) and the five
questions of `make bench`. The end-to-end test (tests/test_browser.py) drives the same code.

Usage: python bench/browser.py [--model default|small] [--doc FILE]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from speed import QUESTIONS, table  # the same five questions as `make bench`

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
DOC = ROOT.parent / "shared" / "data" / "docs" / "text" / "norwich-city.txt"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def kbqa_server(home: Path, model: Path, log: Path) -> Iterator[str]:
    """`python -m kbqa serve` on a free loopback port; yields its address once healthy."""
    port = free_port()
    env = {**os.environ, "KBQA_HOME": str(home), "KBQA_MODEL": str(model)}
    env.pop("KBQA_UI_PASSWORD", None)
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, "-m", "kbqa", "serve", "--port", str(port)],
                                  env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kbqa serve did not start: see {log}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """Headless Debian Chromium through its own chromedriver: nothing is downloaded, and
    the browser's background services (updates, sync) stay off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        raise RuntimeError("Chromium is missing: `make browser` installs Debian's chromium "
                           "and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,1500",
                 "--no-pings", "--disable-domain-reliability", "--disable-breakpad",
                 "--disable-client-side-phishing-detection", "--disable-default-apps",
                 "--no-default-browser-check", "--dns-prefetch-disable",
                 "--disable-features=OptimizationHints,AutofillServerCommunication,"
                 "MediaRouter,Translate,NetworkTimeServiceQuerying",
                 "--disable-search-engine-choice-screen", "--homepage=about:blank",
                 f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(condition: Any, timeout: float, what: str, poll: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = condition()
        except Exception:  # the page re-renders under us: try again
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(poll)


def by_css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def button(driver: Any, label: str) -> Any:
    from selenium.webdriver.common.by import By

    found = [b for b in driver.find_elements(By.TAG_NAME, "button")
             if label in b.text and b.is_displayed()]  # icons render as text too
    return found[0] if found else None


def upload(driver: Any, url: str, document: Path, timeout: float = 600) -> str:
    """Add a document through the page's upload box; returns the report shown."""
    driver.get(url)
    field = wait_for(lambda: by_css(driver, "input[type=file]"), 120, "the upload box")[0]
    field.send_keys(str(document))
    wait_for(lambda: button(driver, "Add to the knowledge base"), 60, "the add button").click()
    alert = wait_for(lambda: [a for a in by_css(driver, '[data-testid="stAlert"]')
                              if "added" in a.text], timeout, "the ingest report")
    return str(alert[0].text)


def answer_text(message: Any) -> str:
    from selenium.webdriver.common.by import By

    parts = message.find_elements(By.CSS_SELECTOR, '[data-testid="stChatMessageContent"]')
    return str(parts[0].text).strip() if parts else ""


WAITING = "Waiting for"  # the chat's note while other questions hold the model


def ask(driver: Any, question: str, timeout: float = 600,
        waited: list[float] | None = None) -> tuple[float, float, str]:
    """Type a question and press Enter. Returns (seconds to the first answer text on
    screen, seconds to the finished answer with its source chips, the answer's text).
    The "waiting for another question" note is not answer text: how long it was shown is
    appended to `waited` (0 when it never was)."""
    from selenium.webdriver.common.keys import Keys

    box = wait_for(lambda: by_css(driver, 'textarea[data-testid="stChatInputTextArea"]'),
                   120, "the chat box")[0]
    before = len(by_css(driver, '[data-testid="stChatMessage"]'))
    box.send_keys(question)
    box.send_keys(Keys.ENTER)
    pressed = time.perf_counter()

    queue = {"seen": 0.0, "left": 0.0}

    def first_text() -> bool:
        messages = by_css(driver, '[data-testid="stChatMessage"]')
        text = answer_text(messages[before + 1]) if len(messages) >= before + 2 else ""
        if WAITING in text:  # (after the icon's name, which renders as text)
            queue["seen"] = queue["seen"] or time.perf_counter()
            return False
        if queue["seen"] and not queue["left"]:
            queue["left"] = time.perf_counter()
        return bool(text)

    wait_for(first_text, timeout, "the first answer text", poll=0.02)
    first = time.perf_counter() - pressed
    if waited is not None:
        waited.append(queue["left"] - pressed if queue["seen"] else 0.0)

    def finished() -> str:
        from selenium.webdriver.common.by import By

        answer = by_css(driver, '[data-testid="stChatMessage"]')[before + 1]
        text = answer_text(answer)
        chips = answer.find_elements(By.CSS_SELECTOR, '[data-testid="stPopover"]')
        done = text and "▌" not in text and any("Copy" in c.text for c in chips)
        return text if done else ""

    text = wait_for(finished, timeout, "the finished answer")
    return first, time.perf_counter() - pressed, text


def main() -> int:
    from kbqa.llm.packaged import PACKAGED_MODELS
    from kbqa.settings import default_data_dir

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", choices=list(PACKAGED_MODELS))
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args()
    if not args.doc.is_file():
        print(f"bench-browser: {args.doc} absent (see ../shared/data)", file=sys.stderr)
        return 2
    model = default_data_dir() / "models" / PACKAGED_MODELS[args.model].file_name
    rows = []
    with tempfile.TemporaryDirectory(prefix="kbqa-browser-") as tmp:
        base = Path(tmp)
        with kbqa_server(base / "home", model, base / "serve.log") as url, \
                chromium(base / "profile") as driver:
            started = time.perf_counter()
            report = upload(driver, url, args.doc)
            upload_s = time.perf_counter() - started
            for question in QUESTIONS:
                first, total, text = ask(driver, question)
                rows.append((question, first, total, text.splitlines()[0][:60]))
    table(f"Browser (headless Chromium, {args.model} model): Enter to first visible answer "
          "text, and to the finished answer with its source chips",
          ["question", "first text (s)", "finished (s)", "answer"],
          [[q, f"{f:.2f}", f"{t:.2f}", a] for q, f, t, a in rows])
    firsts = [r[1] for r in rows]
    print(f"\nupload + ingest of {args.doc.name} through the page: {upload_s:.1f} s ({report})")
    print(f"first visible text: first question {firsts[0]:.2f} s; the later ones, each a "
          f"follow-up in the same chat (rewritten for the search first, history in the "
          f"prompt): p50 {statistics.median(firsts[1:]):.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
