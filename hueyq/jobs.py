"""Jobs: their states, the record of each transition, and the reasons.

This module owns what a job's record in the store says and how it may
change. :data:`STATES` are the states, :data:`NEXT` the transitions the
state machine allows (:func:`allowed`, :func:`reachable`), and there is one
builder per transition (:func:`started`, :func:`progress`,
:func:`completed`, :func:`failed`, :func:`retrying`, :func:`cancelled`,
:func:`expired`, :func:`dead`, :func:`recovered`, :func:`retried`, and
:func:`ended` for an execution whose outcome huey's signals decided); each
returns the change to the job's row that ``Store.write`` and
``JobRecorder.job`` take (a column left out, or None, keeps its value). No
other module writes a job record by hand; the same for the events of a
job's history (:func:`event`) and the error result that waiters on a job
that never returned get (:func:`put_error`). It also owns the reason
protocol: the last error a lease carries to its next delivery says why its
worker went away (``killed: ...``, ``cancelled: ...``, ``suspect: ...``),
a dead letter's reason says why it cannot run (:func:`dead_reason`), and a
queue's pause flags say who paused it (:func:`pause_flag`, :func:`pauses`).
Nothing here touches a backend or the store.
"""

from typing import Any

from huey.exceptions import HueyException
from huey.utils import Error

from hueyq.backends import PAUSE_PREFIX
from hueyq.exceptions import BadSignature, PayloadTooLarge

#: Job states, in the order a job usually goes through them.
STATES = ("scheduled", "pending", "running", "retrying", "complete", "failed",
          "cancelled", "expired", "dead")
#: States a job does not leave by itself.
FINISHED = ("complete", "failed", "cancelled", "expired", "dead")
#: The transitions a job's record may make, from each state. A retrying
#: job's message is back in its queue, so it goes where a pending one does;
#: a finished one moves only when someone retries it (``complete`` never).
_WAITING = frozenset({"running", "cancelled", "expired", "dead", "failed",
                      "retrying"})
NEXT = {
    "scheduled": frozenset({"pending", "running", "cancelled"}) | _WAITING,
    "pending": _WAITING | {"scheduled"},
    "running": frozenset({"complete", "failed", "retrying", "cancelled",
                          "expired", "dead", "pending", "scheduled"}),
    "retrying": _WAITING | {"pending", "scheduled"},
    "complete": frozenset(),
    "failed": frozenset({"pending"}),
    "cancelled": frozenset({"pending"}),
    "expired": frozenset({"pending"}),
    "dead": frozenset({"pending"}),
}
#: Dead-letter reasons of the backend, and the job state each one means.
REASON_STATE = {"failed": "failed", "cancelled": "cancelled",
                "drained": "cancelled", "expired": "expired"}
#: Reasons of a ``dead`` job: its message can never run as it is.
DEAD_REASONS = ("poison", "unknown_task", "undecodable", "bad_signature",
                "too_large")

#: Where a change falls in its delivery (see :func:`change_seq`): a control
#: (its own number), the delivery's start and progress, its end, and the
#: supervisor's recovery of it.
CONTROL, STARTED, ENDED, RECOVERED = 0, 2, 4, 6

#: Prefixes of a lease's last error that tell its next delivery why its
#: worker went away: the supervisor killed it on purpose (the job is retried
#: or failed with that error), a cancel stopped it, or it died with other
#: jobs and this one runs alone next.
KILLED = "killed:"
TIME_LIMIT = "time limit"
POISON = "poison"
CANCELLED = "cancelled"
SUSPECT = "suspect:"


def change_seq(number: "int | None", step: int) -> "int | None":
    """The place of a change in its job's order: the backend's sequence
    number of the delivery or control it belongs to (``Lease.seq``,
    ``next_seq()``), then its step within it. Every delivery takes a later
    number than all before it, so a clock step can never reorder changes;
    None (no number known) falls back to ``updated_at``."""
    return None if number is None else number * 8 + step


def allowed(old: str, new: str) -> bool:
    """Whether a job's record may go from ``old`` to ``new`` in one step
    (staying in a state is always allowed: progress, a redelivery)."""
    return old == new or new in NEXT.get(old, ())


def reachable(old: str, new: str) -> bool:
    """Whether ``new`` can follow ``old`` through allowed transitions."""
    seen, todo = {old}, [old]
    while todo:
        for state in NEXT.get(todo.pop(), ()):
            if state not in seen:
                seen.add(state)
                todo.append(state)
    return new in seen


