"""Queue backends, chosen by URL: the scheme registry and the factory.

This package owns which class serves which URL scheme (:data:`SCHEMES`,
filled by :func:`register_scheme`, one call per backend below: its class,
its URL check for the profile, an example URL), opening a queue's storage
from a URL (:func:`open_storage`), and the errors of the backends in one
place: :class:`~hueyq.exceptions.BackendUnavailable` and
:class:`~hueyq.exceptions.BackendFull`, which backends raise for their
users, and :func:`driver_errors`, every registered driver's own. The contract every
backend implements is :mod:`hueyq.backends.base`, re-exported here, so
``from hueyq.backends import PENDING, Lease`` keeps working; the backends
import only from ``base``, never from this package, so nothing here is
imported back. A backend's module is imported only when its scheme is
first used (its driver, such as redis-py, may not be installed).
"""

import dataclasses
import importlib
from typing import Any, Callable

from hueyq import urls
from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED, STATES, Backend,
                                 Finding, Lease, MessageInfo, clean_meta,
                                 message_fields, read_json, report_bad,
                                 split_name)
from hueyq.exceptions import BackendFull
from hueyq.exceptions import BackendUnavailable
from hueyq.exceptions import ConfigurationError

__all__ = ["DEAD", "DONE", "HEAD_BYTES", "PAUSE_PREFIX", "PENDING", "RUNNING",
           "SCHEDULED", "STATES", "Backend", "Finding", "Lease", "MessageInfo",
           "clean_meta", "message_fields", "read_json", "report_bad",
           "split_name", "Scheme", "SCHEMES", "register_scheme",
           "backend_class", "check_url", "open_storage", "driver_errors",
           "BackendFull", "BackendUnavailable"]


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


def _scheme(url: str) -> Scheme:
    found = SCHEMES.get(urls.scheme(url))
    if found is None:
        raise ConfigurationError("unsupported backend URL scheme %r"
                                 % urls.scheme(url))
    return found


def check_url(url: str) -> str:
    """A backend URL in its normal form; ValueError (for the profile) when
    it is malformed or no backend serves its scheme."""
    found = SCHEMES.get(urls.scheme(url)) if ":" in url else None
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
    and every registered backend's :attr:`Backend.driver_errors`."""
    found: "list[type[BaseException]]" = [OSError]
    for path in dict.fromkeys(s.backend for s in SCHEMES.values()):
        for error in _load(path).driver_errors:
            if error not in found:
                found.append(error)
    return tuple(found)


def _load(path: str) -> "type[Backend]":
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
