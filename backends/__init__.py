"""Queue backends: huey's storages plus what huey lacks, chosen by URL.

Every backend module subclasses huey's own storage for one queue (huey name
``<app>.<queue>``) and adds the same small interface:

* leases: ``lease(owner, ack=None)`` moves the next pending message into a
  lease owned by ``host:pid:worker|stamp`` (:mod:`hueyq.owner`) in one
  atomic step (optionally acking the previous one in the same step), and
  numbers it from the app's sequence (``Lease.seq``, which orders the job's
  records without wall clocks; ``next_seq()`` numbers a control);
  ``ack``, ``release``, ``requeue``,
  ``annotate`` and ``leases()`` finish, hand back, recover and list them;
  ``relabel`` files a message that failed verification under its own id;
  ``forget`` and ``sweep_done`` drop finished messages;
* bulk: ``enqueue_many(messages)`` stores many messages, each as
  ``enqueue`` would, in one atomic step, and wakes the workers once;
* scheduling: ``promote_due()`` moves due scheduled messages into the queue
  atomically; ``wait(timeout)`` blocks until work may be there and
  ``notify()`` wakes waiting workers;
* listing and control: ``find``, ``list_messages``, ``counts``, ``cancel``,
  ``drain``, ``revive``, ``purge_dead``;
* flags (``set_flag``, ``clear_flag``, ``flags``): a queue is paused while
  any ``paused:*`` flag is set, checked inside the dequeue itself;
* records (``put_record``, ``records``, ``record_ages``): small JSON
  documents with a lifetime, such as the supervisor's status; their age is
  counted on the backend's own clock (this host's monotonic clock for a
  SQLite file, the server's for Redis), never by comparing hosts' clocks;
* ``health()``: findings about the backend's own configuration.

Messages are hueyq envelopes (``hueyq.envelope``); backends read only the
header. A message is in one state: ``pending``, ``scheduled``, ``running``
(leased), ``dead`` (kept with a reason, so it can be retried) or ``done``
(finished; kept, without its body, until the store has the job's record,
then forgotten, so a job is never in neither place).
"""

import dataclasses
import json
import logging
import math
from typing import Any

from hueyq.envelope import header_of
from hueyq.exceptions import ConfigurationError
from hueyq.owner import parse_owner

logger = logging.getLogger("hueyq.backends")

#: Message states inside a backend.
PENDING = "pending"
SCHEDULED = "scheduled"
RUNNING = "running"
DEAD = "dead"
DONE = "done"
STATES = (PENDING, SCHEDULED, RUNNING, DEAD)
#: Prefix of the flags that pause a queue (``paused:user``, ...).
PAUSE_PREFIX = "paused:"
#: Bytes of an oversized message that a lease hands over and a dead letter
#: keeps: enough for any envelope header.
HEAD_BYTES = 66 * 1024


@dataclasses.dataclass(frozen=True)
class Lease:
    """A message taken by a worker; ``handle`` identifies it to ack.

    ``revoked`` says whether a huey revoke key for the task or its task
    class existed when it was taken (read in the same atomic step), so the
    worker asks huey only when one did; None when the backend did not look.

    A message longer than the backend's ``lease_limit`` is cut as it is
    leased: ``data`` holds only its first :data:`HEAD_BYTES` (the backend
    keeps no more either) and ``size`` what it was, so a forged giant never
    reaches the worker's memory; ``size`` is None for a whole message.
    """
    handle: Any
    task_id: str
    data: bytes
    redeliveries: int
    last_error: "str | None"
    enqueued_at: "float | None" = None
    revoked: "bool | None" = None
    #: The app's sequence number of this delivery (see ``next_seq``).
    seq: "int | None" = None
    size: "int | None" = None

    @property
    def oversized(self) -> bool:
        """Whether the message was cut (see above)."""
        return self.size is not None and self.size > len(self.data or b"")


@dataclasses.dataclass(frozen=True)
class Finding:
    """One line of a health report: level is ``ok``, ``warning`` or ``error``."""
    level: str
    check: str
    message: str


