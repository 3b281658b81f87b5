"""Moving a plain huey's queue into hueyq: ``hueyq migrate``.

Reads what a plain huey left in its storage, a ``SqliteHuey`` file (tables
``task``, ``schedule``, ``kv``, ``counter``) or a ``RedisHuey`` /
``PriorityRedisHuey`` on Redis (keys ``huey.redis.<name>``,
``huey.schedule.<name>``, ``huey.results.<name>``,
``huey.counters.<name>``), decodes each message with huey's own serializer
and writes it into the App's backend as a message of its task's queue:
pending with its priority, scheduled with its eta, its retries and every
other setting carried in the message. Results and revokes go into the app's
result store, counters (chords in flight) are added. A message whose task
the App does not know is kept as a dead letter (``unknown_task``) on the
default queue, to be retried once the task exists; one that cannot be
decoded is reported and left where it is. The source is never changed.

It is idempotent: each message and key it copies leaves a marker
(``migrated:msg:<id>``, ``migrated:kv:<key>``) in the app's result store,
and a message whose job the backend already holds is not copied again. By
default it only reports what it would do (``apply=False``).
"""

import dataclasses
import os
import sqlite3
import time
from typing import Any, Iterator

from huey.serializer import Serializer, SignedSerializer, is_compressed

from hueyq import defaults
from hueyq.envelope import epoch
from hueyq.exceptions import BackendUnavailable, ConfigurationError

#: Key prefixes in huey's result store that are not results.
_SKIPPED_KV = (".lock.", ".rl.")


@dataclasses.dataclass
class Report:
    """What a migration moved (or would move) and what it could not."""
    source: str
    names: "list[str]"
    applied: bool
    moved: "dict[str, dict[str, int]]" = dataclasses.field(
        default_factory=dict)
    results: int = 0
    revokes: int = 0
    counters: int = 0
    dead_letters: "list[dict]" = dataclasses.field(default_factory=list)
    undecodable: "list[str]" = dataclasses.field(default_factory=list)
    already: int = 0
    not_copied: int = 0

    def count(self, queue: str, state: str) -> None:
        self.moved.setdefault(queue, {"pending": 0, "scheduled": 0})
        self.moved[queue][state] += 1

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- sources

class SqliteSource:
    """A SqliteHuey file, opened read-only."""

    def __init__(self, path: str) -> None:
        if not os.path.exists(path):
            raise BackendUnavailable("no huey database at %s" % path)
        self.path = path
        try:
            self.conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
            self.conn.execute("select 1 from task limit 1")
        except sqlite3.Error as exc:
            raise BackendUnavailable("%s is not a huey SQLite database: %s"
                                     % (path, exc)) from None

    def describe(self) -> str:
        return "huey's SQLite file %s" % self.path

    def names(self) -> "list[str]":
        rows = self.conn.execute(
            "select queue from task union select queue from schedule union "
            "select queue from kv union select queue from counter").fetchall()
        return sorted(row[0] for row in rows)

    def pending(self, name: str) -> "Iterator[bytes]":
        for row in self.conn.execute("select data from task where queue = ?"
                                     " order by priority desc, id", (name,)):
            yield bytes(row[0])

    def scheduled(self, name: str) -> "Iterator[bytes]":
        for row in self.conn.execute("select data from schedule where queue ="
                                     " ? order by timestamp, id", (name,)):
            yield bytes(row[0])

    def kv(self, name: str) -> "Iterator[tuple[str, bytes]]":
        for key, value in self.conn.execute(
                "select key, value from kv where queue = ?", (name,)):
            yield key, bytes(value)

    def counters(self, name: str) -> "Iterator[tuple[str, int]]":
        yield from self.conn.execute(
            "select key, value from counter where queue = ?", (name,))

    def close(self) -> None:
        self.conn.close()


class RedisSource:
    """The keys of a RedisHuey or PriorityRedisHuey, only read."""

    def __init__(self, url: str) -> None:
        try:
            import redis
        except ImportError:
            raise ConfigurationError("--from redis:// needs redis-py: pip "
                                     "install 'hueyq[redis]'") from None
        self.url = url
        self.conn = redis.Redis.from_url(url)
        try:
            self.conn.ping()
        except redis.RedisError as exc:
            raise BackendUnavailable("cannot read huey's keys at %s: %s"
                                     % (_redact(url), exc)) from None

    def describe(self) -> str:
        return "huey's Redis keys at %s" % _redact(self.url)

    def names(self) -> "list[str]":
        found = set()
        for prefix in ("huey.redis.", "huey.schedule.", "huey.results.",
                       "huey.counters."):
            for key in self.conn.scan_iter(match=prefix + "*", count=500):
                found.add(key.decode()[len(prefix):])
        return sorted(found)

    def pending(self, name: str) -> "Iterator[bytes]":
        key = "huey.redis.%s" % name
        kind = self.conn.type(key).decode()
        if kind == "list":  # LPUSH, RPOP: the oldest is at the right end
            yield from reversed(self.conn.lrange(key, 0, -1))
        elif kind == "zset":  # PriorityRedisHuey: an 8-byte time prefix
            for member in self.conn.zrange(key, 0, -1):
                yield member[8:]

    def scheduled(self, name: str) -> "Iterator[bytes]":
        yield from self.conn.zrange("huey.schedule.%s" % name, 0, -1)

    def kv(self, name: str) -> "Iterator[tuple[str, bytes]]":
        for key, value in self.conn.hgetall("huey.results.%s" % name).items():
            yield key.decode(), value

    def counters(self, name: str) -> "Iterator[tuple[str, int]]":
        for key, value in self.conn.hgetall("huey.counters.%s" % name).items():
            yield key.decode(), int(value)

    def close(self) -> None:
        self.conn.close()


