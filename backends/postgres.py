"""PostgreSQL backend: huey's PostgresStorage with leases, flags and wake-ups.

Every message of every queue is one row of ``hueyq_message`` (the columns
of the SQLite backend's table); its ``state`` says where it is. Taking a
message is one ``UPDATE`` whose candidate row is chosen ``FOR UPDATE SKIP
LOCKED`` and which also checks the queue's pause flags and takes the next
number of the app's sequence, so concurrent consumers never get one message
twice and a paused queue hands out nothing. The ack of a finished task rides
in the transaction of the worker's next lease. Due scheduled messages are
moved into the queue by one statement (``DELETE ... RETURNING`` feeding an
``INSERT``). huey's own tables (``huey_kv``, ``huey_counter``) hold results,
revokes, locks and the sequence.

Idle workers sleep in ``LISTEN`` on the queue's channel; producers
``pg_notify`` it in the transaction that stores the message, so an idle
queue starts a new task within milliseconds; a slow poll remains as the
fallback. Records age on the server's clock (``clock_timestamp()``).

Driver: psycopg 3. One connection per storage and thread (a forked child
opens its own), one more per waiting thread.
"""

import contextlib
import hashlib
import json
import os
import threading
import time
import urllib.parse

from huey.storage import PostgresStorage

from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED,
                                 Finding, Lease, MessageInfo, OutputWaiter,
                                 clean_meta,
                                 message_fields, read_json, report_bad,
                                 split_name)
from hueyq.backends.sql import SqlBackend
from hueyq.envelope import epoch, write_json
from hueyq.exceptions import BackendUnavailable
from hueyq.exceptions import ConfigurationError
from hueyq.memory import memory_room
from hueyq.urls import redact_url

try:
    import psycopg
except ImportError:  # pragma: no cover - the extra is not installed
    psycopg = None

_TABLES = [
    "create table if not exists hueyq_message ("
    " id bigserial primary key, queue text not null, task_id text not null,"
    " name text not null default '', state text not null,"
    " priority double precision not null default 0, eta double precision,"
    " enqueued_at double precision, updated_at double precision, owner text,"
    " redeliveries integer not null default 0, last_error text, reason text,"
    " meta text, memory bigint not null default 0, data bytea not null,"
    " lease_seq bigint)",
    "create index if not exists hueyq_message_pending on hueyq_message"
    " (queue, priority desc, id) where state = 'pending'",
    "create index if not exists hueyq_message_scheduled on hueyq_message"
    " (queue, eta) where state = 'scheduled'",
    "create index if not exists hueyq_message_running on hueyq_message"
    " (queue, owner) where state = 'running'",
    "create index if not exists hueyq_message_dead on hueyq_message"
    " (queue, updated_at) where state = 'dead'",
    "create index if not exists hueyq_message_task on hueyq_message (task_id)",
    "create table if not exists hueyq_flag (queue text not null,"
    " name text not null, value text not null, primary key (queue, name))",
    "create table if not exists hueyq_record (key text primary key,"
    " value text not null, written timestamptz not null, ttl double"
    " precision)",
    # enqueue_once: the job holding each key of a queue, and until when
    # (past it, only while the job's message is pending, scheduled or
    # running).
    "create table if not exists hueyq_key (queue text not null,"
    " key text not null, task_id text not null, expires double precision"
    " not null, primary key (queue, key))",
    "create index if not exists hueyq_key_expires on hueyq_key"
    " (queue, expires)",
    # Output streams of jobs (see hueyq.backends.sql), app-wide.
    "create table if not exists hueyq_output (app text not null,"
    " job_id text not null, seq bigint not null, data text not null,"
    " size bigint not null, at double precision not null, run bigint,"
    " primary key (app, job_id, seq))",
    "create table if not exists hueyq_output_head (app text not null,"
    " job_id text not null, seq bigint not null, chunks bigint not null,"
    " bytes bigint not null, dropped bigint not null,"
    " updated_at double precision not null, primary key (app, job_id))",
    "create index if not exists hueyq_output_head_updated on"
    " hueyq_output_head (app, updated_at)",
]
#: Serialises ``create table if not exists`` among processes (PostgreSQL
#: lets two of them race on the catalog otherwise).
_DDL_LOCK = 0x68756579

_NOT_PAUSED = ("not exists (select 1 from hueyq_flag where queue = %(q)s"
               " and name like 'paused:%%')")
_ADMISSION = (" and (memory = 0 or memory <= coalesce((select case when"
              " value ~ '^[0-9]+$' then value::bigint end from hueyq_flag"
              " where queue = %(q)s and name = 'admission'),"
              " 9000000000000000000) - (select coalesce(sum(memory), 0) from"
              " hueyq_message where queue = %(q)s and state = 'running'))")
# The app's sequence numbers deliveries: a PostgreSQL sequence of its own
# (``hueyq_seq_<hash of the app>``), taken in the lease's own statement. A
# counter row (SQLite's and Redis's way) would serialize every lease of the
# app on that row's lock until its commit; a sequence hands out numbers
# without waiting. Only the order of one job's deliveries matters (a
# re-lease starts after the lease before it ended), and nextval() grows.
_BUMP = "select nextval(%(seq)s::regclass) as value from pick"
#: Carried over once from the counter row that numbered deliveries before.
_SEQ_FROM_COUNTER = (
    "select setval(%s::regclass, c.value) from huey_counter c where"
    " c.queue = %s and c.key = 'hueyq:seq' and c.value > (select last_value"
    " from {seq})")
