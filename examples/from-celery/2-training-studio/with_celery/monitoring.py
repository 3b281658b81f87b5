"""The monitoring JSON the studio's dashboard polls, from Celery: queue
lengths read from the Redis broker, workers from `inspect`."""

import json
import os

import redis
from flask import Flask, jsonify

from src.workers.celery_app import app as celery_app

QUEUES = ["high_priority", "datasets", "processing", "training",
          "extraction", "low_priority"]
ALERT_QUEUED = 100

web = Flask(__name__)


def queue_lengths():
    broker = redis.Redis.from_url(os.environ.get("REDIS_URL",
                                                 "redis://localhost:6379/0"))
    return {q: broker.llen(q) for q in QUEUES}


@web.route("/api/v1/workers/queues")
def queues():
    return jsonify({"queues": queue_lengths()})


@web.route("/health")
def health():
    inspect = celery_app.control.inspect(timeout=1.0)
    active = inspect.active() or {}
    lengths = queue_lengths()
    total_queued = sum(lengths.values())
    warnings = []
    per_queue = {}
    for q, length in lengths.items():
        per_queue[q] = {"queued": length,
                        "status": "backlogged" if length > ALERT_QUEUED
                        else "ok"}
    if total_queued > ALERT_QUEUED:
        warnings.append("%d tasks queued (alert above %d)"
                        % (total_queued, ALERT_QUEUED))
    return jsonify({"workers_connected": len(active),
                    "total_queued": total_queued,
                    "total_active": sum(len(t) for t in active.values()),
                    "queues": per_queue, "warnings": warnings,
                    "alert": total_queued > ALERT_QUEUED})


if __name__ == "__main__":
    client = web.test_client()
    print(json.dumps({"queues": client.get("/api/v1/workers/queues").json,
                      "health": client.get("/health").json}))
