"""No byte leaves the machine: any non-loopback connection or DNS look-up fails the test."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT, SMALL_MODEL
from offline_scenario import add_word_and_web_page, user_env
from relay import tcp_to_unix

sys.path.insert(0, str(ROOT / "bench"))

from browser import ask, chromium, upload

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
    add_word_and_web_page(docs)
    result = subprocess.run(
        [sys.executable, "-c", GUARD + SCRIPT, str(tmp_path / "home"), str(docs),
         str(SMALL_MODEL)],
        capture_output=True, text=True, env=user_env(), timeout=600,
    )
    assert "NETWORK ATTEMPT" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Okonkwo" in result.stdout


def _namespace_runner() -> list[str] | None:
    """`unshare -n` (root) or `unshare -rn` (a user namespace), if this machine allows one."""
    for command in (["unshare", "-n"], ["unshare", "-rn"]):
        try:
            probe = subprocess.run([*command, "ip", "link", "set", "lo", "up"],
                                   capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if probe.returncode == 0:
            return command
    return None


@pytest.mark.slow
def test_cli_and_served_app_send_no_packet_in_a_network_namespace(tmp_path: Path,
                                                                  docs: Path) -> None:
    """The strongest form of the promise: the real CLI (ingest, ask, search) and the served
    app driven in Chromium run in a network namespace where every address is routed to
    `lo` and a raw packet socket records what goes out; any packet to a non-loopback
    address, from Python, C code, a subprocess or DNS, fails the test."""
    runner = _namespace_runner()
    if runner is None:
        pytest.skip("no network namespace here (unshare -n needs root, unshare -rn user "
                    "namespaces): the Python-level guard test above still ran")
    add_word_and_web_page(docs)
    from PIL import Image, ImageDraw, ImageFont

    scan = Image.new("RGB", (1200, 300), "white")  # a scanned note, for the OCR model
    ImageDraw.Draw(scan).text((60, 120), "The warehouse key hangs in locker 42.", fill="black",
                              font=ImageFont.truetype(
                                  "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 30))
    scan.save(docs / "note.png")
    tests = Path(__file__).parent
    report, bridge = tmp_path / "net.json", tmp_path / "app.sock"
    scenario = subprocess.Popen(
        [*runner, sys.executable, str(tests / "netwatch.py"), str(report), "--",
         sys.executable, str(tests / "offline_scenario.py"), str(tmp_path / "home"),
         str(docs), str(SMALL_MODEL), str(bridge)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 900
        while not bridge.with_suffix(".ready").exists():
            assert scenario.poll() is None, scenario.stdout.read()[-3000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the app never came up"
            time.sleep(0.2)
        # The browser runs out here (its own update checks are not kbqa's); the page and
        # everything it asks for travel through the Unix socket into the namespace.
        listener, port = tcp_to_unix(str(bridge))
        url = f"http://127.0.0.1:{port}"
        with chromium(tmp_path / "profile") as driver:
            added = upload(driver, url, docs / "manuals" / "zephyr-manual.pdf")
            assert "added 1" in added, added
            _, _, text = ask(driver, "How often must the Zephyr X200 pump be serviced?")
            assert "450" in text, text
            loaded = driver.execute_script(
                "return performance.getEntriesByType('resource').map(e => e.name)")
        listener.close()
        assert loaded and all(u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:",
                                            "blob:")) for u in loaded), loaded
    finally:
        bridge.with_suffix(".done").touch()
        output = scenario.communicate(timeout=300)[0]
    seen = json.loads(report.read_text())
    assert seen["attempts"] == {}, f"packets left for {seen['attempts']}"
    assert seen["returncode"] == 0, output[-3000:]
    assert "SCENARIO OK" in output


def test_the_namespace_watch_sees_an_attempt(tmp_path: Path) -> None:
    """The watch itself must work, or the test above could never fail: a C-level DNS
    look-up and a UDP datagram from a subprocess are both seen."""
    runner = _namespace_runner()
    if runner is None:
        pytest.skip("no network namespace here (unshare -n needs root, unshare -rn user "
                    "namespaces)")
    script = ("import socket, contextlib\n"
              "with contextlib.suppress(OSError): socket.getaddrinfo('example.com', 443)\n"
              "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('192.0.2.7', 9))\n")
    report = tmp_path / "net.json"
    subprocess.run([*runner, sys.executable, str(Path(__file__).parent / "netwatch.py"),
                    str(report), "--", sys.executable, "-c", script],
                   capture_output=True, timeout=60, check=True)
    attempts = json.loads(report.read_text())["attempts"]
    assert "192.0.2.7" in attempts
    assert len(attempts) >= 2  # and the resolver's query to its name server