#: Seconds after which the server ends a session of this backend left idle
#: inside a transaction (a host cut off in the middle of a lease).
IDLE_IN_TRANSACTION = 10
# An ack a fence refused (Backend.ack) is counted for the whole app.
_BUMP_FENCED = ("insert into huey_counter as c (queue, key, value) values"
                " (%s, 'hueyq:fenced', 1) on conflict (queue, key) do update"
                " set value = c.value + 1")
# One statement: pick the next message (skipping rows other consumers hold),
# number it, lease it; a message over the lease limit keeps only its head.
_LEASE = (
    "with pick as (select id, octet_length(data) as size from hueyq_message"
    " where queue = %(q)s and state = 'pending'{admission} and " + _NOT_PAUSED
    + " order by priority desc, id limit 1 for update skip locked),"
    " seq as (" + _BUMP + ") update hueyq_message m set state = 'running',"
    " owner = %(owner)s, updated_at = %(now)s, lease_seq = (select value from"
    " seq), data = case when pick.size > %(limit)s then substring(m.data from"
    " 1 for %(head)s) else m.data end from pick where m.id = pick.id"
    " returning m.id, m.task_id, m.data, m.redeliveries, m.last_error,"
    " m.enqueued_at, exists(select 1 from huey_kv where queue = %(app)s and"
    " key in ('r:' || m.task_id, 'rt:' || m.name)), m.lease_seq, m.name,"
    " m.meta, pick.size")
_LEASE_BATCH = (
    "with pick as (select id from hueyq_message where queue = %(q)s and"
    " state = 'pending' and name = %(name)s and coalesce(last_error, '') not"
    " like 'suspect:%%' and octet_length(data) <= %(limit)s and " + _NOT_PAUSED
    + " order by priority desc, id limit %(n)s for update skip locked),"
    " seq as (" + _BUMP.replace("from pick", "where exists (select 1 from"
                                " pick)") + ") update hueyq_message m set"
    " state = 'running', owner = %(owner)s, updated_at = %(now)s, lease_seq ="
    " (select value from seq) from pick where m.id = pick.id returning m.id,"
    " m.task_id, m.data, m.redeliveries, m.last_error, m.lease_seq,"
    " m.enqueued_at, m.meta")
_INSERT = ("insert into hueyq_message (queue, task_id, name, state, priority,"
           " eta, enqueued_at, updated_at, meta, memory, data)"
           " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)")
# Whether the job holding key row k still has a live message.
_LIVE = ("exists(select 1 from hueyq_message m where m.task_id = k.task_id"
         " and m.queue = k.queue and m.state in ('pending', 'scheduled',"
         " 'running'))")
# Keys no job holds any more; a key another transaction took over in the
# meantime is checked again on its new row (and kept).
_PURGE_KEYS = ("delete from hueyq_key k where k.queue = %s and k.expires <="
               " %s and not " + _LIVE)
_TAKE_KEY = ("insert into hueyq_key (queue, key, task_id, expires) values"
             " (%s, %s, %s, %s) on conflict (queue, key) do nothing"
             " returning task_id")
_HOLDER = ("select k.task_id, k.expires, " + _LIVE + " from hueyq_key k"
           " where k.queue = %s and k.key = %s for update")
_INFO_COLUMNS = ("id, queue, task_id, name, state, priority, enqueued_at,"
                 " updated_at, eta, owner, redeliveries, last_error, reason,"
                 " meta, octet_length(data), lease_seq")
_ORDER = {PENDING: "priority desc, id", SCHEDULED: "eta, id",
          RUNNING: "updated_at, id", DEAD: "updated_at desc, id desc",
          DONE: "updated_at desc, id desc"}
#: The lease limit of a backend that has none.
_NO_LIMIT = 1 << 62


def _need_driver() -> None:
    if psycopg is None:
        raise ConfigurationError("the PostgreSQL backend needs psycopg 3: "
                                 "pip install 'hueyq[postgres]'")


