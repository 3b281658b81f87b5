"""Controls: pause, resume, drain, cancel and retry, from any process.

Every control goes through the backend (so it works from the CLI, the web UI
or another host) and records what it did in the store. Pausing sets a flag
that the dequeue itself checks, so nothing new starts once ``pause()``
returns; nothing queued is touched. A pending job is cancelled by moving its
message to the dead set, atomically, so it can never start; a running job is
cancelled by revoking it: a process worker is killed by its supervisor, a
thread worker stops at its next ``hueyq.progress()`` call. Each control's
record takes its place in the job's order from the backend's sequence
(:func:`_seq`), after every delivery so far and before every later one.
"""

import dataclasses
import time

from hueyq import jobs
from hueyq.backends import DEAD, RUNNING
from hueyq.exceptions import InvalidState, JobNotFound
from hueyq.jobs import CONTROL, FINISHED, change_seq

#: Job states that ``retry`` accepts: the finished ones a job may leave
#: (``jobs.NEXT``; tests/test_jobs.py checks the two agree), in the order
#: the error message has always named them.
RETRYABLE = ("failed", "cancelled", "dead", "expired")
#: Job states that bulk retry and bulk delete act on.
BULK_STATES = ("failed", "dead")
#: Most jobs one bulk retry or delete acts on (newest first); run it again
#: for the rest.
BULK_LIMIT = 1000


@dataclasses.dataclass(frozen=True)
class CancelResult:
    """What a cancel did: ``state`` is cancelled or cancelling."""
    job_id: str
    state: str
    detail: str

    def __str__(self) -> str:
        return "%s %s: %s" % (self.job_id, self.state, self.detail)


@dataclasses.dataclass(frozen=True)
class BulkResult:
    """What a bulk retry or delete did: of ``matched`` jobs, ``done`` were
    retried (or deleted), ``skipped`` could not be (job id and why), and
    ``remaining`` were beyond :data:`BULK_LIMIT`."""
    action: str
    matched: int
    done: int
    skipped: "tuple[dict, ...]"
    remaining: int

    def __str__(self) -> str:
        verb = "retried" if self.action == "retry" else "deleted"
        text = "%d of %d matching jobs %s" % (self.done, self.matched, verb)
        if self.skipped:
            text += ", %d skipped (%s)" % (len(self.skipped),
                                           self.skipped[0]["detail"])
        if self.remaining:
            text += "; %d more match: run it again" % self.remaining
        return text


def _action(app, queue: str, action: str, by: str, reason: str) -> None:
    app.store.watchdog_event(host=app.host_id, queue=queue, action=action,
                             reason=("%s: %s" % (by, reason)) if reason else by)


def pause(app, queue: str, by: str = "user", reason: str = "",
          record: bool = True) -> bool:
    """Pause ``queue`` on behalf of ``by`` (user, memory, memory_limit);
    False if ``by`` had already paused it. Pauses by different parties are
    independent: the queue runs again once all are lifted."""
    backend = app.queue_backend
    name = jobs.pause_flag(by)
    if name in backend.flags(queue):
        return False
    backend.set_flag(queue, name, {"by": by, "reason": reason,
                                   "since": time.time(), "host": app.host_id})
    if record:
        _action(app, queue, "pause", by, reason)
    return True


def resume(app, queue: str, by: str = "user", record: bool = True) -> bool:
    """Lift ``by``'s pause of ``queue``; False if there was none."""
    cleared = app.queue_backend.clear_flag(queue, jobs.pause_flag(by))
    if cleared and record:
        _action(app, queue, "resume", by, "")
    return cleared