# ---------------------------------------------------------------- builders

def _change(job_id: str, state: "str | None", at: float, seq, **fields: Any
            ) -> dict:
    change = {"id": job_id, "updated_at": at, "seq": seq}
    if state is not None:
        change["state"] = state
    change.update((k, v) for k, v in fields.items() if v is not None)
    return change


def _finished(started: "float | None", at: float) -> dict:
    out = {"finished_at": at}
    if started is not None:
        out["duration"] = at - started
    return out


def _error(error: "str | None", tb: "str | None") -> dict:
    return {} if error is None else {"error": error, "traceback": tb or ""}


def started(job_id: str, *, task: str, queue: str, at: float, seq,
            redeliveries: int, host: str, pid: int, worker: "str | None",
            enqueued_at: "float | None", priority: int) -> dict:
    """A worker started an attempt (``running``; one more attempt)."""
    return _change(job_id, "running", at, seq, task=task, queue=queue,
                   started_at=at, attempts=1, redeliveries=redeliveries,
                   host=host, pid=pid, worker=worker, progress=0.0,
                   enqueued_at=enqueued_at, priority=priority)


def progress(job_id: str, percent: float, message: "str | None", *,
             at: float, seq) -> dict:
    """A running task reported its progress (``hueyq.progress()``)."""
    return _change(job_id, None, at, seq, progress=percent, message=message)


def completed(job_id: str, *, at: float, seq, started: "float | None" = None,
              **known: Any) -> dict:
    """The task returned (``complete``): progress 100, no error."""
    return _change(job_id, "complete", at, seq, progress=100.0, error="",
                   traceback="", **_finished(started, at), **known)


def failed(job_id: str, error: "str | None", *, at: float, seq,
           tb: "str | None" = None, started: "float | None" = None) -> dict:
    """Its last attempt raised, or its worker was killed, with no retries
    left (``failed``, reason ``failed``)."""
    return _change(job_id, "failed", at, seq, reason="failed",
                   **_finished(started, at), **_error(error, tb))


def retrying(job_id: str, error: "str | None", *, at: float, seq,
             tb: "str | None" = None) -> dict:
    """The attempt failed and huey runs it again (``retrying``)."""
    return _change(job_id, "retrying", at, seq, **_error(error, tb))


def cancelled(job_id: str, *, at: float, seq, reason: str = "cancelled",
              started: "float | None" = None, **known: Any) -> dict:
    """Cancelled before it started, stopped while running (reason
    ``cancelled``), or drained (reason ``drained``)."""
    return _change(job_id, "cancelled", at, seq, reason=reason,
                   **_finished(started, at), **known)


def expired(job_id: str, *, at: float, seq, started: "float | None" = None
            ) -> dict:
    """Its ``expires`` time passed before it ran (``expired``)."""
    return _change(job_id, "expired", at, seq, reason="expired",
                   **_finished(started, at))


def dead(job_id: str, reason: str, error: str, *, at: float, seq,
         **known: Any) -> dict:
    """It can never run as it is (``dead``, one of :data:`DEAD_REASONS`);
    ``known`` adds what the caller knows of it (``task``, ``queue``,
    ``enqueued_at``, ``payload``: the message kept for a retry, ...)."""
    return _change(job_id, "dead", at, seq, reason=reason, error=error,
                   finished_at=at, **known)


def recovered(job_id: str, error: str, *, at: float, seq, **known: Any
              ) -> dict:
    """Its delivery ended without an outcome (its worker died or was
    killed, or the backend failed before it ran): back to ``pending``, with
    ``error`` saying why; ``known`` adds ``task``, ``queue``,
    ``redeliveries``."""
    return _change(job_id, "pending", at, seq, error=error, **known)


def retried(job_id: str, queue: str, *, at: float, seq) -> dict:
    """Someone retried a finished job: ``pending`` again, its error,
    traceback and reason cleared."""
    return _change(job_id, "pending", at, seq, queue=queue, error="",
                   traceback="", reason="")


def restored(job_id: str, state: str, *, at: float, seq) -> dict:
    """A control's record taken back: the job is ``state`` again."""
    return _change(job_id, state, at, seq)


