"""What a user does, end to end, for tests/test_privacy.py to run without any network:
the real CLI ingests a folder (PDF, Word, HTML, text, a scanned image), answers a question
and searches;
then, given a socket path, `kbqa serve` runs and is reachable through that Unix socket
(the test drives it from a browser outside the namespace) until SOCKET.done appears.

Usage: python tests/offline_scenario.py HOME DOCS MODEL [SOCKET]
Prints "SCENARIO OK" at the end; any failed step exits non-zero with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))


def user_env() -> dict[str, str]:
    """A user's environment: none of the offline switches set; kbqa must set them itself."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("HF_", "TRANSFORMERS_", "DO_NOT_TRACK", "STREAMLIT_"))}


def add_word_and_web_page(docs: Path) -> None:
    """A Word file and a web page: unstructured reads them, and must do it offline."""
    import docx

    guide = docx.Document()
    guide.add_heading("Pump guide", 1)
    guide.add_paragraph("The pump hums quietly when it is primed.")
    guide.save(str(docs / "guide.docx"))
    (docs / "ferry.html").write_text("<html><body><h1>Ferry</h1><p>The ferry leaves at nine "
                                     "every morning.</p></body></html>", encoding="utf-8")


def cli(home: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "kbqa", "--home", str(home), *args],
                            capture_output=True, text=True, env=user_env(), timeout=900)
    if result.returncode != 0:
        raise SystemExit(f"`kbqa {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def main() -> int:
    home, docs, model = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    os.environ["KBQA_MODEL"] = str(model)
    report = cli(home, "ingest", str(docs))
    assert "added 7" in report, report  # unstructured (Word, HTML) and OCR (the image) too
    answer = cli(home, "ask", "Who leads the Vireo research team?")
    assert "Okonkwo" in answer, answer
    hits = cli(home, "search", "Does the pump hum when it is primed?", "-k", "3")
    assert "guide.docx" in hits, hits
    hits = cli(home, "search", "Where does the warehouse key hang?", "-k", "3")
    assert "note.png" in hits, hits
    if len(sys.argv) > 4:  # serve the app, reachable through a Unix socket, until told
        from browser import kbqa_server
        from relay import unix_to_tcp

        socket_path = Path(sys.argv[4])
        with kbqa_server(home.parent / "served", model, home.parent / "serve.log") as url:
            listener = unix_to_tcp(str(socket_path), int(url.rsplit(":", 1)[1]))
            socket_path.with_suffix(".ready").touch()
            deadline = time.monotonic() + 900
            while not socket_path.with_suffix(".done").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("the browser never finished")
                time.sleep(0.2)
            listener.close()
    print("SCENARIO OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