def drain(app, queue: str) -> int:
    """Remove every pending and scheduled job of ``queue``; each is recorded
    as cancelled with reason ``drained``. Returns the count."""
    moved = app.storage(queue).drain("drained")
    now = time.time()
    seq = _seq(app, queue) if moved else None
    changes, events = [], []
    for info in moved:
        if not info.task_id:
            continue
        changes.append(jobs.cancelled(
            info.task_id, at=now, seq=seq, reason="drained", task=info.name,
            queue=queue, enqueued_at=info.enqueued_at,
            priority=info.priority))
        events.append(_event(app, queue, info.task_id, info.name, "drained",
                             "queue drained", now))
    app.store.write(changes, events)
    _action(app, queue, "drain", "user", "%d jobs" % len(moved))
    return len(moved)


def cancel(app, job_id: str) -> CancelResult:
    """Cancel a job; see the module docstring for what that means."""
    now = time.time()
    for queue in app.queues:
        moved = app.storage(queue).cancel(job_id, "cancelled")
        if moved:
            info = moved[0]
            app.store.write(
                [jobs.cancelled(job_id, at=now, seq=_seq(app, queue),
                                task=info.name, queue=queue,
                                enqueued_at=info.enqueued_at)],
                [_event(app, queue, job_id, info.name, "cancelled",
                        "cancelled before it started", now)])
            jobs.put_error(app.huey(queue), job_id, "cancelled")
            was = "scheduled" if info.eta and info.eta > now else "pending"
            return CancelResult(job_id, "cancelled",
                                "it was %s and will never run" % was)
    message = app.find_message(job_id)
    if message is not None and message.state == RUNNING:
        return _cancel_running(app, message, now)
    row = app.store.get(job_id)
    if row is not None and row["state"] in FINISHED:
        raise InvalidState("job %s is already %s" % (job_id, row["state"]))
    if message is not None:
        raise InvalidState("job %s is already %s" % (job_id, message.state))
    raise JobNotFound("no job %r" % job_id)


def _cancel_running(app, message, now: float) -> CancelResult:
    queue = message.queue
    app.huey(queue).revoke_by_id(message.task_id, revoke_once=True)
    app.store.write([], [_event(app, queue, message.task_id, message.name,
                                "cancel-requested", "by user", now)])
    if app.profile.queues[queue].worker_type == "process":
        detail = ("running on process worker %s: its supervisor kills the "
                  "worker and the job ends cancelled" % message.holder)
    elif app.profile.queues[queue].worker_type == "async":
        detail = ("running on async worker %s: its asyncio task is "
                  "cancelled within store.progress_interval"
                  % message.holder)
    else:
        detail = ("running on thread worker %s: it stops at its next "
                  "hueyq.progress() call" % message.holder)
    return CancelResult(message.task_id, "cancelling", detail)


def retry(app, job_id: str):
    """Run a failed, cancelled, expired or dead job once more (same id)."""
    row = app.store.get(job_id)
    message = app.find_message(job_id)
    if message is not None and message.state != DEAD:
        raise InvalidState("job %s is %s; only %s jobs can be retried"
                           % (job_id, message.state, ", ".join(RETRYABLE)))
    if message is None and row is None:
        raise JobNotFound("no job %r" % job_id)
    if row is not None and message is None and row["state"] not in RETRYABLE:
        raise InvalidState("job %s is %s; only %s jobs can be retried"
                           % (job_id, row["state"], ", ".join(RETRYABLE)))
    queue = message.queue if message is not None else row["queue"]
    payload = app.store.payload(job_id) if message is None else None
    if message is None and payload is None:
        raise InvalidState("job %s kept no message to retry (it was purged "
                           "by retention)" % job_id)
    huey = app.huey(queue)
    huey.restore_by_id(job_id)
    huey.delete(job_id)
    # The record goes first: a worker may run the job the moment its message
    # is back, and its records must be newer than this one, not older.
    now = time.time()
    app.store.write([jobs.retried(job_id, queue, at=now,
                                  seq=_seq(app, queue))],
                    [_event(app, queue, job_id, row["task"] if row else
                            message.name, "retried", "retry requested", now)])
    if message is not None and app.storage(queue).revive(job_id) is not None:
        return app.job(job_id)
    payload = payload or app.store.payload(job_id)
    if payload is None:
        # The dead message went away between the look-up and the revive.
        app.store.write([jobs.restored(job_id, row["state"] if row else
                                       "dead", at=time.time(),
                                       seq=_seq(app, queue))])
        raise InvalidState("job %s kept no message to retry (it was purged "
                           "by retention)" % job_id)
    app.enqueue_raw(queue, payload)
    return app.job(job_id)


