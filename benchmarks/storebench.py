"""Workload 6, store at scale: read queries over a store of N jobs.

Run inside the producer process (the trial's profile is in
``HUEYQ_PROFILE``). Jobs are written directly with ``Store.write`` in
batches of 5,000, each with two events (executing, complete or error), spread
over the four queues and the last two hours (so about half fall in
``queue_stats``'s one-hour window): 90% complete, 5% failed, 3% cancelled,
2% dead. Then each query runs ``repeat`` times; the first run and the median
are reported, in milliseconds.
"""

import inspect
import statistics
import time
import uuid

STATES = (("complete", 90), ("failed", 5), ("cancelled", 3), ("dead", 2))


def _jobs(app, start: int, count: int, total: int, now: float):
    queues = list(app.queues)
    states = [s for s, weight in STATES for _ in range(weight)]
    jobs, events = [], []
    for i in range(start, start + count):
        state = states[i % len(states)]
        queue = queues[i % len(queues)]
        enqueued = now - 7200.0 * (1 - i / total)
        finished = enqueued + 0.05 + (i % 17) * 0.01
        job_id = uuid.UUID(int=i).hex
        task = "benchmarks.apps.common.noop_" + queue
        jobs.append({"id": job_id, "task": task, "queue": queue,
                     "state": state, "attempts": 1, "enqueued_at": enqueued,
                     "started_at": enqueued + 0.01, "finished_at": finished,
                     "updated_at": finished, "duration": finished - enqueued,
                     "progress": 100.0 if state == "complete" else None,
                     "error": "ValueError('benchmark')" if state == "failed"
                     else None, "reason": state if state != "complete"
                     else None})
        name = "%s.%s" % (app.name, queue)
        events.append({"ts": enqueued + 0.01, "queue": name, "task_id": job_id,
                       "task": task, "signal": "executing", "duration": None,
                       "error": None, "args": None})
        events.append({"ts": finished, "queue": name, "task_id": job_id,
                       "task": task, "signal": "complete" if state ==
                       "complete" else "error", "duration": finished -
                       enqueued, "error": None, "args": None})
    return jobs, events


def _time(out: dict, name: str, query, repeat: int) -> None:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        query()
        runs.append((time.perf_counter() - start) * 1000)
    out[name + "_first_ms"] = runs[0]
    out[name + "_ms"] = statistics.median(runs)


def web_client(app):
    """A Flask test client of hueyq.webui, or (None, why not)."""
    try:
        from hueyq.webui import create_app
    except ImportError as exc:
        return None, "/api/queues skipped: hueyq.webui.create_app is not " \
            "importable (%s)" % exc
    params = inspect.signature(create_app).parameters
    if "app" in params:
        flask_app = create_app(app=app)
    elif "profile" in params:
        flask_app = create_app(profile=app.profile)
    else:
        flask_app = create_app()
    return flask_app.test_client(), None


def run_store(count: int, repeat: int = 5) -> dict:
    """Fill the store with ``count`` jobs, then time the three queries."""
    from benchmarks.apps.hueyq_app import app
    now = time.time()
    start = time.perf_counter()
    for first in range(0, count, 5000):
        jobs, events = _jobs(app, first, min(5000, count - first), count,
                             now)
        app.store.write(jobs, events)
    write_s = time.perf_counter() - start
    out = {"jobs": count, "write_rate": count / write_s}
    stats = app.queue_stats()
    assert sum(q.get("completed", 0) for q in stats.values()) > 0
    _time(out, "queue_stats", app.queue_stats, repeat)
    failed = app.jobs(state="failed")
    assert len(failed) == 50, len(failed)
    _time(out, "jobs_failed", lambda: app.jobs(state="failed"), repeat)
    client, why = web_client(app)
    if client is None:
        out["api_queues_skipped"] = why
    else:
        def get():
            response = client.get("/api/queues")
            if response.status_code != 200:
                raise RuntimeError("/api/queues answered %d: %s" % (
                    response.status_code, response.get_data(as_text=True)[:200]))
        _time(out, "api_queues", get, repeat)
    app.close()
    return out
