"""Redis backend: huey's RedisStorage with leases, flags and wake-ups.

Keys of one queue live under ``hueyq:{<app>}:<queue>:`` (the braces keep an
app's keys in one cluster slot). Each message gets a handle, a zero-padded
sequence number, that sits in exactly one sorted set: ``pending`` (score
``-priority``; equal scores sort by handle, so FIFO), ``sched`` (score: eta),
``running`` (score: lease time) or ``dead``. The body is in the ``msg`` hash
and a JSON summary in ``info``. Every move between sets is one Lua script, so
taking a message into a lease, acking it, recovering it and promoting due
messages are atomic, and a dropped connection cannot lose a message: workers
block on a separate ``wake`` list of tokens, never on the queue itself.

A lease takes the next number of the app's ``seq`` counter (``Lease.seq``,
which orders the job's records without wall clocks). Records carry the
Redis server's time, so their age does not depend on any host's clock.

A Redis that reached ``maxmemory`` under ``noeviction`` refuses commands that
may grow memory; the client raises :class:`~hueyq.exceptions.BackendFull`
("Redis is out of memory: ...") for them, and reads avoid MULTI (which Redis
refuses then). A script whose first write frees memory (``zrem``, ``hdel``)
is let finish by Redis, so leases, acks and the heartbeat go on.

Every client of the backend is made by :func:`make_pool`, the one
factory: a ``redis://``, ``rediss://`` or ``unix://`` URL gets a plain
pool, a ``redis+sentinel://host:port,host:port/service/db`` URL a pool that
asks the sentinels where the primary is on every new connection (redis-py's
``SentinelConnectionPool``), so producers, consumers, the supervisor and
the web UI follow a failover without a restart. On such a pool a command
that fails because the primary went away or became a replica (connection
refused or reset, ``READONLY``) is retried, its connection dropped, for
``sentinel.retry_timeout`` (:func:`_retrying`) before its caller sees the
error; a blocking wait (BLPOP on the wake list) retried so waits on the
new primary.

Redis replicates asynchronously: an enqueue the primary acknowledged may be
missing from the replica promoted in a failover. With ``min_replicas`` (the
profile's ``backend.min_replicas``) every enqueue is followed, on the same
connection, by ``WAIT min_replicas timeout``, and an enqueue that fewer
replicas acknowledged in time raises :class:`~hueyq.exceptions.NotReplicated`
instead of returning.
"""

import json
import math
import os
import time

from huey.storage import RedisStorage

from hueyq import urls
from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED, Backend,
                                 Chunk, Finding, Lease, MessageInfo,
                                 OutputPage, OutputWaiter, clean_meta,
                                 message_fields, output_size, read_json,
                                 report_bad, split_name)
from hueyq.envelope import epoch, write_json
from hueyq.exceptions import (BackendFull, BackendUnavailable,
                              ConfigurationError, NotReplicated)
from hueyq.memory import memory_room
from hueyq.units import format_size

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.client import Pipeline
    from redis.exceptions import (ConnectionError as RedisConnectionError,
                                  OutOfMemoryError, ReadOnlyError,
                                  RedisError, TimeoutError as RedisTimeout)
    from redis.retry import Retry
    from redis.sentinel import (MasterNotFoundError, Sentinel,
                                SentinelConnectionPool)
    #: What a failover looks like to a client: the primary gone (refused,
    #: reset, no primary known yet) or demoted to a replica (READONLY).
    FAILOVER_ERRORS = (RedisConnectionError, RedisTimeout, ReadOnlyError)
except ImportError:  # pragma: no cover - the redis extra is missing
    RedisError = None
    FAILOVER_ERRORS = ()

#: Messages per script call of a bulk enqueue (five arguments each; the
#: script unpacks two per message into one command, under Lua's 8,000).
ENQUEUE_CHUNK = 1000
#: Most wake-up tokens a bulk enqueue sends: enough for every idle worker
#: of a queue; a worker that finds nothing left deletes the rest.
WAKE_TOKENS = 64


def _full(exc: Exception) -> BackendFull:
    return BackendFull("Redis is out of memory: %s (free memory or raise "
                       "maxmemory; hueyq doctor shows the figures)" % exc)


def _retrying(pool, call):
    """``call()``, retried with back-off while it fails as a failover does
    (:data:`FAILOVER_ERRORS`) for the pool's ``retry_timeout`` seconds (set
    on Sentinel pools only: a plain Redis that is down fails at once, and
    so does a Sentinel pool none of whose sentinels answers)."""
    budget = getattr(pool, "retry_timeout", 0)
    if not budget:
        return call()
    deadline = time.monotonic() + budget
    delay = 0.05
    failed = False
    while True:
        try:
            result = call()
            if failed:
                pool.failovers = getattr(pool, "failovers", 0) + 1
            return result
        except FAILOVER_ERRORS as exc:
            failed = True
            if time.monotonic() + delay > deadline:
                raise
            if isinstance(exc, MasterNotFoundError) and not any(
                    _answers(s) for s in pool.sentinel_manager.sentinels):
                raise  # no sentinel at all: not a failover to wait out
            # Idle connections may still point at the old primary.
            pool.disconnect(inuse_connections=False)
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


if RedisError is not None:
    class _Pipeline(Pipeline):
        def execute(self, raise_on_error: bool = True):
            stack, scripts = list(self.command_stack), set(self.scripts)

            def once():
                # execute() empties the pipeline whatever happens: a retry
                # sends the same commands again.
                self.command_stack, self.scripts = list(stack), set(scripts)
                return super(_Pipeline, self).execute(raise_on_error)
            try:
                return _retrying(self.connection_pool, once)
            except OutOfMemoryError as exc:
                raise _full(exc) from None

    class _Client(redis.Redis):
        """redis-py's client, raising BackendFull for Redis's OOM errors and
        retrying through a failover on a Sentinel pool."""

        def execute_command(self, *args, **options):
            try:
                return _retrying(self.connection_pool, lambda: super(
                    _Client, self).execute_command(*args, **options))
            except OutOfMemoryError as exc:
                raise _full(exc) from None

        def pipeline(self, transaction=True, shard_hint=None):
            return _Pipeline(self.connection_pool, self.response_callbacks,
                             transaction, shard_hint)
else:  # pragma: no cover
    _Client = None


