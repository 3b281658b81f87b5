"""Queue backends, chosen by URL: the factory.

This package owns opening a queue's storage from a URL (:func:`open_storage`).
The contract every backend implements is :mod:`hueyq.backends.base`,
re-exported here, so ``from hueyq.backends import PENDING, Lease`` keeps
working; the backends import only from ``base``, never from this package,
so nothing here is imported back. A backend's module is imported only when
its scheme is first used (its driver, such as redis-py, may be missing).
"""

from typing import Any

from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED, STATES, Backend,
                                 Finding, Lease, MessageInfo, clean_meta,
                                 message_fields, read_json, report_bad,
                                 split_name)
from hueyq.exceptions import ConfigurationError

__all__ = ["DEAD", "DONE", "HEAD_BYTES", "PAUSE_PREFIX", "PENDING", "RUNNING",
           "SCHEDULED", "STATES", "Backend", "Finding", "Lease", "MessageInfo",
           "clean_meta", "message_fields", "read_json", "report_bad",
           "split_name", "open_storage"]


def open_storage(url: str, app_name: str, queue: str, **options: Any
                 ) -> Backend:
    """The huey storage for one queue of ``app_name`` on the backend ``url``."""
    scheme = url.split(":", 1)[0].lower()
    name = "%s.%s" % (app_name, queue)
    if scheme == "sqlite":
        from hueyq.backends.sqlite import SqliteBackend
        return SqliteBackend.from_url(url, name, **options)
    if scheme in ("redis", "rediss", "unix"):
        from hueyq.backends.redis import RedisBackend
        return RedisBackend.from_url(url, name, **options)
    raise ConfigurationError("unsupported backend URL scheme %r" % scheme)
