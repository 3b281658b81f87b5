"""Keeps database drivers a runtime does not use out of its processes.

huey's storage module imports redis-py and peewee imports psycopg2 and
psycopg whenever they are installed, in every process that imports them:
about 14 MiB and 0.1 s for redis-py, 7 MiB for psycopg2, per process. A
runtime whose backend and store are both SQLite never calls them, so the
supervisor starts its consumers with ``HUEYQ_UNUSED_DRIVERS`` naming them
(:func:`unused`), and ``import hueyq`` in such a process imports huey's
storage and peewee while those names are blocked (:func:`skip_from_env`).
The block is lifted at once: a task may still ``import redis`` itself;
only huey's Redis storages and peewee's PostgreSQL databases stay without
a driver in that process. Set ``HUEYQ_UNUSED_DRIVERS=`` (empty) for the
supervisor to keep every driver in its consumers.
"""

import os
import sys

from hueyq.urls import scheme

ENV = "HUEYQ_UNUSED_DRIVERS"
DRIVERS = ("redis", "psycopg2", "psycopg")
_REDIS = ("redis", "rediss", "unix", "redis+sentinel")
_POSTGRES = ("postgres", "postgresql")


def unused(*urls: str) -> "tuple[str, ...]":
    """The drivers none of ``urls`` (backend, store) can need; an unknown
    scheme needs them all."""
    schemes = {scheme(url) for url in urls}
    names = []
    if schemes <= {"sqlite"} | set(_POSTGRES):
        names.append("redis")
    if schemes <= {"sqlite"} | set(_REDIS):
        names += ["psycopg2", "psycopg"]
    return tuple(names)


def env_value(profile) -> str:
    """``HUEYQ_UNUSED_DRIVERS`` for the consumers of ``profile``: what the
    environment says if set, else the drivers its URLs cannot need."""
    if ENV in os.environ:
        return os.environ[ENV]
    return ",".join(unused(profile.backend.url, profile.store.url))


def skip_from_env() -> None:
    """Import huey's storage and peewee without the drivers named in
    ``HUEYQ_UNUSED_DRIVERS`` (nothing when it is unset or empty)."""
    names = [n for n in os.environ.get(ENV, "").split(",")
             if n in DRIVERS and n not in sys.modules]
    if not names or "huey.storage" in sys.modules:
        return
    for name in names:
        sys.modules[name] = None  # `import name` raises ImportError
    try:
        import huey.storage  # noqa: F401
        import peewee  # noqa: F401
    finally:
        for name in names:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
