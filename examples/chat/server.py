"""The chat endpoint: a small Flask app that enqueues and answers at once.

``POST /chat`` with ``{"conversation": "...", "text": "..."}`` enqueues a
``reply`` job on ``high`` and answers ``202 Accepted`` with the job id, where
to poll and where to stream, without waiting for the model. ``GET
/jobs/<id>`` returns the job's state, progress, result or error, and its
enqueue, start and finish times. ``GET /jobs/<id>/stream`` is the reply as
it is generated: server-sent events (``output`` per token, ``progress``,
``state`` last), from ``app.events(id)``, resumable with ``Last-Event-ID``.
Errors are JSON ``{"error", "detail"}`` with a real status code.

Run from this folder: ``python server.py --port 5000``.
"""

import argparse
import itertools
import json
import logging

from flask import Flask, Response, jsonify, request, url_for

import hueyq
import tasks

logger = logging.getLogger("examples.chat")


def create_app() -> Flask:
    """The chat web app."""
    web = Flask(__name__)

    @web.post("/chat")
    def chat():
        body = request.get_json(silent=True) or {}
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "bad request", "send JSON with a non-empty "
                          "\"text\"")
        conversation = str(body.get("conversation", "default"))
        result = tasks.reply(conversation, text)
        logger.info("message from %s enqueued as job %s", conversation,
                    result.id)
        location = url_for("job", job_id=result.id)
        response = jsonify({"id": result.id, "state": "pending",
                            "poll": location,
                            "stream": url_for("stream", job_id=result.id)})
        return response, 202, {"Location": location}

    @web.get("/jobs/<job_id>")
    def job(job_id):
        try:
            found = tasks.app.job(job_id, history=False)
        except hueyq.JobNotFound:
            return _error(404, "not found", "no job %s" % job_id)
        response = jsonify({
            "id": found.id, "state": found.state, "progress": found.progress,
            "message": found.message, "result": found.result,
            "error": found.error, "enqueued_at": found.enqueued_at,
            "started_at": found.started_at, "finished_at": found.finished_at})
        response.headers["Cache-Control"] = "no-store"
        return response

    @web.get("/jobs/<job_id>/stream")
    def stream(job_id):
        after = request.headers.get("Last-Event-ID", "0")
        if not after.isdigit():
            return _error(400, "bad request", "Last-Event-ID must be a "
                          "number")
        try:
            events = tasks.app.events(job_id, after=int(after))
            first = next(events)    # JobNotFound here, before streaming
        except hueyq.JobNotFound:
            return _error(404, "not found", "no job %s" % job_id)
        return Response(_sse(first, events), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-store"})

    return web


def _sse(first, events):
    """Each event as server-sent event text, until the job has finished."""
    try:
        for event in itertools.chain([first], events):
            yield "id: %d\nevent: %s\ndata: %s\n\n" % (
                event.id, event.kind, json.dumps(event.data))
    finally:
        events.close()      # the client went away: stop following


def _error(status: int, error: str, detail: str):
    return jsonify({"error": error, "detail": detail}), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    create_app().run(args.host, args.port, threaded=True)


if __name__ == "__main__":
    main()
