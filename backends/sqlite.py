"""SQLite backend: huey's SqliteStorage with leases, flags and wake-ups.

Every message of every queue is one row of ``hueyq_message``; its ``state``
column says where it is (pending, scheduled, running, dead). Taking a message
is one ``UPDATE ... RETURNING`` that also checks the queue's pause flags, so
leasing is atomic and a paused queue hands out nothing. The ack of a finished
task rides in the transaction of the worker's next lease, so a task costs one
commit. The file runs in WAL mode. Producers commit with ``synchronous=FULL``
(an accepted job survives a power cut); a consumer process commits its
leases, acks, results and retries with ``synchronous=NORMAL`` (see
:meth:`SqliteBackend.consumer_side`). Both are read back and reported by
``health()``.

Writers, in every thread and process, take turns on a lock file beside the
database (``<db>.lock``, :class:`WriterLock`) rather than in SQLite's
sleeping busy handler.

The WAL is bounded: every connection sets ``journal_size_limit``, so once a
long reader is gone the next completed checkpoint cuts the file back, and
the supervisor checkpoints periodically (:meth:`SqliteBackend.checkpoint`,
which never waits for readers); ``health()`` names the processes whose read
transactions keep a checkpoint from completing (from ``/proc/locks``).

Records (the runtime's heartbeat) carry the boot id and this host's
monotonic clock, so their age never depends on the wall clock.

Idle workers sleep on a FIFO beside the database (``<db>.<app>.<queue>.wake``)
that producers write one byte to after each commit, so an idle queue starts a
new task within a millisecond or two without polling; a slow poll
(``runtime.poll_interval``) remains as the fallback. A process awaiting
results (``result.aget()``) sleeps on a FIFO of its own in
``<db>.<app>.results/``, and a worker that stores a result writes a byte
into each.
"""

import atexit
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import math
import os
import select
import shutil
import sqlite3
import stat
import threading
import time

from huey.storage import SqliteStorage

from hueyq import defaults
from hueyq import files
from hueyq.backends.base import (DEAD, DONE, HEAD_BYTES, PAUSE_PREFIX,
                                 PENDING, RUNNING, SCHEDULED,
                                 Finding, Lease, MessageInfo, OutputWaiter,
                                 clean_meta,
                                 message_fields, read_json, report_bad,
                                 split_name)
from hueyq.backends.sql import SqlBackend
from hueyq.envelope import epoch, write_json
from hueyq.exceptions import BackendUnavailable
from hueyq.memory import memory_room
from hueyq.owner import boot_id
from hueyq.units import format_size
from hueyq.urls import sqlite_path

logger = logging.getLogger("hueyq.backends.sqlite")

_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}

_TABLES = [
    SqliteStorage.table_kv,
    SqliteStorage.table_counter,
    "create table if not exists hueyq_message ("
    " id integer primary key, queue text not null, task_id text not null,"
    " name text not null default '', state text not null,"
    " priority real not null default 0, eta real, enqueued_at real,"
    " updated_at real, owner text, redeliveries integer not null default 0,"
    " last_error text, reason text, meta text, memory integer not null"
    " default 0, data blob not null, lease_seq integer)",
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
    " value text not null, expires real)",
]
# enqueue_once: the job holding each key of a queue, and until when (past
# it, only while the job's message is pending, scheduled or running).
_KEY_TABLES = [
    "create table if not exists hueyq_key (queue text not null,"
    " key text not null, task_id text not null, expires real not null,"
    " primary key (queue, key))",
    "create index if not exists hueyq_key_expires on hueyq_key"
    " (queue, expires)",
]
_TABLES += _KEY_TABLES
# Output streams of jobs (see hueyq.backends.sql), app-wide like results.
_OUTPUT_TABLES = [
    "create table if not exists hueyq_output (app text not null,"
    " job_id text not null, seq integer not null, data text not null,"
    " size integer not null, at real not null, run integer,"
    " primary key (app, job_id, seq))",
    "create table if not exists hueyq_output_head (app text not null,"
    " job_id text not null, seq integer not null, chunks integer not null,"
    " bytes integer not null, dropped integer not null,"
    " updated_at real not null, primary key (app, job_id))",
    "create index if not exists hueyq_output_head_updated on"
    " hueyq_output_head (app, updated_at)",
]
_TABLES += _OUTPUT_TABLES

_NOT_PAUSED = ("not exists (select 1 from hueyq_flag where queue = ?"
               " and name glob 'paused:*')")
_HAS_WORK = ("select 1 from hueyq_message where queue = ? and state = 'pending'"
             " and " + _NOT_PAUSED + " limit 1")
_RETURNING = (" returning id, task_id, data, redeliveries, last_error,"
              " enqueued_at, exists(select 1 from kv where queue = ?4 and key"
              " in ('r:' || task_id, 'rt:' || name)), lease_seq, name, meta")
# A lease takes the next number of the app's sequence (huey's counter
# table), which orders the job's records without wall clocks.
_NEXT_SEQ = ("(select coalesce(max(value), 0) + 1 from counter where queue ="
             " ?4 and key = 'hueyq:seq')")
_BUMP_SEQ = ("insert into counter (queue, key, value) values (?, 'hueyq:seq',"
             " 1) on conflict (queue, key) do update set value = value + 1"
             " returning value")
# An ack a fence refused (Backend.ack) is counted for the whole app.
_BUMP_FENCED = ("insert into counter (queue, key, value) values (?,"
                " 'hueyq:fenced', 1) on conflict (queue, key) do update set"
                " value = value + 1")
# A lease takes only a message within the lease limit (?5). SQLite rewrites
# every row it updates, so a forged giant is never updated: it is taken by
# SqliteBackend._take_oversized, which replaces it by a row of its first
# bytes (see Lease).
_FITS_LIMIT = " and length(data) <= ?5"
#: The lease limit of a backend that has none.
_NO_LIMIT = 1 << 62
_LEASE = ("update hueyq_message set state = 'running', owner = ?1,"
          " updated_at = ?2, lease_seq = " + _NEXT_SEQ + " where id = (select"
          " id from hueyq_message"
          " where queue = ?3 and state = 'pending'" + _FITS_LIMIT +
          " order by priority desc, id limit 1) and not exists (select 1 from"
          " hueyq_flag where queue = ?3 and name glob 'paused:*')" + _RETURNING)
# Admission: a task that declared memory= waits until it fits in what the
# supervisor says is left of the queue's budget, less what running tasks
# declared.
_FITS = (" and (memory = 0 or memory <= coalesce((select cast(value as"
         " integer) from hueyq_flag where queue = ?3 and name = 'admission'),"
         " 9000000000000000000) - (select coalesce(sum(memory), 0) from"
         " hueyq_message where queue = ?3 and state = 'running'))")
_ADMISSION_LEASE = (
    "update hueyq_message set state = 'running', owner = ?1, updated_at = ?2,"
    " lease_seq = " + _NEXT_SEQ + " where id = (select id from hueyq_message"
    " where queue = ?3 and state ="
    " 'pending'" + _FITS + _FITS_LIMIT + " order by priority desc, id"
    " limit 1) and not exists (select 1 from hueyq_flag where queue = ?3 and"
    " name glob 'paused:*')" + _RETURNING)
