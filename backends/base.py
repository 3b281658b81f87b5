"""The backend contract: what every queue backend adds to huey's storage.

This module owns the contract and nothing else: the message states, the
:class:`Lease`, :class:`MessageInfo` and :class:`Finding` a backend hands
out, the helpers every backend uses to read what it stored, and
:class:`Backend`, the abstract base every backend class subclasses next to
huey's own storage for one queue (huey name ``<app>.<queue>``)::

    class SqliteBackend(Backend, SqliteStorage): ...

:class:`Backend` declares, as abstract methods, what hueyq adds to huey's
storage (a backend missing one cannot be instantiated), and implements on
top of them huey's listing and schedule API. The interface, by group:

* bulk: ``enqueue_many(messages)`` stores many messages, each as huey's
  ``enqueue`` would, and wakes the workers once; ``enqueue_once(messages,
  window)`` does the same for messages that may carry a key, storing one
  only when no other job holds its key, in the same atomic step;
* leases: ``lease(owner, ack=None)`` moves the next pending message into a
  lease owned by ``host:pid:worker|stamp`` (:mod:`hueyq.owner`) in one
  atomic step (optionally acking the previous one in the same step), and
  numbers it from the app's sequence (``Lease.seq``, which orders the job's
  records without wall clocks; ``next_seq()`` numbers a control);
  ``ack``, ``release``, ``requeue``,
  ``annotate`` and ``leases()`` finish, hand back, recover and list them;
  an ack or a recovery that names the lease it ends (a *fence*: its owner
  and epoch, the ``seq`` of that delivery) ends it only while the message
  is still leased to that owner in that epoch, so a holder that lost its
  lease (killed, partitioned or stalled past ``lease_timeout``, then
  recovered and re-leased elsewhere) cannot finish another's; a refused
  ack is counted (``fenced()``) and logged;
  ``relabel`` files a message that failed verification under its own id;
  ``forget`` and ``sweep_done`` drop finished messages;
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
* output (``append_output``, ``read_output``, ``output_waiter``,
  ``delete_output``, ``purge_output``): each job's output stream, the
  chunks ``hueyq.emit()`` appends (JSON text), numbered from 1 per job and
  bounded (the oldest dropped past a number of chunks or of bytes, the
  count of dropped ones kept), kept for the result retention, and a
  wake-up that lets a follower block until a chunk is appended;
* ``health()``: findings about the backend's own configuration, with
  ``ping``, ``describe``, ``explain``, ``claim``, ``identity`` and
  ``checkpoint`` for the runtime and the CLI.

Messages are hueyq envelopes (``hueyq.envelope``); backends read only the
header. A message is in one state: ``pending``, ``scheduled``, ``running``
(leased), ``dead`` (kept with a reason, so it can be retried) or ``done``
(finished; kept, without its body, until the store has the job's record,
then forgotten, so a job is never in neither place).
"""

import abc
import dataclasses
import json
import logging
import math
import time
from typing import Any

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
    #: The task name and meta the backend keeps for the message (read in
    #: the same step, so the worker need not look them up); None where a
    #: backend's lease did not read them.
    name: "str | None" = None
    meta: "dict | None" = None

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
    def fence(self) -> "tuple[str | None, int | None]":
        """``(owner, epoch)`` of this lease: what an ack or a recovery of
        it names, so it ends only this delivery (see :meth:`Backend.ack`)."""
        return self.owner, self.lease_seq

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


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One chunk of a job's output stream: its number in the job's stream
    (from 1), the JSON text ``hueyq.emit()`` stored, when (Unix time, on
    the emitting worker's clock) and the run of the job that emitted it
    (the app's sequence number of its lease, see ``Lease.seq``: a job that
    runs again under its id, a retry or a redelivery, has a larger one)."""
    seq: int
    data: str
    at: float
    run: "int | None" = None


@dataclasses.dataclass(frozen=True)
class OutputPage:
    """What :meth:`Backend.read_output` found: the chunks after the one
    asked for (oldest first), the number of the newest chunk appended so far
    (0: none) and how many the bound has dropped from the stream in all."""
    chunks: "list[Chunk]"
    last_seq: int = 0
    dropped: int = 0


class OutputWaiter:
    """Blocks a follower of one job's output until a chunk may have been
    appended. This one polls (the fallback where a backend has no wake-up
    it can use); backends hand out their own."""

    #: Seconds between two looks of the polling fallback.
    interval = 0.05

    def __init__(self, backend: "Backend", job_id: str) -> None:
        self.backend = backend
        self.job_id = job_id

    def wait(self, after: int, timeout: float) -> None:
        """Return once a chunk after ``after`` may be there, or after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.backend.read_output(self.job_id, after, 1).last_seq \
                <= after:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(self.interval, left))

    def close(self) -> None:
        """Let the wake-up go."""