class PostgresBackend(SqlBackend, PostgresStorage):
    """One queue of an app in a PostgreSQL database, with leases and
    LISTEN/NOTIFY wake-ups."""

    placeholder = "%s"
    info_columns = _INFO_COLUMNS

    driver_errors = (psycopg.Error,) if psycopg is not None else ()

    @classmethod
    def from_url(cls, url: str, name: str, **options) -> "PostgresBackend":
        return cls(name, dsn=url, **options)

    @classmethod
    def shared_options(cls, url: str, access: str) -> dict:
        _need_driver()
        return {}

    def __init__(self, name: str, dsn: str, read_timeout: float = 1.0,
                 **kwargs) -> None:
        _need_driver()
        self.app_name, self.queue = split_name(name)
        self.qname = name
        #: The app's sequence (a name of hex digits: no quoting needed).
        self._seq = "hueyq_seq_" + hashlib.sha1(
            self.app_name.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        self.admission = False
        self._asynchronous = False
        self._pid = os.getpid()
        self._listeners: list = []
        self._listeners_lock = threading.Lock()
        self._local = threading.local()
        self._conns: list = []
        kwargs.pop("access", None)
        kwargs.setdefault("connect_timeout", 5)
        if "options" not in kwargs and "options=" not in dsn:
            # A lease and the ack riding in it are one short transaction. A
            # host cut off from the server in the middle of one would keep
            # its rows locked until the server noticed the connection gone
            # (hours, with the kernel's default keepalives), and every other
            # host's recovery of those rows would wait on the locks; the
            # server ends such a session instead (hueyq never idles in a
            # transaction; huey's connections are autocommit).
            kwargs["options"] = "-c idle_in_transaction_session_timeout=%d" \
                % (IDLE_IN_TRANSACTION * 1000)
        try:
            super().__init__(name, dsn=dsn, read_timeout=read_timeout,
                             blocking=False, **kwargs)
        except psycopg.Error as exc:
            raise BackendUnavailable(self.explain(exc)) from None
        # huey's key/value methods use self.name: one namespace per app.
        self.name = self.app_name
        self.ddl = list(self.ddl) + _TABLES

    # ------------------------------------------------------------ connections

    def _connect(self):
        try:
            conn = super()._connect()
            if self._asynchronous:
                conn.execute("set synchronous_commit = off")
            return conn
        except psycopg.OperationalError as exc:
            raise BackendUnavailable(self.explain(exc)) from None
    _create_connection = _connect

    def consumer_side(self) -> None:
        """Commit this process's work with ``synchronous_commit = off``.

        A consumer's commits (leases, acks, results, retries, the tasks its
        tasks enqueue) then skip the WAL flush that producers wait for,
        for the reason SQLite's consumers skip their fsync: a crash of the
        server can only undo the newest commits of the WAL, in commit
        order, and every commit of a consumer comes before the ack of the
        task that made it, so what is undone is an ack together with
        everything after it, and those jobs run again. A producer's commit
        also flushes every consumer commit before it.
        """
        self._asynchronous = True
        self._close_connections()

    def _close_connections(self) -> None:
        with self._listeners_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            self._close_quiet(conn)
        self._local = threading.local()

    def _forked(self) -> None:
        # A forked child must not talk on its parent's connections (nor
        # close them); a lock a parent's thread held is nobody's here.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._conn = None
            self.lock = threading.Lock()
            self._listen_local = threading.local()
            self._listeners = []
            self._listeners_lock = threading.Lock()
            self._local = threading.local()
            self._conns = []

    def _thread_conn(self):
        # One connection per thread: a consumer's worker threads lease and
        # ack side by side, not in turn on one connection behind a lock.
        conn = getattr(self._local, "conn", None)
        if conn is not None and (conn.closed or conn.broken):
            self._close_quiet(conn)
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
            with self._listeners_lock:
                self._conns.append(conn)
        return conn

    @contextlib.contextmanager
    def db(self, commit: bool = False, close: bool = False):
        self._forked()
        conn = self._thread_conn()
        try:
            if commit:
                with conn.transaction():
                    with conn.cursor() as cursor:
                        yield cursor
            else:
                with conn.cursor() as cursor:
                    yield cursor
        finally:
            if close:
                self._close_quiet(conn)
                self._local.conn = None
                with self._listeners_lock:
                    if conn in self._conns:
                        self._conns.remove(conn)

    def initialize_schema(self) -> None:
        with self.db(commit=True, close=True) as curs:
            curs.execute("select pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
            for sql in self.ddl + _TABLES:
                curs.execute(sql)
            curs.execute("create sequence if not exists %s" % self._seq)
            curs.execute(_SEQ_FROM_COUNTER.format(seq=self._seq),
                         (self._seq, self.app_name))

    def _listen_conn(self):
        # huey leaves a thread's LISTEN connection to the garbage
        # collector; kept here so that close() closes them all.
        conn = super()._listen_conn()
        with self._listeners_lock:
            if conn not in self._listeners:
                self._listeners.append(conn)
        return conn

    def close(self) -> bool:
        if self._pid != os.getpid():
            self._forked()
            return False
        with self._listeners_lock:
            for conn in self._listeners:
                self._close_quiet(conn)
            self._listeners = []
        had = bool(self._conns)
        self._close_connections()
        return super().close() or had

    # ------------------------------------------------------------ huey's API

    def enqueue(self, data: bytes, priority: "float | None" = None) -> None:
        now = time.time()
        header, meta, state, eta = message_fields(data, now)
        self._insert([self._row(data, priority, header, meta, state, eta,
                                now)], state == PENDING)

    def add_to_schedule(self, data: bytes, ts) -> None:
        now = time.time()
        header, meta, _, _ = message_fields(data, now)
        self._insert([self._row(data, header.get("priority"), header, meta,
                                SCHEDULED, epoch(ts), now)], False)

    def _insert(self, rows: list, wake: bool) -> None:
        with self.db(commit=True) as curs:
            curs.executemany(_INSERT, rows)
            if wake:
                # Delivered when the transaction commits, not before.
                curs.execute("select pg_notify(%s, '')", (self.channel,))

    def _row(self, data, priority, header, meta, state, eta, now) -> tuple:
        return (self.qname, header.get("id") or "", header.get("name") or "",
                state, priority or 0, eta, meta.get("t", now), now,
                write_json(meta) if meta else None,
                int(meta.get("memory") or 0), bytes(data))

    def enqueue_many(self, messages) -> int:
        """Store ``(data, priority)`` pairs, each as :meth:`enqueue` would,
        in one transaction (all or none), waking the workers once."""
        now = time.time()
        rows = []
        pending = False
        for data, priority in messages:
            header, meta, state, eta = message_fields(data, now)
            rows.append(self._row(data, priority, header, meta, state, eta,
                                  now))
            pending = pending or state == PENDING
        if rows:
            self._insert(rows, pending)
        return len(rows)

    def enqueue_once(self, messages, window: float
                     ) -> "list[tuple[str, bool]]":
        """Store ``(data, priority, key)`` messages unless another job holds
        their key (see :class:`Backend`), in one transaction with taking
        the keys: a producer racing another for a key waits on the key's
        row (``on conflict do nothing``, then ``for update``) until the
        other commits, then sees its job."""
        now = time.time()
        out = []
        pending = False
        with self.db(commit=True) as curs:
            curs.execute(_PURGE_KEYS, (self.qname, now))
            for data, priority, key in messages:
                header, meta, state, eta = message_fields(data, now)
                task_id = header.get("id") or ""
                if key is not None:
                    holder = self._take_key(curs, key, task_id,
                                            max(now, eta or 0) + window, now)
                    if holder is not None:
                        out.append((holder, False))
                        continue
                curs.execute(_INSERT, self._row(data, priority, header, meta,
                                                state, eta, now))
                out.append((task_id, True))
                pending = pending or state == PENDING
            if pending:
                curs.execute("select pg_notify(%s, '')", (self.channel,))
        return out

    def _take_key(self, curs, key: str, task_id: str, expires: float,
                  now: float) -> "str | None":
        """Give ``key`` to ``task_id``; None, or the job holding it."""
        curs.execute(_TAKE_KEY, (self.qname, key, task_id, expires))
        if curs.fetchone() is not None:
            return None
        curs.execute(_HOLDER, (self.qname, key))
        row = curs.fetchone()
        if row is None:  # purged by another producer since: take it anew
            return self._take_key(curs, key, task_id, expires, now)
        held, until, live = row
        if until > now or live:
            return held
        curs.execute("update hueyq_key set task_id = %s, expires = %s where"
                     " queue = %s and key = %s",
                     (task_id, expires, self.qname, key))
        return None

    def dequeue(self) -> "bytes | None":
        # huey's at-most-once dequeue; hueyq's workers use lease().
        with self.db() as curs:
            curs.execute("delete from hueyq_message where id = (select id from"
                         " hueyq_message where queue = %s and state ="
                         " 'pending' order by priority desc, id limit 1 for"
                         " update skip locked) returning data", (self.qname,))
            row = curs.fetchone()
        return bytes(row[0]) if row else None

    def _flush_state(self, state: str) -> None:
        self.sql("delete from hueyq_message where queue = %s and state = %s",
                 (self.qname, state))

    def _data(self, state: str, limit: "int | None") -> list:
        sql = ("select data from hueyq_message where queue = %%s and state ="
               " '%s' order by %s" % (_check_state(state), _ORDER[state]))
        if limit:
            sql += " limit %d" % int(limit)
        return [bytes(row[0]) for row in self.sql(sql, (self.qname,),
                                                  results=True)]

    def flush_all(self) -> None:
        super().flush_all()
        self.sql("delete from hueyq_message where queue = %s", (self.qname,))
        self.sql("delete from hueyq_flag where queue = %s", (self.qname,))
        self.sql("delete from hueyq_key where queue = %s", (self.qname,))

    # ------------------------------------------------------------ leases

    def lease(self, owner: str, ack: "tuple | None" = None) -> "Lease | None":
        """Take the next pending message for ``owner`` (one statement, the
        row chosen ``FOR UPDATE SKIP LOCKED``); ``ack``, ``(handle, outcome,
        reason)``, is committed in the same transaction."""
        now = time.time()
        sql = _LEASE.format(admission=_ADMISSION if self.admission else "")
        params = {"q": self.qname, "app": self.name, "owner": owner,
                  "now": now, "limit": self.lease_limit or _NO_LIMIT,
                  "head": HEAD_BYTES, "seq": self._seq}
        with self.db(commit=ack is not None) as curs:
            refused = ack is not None and not self._finish(curs, now, *ack)
            curs.execute(sql, params)
            row = curs.fetchone()
        if refused and len(ack) > 3 and ack[3] is not None:
            self._refused(ack[0], ack[3])
        if ack is not None and ack[1] == "release":
            self.notify()
        if row is None:
            return None
        cut = self.lease_limit is not None and row[10] > self.lease_limit
        return Lease(row[0], row[1], bytes(row[2]), row[3], row[4], row[5],
                     bool(row[6]), row[7], size=row[10] if cut else None,
                     name=row[8] or "", meta=self._meta(row[0], row[9]))

    def _meta(self, handle, raw) -> dict:
        return clean_meta(read_json(raw, "meta of message %s" % handle)
                          if raw else {})

    def lease_batch(self, owner: str, name: str, limit: int
                    ) -> "list[Lease]":
        """Take up to ``limit`` pending messages of task ``name`` at once."""
        with self.db() as curs:
            curs.execute(_LEASE_BATCH, {
                "q": self.qname, "app": self.name, "owner": owner,
                "now": time.time(), "name": name, "n": int(limit),
                "limit": self.lease_limit or _NO_LIMIT, "seq": self._seq})
            rows = curs.fetchall()
        rows.sort(key=lambda r: r[0])
        return [Lease(r[0], r[1], bytes(r[2]), r[3], r[4], r[6], seq=r[5],
                      name=name, meta=self._meta(r[0], r[7])) for r in rows]

    def next_seq(self) -> int:
        """Take the next number of the app's sequence."""
        with self.db(commit=True) as curs:
            curs.execute("select nextval(%s::regclass)", (self._seq,))
            return curs.fetchone()[0]

    def ack(self, handle, outcome: "str | None" = None,
            reason: "str | None" = None, fence: "tuple | None" = None
            ) -> bool:
        """End a lease: None (``done``, body dropped), ``"dead"`` (kept with
        ``reason``) or ``"release"`` (back to the queue, uncounted); with a
        ``fence`` (owner, epoch) only that delivery (see Backend.ack).
        Returns whether the lease was ended."""
        with self.db(commit=True) as curs:
            ended = self._finish(curs, time.time(), handle, outcome, reason,
                                 fence)
        if not ended and fence is not None:
            self._refused(handle, fence)
        if outcome == "release":
            self.notify()
        return ended

    def _finish(self, curs, now, handle, outcome, reason, fence=None
                ) -> bool:
        where, params = "id = %s and state = 'running'", [handle]
        if fence is not None:
            where += (" and owner is not distinct from %s and lease_seq is"
                      " not distinct from %s")
            params += [fence[0], fence[1]]
        if outcome is None:
            curs.execute("update hueyq_message set state = 'done', data ="
                         " ''::bytea, updated_at = %s where " + where,
                         [now] + params)
        elif outcome == DEAD:
            curs.execute("update hueyq_message set state = 'dead', reason ="
                         " %s, updated_at = %s where " + where,
                         [reason, now] + params)
        elif outcome == "release":
            curs.execute("update hueyq_message set state = 'pending', owner ="
                         " null, updated_at = %s where " + where,
                         [now] + params)
        else:
            raise ValueError("unknown outcome %r" % (outcome,))
        if curs.rowcount != 1:
            if fence is not None:
                curs.execute(_BUMP_FENCED, (self.name,))
            return False
        if outcome is None or (outcome == DEAD and reason == "failed"):
            # huey's revoke key of a task that ran, left for us to delete.
            curs.execute("delete from huey_kv where queue = %s and key = ("
                         "select 'r:' || task_id from hueyq_message where id ="
                         " %s)", (self.name, handle))
        return True

    def fenced(self) -> int:
        """How many acks of this app a fence refused (see Backend.ack)."""
        rows = self.sql("select value from huey_counter where queue = %s and"
                        " key = 'hueyq:fenced'", (self.name,), results=True)
        return int(rows[0][0]) if rows else 0

    def release(self, handles) -> int:
        """Hand leases back to the queue without counting a redelivery."""
        handles = list(handles)
        if not handles:
            return 0
        with self.db() as curs:
            curs.execute("update hueyq_message set state = 'pending', owner ="
                         " null, updated_at = %s where state = 'running' and"
                         " id = any(%s)", (time.time(), handles))
            count = curs.rowcount
        self.notify()
        return count

    def requeue(self, handle, last_error: "str | None" = None,
                count: bool = True, max_redeliveries: "int | None" = None,
                fence: "tuple | None" = None) -> "str | None":
        """Recover a lease whose owner is gone: pending again, or ``dead``
        as poison past ``max_redeliveries``; None if no longer leased (to
        the owner and epoch of ``fence``, when given)."""
        limit = max_redeliveries if max_redeliveries is not None else -1
        fenced = "" if fence is None else (
            " and owner is not distinct from %(owner)s and lease_seq is not"
            " distinct from %(epoch)s")
        owner, epoch = fence if fence is not None else (None, None)
        with self.db() as curs:
            curs.execute(
                "update hueyq_message set redeliveries = redeliveries + %(n)s,"
                " last_error = %(error)s, updated_at = %(now)s, state = case"
                " when %(limit)s >= 0 and redeliveries + %(n)s > %(limit)s"
                " then 'dead' else 'pending' end, reason = case when"
                " %(limit)s >= 0 and redeliveries + %(n)s > %(limit)s then"
                " 'poison' else reason end, owner = case when %(limit)s >= 0"
                " and redeliveries + %(n)s > %(limit)s then owner end where"
                " id = %(id)s and state = 'running'" + fenced +
                " returning state",
                {"n": 1 if count else 0, "error": last_error, "id": handle,
                 "now": time.time(), "limit": limit, "owner": owner,
                 "epoch": epoch})
            row = curs.fetchone()
        if row is None:
            return None
        if row[0] == PENDING:
            self.notify()
        return row[0]

    def forget(self, handles) -> int:
        """Delete ``done`` messages whose job the store has recorded."""
        handles = list(handles)
        if not handles:
            return 0
        with self.db() as curs:
            curs.execute("delete from hueyq_message where state = 'done' and"
                         " id = any(%s)", (handles,))
            return curs.rowcount

    def sweep_done(self, before: float) -> int:
        """Delete ``done`` messages finished before ``before``."""
        with self.db() as curs:
            curs.execute("delete from hueyq_message where queue = %s and state"
                         " = 'done' and updated_at < %s", (self.qname, before))
            return curs.rowcount

    def annotate(self, handle, last_error: str) -> bool:
        """Record why a leased message's worker is about to be killed."""
        with self.db() as curs:
            curs.execute("update hueyq_message set last_error = %s where id ="
                         " %s and state = 'running'", (last_error, handle))
            return curs.rowcount == 1

    def relabel(self, handle, task_id: str) -> None:
        """File a leased message under the job id ``task_id``."""
        self.sql("update hueyq_message set task_id = %s where id = %s",
                 (task_id, handle))

    # ------------------------------------------------------------ scheduling

    def promote_due(self, now: "float | None" = None) -> int:
        """Move scheduled messages whose eta has passed into the queue, in
        one statement: in eta order behind what is pending (new rows),
        noting when (``promoted``) as huey's scheduler re-enqueues them."""
        now = time.time() if now is None else now
        if not self.sql("select 1 from hueyq_message where queue = %s and"
                        " state = 'scheduled' and eta <= %s limit 1",
                        (self.qname, now), results=True):
            return 0
        with self.db() as curs:
            curs.execute(
                "with due as (delete from hueyq_message where queue = %(q)s"
                " and state = 'scheduled' and eta <= %(now)s returning *)"
                " insert into hueyq_message (queue, task_id, name, state,"
                " priority, eta, enqueued_at, updated_at, redeliveries,"
                " last_error, meta, memory, data) select queue, task_id,"
                " name, 'pending', priority, eta, enqueued_at, %(at)s,"
                " redeliveries, last_error, (coalesce(meta, '{}')::jsonb ||"
                " jsonb_build_object('promoted', %(at)s::float8))::text,"
                " memory, data from due order by eta, id",
                {"q": self.qname, "now": now, "at": time.time()})
            moved = curs.rowcount
        if moved:
            self.notify()
        return moved

    def notify(self) -> None:
        """Wake workers waiting on this queue (``NOTIFY`` its channel)."""
        self.sql("select pg_notify(%s, '')", (self.channel,))

    def wait(self, timeout: float) -> None:
        """Block in ``LISTEN`` until this queue is notified or ``timeout``
        passes."""
        self._forked()
        try:
            conn = self._listen_conn()
            for _ in conn.notifies(timeout=timeout, stop_after=1):
                pass
        except (psycopg.Error, BackendUnavailable):
            time.sleep(timeout)

    # ------------------------------------------------------------ output

    @property
    def output_channel(self) -> str:
        """The channel appends to this app's output streams notify, with
        the job id as payload (at most 63 bytes, as every channel name)."""
        channel = "hueyq.o.%s" % self.app_name
        if len(channel.encode("utf-8")) > 63:
            channel = "hueyq.o.%s" % hashlib.md5(
                self.app_name.encode("utf-8")).hexdigest()
        return channel

    def _wake_output(self, curs, job_id: str) -> None:
        # Delivered when the append commits, not before.
        curs.execute("select pg_notify(%s, %s)", (self.output_channel,
                                                   job_id))

    def output_waiter(self, job_id: str) -> OutputWaiter:
        """``LISTEN`` on the app's output channel, on a connection of its
        own; polling when none can be opened."""
        try:
            return _ListenWaiter(self, job_id)
        except (psycopg.Error, BackendUnavailable):
            return OutputWaiter(self, job_id)

    # ------------------------------------------------------------ listing

    def list_messages(self, state: str, limit: "int | None" = 50,
                      offset: int = 0) -> "list[MessageInfo]":
        """Messages in ``state``, in the order they will be taken."""
        return self._infos("state = '%s'" % _check_state(state), (),
                           _ORDER[state], limit, offset)

    def count(self, state: str) -> int:
        """Number of messages of this queue in ``state``."""
        return self.sql("select count(*) from hueyq_message where queue = %%s"
                        " and state = '%s'" % _check_state(state),
                        (self.qname,), results=True)[0][0]

    def counts(self) -> "dict[str, int]":
        """``{pending, scheduled, running, dead}`` for this queue."""
        rows = self.sql("select state, count(*) from hueyq_message where"
                        " queue = %s and state <> 'done' group by state",
                        (self.qname,), results=True)
        found = dict(rows)
        return {state: found.get(state, 0) for state in
                (PENDING, SCHEDULED, RUNNING, DEAD)}

    def memory_room(self) -> "int | None":
        """The queue's memory room (:mod:`hueyq.memory`); None when the
        queue has no memory budget."""
        budget, running = self.sql(
            "select (select case when value ~ '^[0-9]+$' then value::bigint"
            " end from hueyq_flag where queue = %(q)s and name ="
            " 'admission'), (select coalesce(sum(memory), 0) from"
            " hueyq_message where queue = %(q)s and state = 'running')",
            {"q": self.qname}, results=True)[0]
        return None if budget is None else memory_room(budget, 0,
                                                       int(running))

    def waiting_for_memory(self, room: int, limit: int = 1000) -> int:
        """How many of the next ``limit`` pending jobs declared more memory
        than ``room``."""
        return self.sql("select count(*) from (select memory from"
                        " hueyq_message where queue = %s and state ="
                        " 'pending' order by priority desc, id limit %s) m"
                        " where memory > %s", (self.qname, limit, room),
                        results=True)[0][0]

    def newest(self, limit: int, before: "float | None" = None,
               names: "list[str] | None" = None,
               id_prefix: "str | None" = None, since: "float | None" = None,
               states: "tuple[str, ...]" = (PENDING, SCHEDULED, RUNNING)
               ) -> "list[MessageInfo]":
        """Messages in ``states``, newest enqueued first, filtered."""
        where = ["state in (%s)" % ", ".join(
            "'%s'" % _check_state(s) for s in states)]
        params: list = []
        for op, value in (("<", before), (">=", since)):
            if value is not None:
                where.append("enqueued_at %s %%s" % op)
                params.append(value)
        if names is not None:
            where.append("name = any(%s)")
            params.append(list(names))
        if id_prefix:
            where.append("starts_with(task_id, %s)")
            params.append(id_prefix)
        return self._infos(" and ".join(where), tuple(params),
                           "enqueued_at desc, id desc", limit)

    # ------------------------------------------------------------ control

    def cancel(self, task_id: str, reason: str = "cancelled"
               ) -> "list[MessageInfo]":
        """Move a pending or scheduled job's messages to ``dead``."""
        return self._move("task_id = %s and state in ('pending',"
                          " 'scheduled')", (task_id,), DEAD, reason)

    def revive(self, task_id: str) -> "MessageInfo | None":
        """Put a dead job's newest message back into the queue."""
        moved = self._move("id = (select id from hueyq_message where queue ="
                           " %s and task_id = %s and state = 'dead'"
                           " order by id desc limit 1)",
                           (self.qname, task_id), PENDING, None)
        return moved[0] if moved else None

    def _move(self, where: str, params: tuple, state: str,
              reason: "str | None") -> "list[MessageInfo]":
        reset = ", redeliveries = 0, last_error = null" if state == PENDING \
            else ""
        rows = self.sql("update hueyq_message set state = %%s, reason = %%s,"
                        " owner = null, updated_at = %%s%s where queue = %%s"
                        " and %s returning %s" % (reset, where, _INFO_COLUMNS),
                        (state, reason, time.time(), self.qname)
                        + tuple(params), results=True)
        if state == PENDING and rows:
            self.notify()
        return [self._info(row) for row in rows]

    def purge_dead(self, before: float, keep: int) -> int:
        """Delete dead messages older than ``before`` or beyond the newest
        ``keep``."""
        with self.db() as curs:
            curs.execute("delete from hueyq_message where queue = %(q)s and"
                         " state = 'dead' and (updated_at < %(before)s or id"
                         " in (select id from hueyq_message where queue ="
                         " %(q)s and state = 'dead' order by updated_at desc"
                         " offset %(keep)s))",
                         {"q": self.qname, "before": before, "keep": keep})
            return curs.rowcount

    def delete_dead(self, task_ids) -> int:
        """Delete the kept (dead) messages of these jobs."""
        with self.db() as curs:
            curs.execute("delete from hueyq_message where queue = %s and"
                         " state = 'dead' and task_id = any(%s)",
                         (self.qname, list(task_ids)))
            return curs.rowcount

    # ------------------------------------------------------------ flags

    def set_flag(self, name: str, value: dict) -> None:
        """Set a flag of this queue, such as ``paused:user``."""
        self.sql("insert into hueyq_flag (queue, name, value) values (%s, %s,"
                 " %s) on conflict (queue, name) do update set value ="
                 " excluded.value", (self.qname, name, json.dumps(value)))

    def clear_flag(self, name: str) -> bool:
        """Remove a flag; True if it was set."""
        with self.db() as curs:
            curs.execute("delete from hueyq_flag where queue = %s and name ="
                         " %s", (self.qname, name))
            cleared = curs.rowcount > 0
        if cleared and name.startswith(PAUSE_PREFIX):
            self.notify()
        return cleared

    def flags(self) -> "dict[str, dict]":
        """Every flag of this queue."""
        rows = self.sql("select name, value from hueyq_flag where queue = %s",
                        (self.qname,), results=True)
        out = {}
        for name, value in rows:
            value = read_json(value, "flag %s of %s" % (name, self.qname))
            if isinstance(value, dict):
                out[name] = value
        return out

    # ------------------------------------------------------------ records

    def put_record(self, key: str, value: dict, ttl: "float | None" = None
                   ) -> None:
        """Store a small JSON document for the whole app, living ``ttl``
        seconds on the server's clock."""
        with self.db() as curs:
            curs.execute("insert into hueyq_record (key, value, written, ttl)"
                         " values (%s, %s, clock_timestamp(), %s) on conflict"
                         " (key) do update set value = excluded.value,"
                         " written = excluded.written, ttl = excluded.ttl",
                         ("%s:%s" % (self.app_name, key), json.dumps(value),
                          ttl))
            if time.monotonic() % 100 < 1:
                curs.execute("delete from hueyq_record where ttl is not null"
                             " and written + ttl * interval '1 second' <"
                             " clock_timestamp()")

    def record_ages(self, prefix: str = ""
                    ) -> "dict[str, tuple[dict, float]]":
        """``{key: (record, age)}`` of the live records under ``prefix``;
        ages in seconds on the server's clock."""
        start = "%s:%s" % (self.app_name, prefix)
        rows = self.sql("select key, value, extract(epoch from"
                        " clock_timestamp() - written)::float8 from"
                        " hueyq_record where starts_with(key, %s) and (ttl is"
                        " null or written + ttl * interval '1 second' >="
                        " clock_timestamp())", (start,), results=True)
        cut = len(self.app_name) + 1
        out = {}
        for key, raw, age in rows:
            value = read_json(raw, "record %s" % key)
            if not isinstance(value, dict):
                report_bad("record %s" % key)
                continue
            out[key[cut:]] = (value, max(0.0, age))
        return out

    def delete_record(self, key: str) -> None:
        """Remove a record of this app."""
        self.sql("delete from hueyq_record where key = %s",
                 ("%s:%s" % (self.app_name, key),))

    # ------------------------------------------------------------ health

    def health(self, **_: object) -> "list[Finding]":
        """Server version, ``synchronous_commit`` and ``fsync`` as this
        backend's sessions see them, and client connections in use against
        ``max_connections``."""
        version, sync, fsync, used, most = self.sql(
            "select current_setting('server_version'),"
            " current_setting('synchronous_commit'), current_setting('fsync'),"
            " (select count(*) from pg_stat_activity where backend_type ="
            " 'client backend'), current_setting('max_connections')::int",
            (), results=True)[0]
        findings = [Finding("ok", "postgres.version",
                            "PostgreSQL %s" % version)]
        if sync == "off":
            findings.append(Finding(
                "warning", "postgres.synchronous_commit",
                "synchronous_commit=off: an enqueue returns before its commit"
                " is on disk, so a server crash can lose the jobs accepted in"
                " its last moments; set synchronous_commit = on"))
        else:
            findings.append(Finding("ok", "postgres.synchronous_commit",
                                    "synchronous_commit=%s" % sync))
        if fsync == "off":
            findings.append(Finding(
                "error", "postgres.fsync", "fsync=off: a crash of the server"
                " or its machine can lose or corrupt the queues; set fsync ="
                " on"))
        level = "error" if used >= most * 0.95 else (
            "warning" if used >= most * 0.8 else "ok")
        findings.append(Finding(level, "postgres.connections",
                                "%d of %d connections in use" % (used, most)))
        return findings

    def claim(self, holder: str) -> "str | None":
        """Nothing to lock: several hosts may share one database, as with
        Redis (the supervisor checks that no live runtime has its host
        id)."""
        return None

    def identity(self) -> None:
        """A database server has no file to be replaced under the runtime."""
        return None

    def checkpoint(self) -> bool:
        """PostgreSQL checkpoints by itself."""
        return False

    def ping(self) -> None:
        """Raise BackendUnavailable unless the database answers."""
        try:
            self.sql("select 1", (), results=True)
        except psycopg.Error as exc:
            raise BackendUnavailable(self.explain(exc)) from None

    def describe(self) -> str:
        """Where this backend lives, for people (never the password)."""
        parsed = urllib.parse.urlsplit(self.dsn)
        try:
            port = parsed.port or 5432
        except ValueError:
            port = "?"
        return "PostgreSQL at %s:%s database %s" % (
            parsed.hostname or "localhost", port,
            parsed.path.strip("/") or "(default)")

    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error this backend raised."""
        if isinstance(exc, BackendUnavailable):
            return str(exc)
        text = " ".join(str(exc).split()) or type(exc).__name__
        where = self.describe()
        if psycopg is not None and isinstance(exc, psycopg.OperationalError):
            if "password" in text or "authentication" in text:
                return ("%s refused the credentials: check the user and "
                        "password in backend.url (%s)" % (where, text))
            return "%s is not reachable: %s" % (where, text)
        if "No space left" in text or "disk full" in text:
            return "the disk of %s is full" % where
        return "%s: %s" % (where, redact_url(text))


class _ListenWaiter(OutputWaiter):
    """A follower's wake-up on PostgreSQL: ``LISTEN`` on the app's output
    channel, woken by the notifications that name its job."""

    def __init__(self, backend: "PostgresBackend", job_id: str) -> None:
        super().__init__(backend, job_id)
        self._conn = backend._connect()
        self._conn.execute('listen "%s"' % backend.output_channel.replace(
            '"', '""'))

    def wait(self, after: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for note in self._conn.notifies(timeout=left, stop_after=1):
                if note.payload == self.job_id:
                    return

    def close(self) -> None:
        self.backend._close_quiet(self._conn)


def _check_state(state: str) -> str:
    if state not in _ORDER:
        raise ValueError("unknown state %r" % (state,))
    return state
