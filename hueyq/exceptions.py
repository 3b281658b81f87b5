"""Every error hueyq raises on purpose.

One flat hierarchy under :class:`HueyqError`, so callers catch one base class
and the CLI and web UI map each kind to one exit status or HTTP status.
:class:`Unsupported` is deliberately the one ``NotImplementedError`` of
hueyq: it marks what a compatibility layer refuses on purpose (naming the
hueyq way instead), never unfinished work.
"""

from huey.exceptions import CancelExecution


class HueyqError(Exception):
    """Base class of every error hueyq raises on purpose."""


class ConfigurationError(HueyqError):
    """A profile, URL or option is invalid (CLI exit status 2)."""


class BackendUnavailable(HueyqError):
    """The queue backend (SQLite file or Redis) cannot be reached."""


class BackendFull(BackendUnavailable):
    """The backend refuses writes: Redis reached ``maxmemory`` under
    ``noeviction``. Reads still work; nothing queued is lost."""


class NotReplicated(BackendUnavailable):
    """An enqueue reached the Redis primary but fewer replicas than
    ``backend.min_replicas`` acknowledged it in time: a failover now could
    lose it. The job may still run (enqueue again: delivery is at least
    once)."""


class StoreUnavailable(HueyqError):
    """The job store (SQLite or PostgreSQL) cannot be reached."""


class QueueNotFound(HueyqError, KeyError):
    """No queue of that name is configured in the profile."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class JobNotFound(HueyqError, KeyError):
    """No job with that id exists in the backend or the store."""

    def __str__(self) -> str:
        return Exception.__str__(self)


class AlreadyRunning(HueyqError):
    """Another runtime of the same app already works on this backend."""


class InvalidState(HueyqError):
    """The job or queue is in a state that does not allow the operation."""


class PayloadTooLarge(HueyqError, ValueError):
    """A message is over the profile's ``security.max_message_size``."""


class EnqueueError(HueyqError, ValueError):
    """A task of a bulk enqueue (``App.enqueue_many``, ``task.map``) cannot
    be serialised; nothing of the call was enqueued."""


class BadSignature(HueyqError):
    """A message is unsigned or its signature does not match the secret."""


class Undecodable(HueyqError):
    """A message cannot be decoded (not an envelope, corrupt, bad pickle)."""


class JobCancelled(HueyqError, CancelExecution):
    """Raised inside a running task by ``hueyq.progress()`` once cancelled.

    It is huey's ``CancelExecution`` with ``retry=False``, so huey ends the
    task without retrying it.
    """

    def __init__(self, msg: str = "cancelled") -> None:
        CancelExecution.__init__(self, msg, retry=False)


class SoftTimeLimitExceeded(HueyqError):
    """Raised inside a running task once it is past its ``soft_time_limit``.

    The task may catch it to clean up; the hard ``time_limit`` still ends it.
    Process workers get it at once (a signal in the worker), thread workers
    at their next ``hueyq.progress()`` call.
    """


class Unsupported(HueyqError, NotImplementedError):
    """A compatibility layer (``hueyq.celery``) was asked for something it
    deliberately does not do; the message names the hueyq way instead."""


class OutputTooLarge(HueyqError, ValueError):
    """A chunk given to ``hueyq.emit()`` is over ``backend.output_max_bytes``."""
