"""What a running task can ask of hueyq: ``progress()``, ``emit()`` and
``current_job()``.

The worker sets the current job for the thread that runs a task, or for
the asyncio task running an async task's body (a context variable, so each
of an async worker's concurrent tasks sees its own job). Calling
``hueyq.progress(pct, message)`` records progress (written at most every
``store.progress_interval``, the last value always kept) and is the point
where a cancelled job stops: it raises :class:`hueyq.JobCancelled` once the
job has been cancelled, :class:`hueyq.SoftTimeLimitExceeded` once (the first
call past the task's ``soft_time_limit``), and huey's ``TaskTimeout`` once the
task is past its ``timeout`` or, on a thread worker, its ``time_limit`` (a
thread cannot be killed, so there the hard limit is cooperative).
``hueyq.emit(data)`` appends a chunk to the job's output stream
(:mod:`hueyq.output`) at once, unbatched, so followers see it within
milliseconds. Outside a task these functions are harmless no-ops.

Once a task's body has run, :func:`persist` routes huey's bookkeeping writes
(its result, a retry, a pipeline's next task) through the worker, which
holds the outcome and retries a write the backend refuses instead of running
the task again.
"""

import contextlib
import contextvars
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from huey.exceptions import TaskTimeout

from hueyq.exceptions import JobCancelled, SoftTimeLimitExceeded
from hueyq.units import format_duration

_local = threading.local()
_job: "contextvars.ContextVar[JobContext | None]" = contextvars.ContextVar(
    "hueyq_job", default=None)


@dataclass
class JobContext:
    """The job the current thread is running."""
    id: str
    task: Any
    queue: str
    attempt: int
    report: Callable[[str, float, "str | None"], None]
    cancelled: Callable[[], bool]
    interval: float = 0.5
    #: Appends to the output stream of a job (``emit``); None: no stream.
    output: "Callable[[str, Any], int] | None" = None
    #: Retries a backend write until it succeeds (the worker's); None: plain.
    hold: "Callable[[Callable[[], Any]], Any] | None" = None
    #: Whether the task's body has returned or raised, and when.
    ran: bool = False
    ran_at: "float | None" = None
    progress: "float | None" = None
    message: "str | None" = None
    #: Seconds after ``started`` (monotonic) when SoftTimeLimitExceeded is
    #: raised, and when a cooperative hard limit raises TaskTimeout.
    soft_time_limit: "float | None" = None
    time_limit: "float | None" = None
    started: float = field(default_factory=time.monotonic)
    #: Unix time the soft limit was raised inside the task (None: not yet).
    soft_limit_raised: "float | None" = None
    #: Called (with this context) as the soft limit is raised, to record it.
    on_soft_limit: "Callable[[JobContext], None] | None" = None
    _last_write: float = field(default=0.0, repr=False)
    _dirty: bool = field(default=False, repr=False)

    def soft_limit_due(self) -> bool:
        """Past the soft limit, and SoftTimeLimitExceeded not raised yet."""
        return bool(self.soft_time_limit) and self.soft_limit_raised is None \
            and time.monotonic() - self.started >= self.soft_time_limit

    def raise_soft_limit(self) -> None:
        """Raise SoftTimeLimitExceeded in the task (once)."""
        self.soft_limit_raised = time.time()
        if self.on_soft_limit is not None:
            self.on_soft_limit(self)
        raise SoftTimeLimitExceeded("soft time limit exceeded (%s)"
                                    % format_duration(self.soft_time_limit))

    def check_limits(self) -> None:
        """Raise the soft limit once it is due, and TaskTimeout past a
        cooperative hard limit."""
        if self.soft_limit_due():
            self.raise_soft_limit()
        if self.time_limit and \
                time.monotonic() - self.started >= self.time_limit:
            raise TaskTimeout("time limit exceeded (%s)"
                              % format_duration(self.time_limit))

    def flush(self) -> None:
        """Write the last progress if a rate-limited one is still unwritten."""
        if self._dirty:
            self.report(self.id, self.progress, self.message)
            self._dirty = False