def make_pool(url: str, service_name: "str | None" = None,
              sentinel_password: "str | None" = None,
              retry_timeout: float = 30.0):
    """The connection pool of the backend at ``url``: the one place a Redis
    client of hueyq's backend is made (producers, consumers, supervisor,
    web UI, doctor all open the backend through it).

    A ``redis+sentinel://`` URL gives a pool that finds the primary of
    ``service_name`` (the URL's, else this argument) through the sentinels
    (their password: ``sentinel_password``; the URL's user and password
    are the Redis servers'), and retries a command through a failover for
    ``retry_timeout`` seconds."""
    if RedisError is None:
        raise ConfigurationError("the Redis backend needs redis-py: "
                                 "pip install 'hueyq[redis]'")
    options = {"health_check_interval": 30, "socket_keepalive": True}
    if urls.scheme(url) != "redis+sentinel":
        return redis.ConnectionPool.from_url(url, **options)
    parts = urls.sentinel_parts(url)
    service = parts["service"] or service_name
    if not service:
        raise ConfigurationError(
            "a redis+sentinel URL needs the primary's service name "
            "(redis+sentinel://host:26379/mymaster/0) or "
            "sentinel.service_name")
    # A sentinel that does not answer is skipped at once for the next one
    # (redis-py's clients otherwise retry with back-off of seconds);
    # failovers are waited out by _retrying.
    sentinel_kwargs = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                       "retry": Retry(NoBackoff(), 0)}
    if sentinel_password:
        sentinel_kwargs["password"] = sentinel_password
    manager = Sentinel(parts["sentinels"], sentinel_kwargs=sentinel_kwargs)
    pool = SentinelConnectionPool(
        service, manager, db=parts["db"], username=parts["username"],
        password=parts["password"], socket_connect_timeout=5.0, **options)
    pool.retry_timeout = retry_timeout
    return pool


#: The Lua scripts, one file each in ``lua/`` (shipped as package data),
#: with the files of the functions each one calls (load_info, finish,
#: message_head) put before its own; every move of a message between sets
#: is one script, so it is atomic.
_SCRIPT_PARTS = {
    "enqueue": ("add", "enqueue"),
    "enqueue_many": ("enqueue_many",),
    "enqueue_once": ("add", "enqueue_once"),
    "lease": ("load_info", "finish", "message_head", "lease"),
    "ack": ("load_info", "finish", "ack"),
    "lease_batch": ("load_info", "message_head", "lease_batch"),
    "requeue": ("load_info", "requeue"),
    "promote": ("load_info", "promote"),
    "move": ("load_info", "move"),
    "dequeue": ("load_info", "dequeue"),
    "annotate": ("load_info", "annotate"),
    "relabel": ("load_info", "relabel"),
    "delete_dead": ("delete_dead",),
    "put_record": ("put_record",),
    "append_output": ("append_output",),
}
_LUA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua")


def _load_scripts() -> "dict[str, str]":
    """The text of every script, read from its files once, at import."""
    texts: "dict[str, str]" = {}
    for part in {p for parts in _SCRIPT_PARTS.values() for p in parts}:
        with open(os.path.join(_LUA_DIR, part + ".lua"),
                  encoding="utf-8") as fh:
            texts[part] = fh.read()
    return {name: "\n".join(texts[p] for p in parts)
            for name, parts in _SCRIPT_PARTS.items()}


SCRIPTS = _load_scripts()


def _ack_parts(ack) -> tuple:
    """``(handle, outcome, reason, fence)`` of an ack given with or without
    its fence; an empty handle for none."""
    if ack is None:
        return "", None, None, None
    return tuple(ack) + (None,) * (4 - len(ack))


def _fence_args(fence) -> list:
    """A fence (owner, epoch) as script arguments ('' for none)."""
    if fence is None:
        return ["", ""]
    return [fence[0] or "", "" if fence[1] is None else int(fence[1])]


def _lua_number(value):
    """``value`` as Redis's cjson encodes a number: 14 significant digits."""
    if isinstance(value, float):
        return float("%.14g" % value)
    return value


def _chunk(entry_id, fields) -> Chunk:
    seq = int(entry_id.split(b"-")[0])
    run = fields.get(b"r") or None
    return Chunk(seq, fields[b"d"].decode("utf-8", "replace"),
                 float(fields[b"t"]), None if run is None else int(run))


class _StreamWaiter(OutputWaiter):
    """A follower's wake-up on Redis: ``XREAD BLOCK`` on the job's stream
    from the chunk it has (a stream not created yet is waited for too)."""

    def wait(self, after: int, timeout: float) -> None:
        key = self.backend.output_prefix + self.job_id
        self.backend.conn.xread({key: "%d-0" % int(after)}, count=1,
                                block=max(1, int(timeout * 1000)))


def _memory_finding(memory: dict) -> Finding:
    used = memory.get("used_memory", 0)
    limit = memory.get("maxmemory", 0)
    if not limit:
        return Finding("ok", "redis.memory", "memory %s (no maxmemory)"
                       % format_size(used))
    figures = "%s used of maxmemory %s" % (format_size(used),
                                           format_size(limit))
    if used >= limit:
        return Finding("error", "redis.memory", "Redis is out of memory: %s; "
                       "it refuses enqueues and results until memory is "
                       "freed (read or delete results, drain a queue) or "
                       "maxmemory is raised" % figures)
    if used > 0.9 * limit:
        return Finding("warning", "redis.memory", "%s: at maxmemory Redis "
                       "refuses enqueues and results" % figures)
    return Finding("ok", "redis.memory", figures)


def _record(doc) -> "dict | None":
    """A stored record with its fields of the types readers expect."""
    if not isinstance(doc, dict) or not isinstance(doc.get("value"), dict):
        return None
    for key in ("at", "ttl", "expires"):
        value = doc.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(
                value, (int, float))):
            return None
    return doc


def _answers(client) -> bool:
    """Whether a server (a sentinel) answers a PING."""
    try:
        return bool(client.ping())
    except RedisError:
        return False


def _address(client) -> str:
    """``host:port`` of a client's server."""
    kwargs = client.connection_pool.connection_kwargs
    return "%s:%s" % (kwargs.get("host"), kwargs.get("port"))


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else value


_SETS = {PENDING: "pending", SCHEDULED: "sched", RUNNING: "running",
         DEAD: "dead", DONE: "done"}


