"""Plain huey, configured as hueyq configures it, for the comparison.

``BENCH_HUEY_KIND`` is ``sqlite`` (``SqliteHuey``: WAL, ``synchronous=FULL``,
file ``BENCH_HUEY_FILE``), ``redis`` (``PriorityRedisHuey`` on
``BENCH_REDIS_URL``, blocking BZPOPMIN) or ``postgres`` (``PostgresHuey``
on ``BENCH_PG_URL``, blocking in LISTEN). Two instances, ``high`` and
``low`` (``huey`` is ``high``), each with ``noop``, ``sleep`` and ``probe``,
so the priority workload can run one consumer per queue as hueyq does.
Results are on and ``None`` is not stored, as in hueyq. With
``BENCH_HUEY_DEFAULTS`` set, ``SqliteHuey`` / ``RedisHuey`` with huey's
defaults instead (the enqueue workload's headline comparison).
"""

import os
import types

from huey import PostgresHuey, PriorityRedisHuey, RedisHuey, SqliteHuey

from benchmarks.apps import common


def make(name: str):
    """A huey instance named ``bench_<name>`` on the configured storage."""
    kind = os.environ.get("BENCH_HUEY_KIND", "sqlite")
    if os.environ.get("BENCH_HUEY_DEFAULTS"):
        return _defaults(kind, name)
    if kind == "sqlite":
        return SqliteHuey("bench_" + name, filename=os.environ.get(
            "BENCH_HUEY_FILE", "huey.db"), fsync=True, journal_mode="wal",
            results=True, store_none=False, utc=True)
    if kind == "postgres":
        return _postgres(name, results=True, store_none=False, utc=True)
    return PriorityRedisHuey("bench_" + name, url=os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"), results=True,
        store_none=False, utc=True)


def _defaults(kind: str, name: str):
    """Plain huey as a user gets it: no options but where it lives."""
    if kind == "sqlite":
        return SqliteHuey("bench_" + name, filename=os.environ.get(
            "BENCH_HUEY_FILE", "huey.db"))
    if kind == "postgres":
        return _postgres(name)
    return RedisHuey("bench_" + name, url=os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"))


def _postgres(name: str, **options):
    """``PostgresHuey`` whose tables are created under an advisory lock:
    the two consumers of the priority workload creating them at once would
    race in PostgreSQL's catalog, and one of them would die."""
    import psycopg
    dsn = os.environ["BENCH_PG_URL"]
    huey = PostgresHuey("bench_" + name, dsn=dsn, create_tables=False,
                        **options)
    with psycopg.connect(dsn) as conn:
        conn.execute("select pg_advisory_xact_lock(%s)", (0x68756579,))
        for sql in huey.storage.ddl:
            conn.execute(sql)
    return huey


def register(huey) -> types.SimpleNamespace:
    """The benchmark tasks on ``huey``."""
    return types.SimpleNamespace(
        noop=huey.task(name="noop")(common.noop),
        sleep=huey.task(name="sleep")(common.sleep),
        probe=huey.task(name="probe")(common.probe))


high = make("high")
low = make("low")
huey = high
tasks = {"high": register(high), "low": register(low)}