def output_size(data: str) -> int:
    """The bytes a chunk counts against the bound: its UTF-8 length."""
    return len(data.encode("utf-8"))


class Backend(abc.ABC):
    """What hueyq adds to huey's storage for one queue: the contract.

    A backend class subclasses this first and huey's own storage for its
    server second (``class SqliteBackend(Backend, SqliteStorage)``), so
    huey's key/value methods (results, revokes, locks, counters, one
    namespace per app) come from huey, and huey's listing and schedule
    methods are answered here from the backend's own.

    Errors: a backend raises
    :class:`~hueyq.exceptions.BackendUnavailable` when its server cannot be
    reached and :class:`~hueyq.exceptions.BackendFull` when it refuses
    writes; what its driver raises otherwise it lets through, and lists in
    :attr:`driver_errors` (``explain`` words them).
    """

    #: Exception classes of this backend's driver that mean the backend
    #: could not be reached or refused a command.
    driver_errors: "tuple[type[BaseException], ...]" = ()
    #: Messages longer than this many bytes are leased without their body
    #: (see :class:`Lease`); None reads every message whole.
    lease_limit: "int | None" = None
    #: Whether leases honour the queue's ``admission`` flag (set by the
    #: consumer of a queue with a memory budget).
    admission: bool = False

    # ------------------------------------------------------------ opening

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, name: str, **options: Any) -> "Backend":
        """The storage of the queue ``name`` (``<app>.<queue>``) at ``url``;
        ``options`` are :meth:`shared_options` and the caller's own."""

    @classmethod
    def shared_options(cls, url: str, access: str, **settings: Any) -> dict:
        """Options every queue of one App opens its storage with (a
        connection pool, the file access mode); raises
        ConfigurationError when the backend's driver is missing.
        ``settings`` are what :meth:`profile_options` took from the
        profile."""
        return {}

    @classmethod
    def profile_options(cls, profile: Any) -> dict:
        """The settings of ``profile`` (a :class:`hueyq.profile.Profile`)
        this backend takes beyond its URL, handed to :meth:`shared_options`
        as keywords (Redis: ``backend.min_replicas`` and the ``[sentinel]``
        section); none by default."""
        return {}

    def failovers(self) -> int:
        """How many times a command of this backend got through only after
        its server changed under it (a Redis Sentinel failover); a worker
        that sees the number move hands back leases in its name, whose
        acks the old server may have taken with it. 0 by default."""
        return 0

    def consumer_side(self) -> None:
        """Called once by a consumer process before it takes work; backends
        whose producers and consumers commit differently override it."""

    # ------------------------------------------------------------ enqueue

    @abc.abstractmethod
    def enqueue_many(self, messages) -> int:
        """Store ``(data, priority)`` pairs, each as huey's ``enqueue``
        would, and wake the workers once; returns how many. SQLite: one
        transaction (all or none); Redis: atomic chunks in one round trip."""

    @abc.abstractmethod
    def enqueue_once(self, messages, window: float
                     ) -> "list[tuple[str, bool]]":
        """Store ``(data, priority, key)`` messages as :meth:`enqueue_many`
        would, except one whose ``key`` (a string; None for none) another
        job of this queue holds. A job holds its key while its message is
        pending, scheduled or running, and until ``window`` seconds after it
        was enqueued (after its eta, when that is later). Returns, per
        message, the id of the job holding its key (its own when stored)
        and whether it was stored. Checking and taking a key is one atomic
        step with the enqueue (SQLite, PostgreSQL: one transaction; Redis:
        one script per chunk), so producers racing one key make one job."""

    # ------------------------------------------------------------ leases

    @abc.abstractmethod
    def lease(self, owner: str, ack: "tuple | None" = None
              ) -> "Lease | None":
        """Move the next pending message into a lease owned by ``owner``
        in one atomic step, unless a ``paused:*`` flag is set (and, with
        :attr:`admission`, only one whose declared memory fits); ``ack``,
        ``(handle, outcome, reason)`` or ``(handle, outcome, reason,
        fence)``, is acked in the same step as :meth:`ack` would (a fenced
        ack refused, counted and logged, and the lease still taken)."""

    @abc.abstractmethod
    def lease_batch(self, owner: str, name: str, limit: int
                    ) -> "list[Lease]":
        """Lease up to ``limit`` pending messages of task ``name`` at once
        (never a suspect, whose ``last_error`` starts with ``suspect:``)."""

    @abc.abstractmethod
    def ack(self, handle, outcome: "str | None" = None,
            reason: "str | None" = None, fence: "tuple | None" = None
            ) -> bool:
        """End a lease: None (``done``, body dropped), ``"dead"`` (kept
        with ``reason``) or ``"release"`` (back to the queue). ``fence``,
        ``(owner, epoch)`` of the delivery being ended (the worker's owner
        name and its ``Lease.seq``), makes the ack end it only while the
        message is still running under that owner and epoch; one refused
        is counted (:meth:`fenced`) and logged, and changes nothing (not
        even huey's revoke key). Returns whether the lease was ended."""

    @abc.abstractmethod
    def ack_many(self, acks) -> None:
        """End several leases, each ``(handle, outcome, reason)`` or
        ``(handle, outcome, reason, fence)`` (see :meth:`ack`)."""

    @abc.abstractmethod
    def fenced(self) -> int:
        """How many acks of this app a fence refused, on every host: each
        one an execution whose holder had lost its lease."""

    @abc.abstractmethod
    def release(self, handles) -> int:
        """Hand leases back without counting a redelivery; how many."""

    @abc.abstractmethod
    def requeue(self, handle, last_error: "str | None" = None,
                count: bool = True, max_redeliveries: "int | None" = None,
                fence: "tuple | None" = None) -> "str | None":
        """Recover a lease whose owner is gone: ``pending`` again (counting
        a redelivery when ``count``), or ``dead`` as poison past
        ``max_redeliveries``; None when it was no longer leased (with a
        ``fence``: no longer leased to that owner in that epoch, e.g.
        another host's supervisor recovered it first and it was leased
        again)."""

    @abc.abstractmethod
    def annotate(self, handle, last_error: str) -> bool:
        """Record on a lease why its worker is about to be killed."""

    @abc.abstractmethod
    def relabel(self, handle, task_id: str) -> None:
        """File a leased message under the job id ``task_id``."""

    @abc.abstractmethod
    def leases(self) -> "list[MessageInfo]":
        """Every leased (running) message of this queue."""

    @abc.abstractmethod
    def next_seq(self) -> int:
        """Take the next number of the app's sequence."""

    @abc.abstractmethod
    def forget(self, handles) -> int:
        """Delete these ``done`` messages; how many."""

    @abc.abstractmethod
    def sweep_done(self, before: float) -> int:
        """Delete ``done`` messages finished before ``before``."""

    @abc.abstractmethod
    def message_data(self, handle) -> "bytes | None":
        """The stored bytes of one message."""

    # ------------------------------------------------------------ wake-ups

    @abc.abstractmethod
    def promote_due(self, now: "float | None" = None) -> int:
        """Move scheduled messages due at ``now`` into the queue, in eta
        order behind what is pending, noting ``promoted`` in their meta."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> None:
        """Block until work may be there or ``timeout`` passes."""

    @abc.abstractmethod
    def notify(self) -> None:
        """Wake workers waiting on this queue."""

    def notify_results(self) -> None:
        """Tell every process awaiting a result of this app that one may
        have been stored (:meth:`wait_results`); by default nothing."""

    def wait_results(self, timeout: float) -> "bool | None":
        """Block until :meth:`notify_results` or ``timeout``: True when
        told, False when not; None from a backend that cannot tell, whose
        waiters read results on a schedule instead."""
        return None

    # ------------------------------------------------------------ listing

    @abc.abstractmethod
    def find(self, task_id: str) -> "MessageInfo | None":
        """The message of a job: its lease first, else its newest."""

    @abc.abstractmethod
    def list_messages(self, state: str, limit: "int | None" = 50,
                      offset: int = 0) -> "list[MessageInfo]":
        """Messages in ``state`` in the order they will be taken (dead
        ones newest first), ``limit`` of them from ``offset``."""

    @abc.abstractmethod
    def newest(self, limit: int, before: "float | None" = None,
               names: "list[str] | None" = None,
               id_prefix: "str | None" = None, since: "float | None" = None,
               states: "tuple[str, ...]" = (PENDING, SCHEDULED, RUNNING)
               ) -> "list[MessageInfo]":
        """Messages in ``states``, newest enqueued first, filtered."""

    @abc.abstractmethod
    def count(self, state: str) -> int:
        """Number of messages of this queue in ``state``."""

    @abc.abstractmethod
    def counts(self) -> "dict[str, int]":
        """``{pending, scheduled, running, dead}`` for this queue."""

    @abc.abstractmethod
    def memory_room(self) -> "int | None":
        """What admission leaves for tasks that declared ``memory=``;
        None when the queue has no memory budget."""

    @abc.abstractmethod
    def waiting_for_memory(self, room: int, limit: int = 1000) -> int:
        """How many of the next ``limit`` pending jobs need over ``room``."""

    @abc.abstractmethod
    def _data(self, state: str, limit: "int | None") -> list:
        """The bodies of the messages in ``state`` (for huey's listing)."""

    @abc.abstractmethod
    def _flush_state(self, state: str) -> None:
        """Delete every message in ``state`` (for huey's flush)."""

    # ------------------------------------------------------------ control

    @abc.abstractmethod
    def cancel(self, task_id: str, reason: str = "cancelled"
               ) -> "list[MessageInfo]":
        """Move a pending or scheduled job's messages to ``dead``."""

    @abc.abstractmethod
    def drain(self, reason: str = "drained") -> "list[MessageInfo]":
        """Move every pending and scheduled message to ``dead``."""

    @abc.abstractmethod
    def revive(self, task_id: str) -> "MessageInfo | None":
        """Put a dead job's newest message back into the queue."""

    @abc.abstractmethod
    def purge_dead(self, before: float, keep: int) -> int:
        """Delete dead messages older than ``before`` or past ``keep``."""

    @abc.abstractmethod
    def delete_dead(self, task_ids) -> int:
        """Delete the kept (dead) messages of these jobs."""

    # ------------------------------------------------------------ flags

    @abc.abstractmethod
    def set_flag(self, name: str, value: dict) -> None:
        """Set a flag of this queue, such as ``paused:user``."""

    @abc.abstractmethod
    def clear_flag(self, name: str) -> bool:
        """Remove a flag (waking workers if it paused); True if it was set."""

    @abc.abstractmethod
    def flags(self) -> "dict[str, dict]":
        """Every flag of this queue."""

    # ------------------------------------------------------------ records

    @abc.abstractmethod
    def put_record(self, key: str, value: dict, ttl: "float | None" = None
                   ) -> None:
        """Store a small JSON document for the whole app, living ``ttl``
        seconds on the backend's own clock."""

    @abc.abstractmethod
    def record_ages(self, prefix: str = ""
                    ) -> "dict[str, tuple[dict, float]]":
        """``{key: (record, age)}`` of the live records under ``prefix``."""

    @abc.abstractmethod
    def delete_record(self, key: str) -> None:
        """Remove a record of this app."""

    def records(self, prefix: str = "") -> "dict[str, dict]":
        """Live records of this app whose key starts with ``prefix``."""
        return {key: value for key, (value, _) in
                self.record_ages(prefix).items()}

    # ------------------------------------------------------------ output

    @abc.abstractmethod
    def append_output(self, job_id: str, data: str, max_chunks: int,
                      max_bytes: int, ttl: float, run: "int | None" = None
                      ) -> int:
        """Append ``data`` (JSON text, at most ``max_bytes`` long), emitted
        by the run ``run`` of the job (:class:`Chunk`), to the output
        stream of ``job_id`` in one atomic step and wake its followers;
        returns the chunk's number (1, 2, ... per job). Past
        ``max_chunks`` chunks or ``max_bytes`` bytes (:func:`output_size`)
        the oldest chunks are dropped in the same step and counted. The
        stream is kept ``ttl`` seconds after its last append (Redis: a TTL;
        SQL backends: :meth:`purge_output`, run by the retention task)."""

    @abc.abstractmethod
    def read_output(self, job_id: str, after: int = 0, limit: int = 1000
                    ) -> OutputPage:
        """Up to ``limit`` chunks of ``job_id``'s stream numbered over
        ``after``, oldest first (an empty page for a job with none)."""

    @abc.abstractmethod
    def output_waiter(self, job_id: str) -> OutputWaiter:
        """A waiter that blocks until a chunk of ``job_id`` is appended
        (SQLite: a FIFO per follower; Redis: a blocking ``XREAD``;
        PostgreSQL: ``LISTEN``); the caller closes it."""

    @abc.abstractmethod
    def delete_output(self, job_ids) -> int:
        """Delete the output streams of these jobs; how many there were."""

    @abc.abstractmethod
    def purge_output(self, before: float) -> int:
        """Delete output streams last appended to before ``before`` (Unix
        time); how many (0 where the backend expires them itself)."""

    # ------------------------------------------------------------ health

    @abc.abstractmethod
    def health(self, **options: Any) -> "list[Finding]":
        """Findings about the backend's own configuration."""

    @abc.abstractmethod
    def ping(self) -> None:
        """Raise BackendUnavailable unless the backend answers."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where this backend lives, for people (never a password)."""

    @abc.abstractmethod
    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error this backend raised."""

    @abc.abstractmethod
    def claim(self, holder: str) -> "str | None":
        """Take the app's runtime lock; None, or who holds it."""

    @abc.abstractmethod
    def identity(self) -> Any:
        """What the runtime opened (a file's device and inode), to notice
        it replaced; None where there is nothing to replace."""

    @abc.abstractmethod
    def checkpoint(self) -> bool:
        """Fold a write-ahead log back; True when it was folded."""

    def _refused(self, handle, fence) -> None:
        """Log an ack a fence refused (the backend has counted it)."""
        logger.warning(
            "refused the ack of message %s by %s (epoch %s): its lease was "
            "recovered and is no longer that worker's; the job's outcome is "
            "the current holder's", handle, parse_owner(fence[0]).name,
            fence[1])

    # ------------------------------------------------------------ huey's API

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
    from hueyq.envelope import header_of
    header = header_of(data) or {}
    eta = header.get("eta")
    meta = {k: v for k, v in header.items()
            if k not in ("id", "name", "eta", "priority")}
    return header, meta, SCHEDULED if eta and eta > now else PENDING, eta


def split_name(name: str) -> "tuple[str, str]":
    """``"app.queue"`` -> ``("app", "queue")``."""
    app, _, queue = name.rpartition(".")
    return app, queue
