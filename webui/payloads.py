"""The JSON documents of the API, built from a :class:`hueyq.App`.

One function per document, shared by the HTTP endpoints
(:mod:`hueyq.webui.api`) and the live stream (:mod:`hueyq.webui.stream`), so
a script and the page read the same words. Every list takes a limit: nothing
here reads a whole queue or the whole history.
"""

import dataclasses
import math
import time

from hueyq.jobs import pauses
from hueyq.backends import PENDING, RUNNING, SCHEDULED
from hueyq.store import Job

#: Most jobs one request may list.
MAX_LIMIT = 500
#: Live states, paged by offset in the order they will run.
LIVE_STATES = (PENDING, SCHEDULED, RUNNING)
#: Chart windows: name -> (seconds, seconds per bucket).
WINDOWS = {"1h": (3600, 60), "24h": (86400, 900), "7d": (604800, 3600)}
#: Search terms of a job listing, as the API and the CLI name them, and the
#: keyword of :meth:`hueyq.App.jobs` each one is.
SEARCH = (("task", "task"), ("id", "id_prefix"), ("error", "error"),
          ("since", "since"), ("until", "until"))


def queues(app, minutes: int = 60) -> dict:
    """Every queue's figures (``App.queue_stats``), its memory budget and
    completions per minute over the last ``minutes``."""
    stats = app.queue_stats()
    return {"queues": {q: _queue(app, q, s, minutes)
                       for q, s in stats.items()}}


def queue(app, name: str, minutes: int = 60) -> dict:
    """One queue's figures, as in :func:`queues`."""
    app.huey(name)
    return _queue(app, name, app.queue_stats()[name], minutes)


def _queue(app, name: str, stats: dict, minutes: int) -> dict:
    config = app.profile.queues[name]
    return dict(stats, name=name, memory_limit=config.memory_limit,
                worker_memory_soft=config.worker_memory_soft,
                worker_memory_hard=config.worker_memory_hard,
                throughput=app.store.throughput(name, minutes))


def jobs(app, queue: "str | None" = None, state: "str | None" = None,
         limit: int = 50, before: "float | None" = None,
         offset: int = 0, before_id: "str | None" = None, **search) -> dict:
    """A page of jobs, newest first, and how to ask for the next page:
    ``{"offset": n}`` for live states in run order, ``{"before": ts,
    "before_id": id}`` (the last job's enqueue time and id) otherwise.
    ``search`` holds the API's terms (task, id, error, since, until)."""
    if queue is not None:
        app.huey(queue)
    limit = max(1, min(limit, MAX_LIMIT))
    terms = {word: search.get(word) for word, _ in SEARCH}
    found = app.jobs(queue=queue, state=state, limit=limit, before=before,
                     offset=offset, before_id=before_id,
                     **{kw: terms[word] for word, kw in SEARCH})
    following = None
    in_run_order = state in LIVE_STATES and not any(
        v not in (None, "") for v in terms.values())
    if len(found) == limit:
        if in_run_order:
            following = {"offset": offset + limit}
        elif found[-1].enqueued_at is not None:
            following = {"before": found[-1].enqueued_at,
                         "before_id": found[-1].id}
    return dict({"jobs": [job_dict(app, j) for j in found], "queue": queue,
                 "state": state}, **terms, limit=limit, next=following)


def bulk_preview(app, state: "str | None" = None,
                 queue: "str | None" = None, **search) -> dict:
    """How many failed or dead jobs a bulk retry or delete with these terms
    would act on (at most ``limit`` of them at once)."""
    from hueyq import control
    states = control.bulk_states(state)
    if queue is not None:
        app.huey(queue)
    matched = app.count_jobs(queue=queue, states=states,
                             **{kw: search.get(word) for word, kw in SEARCH})
    return {"matched": matched, "states": list(states),
            "limit": control.BULK_LIMIT}


def bulk(result) -> dict:
    """What a bulk retry or delete did (a :class:`hueyq.control.BulkResult`)."""
    out = dataclasses.asdict(result)
    out["skipped"] = list(out["skipped"])
    return out


def series(app, window: str = "1h", queue: "str | None" = None) -> dict:
    """Per queue over ``window`` (1h, 24h or 7d), oldest bucket first: jobs
    that completed and failed per bucket, and the mean and longest run time
    of the completions, in seconds."""
    seconds, bucket = WINDOWS[window]
    names = [queue] if queue else list(app.queues)
    if queue is not None:
        app.huey(queue)
    end = math.ceil(time.time() / bucket) * bucket
    start = end - seconds
    count = seconds // bucket
    return {"window": window, "seconds": seconds, "bucket": bucket,
            "start": start, "end": end,
            "queues": {q: app.store.series(q, start, bucket, count)
                       for q in names}}


def tasks(app) -> dict:
    """Task names: registered in this process's app, and recorded in the
    store."""
    return {"tasks": sorted(set(app.task_names())
                            | set(app.store.task_names()))}


def health(app) -> dict:
    """What ``/api/health`` answers, with the status it answers with."""
    from hueyq import health as health_module
    report = health_module.check(app, require_runtime=True)
    return dict(report.as_dict(), status=200 if report.healthy else 503)


def job(app, job_id: str) -> dict:
    """One job with its history of transitions, error and traceback."""
    return job_dict(app, app.job(job_id))


def job_dict(app, found: Job) -> dict:
    """A job as JSON; its arguments only when the profile previews them."""
    out = found.as_dict()
    if not app.profile.store.args_preview:
        out["args"] = None
    return out


def failures(app, limit: int = 20) -> dict:
    """The newest failed and dead jobs of every queue."""
    return {"failed": jobs(app, state="failed", limit=limit)["jobs"],
            "dead": jobs(app, state="dead", limit=limit)["jobs"]}


def running(app, limit: int = 50) -> dict:
    """Jobs running now, across queues, with progress and worker."""
    return {"jobs": [job_dict(app, j)
                     for j in app.jobs(state=RUNNING, limit=limit)]}


def workers(app) -> dict:
    """Worker processes of live runtimes (pid, memory, current jobs, GPU
    memory), the runtimes themselves, every host (heartbeat age,
    consumers, leases held) and each queue's memory budgets."""
    runtimes = [{k: v for k, v in r.items() if k != "workers"}
                for r in app.runtimes()]
    budgets = {}
    for name in app.queues:
        config = app.profile.queues[name]
        budgets[name] = {"memory_limit": config.memory_limit,
                         "worker_memory_soft": config.worker_memory_soft,
                         "worker_memory_hard": config.worker_memory_hard}
    return {"workers": app.workers(), "runtimes": runtimes,
            "hosts": app.hosts(), "budgets": budgets}


def events(app, limit: int = 50, queue: "str | None" = None) -> dict:
    """The newest watchdog and control actions."""
    if queue is not None:
        app.huey(queue)
    return {"events": app.store.watchdog_events(limit=max(1, min(
        limit, MAX_LIMIT)), queue=queue)}


def paused(app, name: str, changed: bool) -> dict:
    """What a pause or resume of ``name`` left in force."""
    by = sorted(pauses(app.queue_backend.flags(name)))
    return {"queue": name, "changed": changed, "paused": bool(by),
            "paused_by": by}


def stamped(document: dict) -> dict:
    """``document`` with the server's clock (``now``), for elapsed times."""
    return dict(document, now=time.time())
