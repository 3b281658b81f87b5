"""Maintenance example: periodic jobs on ``low``, a warm model on ``high``.

* ``cleanup_scratch`` runs every minute (``crontab()``): it deletes files in
  ``.hueyq/scratch`` older than an hour. huey's scheduler also checks the
  schedule as the consumer starts, so it runs once right after start-up.
* ``nightly_report`` runs at 02:00 UTC (``crontab(hour=2, minute=0)``;
  hueyq's schedules are in UTC) and writes the last day's figures to
  ``.hueyq/reports/<date>.json``. Calling it enqueues it now, by hand.
* ``warm_model`` is an ``on_startup("high")`` hook: every worker of the
  ``high`` queue runs it as it starts, before it takes a task, so no chat
  request pays for loading the model. It loads once per process (threads
  share it) and again in any worker process that replaces a dead or recycled
  one, which a warm-up *task* enqueued by a producer could not promise: that
  would warm whichever single worker took it, and none started later.

Run from this folder: ``hueyq run --app tasks --queues high,low``.
"""

import datetime
import hashlib
import json
import logging
import os
import threading
import time

import hueyq
from hueyq.profile import sqlite_path

logger = logging.getLogger("examples.maintenance")

HERE = os.path.dirname(os.path.abspath(__file__))
app = hueyq.App(os.path.join(HERE, "profile.toml"))

#: The example's data folder: where the profile keeps the queue.
DATA_DIR = os.path.dirname(sqlite_path(app.profile.backend.url))
#: Files the cleanup looks after.
SCRATCH = os.path.join(DATA_DIR, "scratch")
#: Where nightly reports go.
REPORTS = os.path.join(DATA_DIR, "reports")
#: One line per model load: proof that it happens once per process.
WARMUP_LOG = os.path.join(DATA_DIR, "warmup.log")
#: Scratch files older than this (seconds) are deleted.
SCRATCH_MAX_AGE = 3600


class Model:
    """A stand-in for a model that is slow to load and quick to call."""

    def __init__(self, size: int = 200_000) -> None:
        started = time.monotonic()
        self.table = [hashlib.sha256(b"%d" % i).digest()[0]
                      for i in range(size)]
        self.loaded_at = time.time()
        self.load_seconds = time.monotonic() - started

    def answer(self, question: str) -> str:
        score = sum(self.table[ord(c) * 97 % len(self.table)]
                    for c in question)
        return "answer #%d to %r" % (score % 1000, question)


_lock = threading.Lock()
_model: "Model | None" = None


def model() -> Model:
    """This process's model, loaded on first use."""
    global _model
    with _lock:
        if _model is None:
            _model = Model()
            _log_load(_model)
        return _model


def _log_load(loaded: Model) -> None:
    os.makedirs(DATA_DIR, exist_ok=True)
    with open(WARMUP_LOG, "a") as fh:
        fh.write("%d %s %.3f\n" % (os.getpid(), threading.current_thread()
                                   .name, loaded.load_seconds))
    logger.info("model loaded in %.2fs", loaded.load_seconds)


@app.on_startup("high")
def warm_model() -> None:
    """Load the model before this worker takes its first task."""
    model()


@app.task(queue="high")
def answer(question: str) -> dict:
    """Answer with the warm model; says when the model was loaded."""
    loaded = model()
    return {"answer": loaded.answer(question), "pid": os.getpid(),
            "model_loaded_at": loaded.loaded_at}


@app.periodic_task(hueyq.crontab(), queue="low")
def cleanup_scratch() -> int:
    """Every minute: delete scratch files older than SCRATCH_MAX_AGE."""
    os.makedirs(SCRATCH, exist_ok=True)
    cutoff = time.time() - SCRATCH_MAX_AGE
    removed = 0
    for entry in os.scandir(SCRATCH):
        if entry.is_file() and entry.stat().st_mtime < cutoff:
            os.unlink(entry.path)
            removed += 1
    logger.info("cleanup: removed %d scratch files", removed)
    return removed


@app.periodic_task(hueyq.crontab(hour=2, minute=0), queue="low")
def nightly_report() -> str:
    """Every night: the last 24 hours per queue, as a JSON file."""
    now = datetime.datetime.now(datetime.timezone.utc)
    stats = app.queue_stats(window=86400)
    report = {
        "generated_at": now.isoformat(timespec="seconds"),
        "queues": {q: {k: s.get(k) for k in (
            "pending", "complete_recent", "failed_recent", "dead_recent",
            "retryable", "success_rate",
            "mean_runtime", "p95_runtime")} for q, s in stats.items()},
        "recent_failures": [{"id": j.id, "task": j.task, "error": j.error}
                            for j in app.jobs(state="failed", limit=20)]}
    os.makedirs(REPORTS, exist_ok=True)
    path = os.path.join(REPORTS, "%s.json" % now.date().isoformat())
    with open(path + ".tmp", "w") as fh:
        json.dump(report, fh, indent=2)
    os.replace(path + ".tmp", path)
    return path