@dataclasses.dataclass(frozen=True)
class MessageInfo:
    """What a backend knows of one message, without decoding it."""
    handle: Any
    queue: str
    task_id: str
    name: str
    state: str
    priority: float
    enqueued_at: "float | None"
    updated_at: "float | None"
    eta: "float | None"
    owner: "str | None"
    redeliveries: int
    last_error: "str | None"
    reason: "str | None"
    meta: dict
    size: int
    #: The sequence number of the message's latest delivery, if any.
    lease_seq: "int | None" = None

    @classmethod
    def checked(cls, **fields: Any) -> "MessageInfo":
        """A MessageInfo whose fields have the types readers expect, whatever
        a forged or corrupt record held: a wrong string becomes empty, a
        wrong number zero or None, a wrong meta an empty one."""
        for key in ("task_id", "name", "state"):
            fields[key] = _of(fields.get(key), str, "")
        for key in ("owner", "last_error", "reason"):
            fields[key] = _of(fields.get(key), str, None)
        for key in ("enqueued_at", "updated_at", "eta"):
            fields[key] = _number(fields.get(key))
        fields["priority"] = _number(fields.get("priority")) or 0
        for key in ("redeliveries", "size"):
            value = _number(fields.get(key))
            fields[key] = int(value) if value is not None else 0
        if "lease_seq" in fields:
            value = _number(fields["lease_seq"])
            fields["lease_seq"] = int(value) if value is not None else None
        fields["meta"] = clean_meta(fields.get("meta"))
        return cls(**fields)

    @property
    def host(self) -> "str | None":
        """Host part of the lease owner ``host:pid:worker|stamp``."""
        return parse_owner(self.owner).host

    @property
    def pid(self) -> "int | None":
        """Process id part of the lease owner."""
        return parse_owner(self.owner).pid

    @property
    def worker(self) -> "str | None":
        """Worker part of the lease owner."""
        return parse_owner(self.owner).worker

    @property
    def holder(self) -> "str | None":
        """The lease owner as people read it: ``host:pid:worker``."""
        return parse_owner(self.owner).name if self.owner else None


def _of(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) else default


def _number(value: Any) -> "float | None":
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value):
        return None
    return value


def clean_meta(meta: Any) -> dict:
    """A message's meta with the types readers expect (see peek_header)."""
    if not isinstance(meta, dict):
        return {}
    out = dict(meta)
    if "memory" in out and (isinstance(out["memory"], bool) or not isinstance(
            out["memory"], int) or out["memory"] < 0):
        del out["memory"]
    for key in ("t", "time_limit"):
        if key in out and _number(out[key]) is None:
            del out[key]
    if "args" in out and not isinstance(out["args"], str):
        del out["args"]
    return out


_reported: "set[str]" = set()


def read_json(raw: Any, what: str) -> Any:
    """A stored JSON document, or None when it is not JSON (forged or
    corrupt): the reader skips it, and it is reported once per process."""
    try:
        return json.loads(raw)
    except (TypeError, ValueError, RecursionError):
        report_bad(what)
        return None


def report_bad(what: str) -> None:
    """Log, once per process, a record a reader had to skip."""
    if what not in _reported and len(_reported) < 1000:
        _reported.add(what)
        logger.warning("skipped an unreadable record: %s", what)


class HueyViews:
    """huey's listing and schedule API on top of a backend's own methods
    (``count``, ``_data``, ``_flush_state``, ``promote_due``)."""

    #: Messages longer than this many bytes are leased without their body
    #: (see :class:`Lease`); None reads every message whole.
    lease_limit: "int | None" = None

    def consumer_side(self) -> None:
        """Called once by a consumer process before it takes work; backends
        whose producers and consumers commit differently override it."""

    def read_schedule(self, ts) -> list:
        # Due messages are moved into the queue atomically, so huey's
        # scheduler has nothing left to enqueue.
        from hueyq.envelope import epoch
        self.promote_due(epoch(ts))
        return []

    def queue_size(self) -> int:
        return self.count(PENDING)

    def enqueued_items(self, limit: "int | None" = None) -> list:
        return self._data(PENDING, limit)

    def schedule_size(self) -> int:
        return self.count(SCHEDULED)

    def scheduled_items(self, limit: "int | None" = None) -> list:
        return self._data(SCHEDULED, limit)

    def flush_queue(self) -> None:
        self._flush_state(PENDING)

    def flush_schedule(self) -> None:
        self._flush_state(SCHEDULED)


def message_fields(data: bytes, now: float) -> "tuple[dict, dict, str, Any]":
    """(header, meta, state, eta) of a message about to be stored: meta is
    the header without id, name, eta and priority; a message with an eta
    still ahead is scheduled. Never raises: a malformed header counts as none
    (the worker dead-letters such a message as undecodable). The header of
    a message this process's producer wrote is the one it wrote (no need
    to parse it again)."""
    header = header_of(data) or {}
    eta = header.get("eta")
    meta = {k: v for k, v in header.items()
            if k not in ("id", "name", "eta", "priority")}
    return header, meta, SCHEDULED if eta and eta > now else PENDING, eta


def open_storage(url: str, app_name: str, queue: str, **options: Any):
    """The huey storage for one queue of ``app_name`` on the backend ``url``."""
    scheme = url.split(":", 1)[0].lower()
    name = "%s.%s" % (app_name, queue)
    if scheme == "sqlite":
        from hueyq.backends.sqlite import SqliteBackend
        from hueyq.profile import sqlite_path
        return SqliteBackend(name, filename=sqlite_path(url), **options)
    if scheme in ("redis", "rediss", "unix"):
        from hueyq.backends.redis import RedisBackend
        return RedisBackend(name, url=url, **options)
    raise ConfigurationError("unsupported backend URL scheme %r" % scheme)


def split_name(name: str) -> "tuple[str, str]":
    """``"app.queue"`` -> ``("app", "queue")``."""
    app, _, queue = name.rpartition(".")
    return app, queue
