"""End to end in a real browser: Debian's headless Chromium against `kbqa serve` (what
`make run` starts). Upload a PDF, ask about it, see the answer and its source chip, open
the chip. The screenshot goes to a temporary folder, so a test run leaves the clone as it
was; `make screenshot` writes it over the README's picture (docs/screenshot.png)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SMALL_MODEL

sys.path.insert(0, str(ROOT / "bench"))

from browser import ask, button, chromium, kbqa_server, upload, wait_for

SCREENSHOT_TO = "KBQA_SCREENSHOT"  # where `make screenshot` wants the picture
pytestmark = pytest.mark.slow


def test_upload_ask_and_open_a_source_in_chromium(tmp_path: Path, docs: Path) -> None:
    manual = docs / "manuals" / "zephyr-manual.pdf"
    screenshot = Path(os.environ.get(SCREENSHOT_TO) or tmp_path / "screenshot.png")
    with kbqa_server(tmp_path / "home", SMALL_MODEL, tmp_path / "serve.log") as url, \
            chromium(tmp_path / "profile") as driver:
        report = upload(driver, url, manual)
        assert "added 1" in report, report
        first, total, text = ask(driver, "How often must the Zephyr X200 pump be serviced?")
        assert "450" in text, text
        assert 0 < first <= total
        chip = wait_for(lambda: button(driver, "[1] zephyr-manual.pdf · page 2"), 30,
                        "the source chip")
        chip.click()
        popover = wait_for(lambda: [p for p in driver.find_elements("css selector", "mark")
                                    if "450" in p.text], 30, "the marked passage")
        assert popover
        wait_for(lambda: driver.find_elements("css selector", '[data-testid="stImage"] img'),
                 30, "the rendered PDF page")
        driver.set_window_size(1280, 1500)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    print(f"\nbrowser: Enter to first visible text {first:.2f} s, finished {total:.2f} s "
          f"(small model); screenshot {screenshot}")
    assert screenshot.stat().st_size > 20_000


class _Watcher:
    """An HTTP server on another loopback port that records every request it gets."""

    def __init__(self) -> None:
        import http.server
        import threading

        seen = self.requests = []

        class Record(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Record)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_hostile_answer_makes_the_page_fetch_nothing(tmp_path: Path, docs: Path) -> None:
    """An answer (and its quoted passage) carrying remote images, links, raw HTML and bare
    addresses, as a document's injected instructions could make the model write, shown
    in the served chat: the browser sends 0 requests to a watcher on another loopback
    port, while a direct visit to the watcher is seen (so the watch works)."""
    import kbqa
    from kbqa.domain import Answer, Citation, Flag

    watcher = _Watcher()
    base = f"http://127.0.0.1:{watcher.port}"
    hostile = (f"The team is led by Marta Okonkwo [1]. ![status]({base}/md-image.png?q=7731) "
               f"See [details]({base}/md-link) or {base}/bare-address. "
               f'<img src="{base}/raw-img.png"> <iframe src="{base}/frame"></iframe> '
               f"![ref][x]\n\n[x]: {base}/ref-image.png")
    home = tmp_path / "home"
    kb = kbqa.open_kb(home, model=str(SMALL_MODEL))
    kb.ingest(docs / "team.txt")
    chunk = kb.search("Vireo research team", k=1)[0].chunk
    answer = Answer(text=hostile, question="Who leads the team?", grounded=True,
                    citations=[Citation(source=chunk.source, page=None,
                                        quote=f'<img src="{base}/quote-img.png">',
                                        chunk_id=chunk.chunk_id, score=1.0)],
                    unsupported=[Flag(f"![flag]({base}/flag-image.png)", "not in the source")])
    chat = kb.conversations.start("Hostile answer")
    kb.conversations.add_turn(chat.conversation_id, f"Question ![q]({base}/question.png)",
                              answer)
    kb.close()
    with kbqa_server(home, SMALL_MODEL, tmp_path / "serve.log") as url, \
            chromium(tmp_path / "profile") as driver:
        driver.get(url)
        wait_for(lambda: button(driver, "Hostile answer"), 120, "the kept chat").click()
        shown = wait_for(lambda: [m for m in driver.find_elements(
            "css selector", '[data-testid="stChatMessage"]') if "Okonkwo" in m.text], 60,
            "the answer")
        assert "md-image.png" in shown[0].text  # the address is shown as text, not fetched
        wait_for(lambda: button(driver, "[1] team.txt"), 30, "the source chip").click()
        time.sleep(1)
        wait_for(lambda: button(driver, "Copy"), 30, "the copy button").click()
        time.sleep(3)  # anything the page would fetch has been asked for by now
        assert watcher.requests == [], watcher.requests
        driver.get(f"{base}/control")
        wait_for(lambda: watcher.requests, 10, "the watcher to see a direct visit")
    assert watcher.requests[0] == "/control"