def ended(job_id: str, state: str, *, started: float, at: float, seq,
          error: "str | None" = None, tb: "str | None" = None) -> dict:
    """The end of an execution whose outcome huey's signals decided (see
    ``outcome_of``): complete, failed, retrying, cancelled, expired, or
    pending and scheduled (handed back, or moved to the schedule)."""
    if state == "complete":
        return completed(job_id, at=at, seq=seq, started=started)
    if state == "failed":
        return failed(job_id, error, at=at, seq=seq, tb=tb, started=started)
    if state == "retrying":
        return retrying(job_id, error, at=at, seq=seq, tb=tb)
    if state == "cancelled":
        return cancelled(job_id, at=at, seq=seq, started=started,
                         **_error(error, tb))
    if state == "expired":
        return dict(expired(job_id, at=at, seq=seq, started=started),
                    **_error(error, tb))
    return _change(job_id, state, at, seq, **_error(error, tb))


# ------------------------------------------------------ events and results

def event(queue: str, job_id: str, task: str, signal: str,
          detail: "str | None" = None, *, at: float,
          duration: "float | None" = None) -> dict:
    """One entry of a job's history (huey.contrib.stats's event row);
    ``queue`` is the huey name, ``<app>.<queue>``."""
    return {"ts": at, "queue": queue, "task_id": job_id, "task": task,
            "signal": signal, "duration": duration, "error": detail,
            "args": None}


def error_result(job_id: str, error: str) -> Error:
    """The result that tells waiters the job ended without a value."""
    return Error({"error": error, "retries": 0, "traceback": "",
                  "task_id": job_id})


def put_error(huey, job_id: str, error: str) -> None:
    """Give waiters on ``job_id``'s result an answer instead of a time-out."""
    huey.put_result(job_id, error_result(job_id, error))


# ------------------------------------------------------------------ reasons

def killed(why: str) -> str:
    """The last error of a lease whose worker the supervisor killed."""
    return "%s %s" % (KILLED, why)


def cancelled_by(who: str) -> str:
    """The last error of a lease whose worker was killed by a cancel."""
    return "%s: by %s" % (CANCELLED, who)


def suspect(detail: str) -> str:
    """The last error of a job recovered from a crash: it runs alone next."""
    return "%s %s" % (SUSPECT, detail)


def poison(times: int, detail: str) -> str:
    """The error of a job whose worker died ``times`` times running it."""
    return "%s: killed its worker %d times (%s)" % (POISON, times, detail)


def time_limit(detail: str) -> str:
    """The last error of a lease killed for running past its time limit."""
    return killed("%s %s" % (TIME_LIMIT, detail))


def is_killed(last_error: "str | None") -> bool:
    """Whether the last delivery's worker was killed on purpose."""
    return bool(last_error) and last_error.startswith(KILLED)


def is_time_limit(last_error: "str | None") -> bool:
    """Whether the last delivery was killed for its time limit."""
    return is_killed(last_error) and last_error[len(KILLED):].lstrip(
        ).startswith(TIME_LIMIT)


def is_poison(last_error: "str | None") -> bool:
    """Whether a job was ended for killing its worker too often."""
    return bool(last_error) and last_error.startswith(POISON)


def is_cancel(last_error: "str | None") -> bool:
    """Whether the last delivery was stopped by a cancel."""
    return bool(last_error) and last_error.startswith(CANCELLED)


def is_suspect(last_error: "str | None") -> bool:
    """Whether a message was recovered from a crash (it runs alone)."""
    return bool(last_error) and last_error.startswith(SUSPECT)


def dead_reason(exc: Exception) -> str:
    """The dead-letter reason of a message that could not become a task."""
    if isinstance(exc, BadSignature):
        return "bad_signature"
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    if isinstance(exc, HueyException) and "not found in TaskRegistry" in \
            str(exc):
        return "unknown_task"
    return "undecodable"


def pause_flag(by: str) -> str:
    """The name of the flag that pauses a queue on behalf of ``by``
    (``user``, ``memory``, ``memory_limit``)."""
    return PAUSE_PREFIX + by


def pauses(flags: "dict[str, Any]") -> "dict[str, Any]":
    """Who paused a queue, from its flags: ``{by: the flag's value}``."""
    return {name[len(PAUSE_PREFIX):]: value for name, value in flags.items()
            if name.startswith(PAUSE_PREFIX)}
