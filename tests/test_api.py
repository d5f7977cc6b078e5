"""The HTTP API through a real uvicorn server on loopback, over the real models and SQLite;
the client is plain HTTP (httpx), as any OpenAI client or script would be."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from conftest import free_port
from kbqa.errors import SettingError


@contextmanager
def running(app) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread; its base address."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def wait_for_job(client: httpx.Client, job: dict) -> dict:
    deadline = time.monotonic() + 300
    while job["status"] == "running":
        assert time.monotonic() < deadline, job
        time.sleep(0.3)
        job = client.get(f"/v1/ingest/{job['id']}").json()
    return job


def test_the_question_is_the_last_user_message() -> None:
    from kbqa.api import question_and_history

    question, history = question_and_history([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How often is the pump serviced?"},
        {"role": "assistant", "content": "Every 450 hours [1]."},
        {"role": "user", "content": [{"type": "text", "text": "With which kit?"}]}])
    assert question == "With which kit?"
    assert [m["role"] for m in history] == ["user", "assistant"]
    with pytest.raises(SettingError, match="last message must be the user's question"):
        question_and_history([{"role": "assistant", "content": "Hi"}])


def test_a_key_guards_everything_but_health_and_the_network_needs_one(tmp_path: Path) -> None:
    import kbqa
    from kbqa.api import check_api_exposure, create_app

    with pytest.raises(SettingError, match="KBQA_API_KEY"):
        check_api_exposure("0.0.0.0", "")
    check_api_exposure("0.0.0.0", "k3y")
    check_api_exposure("127.0.0.1", "")
    kb = kbqa.open_kb(tmp_path / "home")
    with running(create_app(kb, api_key="k3y", address="0.0.0.0")) as base:
        assert httpx.get(f"{base}/healthz").json() == {"status": "ok"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k3y"}):
            refused = httpx.get(f"{base}/v1/documents", headers=headers)
            assert refused.status_code == 401 and "KBQA_API_KEY" in refused.text
        allowed = httpx.get(f"{base}/v1/documents", headers={"Authorization": "Bearer k3y"})
        assert allowed.status_code == 200 and allowed.json()["data"] == []
        assert "/v1/chat/completions" in httpx.get(f"{base}/openapi.json").json()["paths"]
        page = httpx.get(f"{base}/docs").text
        assert "POST /v1/search" in page and "http" not in page.split("<ul>")[1].split(
            "</ul>")[0], "the docs page loads nothing from elsewhere"
        # served to the network, it ingests only its uploads and the listed folders
        outside = httpx.post(f"{base}/v1/ingest", json={"paths": [str(tmp_path)]},
                             headers={"Authorization": "Bearer k3y"})
        assert outside.status_code == 400 and "KBQA_INGEST_FOLDERS" in outside.text
    with running(create_app(kb)) as base:  # keyless, on this machine only
        assert httpx.get(f"{base}/v1/documents").status_code == 200
        for headers in ({"Origin": "http://evil.example"},  # a page posting across origins
                        {"Host": "rebound.example"}):  # a DNS name rebound to 127.0.0.1
            refused = httpx.get(f"{base}/v1/documents", headers=headers)
            assert refused.status_code == 403 and "this machine only" in refused.text
        assert httpx.get(f"{base}/v1/documents",
                         headers={"Origin": "http://localhost:8501"}).status_code == 200
    kb.close()
    refused = subprocess.run([sys.executable, "-m", "kbqa", "--home", str(tmp_path / "h2"),
                              "api", "--host", "0.0.0.0"], capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "KBQA_API_KEY" in refused.stderr


@pytest.mark.both_databases
@pytest.mark.models
def test_documents_search_and_cited_chat_completions_over_http(
        make_kb: Callable, docs: Path) -> None:
    from kbqa.api import create_app

    kb = make_kb()
    with running(create_app(kb)) as base, httpx.Client(base_url=base, timeout=300) as client:
        files = [("files", (p.name, p.read_bytes())) for p in sorted(docs.rglob("*"))
                 if p.is_file()]
        job = client.post("/v1/documents", files=files)
        assert job.status_code == 202, job.text
        job = wait_for_job(client, job.json())
        assert job["status"] == "done", job
        assert job["progress"]["files_done"] == job["progress"]["files_total"] == len(files)
        report = job["report"]
        assert "zephyr-manual.pdf" in " ".join(report["added"])
        assert [Path(f["path"]).name for f in report["failed"]] == ["broken.pdf"]
        listed = client.get("/v1/documents").json()["data"]
        assert "zephyr-manual.pdf" in {Path(d["path"]).name for d in listed}

        hits = client.post("/v1/search", json={"query": "ZK-7731", "k": 3}).json()["data"]
        assert Path(hits[0]["source"]).name == "zephyr-manual.pdf" and hits[0]["page"] == 2

        question = {"role": "user", "content": "How often must the Zephyr X200 pump be serviced?"}
        reply = client.post("/v1/chat/completions",
                            json={"model": "kbqa", "messages": [question]}).json()
        assert reply["object"] == "chat.completion"
        text = reply["choices"][0]["message"]["content"]
        assert "450" in text
        assert [(c["file"], c["page"]) for c in reply["citations"]] == [
            ("zephyr-manual.pdf", 2)]
        assert reply["kbqa"]["refused"] is False

        with client.stream("POST", "/v1/chat/completions", json={
                "messages": [question, {"role": "assistant", "content": text},
                             {"role": "user", "content": "Which kit is used for it?"}],
                "stream": True}) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
        last = chunks[-1]
        assert last["choices"][0]["finish_reason"] == "stop"
        assert "ZK-7731" in streamed and "ZK-7731" in last["kbqa"]["text"]
        assert [c["file"] for c in last["citations"]] == ["zephyr-manual.pdf"]

        refusal = client.post("/v1/chat/completions", json={"messages": [
            {"role": "user", "content": "What is the boiling point of liquid nitrogen?"}]}).json()
        assert refusal["kbqa"]["refused"] and refusal["citations"] == []

        manual = next(d for d in listed if Path(d["path"]).name == "zephyr-manual.pdf")
        assert client.delete(f"/v1/documents/{manual['id']}").json()["removed"]
        hits = client.post("/v1/search", json={"query": "ZK-7731", "k": 3}).json()["data"]
        assert all(Path(h["source"]).name != "zephyr-manual.pdf" for h in hits)
        assert client.delete(f"/v1/documents/{manual['id']}").status_code == 404
        bad = client.post("/v1/search", json={"query": "x", "filters": {"colour": "red"}})
        assert bad.status_code == 400 and "error" in bad.json()


@pytest.mark.both_databases
@pytest.mark.models
def test_two_api_processes_serve_one_knowledge_base(make_kb: Callable, docs: Path) -> None:
    """Nothing is kept in the API process: what one ingests, the other finds."""
    from kbqa.api import create_app

    first, second = make_kb("shared"), make_kb("shared")
    with running(create_app(first)) as one, running(create_app(second)) as two:
        job = httpx.post(f"{one}/v1/ingest", json={"paths": [str(docs)]}).json()
        assert wait_for_job(httpx.Client(base_url=one), job)["status"] == "done"
        hits = httpx.post(f"{two}/v1/search", json={"query": "harbor office opening hours"},
                          timeout=120).json()["data"]
        assert Path(hits[0]["source"]).name == "harbor.md"


@pytest.mark.models
def test_an_attachment_is_deleted_with_its_message_and_says_so(make_kb: Callable,
                                                               tmp_path: Path) -> None:
    from email.message import EmailMessage

    from kbqa.api import create_app

    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "Boilers", "a@example.org", \
        "b@example.org"
    message.set_content("The inspection report is attached.")
    message.add_attachment(b"The boiler in hall C was inspected by Teodora Vance on 3 May.",
                           maintype="text", subtype="plain", filename="report.txt")
    mail = tmp_path / "mail" / "boilers.eml"
    mail.parent.mkdir()
    mail.write_bytes(bytes(message))
    kb = make_kb()
    kb.ingest(mail)
    with running(create_app(kb)) as base, httpx.Client(base_url=base, timeout=120) as client:
        listed = {Path(d["path"]).name: d for d in client.get("/v1/documents").json()["data"]}
        attachment = next(d for name, d in listed.items() if "report.txt" in name)
        refused = client.delete(f"/v1/documents/{attachment['id']}")
        assert refused.status_code == 409
        assert f"DELETE /v1/documents/{listed['boilers.eml']['id']}" in refused.text
        assert len(client.get("/v1/documents").json()["data"]) == len(listed)  # nothing went
        assert client.delete(f"/v1/documents/{listed['boilers.eml']['id']}").json()["removed"]
        assert client.get("/v1/documents").json()["data"] == []
