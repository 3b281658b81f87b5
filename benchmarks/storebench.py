"""Workload 6, store at scale: read queries over a store of N jobs.

Run inside the producer process (the trial's profile is in
``HUEYQ_PROFILE``). Jobs are written directly with ``Store.write`` in
batches of 5,000, each with two events (executing, complete or error), spread
over the four queues and the last two hours (so about half fall in
``queue_stats``'s one-hour window): 90% complete, 5% failed, 3% cancelled,
2% dead. Then each query runs ``repeat`` times; the first run and the median
are reported, in milliseconds: ``queue_stats``, ``jobs(state="failed")``,
``GET /api/queues``, and the searches of the jobs page (``search_*``: by
task, task and state, id prefix, error text, a time range, the unfiltered
listing, the count a bulk action shows, the task names, the chart series of
each window and ``GET /api/jobs`` with search terms).

Standalone, on a fresh SQLite store (or ``--pg URL``), with the query plans:

    python -m benchmarks.storebench --jobs 100000 [--pg postgresql://...]
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


def time_api_queues(out: dict, app, repeat: int):
    """Time ``GET /api/queues`` into ``out`` (or say why not); the test
    client, or None."""
    client, why = web_client(app)
    if client is None:
        out["api_queues_skipped"] = why
        return None

    def get():
        response = client.get("/api/queues")
        if response.status_code != 200:
            raise RuntimeError("/api/queues answered %d: %s" % (
                response.status_code, response.get_data(as_text=True)[:200]))
    _time(out, "api_queues", get, repeat)
    return client


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


def searches(app, client, now: float) -> dict:
    """The jobs page's searches over the store ``_jobs`` wrote."""
    from hueyq.webui import payloads
    some_id = uuid.UUID(int=12345).hex
    queue = app.queues[0]
    out = {
        "search_all": lambda: app.jobs(),
        "search_task": lambda: app.jobs(task="noop_" + queue),
        "search_task_failed": lambda: app.jobs(task="noop_" + queue,
                                               state="failed"),
        # Ids here count up (uuid(int=i)); these prefixes match one job and
        # 4,096 (as a one-character prefix of random ids would, at 65,000).
        "search_id_one": lambda: app.jobs(id_prefix=some_id),
        "search_id_prefix_4096": lambda: app.jobs(
            id_prefix=uuid.UUID(int=0x10000).hex[:29]),
        "search_error": lambda: app.jobs(error="benchmark"),
        "search_error_none": lambda: app.jobs(error="no such text"),
        "search_time_range": lambda: app.jobs(since=now - 3600,
                                              until=now - 3000),
        "search_queue_state_since": lambda: app.jobs(
            queue=queue, state="dead", since=now - 1800),
        "search_bulk_count": lambda: app.count_jobs(
            states=("failed", "dead"), task="noop_" + queue),
        "search_task_names": lambda: app.store.task_names(),
    }
    for window in payloads.WINDOWS:
        out["series_" + window] = (lambda w: lambda: payloads.series(
            app, w))(window)
    if client is not None:
        def api():
            response = client.get("/api/jobs?state=failed&task=noop_%s&"
                                  "error=bench&limit=50" % queue)
            assert response.status_code == 200, response.get_data()[:200]
        out["search_api_jobs"] = api
    return out


def run_store(count: int, repeat: int = 5, analyze: bool = False) -> dict:
    """Fill the store with ``count`` jobs, then time the queries (after the
    database's ANALYZE with ``analyze``, as PostgreSQL's autovacuum does a
    while after a load)."""
    from benchmarks.apps.hueyq_app import app
    now = time.time()
    start = time.perf_counter()
    for first in range(0, count, 5000):
        jobs, events = _jobs(app, first, min(5000, count - first), count,
                             now)
        app.store.write(jobs, events)
    write_s = time.perf_counter() - start
    out = {"jobs": count, "write_rate": count / write_s}
    if analyze:
        app.store.db.execute_sql("analyze")
    stats = app.queue_stats()
    assert sum(q.get("complete_recent", 0) for q in stats.values()) > 0
    _time(out, "queue_stats", app.queue_stats, repeat)
    failed = app.jobs(state="failed")
    assert len(failed) == 50, len(failed)
    _time(out, "jobs_failed", lambda: app.jobs(state="failed"), repeat)
    client = time_api_queues(out, app, repeat)
    for name, query in searches(app, client, now).items():
        _time(out, name, query, repeat)
    app.close()
    return out


def _plans(app, now: float) -> "list[str]":
    """EXPLAIN (QUERY PLAN) of every store query the searches run."""
    import logging
    seen = []

    class Catch(logging.Handler):
        def emit(self, record):
            if isinstance(record.msg, tuple):
                seen.append((self.name, record.msg))
    catch = Catch()
    log = logging.getLogger("peewee")
    log.addHandler(catch)
    log.setLevel(logging.DEBUG)
    lines = []
    try:
        for name, query in searches(app, None, now).items():
            catch.name = name
            query()
    finally:
        log.removeHandler(catch)
    db = app.store.db
    sqlite = db.__class__.__name__.startswith("Sqlite")
    for name, (sql, params) in seen:
        if "hueyq_job" not in sql or not sql.lower().startswith(
                ("select", "with")):
            continue
        rows = db.execute_sql(("explain query plan " if sqlite else
                               "explain ") + sql, params).fetchall()
        lines.append("%s: %s" % (name, " | ".join(
            str(r[-1] if sqlite else r[0]) for r in rows)))
    return lines


def main(argv: "list[str] | None" = None) -> int:
    """Fill a fresh store and print each query's median ms and plan."""
    import argparse
    import json
    import os
    import tempfile
    parser = argparse.ArgumentParser(prog="python -m benchmarks.storebench")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--pg", metavar="URL", help="a PostgreSQL store "
                        "(an empty database) instead of SQLite")
    parser.add_argument("--analyze", action="store_true", help="ANALYZE "
                        "the store after loading it")
    args = parser.parse_args(argv)
    folder = tempfile.mkdtemp(prefix="hueyq-storebench-")
    store = args.pg or "sqlite://%s/store.db" % folder
    with open(os.path.join(folder, "p.toml"), "w") as fh:
        fh.write('extends = "dev"\napp_name = "bench"\n[backend]\nurl = '
                 '"sqlite://%s/queue.db"\n[store]\nurl = "%s"\n'
                 % (folder, store))
    os.environ["HUEYQ_PROFILE"] = os.path.join(folder, "p.toml")
    out = run_store(args.jobs, args.repeat, args.analyze)
    from benchmarks.apps.hueyq_app import app
    for line in _plans(app, time.time()):
        print(line)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v
                      for k, v in out.items() if not k.endswith("_first_ms")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
