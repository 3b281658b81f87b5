"""What a consumer's workers write about their jobs, and what huey told them.

This is the glue between a worker and its consumer's ``JobRecorder``:
:func:`collect_signal` (a huey signal receiver) keeps the signals huey sent
about the task a worker thread runs (:func:`follow`, :func:`unfollow`),
:func:`outcome_of` and :func:`describe_error` read the job's outcome from
them, and :class:`JobLog` turns a worker's steps (an attempt started,
progress, a soft time limit, a dead letter) into job records built by
:mod:`hueyq.jobs`, buffered off the task's hot path. Nothing here touches
the backend.
"""

import logging
import os
import sys
import threading
import time
import traceback
from typing import Any

from huey import signals as S

from hueyq import jobs
from hueyq.backends import DEAD
from hueyq.envelope import peek_header
from hueyq.exceptions import HueyqError
from hueyq.jobs import ENDED, STARTED, change_seq
from hueyq.units import format_duration

logger = logging.getLogger("hueyq.worker")

_ERRORS = (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED,
           S.SIGNAL_RATE_LIMITED)
_trail = threading.local()


def task_name(task) -> str:
    """The registered name of a task (``module.function``)."""
    cls = type(task)
    return "%s.%s" % (cls.__module__, cls.__name__)


def follow(task_id: str) -> None:
    """Start keeping huey's signals about ``task_id`` on this thread."""
    _trail.signals, _trail.task_id = [], task_id


def unfollow() -> "list[tuple[str, Any]]":
    """Stop keeping signals on this thread; the (signal, exception) pairs
    kept since :func:`follow`."""
    trail, _trail.signals = _trail.signals, None
    return trail


def collect_signal(signal_name: str, task, *args: Any) -> None:
    """huey signal receiver: note what happened to the running task."""
    trail = getattr(_trail, "signals", None)
    if trail is None or getattr(_trail, "task_id", None) != task.id:
        return
    exc = args[0] if args else sys.exc_info()[1]
    trail.append((signal_name, exc))


def outcome_of(trail: "list[tuple[str, Any]]") -> "tuple[str, Any, Any, Any]":
    """(job state, ack outcome, dead reason, exception) from huey's signals."""
    signals = [name for name, _ in trail]
    exc = next((e for name, e in trail if name in _ERRORS and e is not None),
               None)
    if S.SIGNAL_RETRYING in signals:
        return "retrying", None, None, exc
    if S.SIGNAL_COMPLETE in signals:
        return "complete", None, None, None
    if S.SIGNAL_INTERRUPTED in signals:
        return "pending", "release", None, None
    if S.SIGNAL_REVOKED in signals or S.SIGNAL_CANCELED in signals:
        return "cancelled", DEAD, "cancelled", None
    if S.SIGNAL_EXPIRED in signals:
        return "expired", DEAD, "expired", None
    if S.SIGNAL_SCHEDULED in signals:
        return "scheduled", None, None, None
    return "failed", DEAD, "failed", exc


def describe_error(exc: Any, signals: "list[str]") -> "tuple[str | None, str | None]":
    """(error, traceback) of a failed attempt."""
    if exc is None:
        if S.SIGNAL_TIMEOUT in signals:
            return "timeout", None
        if S.SIGNAL_LOCKED in signals:
            return "task lock held", None
        return None, None
    tb = "".join(traceback.format_exception(type(exc), exc,
                                            exc.__traceback__))
    return repr(exc), tb


class JobLog:
    """The records one worker writes about its jobs, through its consumer's
    recorder (buffered, written in batches by the recorder's thread)."""

    def __init__(self, recorder, queue: str, host: str,
                 args_preview: bool = False) -> None:
        self.recorder = recorder
        self.queue = queue
        self.host = host
        self.args_preview = args_preview

    def started(self, task, lease, name: str, worker: "str | None",
                at: float) -> None:
        """An attempt of ``task`` started on ``worker``."""
        change = jobs.started(
            task.id, task=name, queue=self.queue, at=at,
            seq=change_seq(lease.seq, STARTED),
            redeliveries=lease.redeliveries, host=self.host,
            pid=os.getpid(), worker=worker,
            enqueued_at=lease.enqueued_at, priority=task.priority or 0)
        if self.args_preview or lease.enqueued_at is None:
            header = peek_header(lease.data) or {}
            change["args"] = header.get("args")
            change["enqueued_at"] = lease.enqueued_at or header.get("t")
        if self.args_preview and change.get("args") is None:
            # Encrypted messages carry no preview in their plaintext header.
            from hueyq.app import args_preview
            change["args"] = args_preview(task.args, task.kwargs)
        self.recorder.job(change)

    def progress(self, job_id: str, percent: float, message: "str | None",
                 seq: "int | None") -> None:
        """The running task called ``hueyq.progress()``."""
        self.recorder.job(jobs.progress(job_id, percent, message,
                                        at=time.time(), seq=seq))

    def soft_limit(self, job, name: str) -> None:
        """The job ran past its soft time limit."""
        detail = "soft time limit exceeded (%s)" % format_duration(
            job.soft_time_limit)
        self.recorder.event(job.id, name, "soft-time-limit", detail)
        logger.warning("%s: %s", name, detail,
                       extra={"queue": self.queue, "job_id": job.id})

    def dead(self, job_id: str, lease, reason: str, detail: str) -> None:
        """The leased message was dead-lettered under ``job_id``."""
        header = peek_header(lease.data) or {}
        name = (lease.name or header.get("name") or "")[:255]
        now = time.time()
        self.recorder.job(jobs.dead(
            job_id, reason, detail, at=now, seq=change_seq(lease.seq, ENDED),
            task=name, queue=self.queue,
            enqueued_at=header.get("t") or now,
            payload=bytes(lease.data or b""),
            redeliveries=lease.redeliveries))
        self.recorder.event(job_id, name, "dead", "%s: %s" % (reason, detail))


def put_error(huey, job_id: str, error: str) -> None:
    """Store the error result of a job that ended without a value, logging
    (not raising) a backend that refused it."""
    try:
        jobs.put_error(huey, job_id, error)
    except HueyqError:
        logger.exception("could not store the error of %s", job_id)
