"""The HTTP API (`python -m kbqa api`): OpenAI-compatible chat completions that carry their
citations, search, documents (upload, list, delete), ingest jobs with progress, health.

Any OpenAI client or chat front end can ask the knowledge base: the answer is the same
checked, cited answer as in the chat, its citations in an extension field (`citations`) of
the response and of the last streamed chunk. State lives in the knowledge base, not here:
several API and chat processes can serve one (ingest jobs are this process's own, their
results are in the knowledge base for every process). Loopback by default; any other
address needs an API key (`KBQA_API_KEY`, sent as a bearer token).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from kbqa.access import DiskScope, is_loopback, password_ok
from kbqa.domain import Answer, Citation, Hit, IngestProgress, IngestReport
from kbqa.errors import KbqaError, ModelBusy, SettingError
from kbqa.kb import KnowledgeBase
from kbqa.uploads import UPLOADS_DIR, save_uploads
from pydantic import BaseModel, ConfigDict, Field

MODEL_ID = "kbqa"  # what /v1/models lists: the knowledge base, whichever model answers


def _local(host: str) -> bool:
    return not host or is_loopback(host)


def check_api_exposure(address: str, api_key: str) -> None:
    """Refuse to serve documents beyond this machine without an API key."""
    if not is_loopback(address) and not api_key:
        raise SettingError(
            f"serving the API on {address} would let anyone on the network read your "
            "documents: set an API key (KBQA_API_KEY=...) that clients send as a bearer "
            "token, or serve on 127.0.0.1 (the default)")


def citation_json(number: int, cite: Citation) -> dict[str, Any]:
    return {"number": number, "source": cite.source, "file": Path(cite.source).name,
            "page": cite.page, "place": cite.place, "quote": cite.quote,
            "chunk_id": cite.chunk_id, "score": round(cite.score, 4)}


def answer_extension(answer: Answer) -> dict[str, Any]:
    """What an OpenAI response cannot say: the sources, and whether the answer held."""
    return {"citations": [citation_json(n, c) for n, c in enumerate(answer.citations, 1)],
            "kbqa": {"grounded": answer.grounded, "refused": answer.refused,
                     "search_query": answer.search_query,
                     "unsupported": [{"sentence": f.sentence, "reason": f.reason}
                                     for f in answer.unsupported]}}


def hit_json(hit: Hit) -> dict[str, Any]:
    chunk = hit.chunk
    return {"chunk_id": chunk.chunk_id, "source": chunk.source, "page": chunk.page,
            "place": chunk.place, "heading": chunk.heading, "text": chunk.text,
            "score": round(hit.score, 4), "similarity": round(hit.similarity, 4)}


def question_and_history(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, str]]]:
    """The last user message is the question; earlier user and assistant turns its history.
    Content may be a string or OpenAI's list of parts (the text parts are read).

    Example: question_and_history([{"role": "user", "content": "Hi"}]) == ("Hi", [])
    """
    turns = [{"role": m.get("role", ""), "content": _text_of(m.get("content"))}
             for m in messages if m.get("role") in ("user", "assistant")]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise SettingError("the last message must be the user's question (role \"user\", "
                           "with text)")
    return turns[-1]["content"], turns[:-1]


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content
                         if isinstance(part, dict) and part.get("type") == "text")
    return ""


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None

class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # temperature, top_p ...: kbqa's own apply
    model: str = MODEL_ID
    messages: list[Message]
    stream: bool = False

class SearchRequest(BaseModel):
    query: str
    k: int = Field(5, ge=1, le=100)
    filters: dict[str, Any] | None = None
    mode: str = "hybrid"

class IngestRequest(BaseModel):
    paths: list[str] = Field(min_length=1)
    prune: bool = True


@dataclass
class IngestJob:
    """An ingest started through the API: its progress while it runs, then its report."""

    job_id: str
    paths: list[str]
    status: str = "running"  # running, done, failed
    progress: IngestProgress | None = None
    report: IngestReport | None = None
    error: str = ""
    failed_uploads: list[dict[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.time)

    def as_json(self) -> dict[str, Any]:
        report = None
        if self.report is not None:
            report = {**asdict(self.report), "summary": self.report.summary()}
            report["failed"] = [{"path": f.path, "reason": f.reason}
                                for f in self.report.failed]
        return {"id": self.job_id, "status": self.status, "paths": self.paths,
                "progress": asdict(self.progress) if self.progress else None,
                "report": report, "error": self.error, "failed_uploads": self.failed_uploads,
                "started": self.started}


class IngestJobs:
    """Ingest jobs run one after another in a thread of their own (the knowledge base takes
    one writer at a time anyway); each is kept here with its progress and report."""

    def __init__(self, kb: KnowledgeBase, scope: DiskScope) -> None:
        self._kb = kb
        self._scope = scope
        self._jobs: dict[str, IngestJob] = {}
        self._lock = threading.Lock()
        self._writer = threading.Lock()

    def start(self, paths: list[Path], *, prune: bool = True,
              failed_uploads: list[dict[str, str]] | None = None) -> IngestJob:
        for path in paths:
            problem = self._scope.folder_problem(path)
            if problem:
                raise SettingError(problem)
        job = IngestJob(uuid.uuid4().hex[:12], [str(p) for p in paths],
                        failed_uploads=failed_uploads or [])
        with self._lock:
            self._jobs[job.job_id] = job
        threading.Thread(target=self._run, args=(job, paths, prune), daemon=True,
                         name=f"kbqa-ingest-{job.job_id}").start()
        return job

    def _run(self, job: IngestJob, paths: list[Path], prune: bool) -> None:
        def heard(progress: IngestProgress) -> None:
            job.progress = progress

        try:
            with self._writer:
                job.report = self._kb.ingest(paths, prune=prune, on_progress=heard,
                                             within=self._scope.within)
            job.status = "done"
        except KbqaError as exc:
            job.status, job.error = "failed", str(exc)
        except Exception as exc:  # reported on the job; the server keeps serving
            job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"

    def get(self, job_id: str) -> IngestJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def all(self) -> list[IngestJob]:
        with self._lock:
            return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)


def create_app(kb: KnowledgeBase, *, api_key: str = "", address: str = "127.0.0.1"
               ) -> FastAPI:
    """The FastAPI application over one knowledge base."""
    check_api_exposure(address, api_key)
    settings = kb.settings
    scope = DiskScope.of(address, kb.home / UPLOADS_DIR, settings.ingest_folders,
                         settings.models_dir)
    jobs = IngestJobs(kb, scope)
    # The interactive docs pages load their scripts from a CDN: off. The schema is served,
    # and /docs lists the endpoints with nothing fetched from elsewhere.
    app = FastAPI(title="kbqa", version="1", summary=__doc__.splitlines()[0],
                  docs_url=None, redoc_url=None)

    def authorized(request: Request) -> None:
        if not api_key:
            return
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not password_ok(given, api_key):
            raise HTTPException(401, "a valid API key is needed: send it as "
                                     "`Authorization: Bearer <KBQA_API_KEY>`",
                                headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorized)]

    if is_loopback(address):
        # Keyless on this machine: a web page the user visits must not reach it, by a
        # form posted across origins or by a DNS name rebound to 127.0.0.1.
        @app.middleware("http")
        async def this_machine_only(request: Request, call_next: Any) -> Any:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
            origin = request.headers.get("origin")
            origin_host = (urlsplit(origin).hostname or "") if origin else "127.0.0.1"
            if not (_local(host) and _local(origin_host)):
                return JSONResponse({"error": {"message": "this API serves this machine "
                                               "only: call it at 127.0.0.1, not from a web "
                                               "page"}}, status_code=403)
            return await call_next(request)

    @app.exception_handler(KbqaError)
    def kbqa_error(_request: Request, exc: KbqaError) -> JSONResponse:
        status = 503 if isinstance(exc, ModelBusy) else 400
        return JSONResponse({"error": {"message": str(exc), "type": type(exc).__name__}},
                            status_code=status)

    @app.get("/healthz", summary="Is the server up (no key needed)")
    def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> str:
        rows = "".join(f"<li><code>{method.upper()} {path}</code>: {op.get('summary', '')}"
                       "</li>" for path, ops in app.openapi()["paths"].items()
                       for method, op in ops.items())
        return (f"<!doctype html><title>kbqa API</title><h1>kbqa API</h1><ul>{rows}</ul>"
                "<p>The OpenAPI schema: <a href=\"/openapi.json\">/openapi.json</a></p>")

    @app.get("/v1/models", dependencies=guarded, summary="The model this API answers as")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL_ID, "object": "model",
                                            "owned_by": "kbqa",
                                            "answered_by": kb.generator_name()}]}

    @app.post("/v1/chat/completions", dependencies=guarded,
              summary="OpenAI-compatible chat: a cited answer from the documents")
    def chat(request: ChatRequest) -> Any:
        question, history = question_and_history([m.model_dump() for m in request.messages])
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        if not request.stream:
            answer = kb.ask(question, history=history)
            return {"id": completion_id, "object": "chat.completion", "created": created,
                    "model": request.model,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer.text}}],
                    "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
                    **answer_extension(answer)}
        stream = kb.ask_stream(question, history=history)
        first = next(stream)  # errors before the first piece are HTTP errors, not events
        return StreamingResponse(
            _events(itertools.chain([first], stream), completion_id, created, request.model),
            media_type="text/event-stream")

    @app.post("/v1/search", dependencies=guarded, summary="The passages most relevant to a "
                                                          "query (hybrid, dense or lexical)")
    def search(request: SearchRequest) -> dict[str, Any]:
        hits = kb.search(request.query, request.k, filters=request.filters, mode=request.mode)
        return {"object": "list", "data": [hit_json(h) for h in hits]}

    @app.get("/v1/documents", dependencies=guarded, summary="The documents in the knowledge "
                                                            "base")
    def documents() -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": d.document_id, "path": d.path, "file": d.file, "kind": d.kind,
             "pages": d.pages, "chunks": d.chunk_count, "ingested_at": d.ingested_at.isoformat()}
            for d in kb.documents()]}

    @app.post("/v1/documents", dependencies=guarded, status_code=202,
              summary="Upload files (a .zip is unpacked) and ingest them: returns the job")
    def upload(files: list[UploadFile] = File(...)) -> dict[str, Any]:  # noqa: B008
        # a plain def: FastAPI runs it in a worker thread, not on the event loop
        limit = settings.max_upload_mb * 2**20
        received = []
        for item in files:
            data = item.file.read(limit + 1)  # no more than the limit is held
            received.append((item.filename or "upload", data))
        saved = save_uploads(received, kb.home / UPLOADS_DIR, limit)
        refused = [{"path": f.path, "reason": f.reason} for f in saved.failed]
        if not saved.paths:
            raise HTTPException(400, {"message": "nothing to ingest", "failed": refused})
        return jobs.start(saved.paths, prune=False, failed_uploads=refused).as_json()

    @app.delete("/v1/documents/{document_id}", dependencies=guarded,
                summary="Forget a document (its file on disk stays)")
    def delete(document_id: int) -> dict[str, Any]:
        documents = kb.documents()
        stored = next((d for d in documents if d.document_id == document_id), None)
        if stored is None:
            raise HTTPException(404, f"no document {document_id}: GET /v1/documents lists "
                                     "them")
        if stored.file and stored.file != stored.path:  # an e-mail's attachment
            parent = next((d.document_id for d in documents if d.path == stored.file), None)
            raise HTTPException(409, f"{stored.path} is an attachment of {stored.file}: it is "
                                     "forgotten with its message (DELETE /v1/documents/"
                                     f"{parent if parent is not None else '<its id>'})")
        return {"removed": kb.remove([stored.file or stored.path])}

    @app.post("/v1/ingest", dependencies=guarded, status_code=202,
              summary="Ingest files or folders on the server: returns the job")
    def ingest(request: IngestRequest) -> dict[str, Any]:
        return jobs.start([Path(p) for p in request.paths], prune=request.prune).as_json()

    @app.get("/v1/ingest", dependencies=guarded, summary="This server's ingest jobs")
    def ingest_jobs() -> dict[str, Any]:
        return {"object": "list", "data": [j.as_json() for j in jobs.all()]}

    @app.get("/v1/ingest/{job_id}", dependencies=guarded, summary="An ingest job's progress "
                                                                  "and report")
    def ingest_job(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"no ingest job {job_id} on this server")
        return job.as_json()

    return app


def _events(items: Iterator[str | Answer], completion_id: str, created: int, model: str
            ) -> Iterator[str]:
    """OpenAI's server-sent chunks: the role, the text as it is written, then a last chunk
    with the finish reason, the checked answer's citations and verdict, then [DONE]."""
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {"id": completion_id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta,
                                             "finish_reason": finish}], **extra}
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant"})
    try:
        for item in items:
            if isinstance(item, Answer):
                extension = answer_extension(item)
                extension["kbqa"]["text"] = item.text  # the checked text, flags and all
                yield chunk({}, "stop", **extension)
            else:
                yield chunk({"content": item})
    except Exception as exc:  # the client hears it as an event, and the stream still ends
        message = str(exc) if isinstance(exc, KbqaError) else f"{type(exc).__name__}: {exc}"
        yield f"data: {json.dumps({'error': {'message': message}}, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def serve_api(kb: KnowledgeBase, host: str, port: int, api_key: str) -> int:
    """Run the API with uvicorn until Ctrl+C."""
    import uvicorn

    app = create_app(kb, api_key=api_key, address=host)
    print(f"kbqa: API at http://{host}:{port}/v1 (endpoints: /docs; Ctrl+C stops it)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0