def set_leased(task_id: "str | None", revoked: "bool | None" = None) -> None:
    """This thread's worker is running ``task_id`` from a lease that found
    (``revoked``) or did not find a revoke key; its ack deletes the key."""
    _local.leased = (task_id, revoked)
    _local.revoke_cleared = False


def note_revoke_cleared() -> None:
    """huey asked to delete the running task's revoke key (it does after
    running a task); the worker's ack does it instead."""
    _local.revoke_cleared = True


def revoke_cleared() -> bool:
    """Whether huey asked to delete the running task's revoke key."""
    return getattr(_local, "revoke_cleared", False)


@contextlib.contextmanager
def restoring():
    """huey is restoring a revoked task (revoke_once, an expired
    revoke_until): its delete of the revoke key goes through."""
    _local.restoring = True
    try:
        yield
    finally:
        _local.restoring = False


def is_restoring() -> bool:
    """Inside :func:`restoring`."""
    return getattr(_local, "restoring", False)


@contextlib.contextmanager
def interrupting(task_id: str):
    """SIGNAL_INTERRUPTED is being sent for ``task_id``, whose lease hueyq's
    consumer hands back."""
    _local.interrupting = task_id
    try:
        yield
    finally:
        _local.interrupting = None


def interrupted(task_id: str) -> bool:
    """Whether this thread is sending SIGNAL_INTERRUPTED for ``task_id``."""
    return getattr(_local, "interrupting", None) == task_id


def interrupting_task() -> "str | None":
    """The task this thread is sending SIGNAL_INTERRUPTED for, if any."""
    return getattr(_local, "interrupting", None)


def leased(task_id: str) -> "tuple[bool, bool | None]":
    """(whether this thread's worker runs ``task_id``, what its lease saw
    of the revoke keys)."""
    current = getattr(_local, "leased", None)
    if current is None or current[0] != task_id:
        return False, None
    return True, current[1]


def current_job() -> "JobContext | None":
    """The job this thread (or asyncio task) is running, or None outside a
    task."""
    return _job.get()


def set_current(job: "JobContext | None") -> None:
    """Set (or clear, with None) the job this thread (or asyncio task) is
    running."""
    _job.set(job)


def persist(write: "Callable[[], Any]") -> Any:
    """Run ``write``, a backend write of huey's bookkeeping; once the current
    task's body has run, through the worker's ``hold`` (retrying it)."""
    job = current_job()
    if job is None or not job.ran or job.hold is None:
        return write()
    return job.hold(write)


def progress(percent: float, message: "str | None" = None) -> None:
    """Record the current task's progress (0-100) and an optional message.

    Raises JobCancelled if the job was cancelled, SoftTimeLimitExceeded
    (once) past the task's soft time limit, and huey's TaskTimeout past its
    ``timeout`` (or, on a thread worker, its ``time_limit``).
    """
    job = current_job()
    if job is None:
        return
    if not 0 <= percent <= 100:
        raise ValueError("progress must be between 0 and 100, got %r"
                         % (percent,))
    job.progress = float(percent)
    job.message = None if message is None else str(message)[:500]
    now = time.monotonic()
    if now - job._last_write >= job.interval or percent >= 100:
        job._last_write = now
        job._dirty = False
        job.report(job.id, job.progress, job.message)
    else:
        job._dirty = True
    if job.cancelled():
        raise JobCancelled("cancelled while running")
    job.check_limits()
    job.task.check_timeout()


def emit(data: Any) -> "int | None":
    """Append ``data`` (JSON-serialisable: a token, a dict) to the current
    job's output stream, which followers read as it runs (``GET
    /api/jobs/<id>/stream``, ``app.events(id)``, ``hueyq job --follow``).

    Returns the chunk's number in the job's stream (1, 2, ...), None outside
    a task. The stream keeps at most ``backend.output_max_chunks`` chunks and
    ``backend.output_max_bytes`` bytes, dropping the oldest; a single chunk
    over the byte bound raises :class:`hueyq.OutputTooLarge`, data that is
    not JSON-serialisable ValueError. Unlike :func:`progress`, it is not a
    cancel point.
    """
    job = current_job()
    if job is None or job.output is None:
        return None
    return job.output(job.id, data)
