"""What a running task can ask of hueyq: ``progress()`` and ``current_job()``.

The worker sets the current job for the thread that runs a task. Calling
``hueyq.progress(pct, message)`` records progress (written at most every
``store.progress_interval``, the last value always kept) and is the point
where a cancelled job stops: it raises :class:`hueyq.JobCancelled` once the
job has been cancelled, :class:`hueyq.SoftTimeLimitExceeded` once (the first
call past the task's ``soft_time_limit``), and huey's ``TaskTimeout`` once the
task is past its ``timeout`` or, on a thread worker, its ``time_limit`` (a
thread cannot be killed, so there the hard limit is cooperative). Outside a
task both functions are harmless no-ops.
"""

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from huey.exceptions import TaskTimeout

from hueyq.exceptions import JobCancelled, SoftTimeLimitExceeded
from hueyq.units import format_duration

_local = threading.local()


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


def leased(task_id: str) -> "tuple[bool, bool | None]":
    """(whether this thread's worker runs ``task_id``, what its lease saw
    of the revoke keys)."""
    current = getattr(_local, "leased", None)
    if current is None or current[0] != task_id:
        return False, None
    return True, current[1]


def current_job() -> "JobContext | None":
    """The job this thread is running, or None outside a task."""
    return getattr(_local, "job", None)


def set_current(job: "JobContext | None") -> None:
    """Set (or clear, with None) the job this thread is running."""
    _local.job = job


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
