"""The chatbot's job-status API (Flask): POST /jobs answers at once with
the job's id, GET /jobs/<id> reports the progress the task sets with
update_state, DELETE /jobs/<id> cancels, GET /jobs lists active jobs."""

import argparse

from celery.result import AsyncResult
from flask import Flask, jsonify, request

from tasks import app as celery_app
from tasks import generate_reply

web = Flask(__name__)
STARTED = []
OPTIONS = ("steps", "step_seconds", "busy")


@web.post("/jobs")
def create_job():
    body = request.get_json(silent=True) or {}
    if not body.get("message"):
        return jsonify({"error": "message is required"}), 400
    options = {k: body[k] for k in OPTIONS if k in body}
    result = generate_reply.delay(body.get("conversation_id", "default"),
                                  body["message"], **options)
    STARTED.append(result.id)
    return jsonify({"job_id": result.id, "status": "PENDING"}), 202


@web.get("/jobs/<job_id>")
def job_status(job_id):
    result = AsyncResult(job_id, app=celery_app)
    state, info = result.state, result.info
    body = {"job_id": job_id, "status": state, "progress": 0,
            "status_message": None, "result": None}
    if state == "PROGRESS" and isinstance(info, dict):
        body.update(progress=info.get("progress", 0),
                    status_message=info.get("status"))
    elif state == "SUCCESS":
        body.update(progress=100, result=info)
    elif state in ("FAILURE", "REVOKED", "RETRY"):
        body.update(status_message=str(info))
    return jsonify(body)


@web.delete("/jobs/<job_id>")
def cancel_job(job_id):
    AsyncResult(job_id, app=celery_app).revoke(terminate=True)
    return jsonify({"job_id": job_id, "status": "REVOKED"})


@web.get("/jobs")
def active_jobs():
    jobs = []
    for job_id in STARTED:
        result = AsyncResult(job_id, app=celery_app)
        if not result.ready():
            jobs.append({"job_id": job_id, "status": result.state})
    return jsonify({"jobs": jobs})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    web.run(host="127.0.0.1", port=args.port, threaded=True)