class RedisBackend(Backend, RedisStorage):
    """One queue of an app in Redis, with leases and wake-ups."""

    priority = True
    redis_client = _Client
    driver_errors = (RedisError,) if RedisError is not None else ()

    @classmethod
    def from_url(cls, url: str, name: str, **options) -> "RedisBackend":
        return cls(name, url=url, **options)

    @classmethod
    def profile_options(cls, profile) -> dict:
        """``backend.min_replicas`` and its timeout, and the ``[sentinel]``
        section."""
        backend, sentinel = profile.backend, profile.sentinel
        return {"min_replicas": backend.min_replicas,
                "min_replicas_timeout": backend.min_replicas_timeout,
                "service_name": sentinel.service_name,
                "sentinel_password": sentinel.password,
                "retry_timeout": sentinel.retry_timeout}

    @classmethod
    def shared_options(cls, url: str, access: str, min_replicas: int = 0,
                       min_replicas_timeout: float = 1.0,
                       **sentinel) -> dict:
        """One connection pool for every queue of an App (through
        :func:`make_pool`), and the durability of its enqueues."""
        return {"connection_pool": make_pool(url, **sentinel),
                "min_replicas": min_replicas,
                "min_replicas_timeout": min_replicas_timeout}

    def __init__(self, name: str, url: "str | None" = None,
                 connection_pool=None, read_timeout: float = 1.0,
                 min_replicas: int = 0, min_replicas_timeout: float = 1.0,
                 **kwargs) -> None:
        if RedisError is None:
            raise ConfigurationError("the Redis backend needs redis-py: "
                                     "pip install 'hueyq[redis]'")
        sentinel = {k: kwargs.pop(k) for k in (
            "service_name", "sentinel_password", "retry_timeout")
            if k in kwargs}
        if connection_pool is None and url is not None:
            connection_pool = make_pool(url, **sentinel)
        #: Replicas every enqueue waits for (WAIT), and for how long.
        self.min_replicas = int(min_replicas)
        self.min_replicas_timeout = float(min_replicas_timeout)
        super().__init__(name, connection_pool=connection_pool,
                         read_timeout=read_timeout, clean_name=False, **kwargs)
        self.app_name, self.queue = split_name(name)
        base = "hueyq:{%s}:" % self.app_name
        prefix = "%s%s:" % (base, self.queue)
        self.keys = {k: prefix + k for k in (
            "pending", "sched", "running", "dead", "done", "msg", "info",
            "ids", "wake", "paused", "flags", "keys", "keyexp")}
        self.keys["seq"] = base + "seq"
        self.keys["fenced"] = base + "fenced"
        self.keys["records"] = base + "records"
        #: A job's output stream and its head, by job id.
        self.output_prefix = base + "out:"
        # Results, revokes and locks: one namespace per app, so a result is
        # found from any queue's huey.
        self.result_key = base + "results"
        self.counter_key = base + "counters"
        self.queue_key = self.keys["pending"]
        #: Unused here: the lease script checks the memory room whenever the
        #: supervisor published one (it costs little); set for every backend.
        self.admission = False
        self.schedule_key = self.keys["sched"]
        self._scripts = {k: self.conn.register_script(v)
                         for k, v in SCRIPTS.items()}

    def failovers(self) -> int:
        """Failovers seen (Sentinel): commands that went through only after
        an error as of a failover (:func:`_retrying`), and changes of the
        primary's address the sentinels gave since the last call (a
        switchover closes clients' connections, which redis-py reopens to
        the new primary without an error)."""
        pool = self.pool
        if not isinstance(pool, SentinelConnectionPool):
            return 0
        address = pool.master_address
        seen = getattr(pool, "primary_seen", None)
        if address is not None:
            if seen is not None and seen != address:
                pool.failovers = getattr(pool, "failovers", 0) + 1
            pool.primary_seen = address
        return getattr(pool, "failovers", 0)

    def _keys(self, *names: str) -> list:
        return [self.keys[n] for n in names]

    # ------------------------------------------------------------ huey's API

    def enqueue(self, data: bytes, priority: "float | None" = None) -> None:
        now = time.time()
        header, meta, state, eta = message_fields(data, now)
        self._add(data, priority, header, meta, state, eta, now)

    def add_to_schedule(self, data: bytes, ts) -> None:
        now = time.time()
        header, meta, _, _ = message_fields(data, now)
        # huey passes no priority here (a delayed retry): the header has it.
        self._add(data, header.get("priority"), header, meta, SCHEDULED,
                  epoch(ts), now)

    def _add(self, data, priority, header, meta, state, eta, now) -> None:
        keys = self._keys("pending", "sched", "msg", "info", "ids", "wake",
                          "seq")
        args = self._add_args(data, priority, header, meta, state, eta, now)
        if not self.min_replicas:
            self._scripts["enqueue"](keys=keys, args=args)
            return
        pipe = self.conn.pipeline(transaction=False)
        self._scripts["enqueue"](keys=keys, args=args, client=pipe)
        self._durable(pipe)

    def _durable(self, pipe) -> list:
        """Run ``pipe`` (an enqueue's writes); with ``min_replicas``, WAIT on
        its connection until that many replicas have them, and raise
        NotReplicated when fewer did within ``min_replicas_timeout``."""
        if not self.min_replicas:
            return pipe.execute()
        pipe.wait(self.min_replicas, max(1, int(
            self.min_replicas_timeout * 1000)))
        replies = pipe.execute()
        acked = replies.pop()
        if acked < self.min_replicas:
            raise NotReplicated(
                "%s: the enqueue reached %d of backend.min_replicas=%d "
                "replicas within %gs, so a failover could lose it (is a "
                "replica down? hueyq doctor shows them); it may still run"
                % (self.describe(), acked, self.min_replicas,
                   self.min_replicas_timeout))
        return replies

    @staticmethod
    def _add_args(data, priority, header, meta, state, eta, now) -> list:
        """ARGV of _ENQUEUE: the message, its info record (what the scripts
        read through load_info), task id, state and sorted-set score."""
        # Times as the scripts' cjson keeps them (14 significant digits), so
        # a record reads the same before and after a script rewrites it.
        enqueued_at = _lua_number(meta.get("t", now))
        info = {"task_id": header.get("id") or "",
                "name": header.get("name") or "", "state": state,
                "priority": priority or 0, "enqueued_at": enqueued_at,
                "updated_at": enqueued_at, "redeliveries": 0, "meta": meta,
                "size": len(data)}
        if eta is not None:
            info["eta"] = _lua_number(eta)
        # The schedule's score keeps the whole eta: rounded to the record's
        # digits it could land after the instant the task is due at.
        score = eta if state == SCHEDULED else -info["priority"]
        return [data, write_json(info), info["task_id"], state, score]

    def enqueue_many(self, messages) -> int:
        """Store ``(data, priority, header)`` messages (``header``: the one
        the producer wrote into ``data``, or None to read it there), each as
        :meth:`enqueue` would; returns how many.

        One script stores each chunk of :data:`ENQUEUE_CHUNK` messages
        atomically, and all the chunks go in one pipeline (one round trip),
        so Redis serves other clients between them rather than stalling for
        the whole batch; the wake-ups follow the first chunk, so workers
        start on it while the rest is stored. A connection lost midway may
        leave the first chunks stored (delivery is at least once: enqueue
        again)."""
        now = time.time()
        batch = []
        pending = 0
        for data, priority in messages:
            header, meta, state, eta = message_fields(data, now)
            batch.append(self._add_args(data, priority, header, meta, state,
                                        eta, now))
            pending += state == PENDING
        if not batch:
            return 0
        pipe = self.conn.pipeline(transaction=False)
        keys = self._keys("pending", "sched", "msg", "info", "ids", "seq")
        for start in range(0, len(batch), ENQUEUE_CHUNK):
            chunk = batch[start:start + ENQUEUE_CHUNK]
            args = [len(chunk)]
            for one in chunk:
                args += one
            self._scripts["enqueue_many"](keys=keys, args=args, client=pipe)
            if start == 0 and pending:
                pipe.lpush(self.keys["wake"], *[1] * min(pending,
                                                        WAKE_TOKENS))
        self._durable(pipe)
        return len(batch)

    def enqueue_once(self, messages, window: float
                     ) -> "list[tuple[str, bool]]":
        """Store ``(data, priority, key)`` messages unless another job holds
        their key (see :class:`Backend`): one script per chunk of
        :data:`ENQUEUE_CHUNK` checks and takes the keys and stores the
        messages atomically, all the chunks in one pipeline."""
        now = time.time()
        messages = list(messages)
        chunks = []
        for start in range(0, len(messages), ENQUEUE_CHUNK):
            args = [window, 0]
            for data, priority, key in messages[start:start + ENQUEUE_CHUNK]:
                header, meta, state, eta = message_fields(data, now)
                args += self._add_args(data, priority, header, meta, state,
                                       eta, now)
                args += ["" if key is None else key,
                         "" if eta is None else eta]
                args[1] += 1
            chunks.append(args)
        if not chunks:
            return []
        pipe = self.conn.pipeline(transaction=False)
        keys = self._keys("pending", "sched", "msg", "info", "ids", "seq",
                          "keys", "keyexp")
        for args in chunks:
            self._scripts["enqueue_once"](keys=keys, args=args, client=pipe)
        out = []
        pending = 0
        for reply in self._durable(pipe):
            pending += reply[0]
            out += [(_text(reply[i]), bool(reply[i + 1]))
                    for i in range(1, len(reply), 2)]
        if pending:
            self.conn.lpush(self.keys["wake"], *[1] * min(pending,
                                                         WAKE_TOKENS))
        return out

    def dequeue(self) -> "bytes | None":
        # huey's at-most-once dequeue (the message is gone, its revoke key
        # kept for huey's execute() to check); hueyq's workers use lease().
        keys = self._keys("pending", "msg", "info", "ids")
        data = self._scripts["dequeue"](keys=keys)
        if data is None and self.blocking:
            self.wait(self.read_timeout)
            data = self._scripts["dequeue"](keys=keys)
        return data

    def _data(self, state: str, limit: "int | None") -> list:
        hids = self.conn.zrange(self.keys[_SETS[state]], 0,
                                (limit - 1) if limit else -1)
        return [d for d in self.conn.hmget(self.keys["msg"], hids)
                if d is not None] if hids else []

    def _flush_state(self, state: str) -> None:
        hids = self.conn.zrange(self.keys[_SETS[state]], 0, -1)
        self._forget(hids)
        self.conn.delete(self.keys[_SETS[state]])

    def _forget(self, hids: list) -> None:
        if not hids:
            return
        infos = self.conn.hmget(self.keys["info"], hids)
        current = {}
        for hid, raw in zip(hids, infos):
            info = self._info(hid, raw) if raw else None
            if info is not None and info.task_id:
                current[info.task_id] = hid
        pipe = self.conn.pipeline(transaction=False)
        pipe.hdel(self.keys["msg"], *hids)
        pipe.hdel(self.keys["info"], *hids)
        if current:
            pipe.hmget(self.keys["ids"], list(current))
        results = pipe.execute()
        if current:
            stale = [task_id for (task_id, hid), mapped in
                     zip(current.items(), results[-1])
                     if mapped is not None and mapped.decode() == _text(hid)]
            if stale:
                self.conn.hdel(self.keys["ids"], *stale)

    def flush_all(self) -> None:
        super().flush_all()
        self.conn.delete(*[self.keys[k] for k in (
            "pending", "sched", "running", "dead", "done", "msg", "info",
            "ids", "wake", "paused", "flags", "keys", "keyexp")])

    # ------------------------------------------------------------ leases

    def lease(self, owner: str, ack: "tuple | None" = None) -> "Lease | None":
        """Take the next pending message for ``owner``; ack ``ack`` first."""
        handle, outcome, reason, fence = _ack_parts(ack)
        row = self._scripts["lease"](
            keys=self._keys("running", "msg", "info", "ids", "pending", "dead",
                            "wake", "done") + [self.result_key] +
            self._keys("paused", "flags", "seq", "fenced"),
            args=[owner, time.time(), handle, outcome or "", reason or "",
                  self._limit(), HEAD_BYTES] + _fence_args(fence))
        if row == -1 or (row and int(row[11])):
            self._refused(handle, fence)
        if not row or row == -1:
            return None
        hid, task_id, data, redeliveries, last_error, enqueued, revoked, \
            seq, size, name, meta, _ = row
        return Lease(hid.decode(), task_id.decode(), data, int(redeliveries),
                     last_error.decode() if last_error else None,
                     float(enqueued), bool(revoked), int(seq), size=int(size),
                     name=name.decode(), meta=clean_meta(read_json(
                         meta, "meta of message %s" % hid.decode())))

    def _limit(self) -> str:
        return "" if self.lease_limit is None else str(int(self.lease_limit))

    def _ack_keys(self) -> list:
        return self._keys("running", "msg", "info", "ids", "pending", "dead",
                          "wake", "done") + [self.result_key,
                                             self.keys["fenced"]]

    def lease_batch(self, owner: str, name: str, limit: int
                    ) -> "list[Lease]":
        """Take up to ``limit`` pending messages of task ``name`` at once."""
        out = self._scripts["lease_batch"](
            keys=self._keys("running", "msg", "info", "pending", "paused",
                            "seq"),
            args=[owner, time.time(), name, int(limit), self._limit(),
                  HEAD_BYTES])
        return [Lease(out[i].decode(), out[i + 1].decode(), out[i + 2],
                      int(out[i + 3]), out[i + 4].decode() or None,
                      float(out[i + 7]), seq=int(out[i + 5]),
                      size=int(out[i + 6]), name=name,
                      meta=clean_meta(read_json(out[i + 8], "meta of message"
                                                " %s" % out[i].decode())))
                for i in range(0, len(out), 9)]

    def next_seq(self) -> int:
        """Take the next number of the app's sequence (for a control's
        record: after every delivery so far, before every later one)."""
        return int(self.conn.incr(self.keys["seq"]))

    def ack_many(self, acks) -> None:
        """End several leases (see SqliteBackend.ack); each ack is atomic
        (no MULTI, which a full Redis refuses)."""
        now = time.time()
        acks = [_ack_parts(ack) for ack in acks]
        pipe = self.conn.pipeline(transaction=False)
        for handle, outcome, reason, fence in acks:
            self._scripts["ack"](keys=self._ack_keys(),
                                 args=[handle, outcome or "", reason or "",
                                       now] + _fence_args(fence), client=pipe)
        for (handle, _, _, fence), ended in zip(acks, pipe.execute()):
            if int(ended) < 0:
                self._refused(handle, fence)

    def ack(self, handle, outcome: "str | None" = None,
            reason: "str | None" = None, fence: "tuple | None" = None
            ) -> bool:
        """End a lease; see SqliteBackend.ack for the outcomes and the
        fence."""
        ended = int(self._scripts["ack"](
            keys=self._ack_keys(), args=[handle, outcome or "", reason or "",
                                         time.time()] + _fence_args(fence)))
        if ended < 0:
            self._refused(handle, fence)
        return ended > 0

    def fenced(self) -> int:
        """How many acks of this app a fence refused (see Backend.ack)."""
        return int(self.conn.get(self.keys["fenced"]) or 0)

    def release(self, handles) -> int:
        """Hand leases back to the queue without counting a redelivery."""
        return sum(self._scripts["ack"](keys=self._ack_keys(),
                                        args=[h, "release", "", time.time(),
                                              "", ""])
                   for h in handles)

    def requeue(self, handle, last_error: "str | None" = None,
                count: bool = True, max_redeliveries: "int | None" = None,
                fence: "tuple | None" = None) -> "str | None":
        """Recover a lease whose owner is gone (see SqliteBackend.requeue)."""
        result = self._scripts["requeue"](
            keys=self._keys("running", "info", "pending", "dead", "wake"),
            args=[handle, last_error or "", "1" if count else "0",
                  "" if max_redeliveries is None else max_redeliveries,
                  time.time()] + _fence_args(fence))
        return result.decode() if result else None

    def forget(self, handles) -> int:
        """Delete ``done`` messages whose job the store has recorded."""
        handles = [h for h in handles]
        if not handles:
            return 0
        done = [h for h, score in zip(handles, self.conn.zmscore(
            self.keys["done"], handles)) if score is not None]
        self._forget(done)
        if done:
            self.conn.zrem(self.keys["done"], *done)
        return len(done)

    def sweep_done(self, before: float) -> int:
        """Delete ``done`` messages finished before ``before``."""
        return self.forget(h.decode() for h in self.conn.zrangebyscore(
            self.keys["done"], "-inf", before))

    def message_data(self, handle) -> "bytes | None":
        """The stored bytes of one message."""
        return self.conn.hget(self.keys["msg"], handle)

    def annotate(self, handle, last_error: str) -> bool:
        """Record why a leased message's worker is about to be killed."""
        return bool(self._scripts["annotate"](
            keys=self._keys("running", "info"), args=[handle, last_error]))

    def relabel(self, handle, task_id: str) -> None:
        """File a leased message under the job id ``task_id`` instead of the
        one it claims (a message that failed verification)."""
        self._scripts["relabel"](keys=self._keys("info", "ids"),
                                 args=[handle, task_id])

    def leases(self) -> "list[MessageInfo]":
        """Every leased (running) message of this queue."""
        return self.list_messages(RUNNING, limit=None)

    # ------------------------------------------------------------ scheduling

    def promote_due(self, now: "float | None" = None) -> int:
        """Move scheduled messages whose eta has passed into the queue."""
        now = time.time() if now is None else now
        return self._scripts["promote"](
            keys=self._keys("sched", "pending", "info", "wake", "msg", "ids",
                            "seq"), args=[now, time.time()])

    def notify(self) -> None:
        """Wake one waiting worker (a hint: workers also poll, so a Redis
        that refuses it, being full, costs a poll interval at most)."""
        try:
            self.conn.lpush(self.keys["wake"], 1)
        except BackendFull:
            pass

    def wait(self, timeout: float) -> None:
        """Block until a wake-up token arrives or ``timeout`` passes."""
        self.conn.blpop([self.keys["wake"]], timeout=max(timeout, 0.01))

    def notify_results(self) -> None:
        """Publish on the app's results channel (to every waiter)."""
        self.conn.publish(self.result_key, b"1")

    def wait_results(self, timeout: float) -> bool:
        """A blocking read of the app's results channel on a connection
        of its own, subscribed once per process."""
        sub = self.__dict__.get("_result_sub")
        if sub is None or sub[0] != os.getpid():
            pubsub = self.conn.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self.result_key)
            sub = self.__dict__["_result_sub"] = (os.getpid(), pubsub)
        pubsub = sub[1]
        if pubsub.get_message(timeout=timeout) is None:
            return False
        while pubsub.get_message(timeout=0) is not None:
            pass
        return True

    # ------------------------------------------------------------ listing

    def _info(self, hid, raw, state: "str | None" = None
              ) -> "MessageInfo | None":
        """The MessageInfo of a stored info record. One that is unreadable
        is reported and skipped, or, when the set it sits in (``state``) is
        known, listed with what is known, so that lease recovery still sees
        it (the scripts rebuild it on their next move)."""
        hid = hid.decode() if isinstance(hid, bytes) else hid
        info = read_json(raw, "message info %s of %s" % (hid, self.name))
        if not isinstance(info, dict):
            if state is None:
                return None
            report_bad("message info %s of %s" % (hid, self.name))
            info = {"last_error": "its info record was unreadable"}
        return MessageInfo.checked(
            handle=hid, queue=self.queue, task_id=info.get("task_id", ""),
            name=info.get("name", ""), state=state or info.get("state"),
            priority=info.get("priority", 0),
            enqueued_at=info.get("enqueued_at"),
            updated_at=info.get("updated_at"), eta=info.get("eta"),
            owner=info.get("owner"), redeliveries=info.get("redeliveries", 0),
            last_error=info.get("last_error"), reason=info.get("reason"),
            meta=info.get("meta") or {}, size=info.get("size", 0),
            lease_seq=info.get("lease_seq"))

    def _infos(self, hids: list, state: "str | None" = None
               ) -> "list[MessageInfo]":
        if not hids:
            return []
        raws = self.conn.hmget(self.keys["info"], hids)
        infos = [self._info(h, r, state) for h, r in zip(hids, raws)
                 if r or state]
        return [info for info in infos if info is not None]

    def find(self, task_id: str) -> "MessageInfo | None":
        """The newest message of a job."""
        hid = self.conn.hget(self.keys["ids"], task_id)
        infos = self._infos([hid]) if hid else []
        return infos[0] if infos else None

    def list_messages(self, state: str, limit: "int | None" = 50,
                      offset: int = 0) -> "list[MessageInfo]":
        """Messages in ``state``, in the order they will be taken."""
        key = self.keys[_SETS[state]]
        stop = -1 if limit is None else offset + limit - 1
        if state == DEAD:
            hids = self.conn.zrevrange(key, offset, stop)
        else:
            hids = self.conn.zrange(key, offset, stop)
        return self._infos(hids, state)

    def count(self, state: str) -> int:
        """Number of messages of this queue in ``state``."""
        return self.conn.zcard(self.keys[_SETS[state]])

    def counts(self) -> "dict[str, int]":
        """``{pending, scheduled, running, dead}`` for this queue."""
        pipe = self.conn.pipeline(transaction=False)
        for state in (PENDING, SCHEDULED, RUNNING, DEAD):
            pipe.zcard(self.keys[_SETS[state]])
        return dict(zip((PENDING, SCHEDULED, RUNNING, DEAD), pipe.execute()))

    def _declared(self, hids: list) -> "list[int]":
        """The memory each message declared (0 for none)."""
        out = []
        for hid, raw in zip(hids, self.conn.hmget(self.keys["info"], hids)
                            if hids else ()):
            info = self._info(hid, raw) if raw else None
            out.append(info.meta.get("memory", 0) if info is not None else 0)
        return out

    def memory_room(self) -> "int | None":
        """The queue's memory room (:mod:`hueyq.memory`): the supervisor's
        figure less what its running tasks declared; None when the queue
        has no memory budget."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.hget(self._flag_key("admission"), "admission")
        pipe.zrange(self.keys["running"], 0, -1)
        budget, running = pipe.execute()
        budget = read_json(budget, "admission flag of %s" % self.name) \
            if budget is not None else None
        if isinstance(budget, bool) or not isinstance(budget, (int, float)):
            return None
        return memory_room(int(budget), 0, self._declared(running))

    def waiting_for_memory(self, room: int, limit: int = 1000) -> int:
        """How many of the next ``limit`` pending jobs declared more memory
        than ``room``."""
        hids = self.conn.zrange(self.keys["pending"], 0, limit - 1)
        return sum(1 for need in self._declared(hids) if need > room)

    def newest(self, limit: int, before: "float | None" = None,
               names: "list[str] | None" = None,
               id_prefix: "str | None" = None, since: "float | None" = None,
               states: "tuple[str, ...]" = (PENDING, SCHEDULED, RUNNING)
               ) -> "list[MessageInfo]":
        """Messages in ``states``, newest enqueued first (handles are
        sequence numbers): enqueued before ``before`` and at or after
        ``since``, of tasks ``names``, with a task id starting with
        ``id_prefix``."""
        pipe = self.conn.pipeline()
        for state in states:
            pipe.zrange(self.keys[_SETS[state]], 0, -1)
        live = {h for hids in pipe.execute() for h in hids}
        if id_prefix:
            pattern = "".join("\\" + c if c in "*?[]\\" else c
                              for c in id_prefix) + "*"
            live &= {hid for _, hid in self.conn.hscan_iter(
                self.keys["ids"], match=pattern, count=1000)}
        names = set(names) if names is not None else None

        def wanted(info: "MessageInfo | None") -> bool:
            if info is None:  # unreadable: skipped (and reported)
                return False
            at = info.enqueued_at or 0
            return (info.state in states
                    and (before is None or at < before)
                    and (since is None or at >= since)
                    and (names is None or info.name in names)
                    and info.task_id.startswith(id_prefix or ""))
        found: "list[MessageInfo]" = []
        ordered = sorted(live, reverse=True)
        step = max(2 * limit, 200)
        for first in range(0, len(ordered), step):
            chunk = ordered[first:first + step]
            infos = [self._info(hid, raw) for hid, raw in zip(
                chunk, self.conn.hmget(self.keys["info"], chunk)) if raw]
            found += [info for info in infos if wanted(info)]
            if len(found) >= limit:
                break
        found.sort(key=lambda i: (i.enqueued_at or 0, i.handle), reverse=True)
        return found[:limit]

    # ------------------------------------------------------------ control

    def _move(self, from_state: str, to_state: str, hids: list,
              reason: "str | None") -> "list[MessageInfo]":
        if not hids:
            return []
        moved = self._scripts["move"](
            keys=[self.keys[_SETS[from_state]], self.keys[_SETS[to_state]],
                  self.keys["info"], self.keys["wake"]],
            args=[to_state, reason or "", time.time()] + list(hids))
        infos = [self._info(moved[i], moved[i + 1])
                 for i in range(0, len(moved), 2)]
        return [info for info in infos if info is not None]

    def cancel(self, task_id: str, reason: str = "cancelled"
               ) -> "list[MessageInfo]":
        """Move a pending or scheduled job's message to ``dead``."""
        info = self.find(task_id)
        if info is None or info.state not in (PENDING, SCHEDULED):
            return []
        return self._move(info.state, DEAD, [info.handle], reason)

    def drain(self, reason: str = "drained") -> "list[MessageInfo]":
        """Move every pending and scheduled message to ``dead``."""
        out = []
        for state in (PENDING, SCHEDULED):
            key = self.keys[_SETS[state]]
            while True:
                hids = self.conn.zrange(key, 0, 999)
                if not hids:
                    break
                out.extend(self._move(state, DEAD, hids, reason))
        return out

    def revive(self, task_id: str) -> "MessageInfo | None":
        """Put a dead job's message back into the queue."""
        info = self.find(task_id)
        if info is None or info.state != DEAD:
            return None
        moved = self._move(DEAD, PENDING, [info.handle], None)
        return moved[0] if moved else None

    def purge_dead(self, before: float, keep: int) -> int:
        """Delete dead messages older than ``before`` or beyond the newest
        ``keep``."""
        key = self.keys["dead"]
        hids = set(self.conn.zrangebyscore(key, "-inf", before))
        extra = self.conn.zcard(key) - keep
        if extra > 0:
            hids.update(self.conn.zrange(key, 0, extra - 1))
        hids = list(hids)
        self._forget(hids)
        if hids:
            self.conn.zrem(key, *hids)
        return len(hids)

    def delete_dead(self, task_ids) -> int:
        """Delete the kept (dead) messages of these jobs."""
        ids = list(task_ids)
        deleted = 0
        for first in range(0, len(ids), 500):
            deleted += self._scripts["delete_dead"](
                keys=self._keys("dead", "msg", "info", "ids"),
                args=ids[first:first + 500])
        return deleted

    # ------------------------------------------------------------ flags

    def _flag_key(self, name: str) -> str:
        return self.keys["paused" if name.startswith(PAUSE_PREFIX) else "flags"]

    def set_flag(self, name: str, value: dict) -> None:
        """Set a flag of this queue, such as ``paused:user``."""
        self.conn.hset(self._flag_key(name), name, json.dumps(value))

    def clear_flag(self, name: str) -> bool:
        """Remove a flag; True if it was set."""
        cleared = bool(self.conn.hdel(self._flag_key(name), name))
        if cleared and name.startswith(PAUSE_PREFIX):
            self.notify()
        return cleared

    def flags(self) -> "dict[str, dict]":
        """Every flag of this queue."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.hgetall(self.keys["paused"])
        pipe.hgetall(self.keys["flags"])
        out = {}
        for mapping in pipe.execute():
            for key, raw in mapping.items():
                key = key.decode(errors="replace")
                value = read_json(raw, "flag %s of %s" % (key, self.name))
                if isinstance(value, dict):
                    out[key] = value
        return out

    # ------------------------------------------------------------ records

    def put_record(self, key: str, value: dict, ttl: "float | None" = None
                   ) -> None:
        """Store a small JSON document for the whole app, with a lifetime
        counted on the Redis server's clock (no host's clock takes part)."""
        self._scripts["put_record"](
            keys=[self.keys["records"]],
            args=[key, json.dumps(value), "null" if ttl is None else
                  repr(float(ttl))])

    def record_ages(self, prefix: str = ""
                    ) -> "dict[str, tuple[dict, float]]":
        """``{key: (record, age)}`` of the live records under ``prefix``; the
        age in seconds since it was written, on the Redis server's clock."""
        pipe = self.conn.pipeline(transaction=False)
        pipe.time()
        pipe.hgetall(self.keys["records"])
        (seconds, micros), raws = pipe.execute()
        now = seconds + micros / 1e6
        out, stale = {}, []
        for key, raw in raws.items():
            key = key.decode(errors="replace")
            doc = _record(read_json(raw, "record %s of %s" % (
                key, self.app_name)))
            if doc is None:
                report_bad("record %s of %s" % (key, self.app_name))
                continue
            if "at" in doc:
                age, ttl = now - doc["at"], doc.get("ttl")
            else:  # written by an earlier version: a wall-clock expiry
                live = doc.get("expires") is None or doc["expires"] > now
                age, ttl = (0.0, None) if live else (float("inf"), 0.0)
            if ttl is not None and age > ttl:
                stale.append(key)
            elif key.startswith(prefix):
                out[key] = (doc["value"], age)
        if stale:
            self.conn.hdel(self.keys["records"], *stale)
        return out

    def delete_record(self, key: str) -> None:
        """Remove a record of this app."""
        self.conn.hdel(self.keys["records"], key)

    # ------------------------------------------------------------ output

    def _output_keys(self, job_id: str) -> list:
        return [self.output_prefix + job_id, self.output_prefix + job_id
                + ":head"]

    def append_output(self, job_id: str, data: str, max_chunks: int,
                      max_bytes: int, ttl: float, run: "int | None" = None
                      ) -> int:
        """Append a chunk (one script: see ``lua/append_output.lua``); the
        stream expires ``ttl`` seconds after its last append."""
        return int(self._scripts["append_output"](
            keys=self._output_keys(job_id),
            args=[data, output_size(data), int(max_chunks), int(max_bytes),
                  max(1, math.ceil(ttl)), repr(time.time()),
                  "" if run is None else int(run)]))

    def read_output(self, job_id: str, after: int = 0, limit: int = 1000
                    ) -> OutputPage:
        """Chunks numbered over ``after`` (entry ids ``<seq>-0``, so the
        range starts at ``<after>-1``), oldest first."""
        stream, head = self._output_keys(job_id)
        pipe = self.conn.pipeline(transaction=False)
        pipe.hmget(head, "seq", "dropped")
        pipe.xrange(stream, "%d-1" % int(after), "+", count=int(limit))
        (seq, dropped), entries = pipe.execute()
        chunks = [_chunk(entry_id, fields) for entry_id, fields in entries]
        last = max([int(seq or 0)] + [c.seq for c in chunks])
        return OutputPage(chunks, last, int(dropped or 0))

    def output_waiter(self, job_id: str) -> OutputWaiter:
        """Blocks in ``XREAD BLOCK`` on the job's stream."""
        return _StreamWaiter(self, job_id)

    def delete_output(self, job_ids) -> int:
        """Delete the output streams of these jobs."""
        keys = [k for job_id in job_ids for k in self._output_keys(job_id)]
        return self.conn.delete(*keys) // 2 if keys else 0

    def purge_output(self, before: float) -> int:
        """Nothing to do: streams expire by themselves (their TTL)."""
        return 0

    # ------------------------------------------------------------ health

    def health(self, require_noeviction: bool = False,
               require_aof: bool = False) -> "list[Finding]":
        """Version, memory, eviction policy, persistence and evicted keys."""
        server = self.conn.info("server")
        memory = self.conn.info("memory")
        persistence = self.conn.info("persistence")
        stats = self.conn.info("stats")
        version = ("Valkey %s" % server["valkey_version"]
                   if "valkey_version" in server else
                   "Redis %s" % server.get("redis_version", "?"))
        findings = [Finding("ok", "redis.version", version),
                    _memory_finding(memory)]
        policy = memory.get("maxmemory_policy", "noeviction")
        if policy == "noeviction":
            findings.append(Finding("ok", "redis.maxmemory_policy",
                                    "maxmemory-policy noeviction"))
        else:
            findings.append(Finding(
                "error", "redis.maxmemory_policy",
                "maxmemory-policy %s: when memory runs out Redis deletes keys, "
                "and will lose queued jobs; set maxmemory-policy noeviction"
                % policy))
        aof = bool(persistence.get("aof_enabled"))
        if aof:
            findings.append(Finding("ok", "redis.persistence", "AOF on"))
        else:
            findings.append(Finding(
                "error" if require_aof else "warning", "redis.persistence",
                "AOF off (appendonly no): a Redis restart or crash will lose "
                "the jobs queued since its last snapshot; set appendonly yes"))
        evicted = stats.get("evicted_keys", 0)
        findings.append(Finding("error" if evicted else "ok",
                                "redis.evicted_keys",
                                "evicted_keys=%s" % evicted))
        if isinstance(self.pool, SentinelConnectionPool):
            findings.append(self._sentinel_finding())
        findings += self._replicas_findings()
        return findings

    def _sentinel_finding(self) -> Finding:
        """What the sentinels say: the primary, its replicas, how many
        sentinels answer."""
        manager, service = self.pool.sentinel_manager, self.pool.service_name
        answering = sum(1 for s in manager.sentinels if _answers(s))
        total = len(manager.sentinels)
        try:
            host, port = manager.discover_master(service)
        except RedisError as exc:
            return Finding("error", "redis.sentinel", "the sentinels know no "
                           "primary for service %s: %s" % (service, exc))
        replicas = ["%s:%s" % r for r in manager.discover_slaves(service)]
        message = ("service %s: primary %s:%s, replicas %s; %d of %d "
                   "sentinels answer" % (service, host, port,
                                         ", ".join(replicas) or "none",
                                         answering, total))
        if not replicas:
            return Finding("warning", "redis.sentinel", message + ": a "
                           "failover has no replica to promote")
        if answering < total:
            return Finding("warning", "redis.sentinel", message)
        return Finding("ok", "redis.sentinel", message)

    def _replicas_findings(self) -> "list[Finding]":
        """``backend.min_replicas`` against the replicas the primary has."""
        connected = int(self.conn.info("replication").get(
            "connected_slaves", 0))
        if self.min_replicas:
            text = ("min_replicas=%d: every enqueue waits up to %gs for %d "
                    "replica acknowledgement(s); %d replica(s) connected"
                    % (self.min_replicas, self.min_replicas_timeout,
                       self.min_replicas, connected))
            if connected < self.min_replicas:
                return [Finding("error", "redis.min_replicas", text + ": "
                                "enqueues fail (NotReplicated) until enough "
                                "replicas are back")]
            return [Finding("ok", "redis.min_replicas", text)]
        if connected or isinstance(self.pool, SentinelConnectionPool):
            return [Finding("warning", "redis.min_replicas", "min_replicas=0 "
                            "with %d replica(s): replication is asynchronous, "
                            "so enqueues acknowledged just before a failover "
                            "can be lost; set backend.min_replicas = 1"
                            % connected)]
        return []

    def eviction_policy(self) -> str:
        """Redis's maxmemory-policy."""
        return self.conn.info("memory").get("maxmemory_policy", "noeviction")

    def aof_enabled(self) -> bool:
        """Whether Redis writes an append-only file."""
        return bool(self.conn.info("persistence").get("aof_enabled"))

    def claim(self, holder: str) -> "str | None":
        """Nothing to lock on Redis: several hosts share one on purpose (the
        supervisor checks that no live runtime has its host id)."""
        return None

    def identity(self) -> None:
        """A Redis server has no file to be replaced under the runtime."""
        return None

    def checkpoint(self) -> bool:
        """Nothing to fold back on Redis."""
        return False

    def ping(self) -> None:
        """Raise BackendUnavailable unless Redis answers."""
        try:
            self.conn.ping()
        except RedisError as exc:
            raise BackendUnavailable(self.explain(exc)) from None

    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error this backend raised."""
        from redis import exceptions as errors
        where = self.describe()
        text = str(exc)
        if isinstance(exc, BackendUnavailable):
            return text
        if isinstance(exc, errors.AuthenticationError) or \
                "NOAUTH" in text or "WRONGPASS" in text:
            return ("%s refused the credentials: check the user and password "
                    "in backend.url (%s)" % (where, text))
        if "DB index is out of range" in text:
            return ("%s has no database %s: use a number below the server's "
                    "`databases` setting (16 by default) in backend.url"
                    % (where.rsplit(" db ", 1)[0],
                       self.pool.connection_kwargs.get("db", 0)))
        if isinstance(exc, errors.TimeoutError) and self.tls:
            return ("no TLS handshake with %s: rediss:// is for a TLS "
                    "server; use redis:// for a plain-text one (%s)"
                    % (where, text))
        if isinstance(exc, MasterNotFoundError):
            sentinels = self.pool.sentinel_manager.sentinels
            answering = sum(1 for s in sentinels if _answers(s))
            if not answering:
                return ("cannot reach any sentinel of %s (is redis-sentinel "
                        "running there? check backend.url or HUEYQ_BACKEND)"
                        % where)
            return ("%d of %d sentinels of %s answer but know no primary "
                    "(a failover under way, or a wrong service name in "
                    "backend.url)" % (answering, len(sentinels), where))
        if isinstance(exc, errors.ConnectionError):
            if self.tls and "SSL" in text.upper():
                return ("TLS failed with %s: %s (rediss:// is for a TLS "
                        "server; redis:// for a plain-text one)"
                        % (where, text))
            reason = text.rsplit(". ", 1)[-1].rstrip(".") if ". " in text \
                else text
            return ("cannot connect to %s: %s (is redis-server running "
                    "there? check backend.url or HUEYQ_BACKEND)"
                    % (where, reason))
        if isinstance(exc, errors.TimeoutError):
            return "%s did not answer in time: %s" % (where, text)
        return "%s: %s" % (where, text)

    @property
    def tls(self) -> bool:
        """Whether this backend talks TLS to Redis (``rediss://``)."""
        from redis.connection import SSLConnection
        return issubclass(self.pool.connection_class, SSLConnection)

    def describe(self) -> str:
        """Where this backend lives, for humans (never the password)."""
        kwargs = self.pool.connection_kwargs
        if isinstance(self.pool, SentinelConnectionPool):
            return "Redis service %s (sentinels %s) db %s" % (
                self.pool.service_name, ",".join(
                    _address(s) for s in self.pool.sentinel_manager.sentinels),
                kwargs.get("db", 0))
        if "path" in kwargs:
            return "Redis at unix:%s db %s" % (kwargs["path"], kwargs.get("db", 0))
        return "Redis at %s:%s db %s" % (kwargs.get("host"), kwargs.get("port"),
                                         kwargs.get("db", 0))
