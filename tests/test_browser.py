"""End to end in a real browser: Debian's headless Chromium against `kbqa serve` (what
`make run` starts). Upload a PDF, ask about it, see the answer and its source chip, open
the chip. The screenshot goes to a temporary folder, so a test run leaves the clone as it
was; `make screenshot` writes it over the README's picture (docs/screenshot.png)."""

from __future__ import annotations

import os
import sys
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
