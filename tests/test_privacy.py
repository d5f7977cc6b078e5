"""No byte leaves the machine: any non-loopback connection or DNS look-up fails the test."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SMALL_MODEL

GUARD = textwrap.dedent("""
    import ipaddress, socket, sys

    def _local(host):
        if host in (None, "", "localhost"):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _check(address):
        host = address[0] if isinstance(address, tuple) else None
        if isinstance(address, tuple) and not _local(host):
            sys.stderr.write(f"NETWORK ATTEMPT: {address!r}\\n")
            raise OSError(f"kbqa privacy test: blocked connection to {address!r}")

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        _check(address)
        return _connect(self, address)

    def connect_ex(self, address):
        _check(address)
        return _connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _local(host if isinstance(host, str) else None):
            sys.stderr.write(f"NETWORK ATTEMPT: DNS {host!r}\\n")
            raise OSError(f"kbqa privacy test: blocked DNS look-up of {host!r}")
        return _getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
""")

SCRIPT = textwrap.dedent("""
    import os, sys
    import kbqa
    assert os.environ["HF_HUB_OFFLINE"] == "1", "kbqa must switch hub look-ups off itself"
    kb = kbqa.open_kb(sys.argv[1], model=sys.argv[3])
    report = kb.ingest(sys.argv[2])
    assert report.added, report
    # unstructured (docx, html) must neither phone home nor fetch its spaCy model
    assert not [f for f in report.failed if not f.path.endswith("broken.pdf")], report.failed
    assert any(p.endswith("guide.docx") for p in report.added), report
    assert kb.search("Who leads the Vireo research team?", k=1)
    answer = kb.ask("Who leads the Vireo research team?")
    print("ANSWER:", answer.text)
    import streamlit.testing.v1  # the UI's library, imported under the same guard
""")


def test_guard_catches_a_real_attempt(tmp_path: Path) -> None:
    """The guard itself must work, or the test below could never fail."""
    script = GUARD + "\nimport socket\nsocket.create_connection(('192.0.2.1', 80), timeout=1)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0 and "NETWORK ATTEMPT" in result.stderr


@pytest.mark.slow
def test_ingest_search_ask_open_no_connection(tmp_path: Path, docs: Path) -> None:
    import docx

    guide = docx.Document()
    guide.add_heading("Pump guide", 1)
    guide.add_paragraph("The pump hums quietly when it is primed.")
    guide.save(str(docs / "guide.docx"))
    (docs / "ferry.html").write_text("<html><body><h1>Ferry</h1><p>The ferry leaves at nine "
                                     "every morning.</p></body></html>", encoding="utf-8")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "TRANSFORMERS_", "DO_NOT_TRACK", "STREAMLIT_"))}
    result = subprocess.run(
        [sys.executable, "-c", GUARD + SCRIPT, str(tmp_path / "home"), str(docs),
         str(SMALL_MODEL)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Okonkwo" in result.stdout