def bulk_states(state: "str | None") -> "tuple[str, ...]":
    """The states a bulk action with ``state`` acts on: failed and dead
    jobs, or one of the two; InvalidState for any other."""
    if state is None:
        return BULK_STATES
    if state not in BULK_STATES:
        raise InvalidState("bulk retry and delete act on failed or dead "
                           "jobs, not %s ones" % state)
    return (state,)


def matching(app, state: "str | None" = None, queue: "str | None" = None,
             limit: "int | None" = None, **filters
             ) -> "tuple[int, list[dict]]":
    """(how many, the newest ``limit`` rows, :data:`BULK_LIMIT` by default)
    of the failed or dead jobs that match ``filters`` (those of
    :meth:`hueyq.App.jobs`)."""
    states = bulk_states(state)
    limit = BULK_LIMIT if limit is None else limit
    search = app.job_filters(**filters)
    if queue is not None:
        app.huey(queue)
    count = app.store.count(queue=queue, states=states, **search)
    rows = app.store.jobs(queue=queue, states=states, limit=limit, **search)
    return count, rows


def retry_many(app, state: "str | None" = None, queue: "str | None" = None,
               **filters) -> BulkResult:
    """Retry the failed or dead jobs matching the filters (at most
    :data:`BULK_LIMIT`, newest first); one control event records it."""
    count, rows = matching(app, state, queue, **filters)
    done, skipped = 0, []
    for row in rows:
        try:
            retry(app, row["id"])
            done += 1
        except (InvalidState, JobNotFound) as exc:
            skipped.append({"job_id": row["id"], "detail": str(exc)})
    result = BulkResult("retry", count, done, tuple(skipped),
                        max(0, count - len(rows)))
    _action(app, queue, "retry", "user", _describe(result, state, filters))
    return result


def delete_many(app, state: "str | None" = None, queue: "str | None" = None,
                **filters) -> BulkResult:
    """Delete the failed or dead jobs matching the filters (at most
    :data:`BULK_LIMIT`, newest first): their records, history, results and
    kept messages; one control event records it."""
    count, rows = matching(app, state, queue, **filters)
    by_queue: "dict[str, list[str]]" = {}
    for row in rows:
        by_queue.setdefault(row["queue"], []).append(row["id"])
    for name, ids in by_queue.items():
        if name in app.queues:
            app.storage(name).delete_dead(ids)
            for job_id in ids:
                app.huey(name).delete(job_id)
    done = app.store.delete_jobs(row["id"] for row in rows)
    result = BulkResult("delete", count, done, (), max(0, count - len(rows)))
    _action(app, queue, "delete", "user", _describe(result, state, filters))
    return result


def _describe(result: BulkResult, state: "str | None", filters: dict) -> str:
    words = ["%s=%s" % (k, v) for k, v in sorted(filters.items())
             if v not in (None, "")]
    return "%d %s jobs%s" % (result.done, state or "failed or dead",
                             " (%s)" % " ".join(words) if words else "")


def _seq(app, queue: str) -> int:
    """The place of a control's record in the job's order."""
    return change_seq(app.storage(queue).next_seq(), CONTROL)


def _event(app, queue: str, job_id: str, task: str, signal: str,
           detail: str, ts: float) -> dict:
    return jobs.event("%s.%s" % (app.name, queue), job_id, task, signal,
                      detail, at=ts)
