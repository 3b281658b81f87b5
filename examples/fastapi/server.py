"""The chat job API on FastAPI: submit, poll, follow the reply, cancel.

* ``POST /chat`` with ``{"conversation"?: "...", "text": "..."}`` enqueues a
  ``reply`` job and answers ``202 Accepted`` at once with
  ``{"id", "state", "links": {"self", "stream", "cancel"}}``. The enqueue is
  ``await reply.aio(...)``: on SQLite it is an fsync, which runs on a thread,
  never on the event loop.
* ``GET /jobs/{id}``: the job's state, progress, result or error and times.
* ``GET /jobs/{id}/stream``: server-sent events as the job runs, ``state``,
  ``progress`` and ``output`` (the reply's tokens, as ``reply`` emits them),
  ending when the job has finished; a client that reconnects with
  ``Last-Event-ID`` gets only what came after.
* ``DELETE /jobs/{id}``: cancel (a pending job never runs, a running reply
  stops at its next token).
* ``POST /embed`` with ``{"texts": [...]}``: vectors from the async
  ``embed`` task on the ``io`` queue, awaited (``await result.aget()``) for
  up to ``timeout`` seconds (default 10; 0 answers 202 with the job at once).

Errors are JSON ``{"error", "detail"}`` with a real status code.

Run from this folder: ``uvicorn server:api --port 8000``.
"""

import asyncio
import json

from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from huey.exceptions import ResultTimeout, TaskException

import hueyq
import tasks

api = FastAPI(title="hueyq chat example")


def error(status: int, name: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": name, "detail": detail}, status_code=status)


def links(job_id: str) -> dict:
    path = "/jobs/%s" % job_id
    return {"self": path, "stream": path + "/stream", "cancel": path}


async def body_of(request: Request) -> "dict | None":
    try:
        body = await request.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


@api.post("/chat", status_code=202)
async def chat(request: Request):
    body = await body_of(request) or {}
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return error(400, "bad request", 'send JSON with a non-empty "text"')
    result = await tasks.reply.aio(str(body.get("conversation", "default")),
                                   text)
    return JSONResponse({"id": result.id, "state": "pending",
                         "links": links(result.id)}, status_code=202,
                        headers={"Location": links(result.id)["self"]})


@api.get("/jobs/{job_id}")
async def job(job_id: str):
    try:
        found = await tasks.app.ajob(job_id, history=False)
    except hueyq.JobNotFound:
        return error(404, "not found", "no job %s" % job_id)
    return JSONResponse({
        "id": found.id, "state": found.state, "progress": found.progress,
        "message": found.message, "result": found.result,
        "error": found.error, "enqueued_at": found.enqueued_at,
        "started_at": found.started_at, "finished_at": found.finished_at,
        "links": links(found.id)}, headers={"Cache-Control": "no-store"})


@api.get("/jobs/{job_id}/stream")
async def stream(job_id: str, last_event_id: "str | None" = Header(None)):
    after = int(last_event_id) if (last_event_id or "").isdigit() else 0
    events = tasks.app.aevents(job_id, after=after)
    try:
        # The first event (the job's state) also says whether it exists.
        first = await events.__anext__()
    except hueyq.JobNotFound:
        return error(404, "not found", "no job %s" % job_id)
    except StopAsyncIteration:
        first = None

    async def sse():
        event = first
        try:
            while event is not None:
                yield "id: %d\nevent: %s\ndata: %s\n\n" % (
                    event.id, event.kind, json.dumps(event.data))
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    event = None
        finally:            # the client went away, or the job ended
            await events.aclose()
    return StreamingResponse(sse(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store"})


@api.delete("/jobs/{job_id}")
async def cancel(job_id: str):
    try:
        done = await asyncio.to_thread(tasks.app.cancel, job_id)
    except hueyq.JobNotFound:
        return error(404, "not found", "no job %s" % job_id)
    except hueyq.InvalidState as exc:
        return error(409, "conflict", str(exc))
    return JSONResponse({"id": job_id, "state": done.state,
                         "detail": done.detail}, status_code=202)


@api.post("/embed")
async def embed(request: Request):
    body = await body_of(request) or {}
    texts, timeout = body.get("texts"), body.get("timeout", 10)
    if not isinstance(texts, list) or not texts or not all(
            isinstance(t, str) for t in texts):
        return error(400, "bad request", 'send JSON with "texts": a '
                     "non-empty list of strings")
    if not isinstance(timeout, (int, float)) or not 0 <= timeout <= 60:
        return error(400, "bad request", '"timeout" is 0 to 60 seconds')
    result = await tasks.embed.aio(texts)
    if timeout:
        try:
            vectors = await result.aget(timeout=timeout)
        except ResultTimeout:
            pass
        except TaskException as exc:
            return error(502, "embedding failed", str(exc))
        else:
            return {"id": result.id, "state": "complete", "vectors": vectors}
    return JSONResponse({"id": result.id, "state": "pending",
                         "links": links(result.id)}, status_code=202)