_INSERT = ("insert into hueyq_message (queue, task_id, name, state, priority,"
           " eta, enqueued_at, updated_at, meta, memory, data)"
           " values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Whether the job holding key row k still has a live message.
_LIVE = ("exists(select 1 from hueyq_message m where m.task_id = k.task_id"
         " and m.queue = k.queue and m.state in ('pending', 'scheduled',"
         " 'running'))")
# Each enqueue_once deletes up to 100 keys that no job holds any more.
_PURGE_KEYS = ("delete from hueyq_key where rowid in (select k.rowid from"
               " hueyq_key k where k.queue = ? and k.expires <= ? and not "
               + _LIVE + " limit 100)")
_HOLDER = ("select k.task_id, k.expires, " + _LIVE + " from hueyq_key k"
           " where k.queue = ? and k.key = ?")
_INFO_COLUMNS = ("id, queue, task_id, name, state, priority, enqueued_at,"
                 " updated_at, eta, owner, redeliveries, last_error, reason,"
                 " meta, length(data), lease_seq")
_ORDER = {PENDING: "priority desc, id", SCHEDULED: "eta, id",
          RUNNING: "updated_at, id", DEAD: "updated_at desc, id desc",
          DONE: "updated_at desc, id desc"}


class WriterLock:
    """This process's turn to write one SQLite file, among threads and
    processes.

    SQLite makes a writer that finds the file locked sleep and retry (1, 2,
    5, 10 ms ...), so consumers of several queues committing to one file
    lose most of their time asleep. Writers here queue on a lock instead: a
    thread lock among this process's threads, then ``flock`` on
    ``<db>.lock`` among processes, which the kernel hands to the next waiter
    the moment it is released (and releases by itself when a holder dies).
    SQLite's own locking still guards the file; this only orders the
    writers. A holder holds it for one transaction, which SQLite's busy
    timeout bounds. One per file per process (:meth:`of`); a forked child
    opens the lock file again, since it would share its parent's lock.
    """

    _locks: "dict[str, WriterLock]" = {}
    _guard = threading.Lock()

    def __init__(self, filename: str) -> None:
        self.path = filename + ".lock"
        self._thread_lock = threading.Lock()
        self._fd: "int | None" = None
        self._pid = 0

    @classmethod
    def of(cls, filename: str) -> "WriterLock":
        key = os.path.abspath(filename)
        with cls._guard:
            lock = cls._locks.get(key)
            if lock is None:
                lock = cls._locks[key] = cls(key)
            return lock

    def _file(self) -> "int | None":
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._fd = open_own(self.path, os.O_RDWR | os.O_CREAT,
                                stat.S_ISREG, "lock file")
        return self._fd

    def __enter__(self) -> "WriterLock":
        self._thread_lock.acquire()
        try:
            fd = self._file()
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError:
                    pass  # No flock here (some network filesystems).
        except BaseException:
            self._thread_lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self._fd is not None and self._pid == os.getpid():
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
                except OSError:
                    pass
        finally:
            self._thread_lock.release()

    @classmethod
    def _after_fork(cls) -> None:
        # A forked child has one thread: locks its parent's other threads
        # held at the fork are nobody's now; the parent's lock file is its
        # parent's (closing it here releases nothing the parent holds).
        cls._guard = threading.Lock()
        for lock in cls._locks.values():
            lock._thread_lock = threading.Lock()
            if lock._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(lock._fd)
            lock._fd, lock._pid = None, 0


os.register_at_fork(after_in_child=WriterLock._after_fork)

_refused: "set[str]" = set()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def open_own(path: str, flags: int, is_kind, what: str) -> "int | None":
    """Open a file hueyq keeps beside a database, never through a symlink,
    and only if it is of the kind hueyq made (``is_kind`` of its mode);
    None otherwise (logged once) or when it cannot be opened."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                     files.FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse(path, what, "it is a symlink")
        return None
    if not is_kind(os.fstat(fd).st_mode):
        os.close(fd)
        _refuse(path, what, "it is not a file hueyq made")
        return None
    return fd


def _poke_fifos(directory: str, prefix: str = "") -> None:
    """One byte into each FIFO in ``directory`` whose name starts with
    ``prefix`` (a waiter's wake-up); one that nobody reads any more (its
    process is gone) is removed, one already full has a wake-up pending."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK
                         | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                _unlink(path)
            continue
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode):
                os.write(fd, b"\x01")
        except OSError:
            pass
        finally:
            os.close(fd)


def _wait_fifo(fd: int, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for a byte on the FIFO ``fd`` and
    empty it; whether one came. poll, not select: a web server's
    descriptors may pass 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    try:
        ready = poller.poll(max(0, math.ceil(timeout * 1000)))
    except InterruptedError:
        return False
    if not ready:
        return False
    try:
        while os.read(fd, 4096):
            pass
    except (BlockingIOError, InterruptedError):
        pass
    return True


def _follow_tag(job_id: str) -> str:
    return hashlib.sha1(job_id.encode("utf-8", "surrogatepass")).hexdigest(
    )[:20]


def _sweep_followers(directory: str, most: int = 200) -> None:
    """Remove FIFOs in ``directory`` that no process reads any more."""
    for name in os.listdir(directory)[:most]:
        path = os.path.join(directory, name)
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK
                             | os.O_NOFOLLOW | os.O_CLOEXEC))
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                _unlink(path)


class FifoWaiter(OutputWaiter):
    """A follower's wake-up on SQLite: a FIFO named after the job it
    follows, its process and a random part, which every append to the job
    writes a byte to (:meth:`SqliteBackend._woken`). It holds a write end
    itself, so it never reads end-of-file while it is alive; once its
    process is gone, the next append to its job, or the next follower made,
    finds no reader on it and removes it."""

    def __init__(self, backend, job_id: str, directory: str) -> None:
        super().__init__(backend, job_id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        _sweep_followers(directory)
        self.path = os.path.join(directory, "%s.%d.%s" % (
            _follow_tag(job_id), os.getpid(), os.urandom(6).hex()))
        os.mkfifo(self.path, files.FIFO_MODE)
        try:
            self._rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK
                                | os.O_NOFOLLOW | os.O_CLOEXEC)
            self._wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK
                                | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            _unlink(self.path)
            raise

    def wait(self, after: int, timeout: float) -> None:
        _wait_fifo(self._rfd, timeout)

    def close(self) -> None:
        if self._rfd is None:
            return
        _unlink(self.path)
        for fd in (self._rfd, self._wfd):
            os.close(fd)
        self._rfd = self._wfd = None


def _refuse(path: str, what: str, why: str) -> None:
    if path not in _refused:
        _refused.add(path)
        logger.warning("not using the %s %s: %s", what, path, why)