def open_source(url: str):
    """The huey storage at ``url`` (``sqlite:///path`` or ``redis://``)."""
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        from hueyq.urls import sqlite_path
        try:
            return SqliteSource(sqlite_path(url))
        except ValueError as exc:
            raise ConfigurationError("--from: %s" % exc) from None
    if scheme in ("redis", "rediss", "unix"):
        return RedisSource(url)
    raise ConfigurationError("--from: %r is not a huey storage URL "
                             "(sqlite:///path/huey.db or redis://host:port/db)"
                             % url)


def _redact(url: str) -> str:
    from hueyq.urls import redact_url
    return redact_url(url)


# ---------------------------------------------------------------- decoding

class Decoder:
    """huey's own serializer for what a plain huey wrote: compressed or not
    (gzip or zlib, told by the first byte), signed when ``secret`` is given
    (huey's SignedSerializer)."""

    def __init__(self, secret: "str | None" = None) -> None:
        self.secret = secret

    def __call__(self, data: bytes) -> Any:
        options = {"compression": bool(is_compressed(data)),
                   "use_zlib": bool(data) and data[0] == 0x78}
        serializer = SignedSerializer(self.secret, **options) \
            if self.secret else Serializer(**options)
        return serializer.deserialize(data)


# ---------------------------------------------------------------- migration

def migrate(app, source, names: "list[str] | None" = None,
            secret: "str | None" = None, apply: bool = False) -> Report:
    """Copy the pending and scheduled messages, results, revokes and
    counters of huey ``names`` (every name found when None) from ``source``
    into ``app``'s backend; with ``apply`` False only count them."""
    found = source.names()
    names = list(names) if names else found
    report = Report(source=source.describe(), names=names, applied=apply)
    decode = Decoder(secret)
    for name in names:
        for state, messages in (("pending", source.pending(name)),
                                ("scheduled", source.scheduled(name))):
            for raw in messages:
                _message(app, raw, state, decode, report, apply)
        for key, value in source.kv(name):
            _kv(app, key, value, decode, report, apply)
        for key, value in source.counters(name):
            marker = "migrated:kv:%s" % key
            if _seen(app, marker):
                report.already += 1
                continue
            report.counters += 1
            if apply:
                app.queue_backend.results.incr(key, value)
                app.put_if_empty(marker, 1)
    return report


def _message(app, raw: bytes, state: str, decode: Decoder, report: Report,
             apply: bool) -> None:
    try:
        message = decode(raw)
        task_id, name = message.id, message.name
    except Exception as exc:  # whatever huey's unpickling raises
        report.undecodable.append("%s message: %s: %s"
                                  % (state, type(exc).__name__, exc))
        return
    marker = "migrated:msg:%s" % task_id
    if _seen(app, marker) or _held(app, task_id):
        report.already += 1
        if apply:
            app.put_if_empty(marker, 1)
        return
    if message.eta is not None and epoch(message.eta) > time.time():
        state = "scheduled"   # huey's worker had not moved it there yet
    cls = app.registry._registry.get(name)
    queue = getattr(cls, "queue", None)
    if queue not in app.queues:
        queue = defaults.DEFAULT_QUEUE if defaults.DEFAULT_QUEUE in \
            app.queues else app.queues[-1]
    if cls is None:
        report.dead_letters.append({"id": task_id, "task": name,
                                    "queue": queue})
    else:
        report.count(queue, state)
    if not apply:
        return
    huey = app.huey(queue)
    if cls is None:
        data = huey.serializer.serialize(message)
        huey.storage.enqueue(data, message.priority)
        huey.storage.cancel(task_id, "unknown_task")
    else:
        task = app.registry.create_task(message)
        huey.storage.enqueue(huey.serialize_task(task), task.priority)
    app.put_if_empty(marker, 1)


def _kv(app, key: str, value: bytes, decode: Decoder, report: Report,
        apply: bool) -> None:
    if any(part in key for part in _SKIPPED_KV):
        report.not_copied += 1  # locks and rate-limit windows: transient
        return
    marker = "migrated:kv:%s" % key
    if _seen(app, marker):
        report.already += 1
        return
    try:
        data = decode(value)
    except Exception as exc:
        report.undecodable.append("result %s: %s: %s"
                                  % (key, type(exc).__name__, exc))
        return
    if key.startswith(("r:", "rt:")):
        report.revokes += 1
    else:
        report.results += 1
    if apply:
        app.put_if_empty(key, data)
        app.put_if_empty(marker, 1)


def _seen(app, marker: str) -> bool:
    try:
        return app.queue_backend.results.has_data_for_key(marker)
    except BackendUnavailable:
        return False  # a dry run before anything ran here: nothing yet


def _held(app, task_id: str) -> bool:
    try:
        return app.find_message(task_id) is not None
    except BackendUnavailable:
        return False
