"""Queue backends, chosen by URL: the scheme registry and the factory.

This package owns which class serves which URL scheme (:data:`SCHEMES`,
filled by :func:`register_scheme`, one call per backend below: its class,
its URL check for the profile, an example URL), opening a queue's storage
from a URL (:func:`open_storage`), an App's backend (:class:`AppBackend`:
every queue's storage and the app's own parts), and the errors of the
backends in one place: :class:`~hueyq.exceptions.BackendUnavailable` and
:class:`~hueyq.exceptions.BackendFull`, which backends raise for their
users, and :func:`driver_errors`, every registered driver's own.

The contract every backend implements is :mod:`hueyq.backends.base`,
re-exported here, so ``from hueyq.backends import PENDING, Lease`` keeps
working; the backends import only from ``base``, never from this package,
so nothing here is imported back. A backend's module is imported only when
its scheme is first used (its driver, such as redis-py, may be missing).
"""

import dataclasses
import importlib
import sys
from typing import Any, Callable

from hueyq import urls
from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED, STATES, Backend,
                                 Chunk, Finding, Lease, MessageInfo,
                                 OutputPage, OutputWaiter, clean_meta,
                                 message_fields, read_json, report_bad,
                                 split_name)
from hueyq.exceptions import BackendFull
from hueyq.exceptions import BackendUnavailable
from hueyq.exceptions import ConfigurationError
from hueyq.exceptions import QueueNotFound

__all__ = ["DEAD", "DONE", "HEAD_BYTES", "PAUSE_PREFIX", "PENDING", "RUNNING",
           "SCHEDULED", "STATES", "Backend", "Chunk", "Finding", "Lease",
           "MessageInfo", "OutputPage", "OutputWaiter",
           "clean_meta", "message_fields", "read_json", "report_bad",
           "split_name", "Scheme", "SCHEMES", "register_scheme",
           "backend_class", "check_url", "open_storage", "driver_errors",
           "BackendFull", "BackendUnavailable", "AppBackend"]


@dataclasses.dataclass(frozen=True)
class Scheme:
    """How URLs of one scheme open a backend."""
    #: ``"module:Class"`` of the Backend subclass, imported on first use.
    backend: str
    #: Checks a URL of this scheme for the profile and returns it in its
    #: normal form; raises ValueError naming what is wrong.
    check: Callable[[str], str]
    #: An example URL, for the error about an unknown scheme.
    example: str


#: URL scheme (lower case) to the backend that serves it.
SCHEMES: "dict[str, Scheme]" = {}


def register_scheme(names: "tuple[str, ...]", backend: str,
                    check: Callable[[str], str], example: str) -> None:
    """Serve URLs of the schemes ``names`` with the class ``backend``
    (``"module:Class"``): the one place a new backend is made known."""
    for name in names:
        SCHEMES[name.lower()] = Scheme(backend, check, example)


register_scheme(("sqlite",), "hueyq.backends.sqlite:SqliteBackend",
                urls.check_sqlite_url, "sqlite:///path/queue.db")
register_scheme(("redis", "rediss", "unix"),
                "hueyq.backends.redis:RedisBackend", urls.check_redis_url,
                "redis://host:6379/0")
register_scheme(("redis+sentinel",), "hueyq.backends.redis:RedisBackend",
                urls.check_sentinel_url,
                "redis+sentinel://host:26379,host:26379/mymaster/0")
register_scheme(("postgresql", "postgres"),
                "hueyq.backends.postgres:PostgresBackend",
                urls.check_postgres_url, "postgresql://host:5432/db")


def _scheme(url: str) -> Scheme:
    found = SCHEMES.get(urls.scheme(url))
    if found is None:
        raise ConfigurationError("unsupported backend URL scheme %r"
                                 % urls.scheme(url))
    return found


def check_url(url: str) -> str:
    """A backend URL in its normal form; ValueError (for the profile) when
    it is malformed or no backend serves its scheme."""
    found = SCHEMES.get(urls.scheme(url))
    if found is None:
        raise ValueError("unsupported backend URL %r (use %s)" % (
            urls.redact_url(url), " or ".join(dict.fromkeys(
                s.example for s in SCHEMES.values()))))
    return found.check(url)


def backend_class(url: str) -> "type[Backend]":
    """The Backend subclass that serves ``url``."""
    return _load(_scheme(url).backend)


def open_storage(url: str, app_name: str, queue: str, **options: Any
                 ) -> Backend:
    """The huey storage for one queue of ``app_name`` on the backend ``url``."""
    return backend_class(url).from_url(url, "%s.%s" % (app_name, queue),
                                       **options)


