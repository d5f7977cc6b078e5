"""The command line as a user types it: python -m kbqa ingest / search / ask / status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_MODEL


def run(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KBQA_HOME": str(home), "KBQA_MODEL": str(SMALL_MODEL)}
    return subprocess.run([sys.executable, "-m", "kbqa", *args], capture_output=True,
                          text=True, env=env, timeout=600, input=stdin)


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run("--help", home=tmp_path)
    assert result.returncode == 0
    for command in ("ingest", "ask", "chat", "search", "serve", "KBQA_MODEL"):
        assert command in result.stdout


@pytest.mark.slow
def test_ingest_search_ask_from_the_shell(tmp_path: Path, docs: Path) -> None:
    home = tmp_path / "home"
    ingest = run("ingest", "-q", str(docs), home=home)
    assert ingest.returncode == 0, ingest.stderr
    assert "added 4" in ingest.stdout and "failed 1" in ingest.stdout
    assert "broken.pdf: not a readable PDF" in ingest.stdout

    search = run("search", "Zephyr service interval", "-k", "1", home=home)
    assert "zephyr-manual.pdf, page 2" in search.stdout

    ask = run("ask", "How often must the Zephyr X200 pump be serviced?", home=home)
    assert ask.returncode == 0, ask.stderr
    assert "450" in ask.stdout
    assert "zephyr-manual.pdf, page 2" in ask.stdout

    status = run("status", home=home)
    assert "documents:      4" in status.stdout

    chat = run("chat", home=home,
               stdin="When does the Lindqvist harbor office open?\nAnd when does it close?\n\n")
    assert chat.returncode == 0, chat.stderr
    first, second = chat.stdout.split("\n? ")[1:3]
    assert "7:15" in first and "16:40" in second and "harbor.md" in second


def test_only_failures_give_a_non_zero_exit(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "zero.pdf").write_bytes(b"")
    result = run("ingest", "-q", str(bad), home=tmp_path / "home")
    assert result.returncode == 1
    assert "zero.pdf: empty file" in result.stdout


def test_ask_on_an_empty_knowledge_base_explains_what_to_do(tmp_path: Path) -> None:
    result = run("ask", "anything?", home=tmp_path / "home")
    assert result.returncode == 2
    assert "no documents yet" in result.stderr and "make ingest" in result.stderr
