"""The chat endpoint: a small Flask app that enqueues and answers at once.

``POST /chat`` with ``{"conversation": "...", "text": "..."}`` enqueues a
``reply`` job on ``high`` and answers ``202 Accepted`` with the job id and
where to poll, without waiting for the model. ``GET /jobs/<id>`` returns the
job's state, progress, result or error, and its enqueue, start and finish
times. Errors are JSON ``{"error", "detail"}`` with a real status code.

Run from this folder: ``python server.py --port 5000``.
"""

import argparse
import logging

from flask import Flask, jsonify, request, url_for

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
                            "poll": location})
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

    return web


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