def driver_errors() -> "tuple[type[BaseException], ...]":
    """Exception classes that mean a backend could not be reached: OSError
    and every imported backend's :attr:`Backend.driver_errors`."""
    found: "list[type[BaseException]]" = [OSError]
    for path in dict.fromkeys(s.backend for s in SCHEMES.values()):
        if path.partition(":")[0] not in sys.modules:
            # Never imported, so it raised nothing; importing it here would
            # load its driver (redis-py: ~14 MiB, 0.1 s) into a process
            # that never uses it, at its first failing task.
            continue
        for error in _load(path).driver_errors:
            if error not in found:
                found.append(error)
    return tuple(found)


def _load(path: str) -> "type[Backend]":
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class AppBackend:
    """One App's backend: the storage of each of its queues and the parts
    that belong to the whole app.

    A queue's storage (:meth:`storage`) holds its messages, leases and
    flags. The app's parts live in the first queue's storage, the
    :attr:`home`: its records (the runtime's status, sessions), its
    key/value namespace (:attr:`results`: huey's results, revokes, locks and
    counters, which every queue's storage shares), the runtime lock and the
    backend's health; callers ask this object for them instead of picking a
    queue's storage.
    """

    def __init__(self, url: str, app_name: str, queues: "tuple[str, ...]",
                 **options: Any) -> None:
        self.url = url
        self.app_name = app_name
        self.queues = tuple(queues)
        self._options = options
        self._storages: "dict[str, Backend]" = {}

    def storage(self, queue: str) -> Backend:
        """The storage of ``queue``, opened on first use."""
        found = self._storages.get(queue)
        if found is None:
            if queue not in self.queues:
                raise QueueNotFound("no queue %r (queues: %s)"
                                    % (queue, ", ".join(self.queues)))
            found = self._storages[queue] = open_storage(
                self.url, self.app_name, queue, **self._options)
        return found

    @property
    def home(self) -> Backend:
        """The storage that holds the app's own parts (the first queue's)."""
        return self.storage(self.queues[0])

    @property
    def results(self) -> Backend:
        """Where the app's key/value namespace is read and written (huey's
        ``put_data``, ``peek_data``, ``has_data_for_key``, ``incr``, ...)."""
        return self.home

    # ------------------------------------------------------------ flags

    def flags(self, queue: str) -> "dict[str, dict]":
        """Every flag of ``queue``."""
        return self.storage(queue).flags()

    def set_flag(self, queue: str, name: str, value: dict) -> None:
        """Set a flag of ``queue``, such as ``paused:user``."""
        self.storage(queue).set_flag(name, value)

    def clear_flag(self, queue: str, name: str) -> bool:
        """Remove a flag of ``queue``; True if it was set."""
        return self.storage(queue).clear_flag(name)

    # ------------------------------------------------------------ records

    def put_record(self, key: str, value: dict, ttl: "float | None" = None
                   ) -> None:
        """Store a record of the app (see Backend.put_record)."""
        self.home.put_record(key, value, ttl)

    def records(self, prefix: str = "") -> "dict[str, dict]":
        """The app's live records under ``prefix``."""
        return self.home.records(prefix)

    def record_ages(self, prefix: str = ""
                    ) -> "dict[str, tuple[dict, float]]":
        """``{key: (record, age)}`` of the app's live records."""
        return self.home.record_ages(prefix)

    def delete_record(self, key: str) -> None:
        """Remove a record of the app."""
        self.home.delete_record(key)

    # ------------------------------------------------------------ output

    def read_output(self, job_id: str, after: int = 0, limit: int = 1000
                    ) -> OutputPage:
        """Chunks of a job's output stream after ``after`` (see
        Backend.read_output)."""
        return self.home.read_output(job_id, after, limit)

    def output_waiter(self, job_id: str) -> OutputWaiter:
        """A waiter for new chunks of a job's output (the caller closes it)."""
        return self.home.output_waiter(job_id)

    def delete_output(self, job_ids) -> int:
        """Delete the output streams of these jobs."""
        return self.home.delete_output(job_ids)

    def purge_output(self, before: float) -> int:
        """Delete output streams last appended to before ``before``."""
        return self.home.purge_output(before)

    # ------------------------------------------------------------ health

    def health(self, **options: Any) -> "list[Finding]":
        """Findings about the backend's own configuration."""
        return self.home.health(**options)

    def ping(self) -> None:
        """Raise BackendUnavailable unless the backend answers."""
        self.home.ping()

    def describe(self) -> str:
        """Where the backend lives, for people."""
        return self.home.describe()

    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error of the backend."""
        return self.home.explain(exc)

    def claim(self, holder: str) -> "str | None":
        """Take the app's runtime lock (see Backend.claim)."""
        return self.home.claim(holder)

    def identity(self) -> Any:
        """What the runtime opened, to notice it replaced."""
        return self.home.identity()

    def checkpoint(self) -> bool:
        """Fold the backend's write-ahead log back (see Backend.checkpoint)."""
        return self.home.checkpoint()

    def close(self) -> None:
        """Close every queue's storage opened so far."""
        for storage in self._storages.values():
            storage.close()
