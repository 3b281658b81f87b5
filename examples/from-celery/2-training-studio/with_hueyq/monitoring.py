"""The monitoring JSON the studio's dashboard polls, answered by hueyq's
own API instead of the broker's list lengths and Celery's `inspect`:
``queue_stats()`` has each queue's pending, running and paused state, and
``workers()`` the processes of every live runtime. (hueyq's web UI serves
the same as GET /api/queues, /api/workers and /api/health.)"""

import json

from flask import Flask, jsonify

from src.workers.celery_app import app as celery_app

QUEUES = ["high_priority", "datasets", "processing", "training",
          "extraction", "low_priority"]
ALERT_QUEUED = 100

web = Flask(__name__)


def queue_lengths(stats=None):
    stats = stats or celery_app.queue_stats()
    return {q: stats[q]["pending"] + stats[q]["scheduled"] for q in QUEUES}


@web.route("/api/v1/workers/queues")
def queues():
    return jsonify({"queues": queue_lengths()})


@web.route("/health")
def health():
    stats = celery_app.queue_stats()
    workers = celery_app.workers()
    lengths = queue_lengths(stats)
    total_queued = sum(lengths.values())
    warnings = []
    per_queue = {}
    for q, length in lengths.items():
        status = "paused" if stats[q]["paused"] else \
            "backlogged" if length > ALERT_QUEUED else "ok"
        per_queue[q] = {"queued": length, "running": stats[q]["running"],
                        "status": status}
        if status == "paused":
            warnings.append("%s is paused by %s"
                            % (q, ", ".join(stats[q]["paused_by"])))
    if total_queued > ALERT_QUEUED:
        warnings.append("%d tasks queued (alert above %d)"
                        % (total_queued, ALERT_QUEUED))
    if not any(r["alive"] for r in celery_app.runtimes()):
        warnings.append("no hueyq runtime is alive")
    return jsonify({"workers_connected": sum(
                        1 for w in workers if w["kind"] == "consumer"),
                    "total_queued": total_queued,
                    "total_active": sum(s["running"] for s in stats.values()),
                    "queues": per_queue, "warnings": warnings,
                    "alert": total_queued > ALERT_QUEUED})


if __name__ == "__main__":
    client = web.test_client()
    print(json.dumps({"queues": client.get("/api/v1/workers/queues").json,
                      "health": client.get("/health").json}))