class SqliteBackend(SqlBackend, SqliteStorage):
    """One queue of an app in a SQLite file, with leases and wake-ups."""

    placeholder = "?"
    info_columns = _INFO_COLUMNS

    ddl = _TABLES
    driver_errors = (sqlite3.Error,)
    missing_table = (sqlite3.OperationalError,)

    @classmethod
    def from_url(cls, url: str, name: str, **options) -> "SqliteBackend":
        return cls(name, filename=sqlite_path(url), **options)

    @classmethod
    def shared_options(cls, url: str, access: str) -> dict:
        return {"access": access}

    def __init__(self, name: str, filename: str, timeout: float = 5.0,
                 access: str = files.CREATE, **kwargs) -> None:
        #: ``files.CREATE``, ``EXISTING`` or ``READ``: whether this storage
        #: may create the file (and its tables and directory).
        self.access = access
        if access == files.CREATE:
            try:
                files.create_private(filename)
            except OSError as exc:
                raise BackendUnavailable("cannot create the SQLite backend "
                                         "%s: %s" % (filename, exc.strerror)
                                         ) from None
        self.app_name, self.queue = split_name(name)
        self.qname = name
        self._wake_path = "%s.%s.wake" % (filename, name)
        self._results_dir = "%s.%s.results" % (filename, self.app_name)
        self._result_fds = None
        #: Where followers of jobs' output keep their FIFOs.
        self._follow_dir = "%s.%s.follow" % (filename, self.app_name)
        self._wake_fds = None
        self._wake_pid = None
        self._notify_fd = None
        self._notify_lock = threading.Lock()
        # One connection per thread: WAL readers never wait for a writer;
        # writers of every thread and process take turns (WriterLock).
        self._local = threading.local()
        self._write_lock = WriterLock.of(filename)
        #: Whether leases honour the admission flag (queues with a budget).
        self.admission = False
        #: ``pragma synchronous`` of new connections: FULL unless this is a
        #: consumer process (:meth:`consumer_side`).
        self.synchronous = "full"
        try:
            super().__init__(name, filename=filename, fsync=True,
                             journal_mode="wal", timeout=timeout,
                             create_tables=access == files.CREATE, **kwargs)
            if access == files.CREATE:
                self._migrate()
                #: The file exists now: a connection opened later must not
                #: make a new, empty one if it was deleted meanwhile.
                self._made = True
        except sqlite3.Error as exc:
            raise BackendUnavailable("cannot open the SQLite backend %s: %s"
                                     % (filename, exc)) from None
        self._puts = 0
        # huey's key/value methods (results, revokes, locks) use self.name:
        # one namespace per app, so a result is found from any queue.
        self.name = self.app_name

    # ------------------------------------------------------------ connections

    @property
    def conn(self) -> sqlite3.Connection:
        local = self._local
        if getattr(local, "pid", None) != os.getpid() or local.conn is None:
            local.conn = self._create_connection()
            local.pid = os.getpid()
        return local.conn

    @contextlib.contextmanager
    def db(self, commit: bool = False, close: bool = False):
        with self._write_lock if commit else contextlib.nullcontext():
            conn = self.conn
            cursor = conn.cursor()
            try:
                if commit:
                    cursor.execute("begin immediate")
                yield cursor
            except BaseException:
                if commit and conn.in_transaction:
                    conn.rollback()
                raise
            else:
                if commit:
                    conn.commit()
            finally:
                cursor.close()
                if close:
                    self._drop_connection()

    def _create_connection(self) -> sqlite3.Connection:
        if self.access != files.CREATE:
            problem = files.missing_reason(self.filename, "queue database")
            if problem is not None:
                raise BackendUnavailable(problem)
            try:
                conn = files.connect(self.filename, self.access,
                                     self._timeout)
            except sqlite3.Error as exc:
                raise BackendUnavailable("cannot open the queue database %s:"
                                         " %s" % (self.filename, exc)) from None
            if self.synchronous != "full":
                conn.execute("pragma synchronous=%s" % self.synchronous)
            return conn
        if getattr(self, "_made", False) and not os.path.exists(self.filename):
            raise BackendUnavailable("the queue database %s was deleted under "
                                     "this process" % self.filename)
        conn = super()._create_connection()
        if self.synchronous != "full":
            conn.execute("pragma synchronous=%s" % self.synchronous)
        conn.execute("pragma journal_size_limit=%d"
                     % defaults.SQLITE_JOURNAL_SIZE_LIMIT)
        return conn

    def _migrate(self) -> None:
        # Files made by earlier versions lack newer columns.
        columns = {row[1] for row in self.sql(
            "pragma table_info(hueyq_message)", results=True)}
        if "lease_seq" in columns:
            return
        try:
            self.sql("alter table hueyq_message add column lease_seq integer",
                     commit=True)
        except sqlite3.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise

    def consumer_side(self) -> None:
        """Commit this process's work with ``synchronous=NORMAL``.

        A consumer's commits (leases, acks, results, retries, the tasks its
        tasks enqueue) then skip the fsync that producers pay. This loses
        nothing: a power cut can only undo the newest commits of the WAL, in
        commit order, and every commit of a consumer comes before the ack of
        the task that made it, so what is undone is an ack together with
        everything after it, and those jobs run again. A producer's FULL
        commit also syncs every consumer commit before it.
        """
        self.synchronous = "normal"
        self._drop_connection()

    def _drop_connection(self) -> None:
        local = self._local
        if getattr(local, "conn", None) is not None and \
                getattr(local, "pid", None) == os.getpid():
            local.conn.close()
        local.conn = None

    # ------------------------------------------------------------ huey's API

    def enqueue(self, data: bytes, priority: "float | None" = None) -> None:
        now = time.time()
        header, meta, state, eta = message_fields(data, now)
        self._insert(data, priority, header, meta, state, eta, now)
        if state == PENDING:
            self.notify()

    def add_to_schedule(self, data: bytes, ts) -> None:
        now = time.time()
        header, meta, _, _ = message_fields(data, now)
        # huey passes no priority here (a delayed retry): the header has it.
        self._insert(data, header.get("priority"), header, meta, SCHEDULED,
                     epoch(ts), now)

    def _insert(self, data, priority, header, meta, state, eta, now) -> None:
        self.sql(_INSERT, self._row(data, priority, header, meta, state, eta,
                                    now), commit=True)

    def _row(self, data, priority, header, meta, state, eta, now) -> tuple:
        return (self.qname, header.get("id") or "", header.get("name") or "",
                state, priority or 0, eta, meta.get("t", now), now,
                write_json(meta) if meta else None,
                int(meta.get("memory") or 0), self.to_blob(data))

    def enqueue_many(self, messages) -> int:
        """Store ``(data, priority)`` pairs, each as :meth:`enqueue` would,
        in one transaction (one commit: all or none), then wake the workers
        once; returns how many."""
        now = time.time()
        rows = []
        pending = False
        for data, priority in messages:
            header, meta, state, eta = message_fields(data, now)
            rows.append(self._row(data, priority, header, meta, state, eta,
                                  now))
            pending = pending or state == PENDING
        if rows:
            with self.db(commit=True) as curs:
                curs.executemany(_INSERT, rows)
        if pending:
            self.notify()
        return len(rows)

    def enqueue_once(self, messages, window: float
                     ) -> "list[tuple[str, bool]]":
        """Store ``(data, priority, key)`` messages unless another job holds
        their key (see :class:`Backend`), in one transaction with taking
        the keys (``insert or ignore``), then wake the workers once."""
        now = time.time()
        out = []
        pending = False
        with self.db(commit=True) as curs:
            self._ensure_keys(curs)
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
            self.notify()
        return out

    def _ensure_keys(self, curs) -> None:
        # A file made by an older version, opened by a process that does not
        # create tables (the web UI), lacks the table of keys.
        if not getattr(self, "_keys_ready", False):
            for ddl in _KEY_TABLES:
                curs.execute(ddl)
            self._keys_ready = True

    def _ensure_output(self, curs) -> None:
        # As _ensure_keys: a file from before output streams.
        if not getattr(self, "_output_ready", False):
            for ddl in _OUTPUT_TABLES:
                curs.execute(ddl)
            self._output_ready = True

    def _woken(self, job_id: str) -> None:
        """One byte into the FIFO of each follower of the job."""
        _poke_fifos(self._follow_dir, _follow_tag(job_id) + ".")

    def output_waiter(self, job_id: str):
        """A FIFO of this follower's own in ``<db>.<app>.follow/``, which
        appends write a byte to; polling where it cannot be made."""
        try:
            return FifoWaiter(self, job_id, self._follow_dir)
        except OSError as exc:
            logger.debug("polling for output of %s: %s", job_id, exc)
            return OutputWaiter(self, job_id)

    def _take_key(self, curs, key: str, task_id: str, expires: float,
                  now: float) -> "str | None":
        """Give ``key`` to ``task_id``; None, or the job holding it."""
        curs.execute("insert or ignore into hueyq_key (queue, key, task_id,"
                     " expires) values (?, ?, ?, ?)",
                     (self.qname, key, task_id, expires))
        if curs.rowcount == 1:
            return None
        curs.execute(_HOLDER, (self.qname, key))
        held, until, live = curs.fetchone()
        if until > now or live:
            return held
        curs.execute("update hueyq_key set task_id = ?, expires = ? where"
                     " queue = ? and key = ?",
                     (task_id, expires, self.qname, key))
        return None

    def dequeue(self) -> "bytes | None":
        # huey's at-most-once dequeue, for code that calls huey directly;
        # hueyq's workers use lease().
        with self.db(commit=True) as curs:
            curs.execute("delete from hueyq_message where id = (select id from"
                         " hueyq_message where queue = ? and state = 'pending'"
                         " order by priority desc, id limit 1) returning data",
                         (self.qname,))
            row = curs.fetchone()
        return row[0] if row else None

    def _flush_state(self, state: str) -> None:
        self.sql("delete from hueyq_message where queue = ? and state = ?",
                 (self.qname, state), commit=True)

    def _data(self, state: str, limit: "int | None") -> list:
        sql = ("select data from hueyq_message where queue = ? and state = '%s'"
               " order by %s" % (state, _ORDER[state]))
        if limit:
            sql += " limit %d" % int(limit)
        return [row[0] for row in self.sql(sql, (self.qname,), results=True)]

    def flush_all(self) -> None:
        super().flush_all()
        self.sql("delete from hueyq_message where queue = ?", (self.qname,),
                 commit=True)
        self.sql("delete from hueyq_flag where queue = ?", (self.qname,),
                 commit=True)
        with self.db(commit=True) as curs:
            self._ensure_keys(curs)
            curs.execute("delete from hueyq_key where queue = ?",
                         (self.qname,))

    def delete_data(self, key: str) -> bool:
        # huey deletes the revoke key after every task; reading first keeps
        # that from taking the write lock when, as usual, there is none.
        if not self.has_data_for_key(key):
            return False
        self.sql("delete from kv where queue = ? and key = ?",
                 (self.name, key), commit=True)
        return True

    # ------------------------------------------------------------ leases

    def lease(self, owner: str, ack: "tuple | None" = None) -> "Lease | None":
        """Take the next pending message for ``owner``; ack ``ack`` first.

        ``ack`` is ``(handle, outcome, reason)`` as for :meth:`ack`; it is
        committed in the same transaction as the lease.
        """
        now = time.time()
        conn = self.conn
        if ack is None and conn.execute(
                _HAS_WORK, (self.qname, self.qname)).fetchone() is None:
            return None
        with self._write_lock:
            conn.execute("begin immediate")
            try:
                refused = ack is not None and not self._finish(
                    conn, now, *ack)
                row = conn.execute(*self._lease_sql(owner, now)).fetchone()
                if row is None and self.lease_limit:
                    row = self._take_oversized(conn, owner, now)
                if row is not None:
                    conn.execute(_BUMP_SEQ, (self.name,)).fetchall()
                conn.execute("commit")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("rollback")
                raise
        if refused and len(ack) > 3 and ack[3] is not None:
            self._refused(ack[0], ack[3])
        if row is None:
            return None
        if isinstance(row, Lease):
            return row
        return Lease(row[0], row[1], row[2], row[3], row[4], row[5],
                     bool(row[6]), row[7], name=row[8] or "",
                     meta=clean_meta(read_json(row[9], "meta of message %s"
                                               % row[0]) if row[9] else {}))

    def _lease_sql(self, owner: str, now: float) -> tuple:
        params = (owner, now, self.qname, self.name,
                  self.lease_limit or _NO_LIMIT)
        return (_ADMISSION_LEASE if self.admission else _LEASE), params

    def lease_batch(self, owner: str, name: str, limit: int
                    ) -> "list[Lease]":
        """Take up to ``limit`` pending messages of task ``name`` at once."""
        now = time.time()
        with self.db(commit=True) as curs:
            curs.execute("update hueyq_message set state = 'running', owner ="
                         " ?1, updated_at = ?2, lease_seq = " + _NEXT_SEQ +
                         " where id in (select id from hueyq_message where"
                         " queue = ?3 and state = 'pending' and name = ?5 and"
                         " coalesce(last_error, '') not like 'suspect:%'"
                         " and length(data) <= ?7"
                         " order by priority desc, id limit ?6) and not exists"
                         " (select 1 from hueyq_flag where queue = ?3 and name"
                         " glob 'paused:*') returning id, task_id, data,"
                         " redeliveries, last_error, lease_seq, enqueued_at,"
                         " meta",
                         (owner, now, self.qname, self.name, name, int(limit),
                          self.lease_limit or _NO_LIMIT))
            rows = curs.fetchall()
            if rows:
                curs.execute(_BUMP_SEQ, (self.name,)).fetchall()
        rows.sort(key=lambda r: r[0])
        return [Lease(r[0], r[1], r[2], r[3], r[4], r[6], seq=r[5],
                      name=name, meta=clean_meta(read_json(
                          r[7], "meta of message %s" % r[0]) if r[7] else {}))
                for r in rows]

    def next_seq(self) -> int:
        """Take the next number of the app's sequence (for a control's
        record: it falls after every delivery so far, before every later
        one)."""
        with self.db(commit=True) as curs:
            curs.execute(_BUMP_SEQ, (self.name,))
            return curs.fetchone()[0]

    def _take_oversized(self, conn, owner: str, now: float
                        ) -> "Lease | None":
        """Lease the first pending message over the lease limit without
        reading or rewriting it: a new row holding its first HEAD_BYTES
        (read through SQLite's incremental blob I/O) takes its place."""
        found = conn.execute(
            "select id, length(data) from hueyq_message where queue = ? and"
            " state = 'pending' and length(data) > ? and " + _NOT_PAUSED +
            " order by priority desc, id limit 1",
            (self.qname, self.lease_limit, self.qname)).fetchone()
        if found is None:
            return None
        handle, size = found
        if hasattr(conn, "blobopen"):
            with conn.blobopen("hueyq_message", "data", handle,
                               readonly=True) as blob:
                head = blob.read(HEAD_BYTES)
        else:  # Python 3.10: SQLite reads the blob whole, once
            head = conn.execute("select substr(data, 1, ?) from hueyq_message"
                                " where id = ?", (HEAD_BYTES, handle)
                                ).fetchone()[0]
        row = conn.execute(
            "insert into hueyq_message (queue, task_id, name, state, priority,"
            " eta, enqueued_at, updated_at, owner, redeliveries, meta, memory,"
            " data, lease_seq) select queue, task_id, name, 'running',"
            " priority, eta, enqueued_at, ?, ?, redeliveries, meta, memory, ?,"
            " (select coalesce(max(value), 0) + 1 from counter where queue = ?"
            " and key = 'hueyq:seq') from hueyq_message where id = ?"
            " returning id, task_id, redeliveries, enqueued_at, lease_seq",
            (now, owner, head, self.name, handle)).fetchone()
        # Deleting walks the giant's overflow pages: through a small page
        # cache, so that they do not stay in this worker's memory.
        conn.execute("pragma cache_size = -256")
        try:
            conn.execute("delete from hueyq_message where id = ?", (handle,))
        finally:
            conn.execute("pragma cache_size = %d" % -(1000 * (
                self._cache_mb or 2)))
        return Lease(row[0], row[1], head, row[2], None, row[3], None,
                     row[4], size=size)

    def ack(self, handle, outcome: "str | None" = None,
            reason: "str | None" = None, fence: "tuple | None" = None
            ) -> bool:
        """End a lease.

        ``outcome`` is None (finished: the message becomes ``done``, without
        its body, until :meth:`forget`), ``"dead"`` (kept for retry, with
        ``reason`` such as failed, cancelled or poison) or ``"release"``
        (handed back to the queue without counting a redelivery). With a
        ``fence`` (owner, epoch) only that delivery is ended (see
        :meth:`Backend.ack`). Returns whether the lease was ended.
        """
        with self.db(commit=True) as curs:
            ended = self._finish(curs, time.time(), handle, outcome, reason,
                                 fence)
        if not ended and fence is not None:
            self._refused(handle, fence)
        if outcome == "release":
            self.notify()
        return ended

    def _finish(self, conn, now, handle, outcome, reason, fence=None
                ) -> bool:
        where, params = "id = ? and state = 'running'", [handle]
        if fence is not None:
            where += " and owner is ? and lease_seq is ?"
            params += [fence[0], fence[1]]
        if outcome is None:
            curs = conn.execute("update hueyq_message set state = 'done',"
                                " data = x'', updated_at = ? where " + where,
                                [now] + params)
        elif outcome == DEAD:
            curs = conn.execute("update hueyq_message set state = 'dead',"
                                " reason = ?, updated_at = ? where " + where,
                                [reason, now] + params)
        elif outcome == "release":
            curs = conn.execute("update hueyq_message set state = 'pending',"
                                " owner = null, updated_at = ? where " + where,
                                [now] + params)
        else:
            raise ValueError("unknown outcome %r" % (outcome,))
        if curs.rowcount != 1:
            if fence is not None:
                conn.execute(_BUMP_FENCED, (self.name,))
            return False
        if outcome is None or (outcome == DEAD and reason == "failed"):
            # huey's revoke key of a task that ran, left for us to delete
            # (one skipped as revoked keeps a persistent revoke).
            conn.execute("delete from kv where queue = ? and key = (select"
                         " 'r:' || task_id from hueyq_message where id = ?)",
                         (self.name, handle))
        return True

    def fenced(self) -> int:
        """How many acks of this app a fence refused (see Backend.ack)."""
        rows = self.sql("select value from counter where queue = ? and key ="
                        " 'hueyq:fenced'", (self.name,), results=True)
        return int(rows[0][0]) if rows else 0

    def release(self, handles) -> int:
        """Hand leases back to the queue without counting a redelivery."""
        handles = list(handles)
        if not handles:
            return 0
        with self.db(commit=True) as curs:
            curs.execute("update hueyq_message set state = 'pending',"
                         " owner = null, updated_at = ? where state = 'running'"
                         " and id in (%s)" % ",".join("?" * len(handles)),
                         [time.time()] + handles)
            count = curs.rowcount
        self.notify()
        return count

    def requeue(self, handle, last_error: "str | None" = None,
                count: bool = True, max_redeliveries: "int | None" = None,
                fence: "tuple | None" = None) -> "str | None":
        """Recover a lease whose owner is gone: back to the front of its
        priority band, or ``dead`` as poison past ``max_redeliveries``.

        Returns the new state, or None if the message was no longer leased
        (to the owner and epoch of ``fence``, when given).
        """
        now = time.time()
        where, params = "id = ? and state = 'running'", [handle]
        if fence is not None:
            where += " and owner is ? and lease_seq is ?"
            params += [fence[0], fence[1]]
        with self.db(commit=True) as curs:
            curs.execute("select redeliveries from hueyq_message where "
                         + where, params)
            row = curs.fetchone()
            if row is None:
                return None
            redeliveries = row[0] + (1 if count else 0)
            if max_redeliveries is not None and redeliveries > max_redeliveries:
                curs.execute("update hueyq_message set state = 'dead', reason ="
                             " 'poison', redeliveries = ?, last_error = ?,"
                             " updated_at = ? where id = ?",
                             (redeliveries, last_error, now, handle))
                return DEAD
            curs.execute("update hueyq_message set state = 'pending', owner ="
                         " null, redeliveries = ?, last_error = ?, updated_at"
                         " = ? where id = ?",
                         (redeliveries, last_error, now, handle))
        self.notify()
        return PENDING

    def forget(self, handles) -> int:
        """Delete ``done`` messages whose job the store has recorded."""
        handles = list(handles)
        if not handles:
            return 0
        with self.db(commit=True) as curs:
            curs.execute("delete from hueyq_message where state = 'done' and"
                         " id in (%s)" % ",".join("?" * len(handles)), handles)
            return curs.rowcount

    def sweep_done(self, before: float) -> int:
        """Delete ``done`` messages finished before ``before``."""
        with self.db(commit=True) as curs:
            curs.execute("delete from hueyq_message where queue = ? and state"
                         " = 'done' and updated_at < ?", (self.qname, before))
            return curs.rowcount

    def annotate(self, handle, last_error: str) -> bool:
        """Record why a leased message's worker is about to be killed."""
        with self.db(commit=True) as curs:
            curs.execute("update hueyq_message set last_error = ? where id = ?"
                         " and state = 'running'", (last_error, handle))
            return curs.rowcount == 1

    def relabel(self, handle, task_id: str) -> None:
        """File a leased message under the job id ``task_id`` instead of the
        one it claims (a message that failed verification)."""
        self.sql("update hueyq_message set task_id = ? where id = ?",
                 (task_id, handle), commit=True)

    # ------------------------------------------------------------ scheduling

    def promote_due(self, now: "float | None" = None) -> int:
        """Move scheduled messages whose eta has passed into the queue."""
        now = time.time() if now is None else now
        if not self.sql("select 1 from hueyq_message where queue = ? and state"
                        " = 'scheduled' and eta <= ? limit 1",
                        (self.qname, now), results=True):
            return 0
        # As huey's scheduler re-enqueues them: in eta order, behind what is
        # pending (new rows), and noting when (``promoted``), from which a
        # worker restarts the task's expiry clock as huey's enqueue does.
        moved_at = time.time()
        with self.db(commit=True) as curs:
            curs.execute("insert into hueyq_message (queue, task_id, name,"
                         " state, priority, eta, enqueued_at, updated_at,"
                         " redeliveries, last_error, meta, memory, data)"
                         " select queue, task_id, name, 'pending', priority,"
                         " eta, enqueued_at, ?1, redeliveries, last_error,"
                         " json_set(coalesce(meta, '{}'), '$.promoted', ?1),"
                         " memory, data from hueyq_message where queue = ?2"
                         " and state = 'scheduled' and eta <= ?3"
                         " order by eta, id", (moved_at, self.qname, now))
            moved = curs.rowcount
            curs.execute("delete from hueyq_message where queue = ? and"
                         " state = 'scheduled' and eta <= ?",
                         (self.qname, now))
        if moved:
            self.notify()
        return moved

    def notify(self) -> None:
        """Wake workers waiting on this queue (one byte into its FIFO)."""
        with self._notify_lock:
            if self._notify_fd is None:
                # None: no consumer is listening (it polls on start), or the
                # path is not the FIFO hueyq made.
                self._notify_fd = open_own(self._wake_path, os.O_WRONLY
                                           | os.O_NONBLOCK, stat.S_ISFIFO,
                                           "wake-up FIFO")
                if self._notify_fd is None:
                    return
            try:
                os.write(self._notify_fd, b"\x01")
            except BlockingIOError:
                pass  # The FIFO is full: the workers have wake-ups pending.
            except OSError:
                os.close(self._notify_fd)
                self._notify_fd = None

    def wait(self, timeout: float) -> None:
        """Block until a producer notifies this queue or ``timeout`` passes."""
        fds = self._listen()
        if fds is None:
            time.sleep(timeout)
            return
        rfd = fds[0]
        try:
            ready, _, _ = select.select([rfd], [], [], timeout)
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(rfd, 4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def notify_results(self) -> None:
        """Wake every process awaiting a result: one byte into each
        waiter's FIFO in ``<db>.<app>.results``."""
        _poke_fifos(self._results_dir)

    def wait_results(self, timeout: float) -> "bool | None":
        """Block on this process's FIFO in ``<db>.<app>.results`` until a
        worker stores a result or ``timeout`` passes."""
        fd = self._result_fifo()
        if fd is None:
            return None
        return _wait_fifo(fd, timeout)

    def _result_fifo(self) -> "int | None":
        pid = os.getpid()
        if self._result_fds is not None and self._result_fds[0] == pid:
            return self._result_fds[1]
        if self.access == files.READ:
            return None
        path = os.path.join(self._results_dir, "%d-%x" % (pid, id(self)))
        try:
            os.makedirs(self._results_dir, mode=files.DIR_MODE,
                        exist_ok=True)
            os.mkfifo(path, files.FIFO_MODE)
        except FileExistsError:
            pass
        except OSError:
            return None
        rfd = open_own(path, os.O_RDONLY | os.O_NONBLOCK, stat.S_ISFIFO,
                       "result FIFO")
        if rfd is None:
            return None
        atexit.register(_unlink, path)
        self._result_fds = (pid, rfd)
        return rfd

    def _listen(self) -> "tuple[int, int] | None":
        pid = os.getpid()
        if self._wake_fds is not None and self._wake_pid == pid:
            return self._wake_fds
        try:
            os.mkfifo(self._wake_path, files.FIFO_MODE)
        except FileExistsError:
            pass
        except OSError:
            return None
        rfd = open_own(self._wake_path, os.O_RDONLY | os.O_NONBLOCK,
                       stat.S_ISFIFO, "wake-up FIFO")
        if rfd is None:
            return None
        # Holding a write end keeps the reader from seeing hang-ups.
        wfd = open_own(self._wake_path, os.O_WRONLY | os.O_NONBLOCK,
                       stat.S_ISFIFO, "wake-up FIFO")
        if wfd is None:
            os.close(rfd)
            return None
        self._wake_fds, self._wake_pid = (rfd, wfd), pid
        return self._wake_fds

    def close(self) -> bool:
        if self._wake_fds is not None and self._wake_pid == os.getpid():
            for fd in self._wake_fds:
                os.close(fd)
        self._wake_fds = None
        if self._result_fds is not None and \
                self._result_fds[0] == os.getpid():
            os.close(self._result_fds[1])
        self._result_fds = None
        with self._notify_lock:
            if self._notify_fd is not None:
                os.close(self._notify_fd)
                self._notify_fd = None
        had = getattr(self._local, "conn", None) is not None
        self._drop_connection()
        return had

    # ------------------------------------------------------------ listing

    def list_messages(self, state: str, limit: int = 50, offset: int = 0
                      ) -> "list[MessageInfo]":
        """Messages in ``state``, in the order they will be taken."""
        return self._infos("state = '%s'" % _check_state(state), (),
                           _ORDER[state], limit, offset)

    def count(self, state: str) -> int:
        """Number of messages of this queue in ``state``."""
        return self.sql("select count(*) from hueyq_message where queue = ?"
                        " and state = '%s'" % _check_state(state),
                        (self.qname,), results=True)[0][0]

    def counts(self) -> "dict[str, int]":
        """``{pending, scheduled, running, dead}`` for this queue."""
        return {state: self.count(state) for state in
                (PENDING, SCHEDULED, RUNNING, DEAD)}

    def memory_room(self) -> "int | None":
        """The queue's memory room (:mod:`hueyq.memory`): the supervisor's
        figure less what its running tasks declared; None when the queue
        has no memory budget."""
        budget, running = self.sql(
            "select (select cast(value as integer) from hueyq_flag where"
            " queue = ?1 and name = 'admission'), (select coalesce(sum("
            "memory), 0) from hueyq_message where queue = ?1 and state ="
            " 'running')", (self.qname,), results=True)[0]
        return None if budget is None else memory_room(budget, 0, running)

    def waiting_for_memory(self, room: int, limit: int = 1000) -> int:
        """How many of the next ``limit`` pending jobs declared more memory
        than ``room``."""
        return self.sql("select count(*) from (select memory from"
                        " hueyq_message where queue = ? and state = 'pending'"
                        " order by priority desc, id limit ?) where memory > ?",
                        (self.qname, limit, room), results=True)[0][0]

    def newest(self, limit: int, before: "float | None" = None,
               names: "list[str] | None" = None,
               id_prefix: "str | None" = None, since: "float | None" = None,
               states: "tuple[str, ...]" = (PENDING, SCHEDULED, RUNNING)
               ) -> "list[MessageInfo]":
        """Messages in ``states``, newest enqueued first: enqueued before
        ``before`` and at or after ``since``, of tasks ``names``, with a
        task id starting with ``id_prefix``."""
        where = ["state in (%s)" % ", ".join(
            "'%s'" % _check_state(s) for s in states)]
        params: list = []
        for column, op, value in (("enqueued_at", "<", before),
                                  ("enqueued_at", ">=", since)):
            if value is not None:
                where.append("%s %s ?" % (column, op))
                params.append(value)
        if names is not None:
            where.append("name in (%s)" % ", ".join("?" * len(names)))
            params += names
        if id_prefix:
            where.append("substr(task_id, 1, ?) = ?")
            params += [len(id_prefix), id_prefix]
        return self._infos(" and ".join(where), tuple(params),
                           "enqueued_at desc, id desc", limit)

    # ------------------------------------------------------------ control

    def cancel(self, task_id: str, reason: str = "cancelled"
               ) -> "list[MessageInfo]":
        """Move a pending or scheduled job's messages to ``dead``."""
        return self._move("task_id = ? and state in ('pending', 'scheduled')",
                          (task_id,), DEAD, reason)

    def revive(self, task_id: str) -> "MessageInfo | None":
        """Put a dead job's newest message back into the queue."""
        moved = self._move("id = (select id from hueyq_message where queue = ?"
                           " and task_id = ? and state = 'dead'"
                           " order by id desc limit 1)",
                           (self.qname, task_id), PENDING, None)
        return moved[0] if moved else None

    def _move(self, where: str, params: tuple, state: str,
              reason: "str | None") -> "list[MessageInfo]":
        now = time.time()
        reset = ", redeliveries = 0, last_error = null" if state == PENDING \
            else ""
        with self.db(commit=True) as curs:
            curs.execute("update hueyq_message set state = ?, reason = ?,"
                         " owner = null, updated_at = ?%s where queue = ? and %s"
                         " returning %s" % (reset, where, _INFO_COLUMNS),
                         (state, reason, now, self.qname) + tuple(params))
            rows = curs.fetchall()
        if state == PENDING and rows:
            self.notify()
        return [self._info(row) for row in rows]

    def purge_dead(self, before: float, keep: int) -> int:
        """Delete dead messages older than ``before`` or beyond the newest
        ``keep``."""
        with self.db(commit=True) as curs:
            curs.execute("delete from hueyq_message where queue = ? and state ="
                         " 'dead' and (updated_at < ? or id in (select id from"
                         " hueyq_message where queue = ? and state = 'dead'"
                         " order by updated_at desc limit -1 offset ?))",
                         (self.qname, before, self.qname, keep))
            return curs.rowcount

    def delete_dead(self, task_ids) -> int:
        """Delete the kept (dead) messages of these jobs."""
        ids = list(task_ids)
        deleted = 0
        for first in range(0, len(ids), 500):
            chunk = ids[first:first + 500]
            with self.db(commit=True) as curs:
                curs.execute("delete from hueyq_message where queue = ? and"
                             " state = 'dead' and task_id in (%s)"
                             % ",".join("?" * len(chunk)),
                             [self.qname] + chunk)
                deleted += curs.rowcount
        return deleted

    # ------------------------------------------------------------ flags

    def set_flag(self, name: str, value: dict) -> None:
        """Set a flag of this queue, such as ``paused:user``."""
        self.sql("insert or replace into hueyq_flag (queue, name, value)"
                 " values (?, ?, ?)", (self.qname, name, json.dumps(value)),
                 commit=True)

    def clear_flag(self, name: str) -> bool:
        """Remove a flag; True if it was set."""
        with self.db(commit=True) as curs:
            curs.execute("delete from hueyq_flag where queue = ? and name = ?",
                         (self.qname, name))
            cleared = curs.rowcount > 0
        if cleared and name.startswith(PAUSE_PREFIX):
            self.notify()
        return cleared

    def flags(self) -> "dict[str, dict]":
        """Every flag of this queue."""
        rows = self.sql("select name, value from hueyq_flag where queue = ?",
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
        """Store a small JSON document for the whole app, with a lifetime
        counted on this host's monotonic clock (``expires``, on the wall
        clock, is kept for older readers only)."""
        doc = {"value": value, "boot": boot_id(), "at": time.monotonic(),
               "ttl": ttl}
        expires = time.time() + ttl if ttl else None
        self.sql("insert or replace into hueyq_record (key, value, expires)"
                 " values (?, ?, ?)",
                 ("%s:%s" % (self.app_name, key), json.dumps(doc), expires),
                 commit=True)
        self._puts += 1
        if self._puts % 100 == 1:
            self._purge_records()

    def record_ages(self, prefix: str = ""
                    ) -> "dict[str, tuple[dict, float]]":
        """``{key: (record, age)}`` of the live records under ``prefix``; the
        age in seconds since it was written, on this host's monotonic clock
        (a record of an earlier boot is gone)."""
        start = "%s:%s" % (self.app_name, prefix)
        rows = self.sql("select key, value, expires from hueyq_record where"
                        " key >= ? and key < ?", (start, start + "\uffff"),
                        results=True)
        cut = len(self.app_name) + 1
        out = {}
        for key, raw, expires in rows:
            aged = _aged(read_json(raw, "record %s" % key), expires)
            if aged is None:
                report_bad("record %s" % key)
                continue
            value, age, ttl = aged
            if ttl is None or age <= ttl:
                out[key[cut:]] = (value, age)
        return out

    def delete_record(self, key: str) -> None:
        """Remove a record of this app."""
        self.sql("delete from hueyq_record where key = ?",
                 ("%s:%s" % (self.app_name, key),), commit=True)

    def _purge_records(self) -> None:
        rows = self.sql("select key, value, expires from hueyq_record",
                        results=True)
        stale = [key for key, raw, expires in rows
                 if _is_stale(read_json(raw, "record %s" % key), expires)]
        if stale:
            self.sql("delete from hueyq_record where key in (%s)"
                     % ",".join("?" * len(stale)), stale, commit=True)

    # ------------------------------------------------------------ health

    def health(self, **_: object) -> "list[Finding]":
        """Journal mode, synchronous level, file location, WAL and free disk."""
        findings = []
        mode = self.sql("pragma journal_mode", results=True)[0][0]
        if self.access == files.READ:
            # A reader may see the file as immutable, which reports its own
            # journal mode: the file header says what the writers use.
            mode = files.journal_mode(self.filename) or mode
        sync = self.sql("pragma synchronous", results=True)[0][0]
        findings.append(Finding("ok" if mode == "wal" else "error",
                                "sqlite.journal_mode",
                                "journal_mode=%s%s" % (mode, "" if mode == "wal"
                                                       else " (expected wal)")))
        expected = 2 if self.synchronous == "full" else 1
        findings.append(Finding("ok" if sync >= expected else "error",
                                "sqlite.synchronous",
                                "synchronous=%s%s" % (
                                    _SYNC_NAMES.get(sync, sync),
                                    "" if sync >= expected else " (expected %s)"
                                    % _SYNC_NAMES[expected])))
        findings.append(Finding("ok", "sqlite.file", "database %s (%s)"
                                % (self.filename, _size_of(self.filename))))
        findings.append(self._wal_finding())
        usage = shutil.disk_usage(os.path.dirname(self.filename))
        level = "error" if usage.free < 64 << 20 else (
            "warning" if usage.free < 1 << 30 else "ok")
        findings.append(Finding(level, "disk.free", "%s free on the "
                                "backend's disk" % format_size(usage.free)))
        return findings

    def claim(self, holder: str) -> "str | None":
        """Hold this app's runtime lock on the database file for as long as
        this process lives; returns None, or the current holder's
        description (``holder`` as it wrote it) when another process has it.

        One runtime per app and file: a second one would recover the first
        one's leases as its own and drain the same queues twice over.
        """
        path = "%s.%s.runtime" % (self.filename, self.app_name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise BackendUnavailable("cannot open the runtime lock %s: %s"
                                     % (path, exc.strerror)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = os.pread(fd, 4096, 0).decode(errors="replace").strip()
            os.close(fd)
            return current or "another process"
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        self._claim_fd = fd
        return None

    def identity(self) -> "tuple[int, int] | None":
        """(device, inode) of the database file, None if it is gone: a
        runtime compares it with what it opened to notice a file deleted or
        replaced under it."""
        try:
            st = os.stat(self.filename)
        except FileNotFoundError:
            return None
        return st.st_dev, st.st_ino

    def _wal_finding(self) -> Finding:
        wal = self.filename + "-wal"
        size = os.path.getsize(wal) if os.path.exists(wal) else 0
        text = "WAL %s" % format_size(size)
        if size <= defaults.SQLITE_WAL_WARNING:
            return Finding("ok", "sqlite.wal", text)
        try:
            complete = self._passive_checkpoint()
        except sqlite3.Error as exc:
            return Finding("warning", "sqlite.wal", "%s; no checkpoint: %s"
                           % (text, exc))
        if complete:
            return Finding("ok", "sqlite.wal", text + " (checkpointed; it "
                           "shrinks at the next commit)")
        return Finding("warning", "sqlite.wal", "%s and a checkpoint cannot "
                       "complete: %s" % (text, wal_blockers(self.filename)))

    def _passive_checkpoint(self) -> bool:
        busy, log, done = self.sql("pragma wal_checkpoint(passive)",
                                   results=True)[0]
        return not busy and done >= log

    def checkpoint(self) -> bool:
        """Fold the WAL back into the database file, under load too, never
        waiting on readers: a passive checkpoint, then, if that reached the
        end of the WAL, a truncating one that gives up at once when a reader
        or writer is in the way. True when the WAL was fully folded back."""
        if not self._passive_checkpoint():
            return False
        with self._write_lock:
            conn = self.conn
            conn.execute("pragma busy_timeout=20")
            try:
                busy, _, _ = conn.execute(
                    "pragma wal_checkpoint(truncate)").fetchone()
            finally:
                conn.execute("pragma busy_timeout=%d"
                             % int(self._timeout * 1000))
        return True

    def ping(self) -> None:
        """Raise BackendUnavailable unless the database answers."""
        try:
            self.sql("select 1", results=True)
        except sqlite3.Error as exc:
            raise BackendUnavailable(self.explain(exc)) from None

    def describe(self) -> str:
        """Where this backend lives, for humans."""
        return "SQLite file %s" % self.filename

    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error this backend raised."""
        text = str(exc)
        if isinstance(exc, BackendUnavailable):
            return text
        if "readonly database" in text or isinstance(exc, PermissionError):
            return ("the queue database %s is read-only for this user: "
                    "changing it needs the service's user or group"
                    % self.filename)
        if "disk is full" in text:
            return "the disk of the queue database %s is full" % self.filename
        if "locked" in text:
            return ("the queue database %s stayed locked by another process "
                    "(%s)" % (self.filename, text))
        return "queue database %s: %s" % (self.filename, text)


def _aged(doc, expires) -> "tuple[dict, float, float | None] | None":
    """(record, age, ttl) of a stored record document; None for one that is
    not a record (forged or corrupt)."""
    if not isinstance(doc, dict) or not (expires is None or _is_number(
            expires)):
        return None
    if "at" in doc and "value" in doc:
        if not isinstance(doc["value"], dict) or not _is_number(doc["at"]) \
                or not (doc.get("ttl") is None or _is_number(doc["ttl"])):
            return None
        age = time.monotonic() - doc["at"] if doc.get("boot") == boot_id() \
            else float("inf")
        return doc["value"], age, doc.get("ttl")
    # Written by an earlier version: the document itself, a wall-clock expiry.
    live = expires is None or expires > time.time()
    return doc, 0.0 if live else float("inf"), None if live else 0.0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_stale(doc, expires) -> bool:
    aged = _aged(doc, expires)
    return aged is not None and aged[2] is not None and aged[1] > aged[2]


def wal_blockers(filename: str) -> str:
    """Who holds read transactions on a WAL snapshot of ``filename``: the
    processes with a POSIX read lock on a WAL read mark (bytes 124-127 of
    the ``-shm`` file) according to ``/proc/locks``."""
    try:
        st = os.stat(filename + "-shm")
        with open("/proc/locks") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        return "cannot tell which reader blocks it (%s)" % exc.strerror
    inode = str(st.st_ino)
    pids = set()
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 8 or \
                fields[5].rpartition(":")[2] != inode:
            continue
        try:
            pid, first = int(fields[4]), int(fields[6])
            last = first if fields[7] == "EOF" else int(fields[7])
        except ValueError:
            continue
        if fields[3] == "READ" and first <= 127 and last >= 124 and \
                pid != os.getpid():
            pids.add(pid)
    if not pids:
        return "no reader holds it now; it completes at the next checkpoint"
    return "a read transaction is open in %s" % ", ".join(
        _describe_pid(pid) for pid in sorted(pids))


def _describe_pid(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as fh:
            command = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = "?"
    command = " ".join(command.split())
    if len(command) > 80:
        command = command[:79] + "\u2026"
    return "pid %d (%s)" % (pid, command)


def _check_state(state: str) -> str:
    if state not in _ORDER:
        raise ValueError("unknown state %r" % (state,))
    return state


def _size_of(path: str) -> str:
    try:
        return format_size(os.path.getsize(path))
    except OSError as exc:
        return "unreadable: %s" % errno.errorcode.get(exc.errno, exc.errno)
