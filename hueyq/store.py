"""The job store: jobs, their history, and watchdog events (peewee).

SQLite by default, PostgreSQL for servers. Three tables:

* ``hueyq_job``: one row per job id with its current state, attempts,
  progress, times, worker, error and, for dead-lettered jobs, the original
  message;
* ``huey_event``: huey.contrib.stats's event log, one row per transition
  (huey's signals plus hueyq's own: dead, drained, recovered, ...);
* ``hueyq_watchdog_event``: every action of the memory watchdog.

Consumers write through :class:`JobRecorder`, huey's buffered stats writer
extended with job rows, so nothing is written on a task's hot path. Controls
and the supervisor write synchronously with :meth:`Store.write`. A job row is
only updated by a change at least as late as the row in the job's own order
(``seq``, see :func:`change_seq`; no wall clock takes part), so neither a
late buffered write nor a clock stepped back can move a job back.

On SQLite the store commits with ``synchronous=NORMAL``, which a power cut
may undo; a write that a forgotten message depends on (the record of a
finished job) is made durable first (``write(..., durable=True)``), so a job
is never in neither place.
"""

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import peewee
from huey.contrib import stats as huey_stats

from hueyq import defaults, files
from hueyq import jobs as job_records
from hueyq.exceptions import ConfigurationError, StoreUnavailable
# The job states and the order of a job's changes are hueyq.jobs's; the
# names stay importable from here for the readers of the store.
from hueyq.jobs import (CONTROL, ENDED, FINISHED, REASON_STATE, RECOVERED,
                        STARTED, STATES, change_seq)
from hueyq.urls import redact_url, sqlite_path

logger = logging.getLogger("hueyq.store")

_JOB_COLUMNS = ("id", "app", "task", "queue", "state", "priority", "attempts",
                "redeliveries", "progress", "message", "enqueued_at",
                "started_at", "finished_at", "updated_at", "duration", "host",
                "pid", "worker", "error", "traceback", "reason", "args",
                "payload", "seq")
#: Columns an update adds to instead of replacing.
_DELTA_COLUMNS = ("attempts",)
#: Rows a recorder keeps for a store that does not answer.
_MAX_BUFFER = 100_000
#: Newest jobs an error-text search looks through (text has no index).
ERROR_WINDOW = 10_000

class _Job(peewee.Model):
    id = peewee.CharField(primary_key=True, max_length=64)
    app = peewee.CharField(max_length=64, null=True)
    task = peewee.CharField(max_length=255, null=True)
    queue = peewee.CharField(max_length=64, null=True)
    state = peewee.CharField(max_length=16, null=True)
    priority = peewee.FloatField(null=True)
    attempts = peewee.IntegerField(null=True)
    redeliveries = peewee.IntegerField(null=True)
    progress = peewee.FloatField(null=True)
    message = peewee.TextField(null=True)
    enqueued_at = peewee.DoubleField(null=True)
    started_at = peewee.DoubleField(null=True)
    finished_at = peewee.DoubleField(null=True)
    updated_at = peewee.DoubleField()
    duration = peewee.DoubleField(null=True)
    host = peewee.CharField(max_length=255, null=True)
    pid = peewee.IntegerField(null=True)
    worker = peewee.CharField(max_length=255, null=True)
    error = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    reason = peewee.CharField(max_length=64, null=True)
    args = peewee.TextField(null=True)
    payload = peewee.BlobField(null=True)
    seq = peewee.BigIntegerField(null=True)

    class Meta:
        table_name = "hueyq_job"
        indexes = ((("app", "queue", "state", "enqueued_at"), False),
                   (("app", "state", "enqueued_at"), False),
                   # Covers the last hour's counts, run times and series.
                   (("app", "queue", "finished_at", "state", "duration"),
                    False),
                   (("app", "enqueued_at"), False),
                   (("state", "updated_at"), False),
                   # Searches by task name, newest first.
                   (("app", "task", "enqueued_at"), False))


class _WatchdogEvent(peewee.Model):
    ts = peewee.DoubleField(index=True)
    app = peewee.CharField(max_length=64)
    host = peewee.CharField(max_length=255)
    queue = peewee.CharField(max_length=64, null=True)
    pid = peewee.IntegerField(null=True)
    action = peewee.CharField(max_length=32)
    value = peewee.BigIntegerField(null=True)
    limit = peewee.BigIntegerField(null=True)
    reason = peewee.TextField()
    job_id = peewee.CharField(max_length=64, null=True)

    class Meta:
        table_name = "hueyq_watchdog_event"


@dataclass(frozen=True)
class Job:
    """A job as users see it; ``app.job(id)`` returns one."""
    id: str
    task: str
    queue: str
    state: str
    attempts: int = 0
    redeliveries: int = 0
    priority: float = 0
    progress: "float | None" = None
    message: "str | None" = None
    error: "str | None" = None
    traceback: "str | None" = None
    reason: "str | None" = None
    enqueued_at: "float | None" = None
    started_at: "float | None" = None
    finished_at: "float | None" = None
    updated_at: "float | None" = None
    duration: "float | None" = None
    eta: "float | None" = None
    worker: "str | None" = None
    args: "str | None" = None
    #: The result of a complete job as read paths show it: plain data only
    #: (hueyq.preview), never a fully unpickled object.
    result: Any = None
    #: Why the result cannot be shown ("result unreadable: bad signature").
    result_error: "str | None" = None
    has_payload: bool = False
    #: Bytes the task declared with ``memory=`` (admission), if any.
    memory: "int | None" = None
    #: Why a pending job is not starting although workers may be free:
    #: ``"memory: needs 3.0 GiB, 1.2 GiB left of the queue's budget"``.
    waiting: "str | None" = None
    history: "tuple[dict, ...]" = field(default=(), repr=False)

    @property
    def created_at(self) -> "float | None":
        """Deprecated name of :attr:`enqueued_at`."""
        import warnings
        warnings.warn("Job.created_at is deprecated; use Job.enqueued_at",
                      DeprecationWarning, stacklevel=2)
        return self.enqueued_at

    def as_dict(self) -> dict:
        """The job as strict JSON-ready data (hueyq.preview.plain: bounded,
        non-finite numbers as "NaN", "Infinity", "-Infinity")."""
        from hueyq.preview import plain
        out = {k: getattr(self, k) for k in self.__dataclass_fields__
               if k != "history"}
        out["history"] = list(self.history)
        return plain(out)


class _ExistingSqlite(peewee.SqliteDatabase):
    """A store file that must already exist (``files.EXISTING``/``READ``);
    while it does not, an empty in-memory store stands in, so a look at a
    runtime that never recorded a job shows none instead of creating a file.
    """

    def __init__(self, path: str, access: str) -> None:
        self.path, self.access = path, access
        #: DDL of the store's tables, for the stand-in (set by the Store).
        self.schema: "list[str]" = []
        self._standins: "set[int]" = set()
        super().__init__(path, timeout=10)

    def _connect(self):
        problem = files.missing_reason(self.path, "job store")
        if problem is not None and not problem.startswith("no "):
            raise peewee.OperationalError(problem)
        if problem is not None:
            conn = sqlite3.connect(":memory:", check_same_thread=False,
                                   isolation_level=None)
            for sql in self.schema:
                conn.execute(sql)
            self._standins.add(id(conn))
            return conn
        conn = files.connect(self.path, self.access, 10.0)
        conn.execute("pragma busy_timeout=10000")
        return conn

    def _close(self, conn) -> None:
        self._standins.discard(id(conn))
        super()._close(conn)

    def refresh(self) -> None:
        """Leave the stand-in once the file exists."""
        if not self.is_closed() and id(self.connection()) in self._standins \
                and os.path.exists(self.path):
            self.close()


def open_database(url: str, access: str = files.CREATE) -> peewee.Database:
    """A peewee database for a ``sqlite://`` or ``postgresql://`` URL."""
    if url.lower().startswith("sqlite:"):
        path = sqlite_path(url)
        if access != files.CREATE:
            return _ExistingSqlite(path, access)
        files.create_private(path)
        return peewee.SqliteDatabase(path, timeout=10, pragmas={
            "journal_mode": "wal", "synchronous": "normal",
            "busy_timeout": 10000,
            "journal_size_limit": defaults.SQLITE_JOURNAL_SIZE_LIMIT})
    check_driver(url)
    # peewee drives psycopg 3 when asked: one driver for queue and store.
    return peewee.PostgresqlDatabase(url.replace("postgres://",
                                                 "postgresql://", 1),
                                     prefer_psycopg3=True)


def check_driver(url: str, source: str = "") -> None:
    """ConfigurationError unless the driver of the store ``url`` is
    installed (``source`` names the profile in the message)."""
    if url.lower().startswith("sqlite:"):
        return
    try:
        import psycopg  # noqa: F401 - peewee's PostgreSQL driver
    except ImportError:
        raise ConfigurationError(
            "%sstore.url: the PostgreSQL job store needs its driver: pip "
            "install 'hueyq[postgres]'" % ("%s: " % source if source else "")
        ) from None


class Store:
    """Reads and writes jobs, history and watchdog events of one app."""

    def __init__(self, url: str, app_name: str, create: bool = True,
                 access: str = files.CREATE) -> None:
        self.url = url
        self.app_name = app_name
        self.access = access
        self.db = open_database(url, access)
        meta = {"database": self.db}
        self.Job = type("Job", (_Job,), {"Meta": type("Meta", (), dict(
            meta, table_name="hueyq_job"))})
        self.Event = type("Event", (huey_stats.HueyEvent,), {
            "Meta": type("Meta", (), dict(meta, table_name="huey_event"))})
        self.WatchdogEvent = type("WatchdogEvent", (_WatchdogEvent,), {
            "Meta": type("Meta", (), dict(meta,
                                          table_name="hueyq_watchdog_event"))})
        self._lock = threading.Lock()
        if isinstance(self.db, _ExistingSqlite):
            self.db.schema = self._schema_sql()
        if create and access == files.CREATE:
            self.create_tables()

    def __repr__(self) -> str:
        return "<Store %s>" % redact_url(self.url)

    def create_tables(self) -> None:
        """Create tables and indexes if missing."""
        try:
            with self.db.connection_context():
                self.db.create_tables([self.Job, self.Event,
                                       self.WatchdogEvent], safe=True)
                self.db.execute_sql("create index if not exists "
                                    "hueyq_event_task_id on huey_event "
                                    "(task_id, ts)")
                self._add_seq_column()
        except peewee.PeeweeException as exc:
            raise StoreUnavailable("job store %s: %s"
                                   % (redact_url(self.url), exc)) from None

    def _schema_sql(self) -> "list[str]":
        """The DDL of this store's tables and indexes, read off a scratch
        in-memory database."""
        scratch = peewee.SqliteDatabase(":memory:")
        models = [self.Job, self.Event, self.WatchdogEvent]
        with scratch.bind_ctx(models):
            scratch.create_tables(models)
            rows = scratch.execute_sql("select sql from sqlite_master where "
                                       "sql is not null").fetchall()
        scratch.close()
        return [sql for (sql,) in rows]

    def _add_seq_column(self) -> None:
        # Stores made by earlier versions lack the seq column.
        if "seq" in {c.name for c in self.db.get_columns("hueyq_job")}:
            return
        if isinstance(self.db, peewee.PostgresqlDatabase):
            self.db.execute_sql("alter table hueyq_job add column if not "
                                "exists seq bigint")
            return
        try:
            self.db.execute_sql("alter table hueyq_job add column seq bigint")
        except peewee.OperationalError as exc:
            if "duplicate column" not in str(exc):
                raise

    def close(self) -> None:
        """Close this thread's connection."""
        if not self.db.is_closed():
            self.db.close()

    def checkpoint(self) -> bool:
        """On SQLite, fold the WAL back into the database without waiting
        for readers (see SqliteBackend.checkpoint); True when it was fully
        folded back."""
        if not isinstance(self.db, peewee.SqliteDatabase):
            return False
        try:
            with self._lock:
                busy, log, done = self.db.execute_sql(
                    "pragma wal_checkpoint(passive)").fetchone()
                if busy or done < log:
                    return False
                self.db.execute_sql("pragma busy_timeout=20")
                try:
                    self.db.execute_sql("pragma wal_checkpoint(truncate)")
                finally:
                    self.db.execute_sql("pragma busy_timeout=10000")
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("cannot checkpoint the job store %s: %s"
                                   % (redact_url(self.url), exc)) from None
        return True

    def ping(self) -> None:
        """Raise StoreUnavailable unless the store answers."""
        try:
            self.db.execute_sql("select 1")
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("job store %s: %s"
                                   % (redact_url(self.url), exc)) from None

    def _reset(self) -> None:
        try:
            self.db.close()
        except peewee.PeeweeException:
            logger.debug("closing a broken store connection failed",
                         exc_info=True)

    # ------------------------------------------------------------ writes

    def write(self, jobs: Iterable[dict] = (), events: Iterable[dict] = (),
              durable: bool = False) -> None:
        """Upsert job changes and append events in one transaction.

        A job change is a dict with ``id`` and ``updated_at`` and any job
        columns; None leaves a column as it is, ``attempts`` adds.
        ``durable``: the commit is on disk when this returns, and so is
        every commit before it (SQLite: this one transaction runs with
        ``synchronous=FULL``; PostgreSQL commits durably anyway).
        """
        jobs = merge_changes(jobs)
        events = list(events)
        if not jobs and not events:
            return
        try:
            with self._synchronous(durable):
                try:
                    with self._lock, self.db.atomic():
                        if jobs:
                            self._upsert(jobs)
                        if events:
                            self._insert_events(events)
                except (peewee.IntegrityError, peewee.DataError) as exc:
                    # One bad row must not block every later write.
                    logger.error("job store rejected a batch (%s); writing "
                                 "it row by row", exc)
                    self._write_each(jobs, events)
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("cannot write to the job store %s: %s"
                                   % (redact_url(self.url), exc)) from None

    @contextlib.contextmanager
    def _synchronous(self, durable: bool):
        # In WAL mode a FULL commit syncs the log, and with it every NORMAL
        # commit before it; the connection goes back to NORMAL after.
        if not durable or not isinstance(self.db, peewee.SqliteDatabase):
            yield
            return
        self.db.execute_sql("pragma synchronous=full")
        try:
            yield
        finally:
            self.db.execute_sql("pragma synchronous=normal")

    def _insert_events(self, events: list) -> None:
        # Raw executemany: peewee's query builder costs more than the insert
        # at thousands of events a second, and this runs beside the workers.
        marker = "%s" if isinstance(self.db, peewee.PostgresqlDatabase) else "?"
        sql = ("insert into huey_event (ts, queue, task_id, task, signal, "
               "duration, error, args) values (%s)" % ", ".join([marker] * 8))
        cursor = self.db.cursor()
        try:
            cursor.executemany(sql, [(e["ts"], e["queue"], e["task_id"],
                                      e["task"], e["signal"], e["duration"],
                                      e["error"], e["args"]) for e in events])
        finally:
            cursor.close()

    def _write_each(self, jobs: list, events: list) -> None:
        for job in jobs:
            try:
                with self._lock, self.db.atomic():
                    self._upsert([job])
            except (peewee.IntegrityError, peewee.DataError) as exc:
                logger.error("dropped a change to job %s: %s", job.get("id"),
                             exc)
        for event in events:
            try:
                with self._lock, self.db.atomic():
                    self.Event.insert(**event).execute()
            except (peewee.IntegrityError, peewee.DataError) as exc:
                logger.error("dropped an event of job %s: %s",
                             event.get("task_id"), exc)

    def _upsert(self, jobs: list) -> None:
        columns = _JOB_COLUMNS
        marker = "%s" if isinstance(self.db, peewee.PostgresqlDatabase) else "?"
        assignments = []
        for col in columns[1:]:
            if col in _DELTA_COLUMNS:
                assignments.append('"{0}" = coalesce(hueyq_job."{0}", 0) + '
                                   'coalesce(excluded."{0}", 0)'.format(col))
            else:
                assignments.append('"{0}" = coalesce(excluded."{0}", '
                                   'hueyq_job."{0}")'.format(col))
        sql = ("insert into hueyq_job (%s) values (%s) on conflict (id) do "
               "update set %s where case when excluded.seq is not null and "
               "hueyq_job.seq is not null then excluded.seq >= hueyq_job.seq "
               "else excluded.updated_at >= hueyq_job.updated_at end"
               % (", ".join('"%s"' % c for c in columns),
                  ", ".join([marker] * len(columns)), ", ".join(assignments)))
        rows = [_row(dict(job, app=self.app_name)) for job in jobs]
        cursor = self.db.cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()

    def unsettled(self, limit: int = 10_000) -> "list[dict]":
        """Rows of jobs recorded as not finished (pending, scheduled,
        running, retrying), oldest change first: what :meth:`repair` may
        have to correct after a crash."""
        Job = self.Job
        return self._read(lambda: list(
            Job.select(Job.id, Job.task, Job.queue, Job.state, Job.updated_at,
                       Job.finished_at)
            .where(Job.app == self.app_name,
                   Job.state.in_(("pending", "scheduled", "running",
                                  "retrying")))
            .order_by(Job.updated_at).limit(limit).dicts()))

    def repair(self, row: dict, state: str, detail: str,
               finished_at: "float | None" = None,
               reason: "str | None" = None) -> bool:
        """Set a job's state to what the backend says, if its row is still
        as it was read (``row``: state and ``updated_at``), with a
        ``repaired`` event. The row keeps its ``updated_at``, so any real
        change written later still applies. True if it was changed."""
        Job = self.Job
        changes = {Job.state: state}
        if state in FINISHED:
            changes[Job.finished_at] = row.get("finished_at") or finished_at \
                or row["updated_at"]
        if state == "complete":
            changes[Job.progress] = 100.0
        if reason is not None:
            changes[Job.reason] = reason
        queue = "%s.%s" % (self.app_name, row["queue"])
        try:
            with self._lock, self.db.atomic():
                done = Job.update(changes).where(
                    Job.id == row["id"], Job.app == self.app_name,
                    Job.state == row["state"],
                    Job.updated_at == row["updated_at"]).execute()
                if done:
                    self._insert_events([job_records.event(
                        queue, row["id"], row.get("task") or "", "repaired",
                        detail, at=time.time())])
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("cannot write to the job store %s: %s"
                                   % (redact_url(self.url), exc)) from None
        return bool(done)

    def watchdog_event(self, **event: Any) -> None:
        """Record one watchdog action (pause, resume, recycle, kill...)."""
        event.setdefault("ts", time.time())
        event["app"] = self.app_name
        try:
            with self._lock:
                self.WatchdogEvent.insert(**event).execute()
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("cannot write to the job store: %s"
                                   % exc) from None

    # ------------------------------------------------------------ reads

    def get(self, job_id: str) -> "dict | None":
        """The stored row of a job as a dict, or None."""
        row = self._read(lambda: self.Job.select().where(
            self.Job.id == job_id, self.Job.app == self.app_name)
            .dicts().first())
        return normalize(row)

    def history(self, job_id: str, limit: int = 200) -> "list[dict]":
        """Transitions of a job, oldest first."""
        Event = self.Event
        rows = self._read(lambda: list(
            Event.select(Event.ts, Event.signal, Event.error, Event.duration,
                         Event.queue)
            .where(Event.task_id == job_id,
                   Event.queue.startswith(self.app_name + "."))
            .order_by(Event.ts, Event.id).limit(limit).dicts()))
        return [{"ts": r["ts"], "event": r["signal"], "detail": r["error"],
                 "duration": r["duration"],
                 "queue": r["queue"].rpartition(".")[2]} for r in rows]

    def jobs(self, queue: "str | None" = None, state: "str | None" = None,
             limit: int = 50, before: "float | None" = None,
             queues: "Iterable[str] | None" = None, *,
             states: "Iterable[str] | None" = None,
             tasks: "Iterable[str] | None" = None,
             id_prefix: "str | None" = None, error: "str | None" = None,
             since: "float | None" = None, until: "float | None" = None,
             before_id: "str | None" = None) -> "list[dict]":
        """Stored jobs, newest first (by enqueue time, then id); the cursor
        is the enqueue time and id of the previous page's last job
        (``before``, ``before_id``: jobs enqueued at that same time with a
        smaller id come next), or ``before`` alone (jobs enqueued before).

        Every filter narrows: ``queue`` (or any of ``queues``), ``state`` (or
        any of ``states``), ``tasks`` (exact full names), ``id_prefix``,
        ``since <= enqueued_at < until``. ``error`` is a case-insensitive
        substring of the error or reason, searched among the newest
        :data:`ERROR_WINDOW` jobs that match the other filters (text has no
        index)."""
        if tasks is not None and len(list(tasks)) > 1 and not error:
            # One indexed read per name (each walks its own index range in
            # order), merged: an IN list would sort every match.
            found = []
            for name in tasks:
                found += self.jobs(queue, state, limit, before, queues,
                                   states=states, tasks=[name],
                                   id_prefix=id_prefix, since=since,
                                   until=until, before_id=before_id)
            found.sort(key=lambda r: (r["enqueued_at"] or 0, r["id"]),
                       reverse=True)
            return found[:limit]
        Job = self.Job
        where = self._filters(queue, state, before, queues, states, tasks,
                              id_prefix, since, until, before_id)
        order = (Job.enqueued_at.desc(), Job.id.desc())
        columns = [getattr(Job, c) for c in _JOB_COLUMNS if c != "payload"]
        if error:
            ids = self._matching_error(where, error, limit)
            if not ids:
                return []
            # Compared through an expression, the app leaves the primary
            # key as the index read.
            where = [Job.app.concat("") == self.app_name, Job.id.in_(ids)]
        query = Job.select(*columns).where(*where).order_by(*order)
        return [normalize(r) for r in
                self._read(lambda: list(query.limit(limit).dicts()))]

    def count(self, queue: "str | None" = None, state: "str | None" = None,
              *, states: "Iterable[str] | None" = None,
              tasks: "Iterable[str] | None" = None,
              id_prefix: "str | None" = None, error: "str | None" = None,
              since: "float | None" = None, until: "float | None" = None
              ) -> int:
        """How many stored jobs :meth:`jobs` would list with no limit."""
        if tasks is not None and len(list(tasks)) > 1 and not error:
            return sum(self.count(queue, state, states=states, tasks=[name],
                                  id_prefix=id_prefix, since=since,
                                  until=until) for name in tasks)
        Job = self.Job
        where = self._filters(queue, state, None, None, states, tasks,
                              id_prefix, since, until)
        if error:
            return len(self._matching_error(where, error, ERROR_WINDOW))
        return self._read(lambda: Job.select(peewee.fn.COUNT(Job.id))
                          .where(*where).scalar()) or 0

    def _filters(self, queue, state, before, queues, states, tasks,
                 id_prefix, since, until, before_id=None) -> list:
        Job = self.Job
        where = [Job.app == self.app_name]
        if queue is not None:
            where.append(Job.queue == queue)
        elif queues is not None:
            where.append(Job.queue.in_(list(queues)))
        if state is not None:
            where.append(Job.state == state)
        elif states is not None:
            where.append(Job.state.in_(list(states)))
        if tasks is not None:
            tasks = list(tasks)
            where.append(Job.task == tasks[0] if len(tasks) == 1
                         else Job.task.in_(tasks))
        if id_prefix:
            # A range on the primary key (indexed on both databases, where
            # LIKE is not); the app is compared through an expression no
            # index serves, so that the range is the index read.
            where[0] = Job.app.concat("") == self.app_name
            where += [Job.id >= id_prefix, Job.id < _successor(id_prefix)]
        if since is not None:
            where.append(Job.enqueued_at >= since)
        if until is not None:
            where.append(Job.enqueued_at < until)
        if before is not None and before_id is not None:
            # (enqueued_at, id) < (before, before_id); the first term is the
            # index range.
            where += [Job.enqueued_at <= before,
                      (Job.enqueued_at < before) | (Job.id < before_id)]
        elif before is not None:
            where.append(Job.enqueued_at < before)
        return where

    def _matching_error(self, where: list, error: str, limit: int
                        ) -> "list[str]":
        Job = self.Job
        window = (Job.select(Job.id, Job.enqueued_at, Job.error, Job.reason)
                  .where(*where)
                  .order_by(Job.enqueued_at.desc(), Job.id.desc())
                  .limit(ERROR_WINDOW).alias("w"))
        text = peewee.fn.COALESCE(window.c.error, "").concat(" ").concat(
            peewee.fn.COALESCE(window.c.reason, ""))
        query = (peewee.Select([window], [window.c.id])
                 .where(text.contains(error))
                 .order_by(window.c.enqueued_at.desc(), window.c.id.desc())
                 .limit(limit).bind(self.db))
        return [r[0] for r in self._read(lambda: list(query.tuples()))]

    def get_many(self, job_ids: "Iterable[str]") -> "dict[str, dict]":
        """Stored rows of these jobs, by id (missing ones left out)."""
        Job = self.Job
        ids = list(job_ids)
        if not ids:
            return {}
        columns = [getattr(Job, c) for c in _JOB_COLUMNS if c != "payload"]
        rows = self._read(lambda: list(Job.select(*columns).where(
            Job.app == self.app_name, Job.id.in_(ids)).dicts()))
        return {r["id"]: normalize(r) for r in rows}

    def task_names(self) -> "list[str]":
        """Every task name in the store, sorted: one index seek per name
        (a loose scan of the ``(app, task, enqueued_at)`` index)."""
        rows = self._raw(
            "with recursive t(name) as (select (select task from hueyq_job "
            "where app = %s and task is not null order by task limit 1) "
            "union all select (select task from hueyq_job where app = %s and"
            " task > t.name order by task limit 1) from t where t.name is "
            "not null) select name from t where name is not null",
            (self.app_name, self.app_name))
        return [name for (name,) in rows]

    def window(self, since: float, queues: "Iterable[str]") -> dict:
        """Per queue: finished jobs per state since ``since``, and mean and
        p95 run time of its newest 2,000 completions. One query per queue,
        each read off the (app, queue, finished_at, state, duration) index."""
        out = {}
        for queue in queues:
            figures = {"complete": 0, "failed": 0, "cancelled": 0,
                       "expired": 0, "dead": 0, "mean_runtime": None,
                       "p95_runtime": None}
            rows = self._raw("select state, count(*) from hueyq_job where "
                             "app = %s and queue = %s and finished_at > %s "
                             "group by state", (self.app_name, queue, since))
            for state, count in rows:
                if state in figures:
                    figures[state] = count
            durations = [d for (d,) in self._raw(
                "select duration from hueyq_job where app = %s and queue = %s"
                " and finished_at > %s and state = 'complete' and duration is"
                " not null order by finished_at desc limit 2000",
                (self.app_name, queue, since))]
            if durations:
                durations.sort()
                figures["mean_runtime"] = sum(durations) / len(durations)
                index = min(len(durations) - 1,
                            math.ceil(0.95 * len(durations)) - 1)
                figures["p95_runtime"] = durations[index]
            out[queue] = figures
        return out

    def throughput(self, queue: str, minutes: int = 60) -> "list[int]":
        """Completed jobs per minute over the last ``minutes``, oldest first."""
        start = time.time() - minutes * 60
        # Whole seconds, then integer division: the same buckets on SQLite
        # and PostgreSQL (whose cast rounds where SQLite's truncates).
        rows = self._raw("select cast(finished_at - %s as integer) / 60, "
                         "count(*) from hueyq_job where app = %s and queue = %s"
                         " and finished_at > %s and state = 'complete' group "
                         "by 1", (start, self.app_name, queue, start))
        series = [0] * minutes
        for index, count in rows:
            if index is not None and 0 <= int(index) <= minutes:
                series[min(int(index), minutes - 1)] += count
        return series

    def series(self, queue: str, start: float, bucket: int, buckets: int
               ) -> dict:
        """Per bucket of ``bucket`` seconds from ``start``, oldest first:
        jobs that ended ``complete`` and ``failed``, and the mean and longest
        run time of the completions. One grouped read of the (app, queue,
        finished_at, state, duration) index."""
        out = {"complete": [0] * buckets, "failed": [0] * buckets,
               "mean_runtime": [None] * buckets,
               "max_runtime": [None] * buckets}
        rows = self._raw(
            "select cast(finished_at - %s as integer) / %s, state, count(*), "
            "avg(duration), max(duration) from hueyq_job where app = %s and "
            "queue = %s and finished_at > %s and finished_at <= %s and state "
            "in ('complete', 'failed') group by 1, 2",
            (start, int(bucket), self.app_name, queue, start,
             start + bucket * buckets))
        for index, state, count, mean, longest in rows:
            if index is None:
                continue
            i = min(max(int(index), 0), buckets - 1)
            out[state][i] += count
            if state == "complete" and mean is not None:
                out["mean_runtime"][i] = float(mean)
                out["max_runtime"][i] = float(longest)
        return out

    def _raw(self, sql: str, params: tuple) -> list:
        """Rows of a read written for both databases (``%s`` markers)."""
        if not isinstance(self.db, peewee.PostgresqlDatabase):
            sql = sql.replace("%s", "?")
        return self._read(lambda: self.db.execute_sql(sql, params).fetchall())

    def watchdog_events(self, limit: int = 50, queue: "str | None" = None
                        ) -> "list[dict]":
        """Most recent watchdog actions, newest first."""
        Event = self.WatchdogEvent
        query = Event.select().where(Event.app == self.app_name)
        if queue is not None:
            query = query.where(Event.queue == queue)
        return self._read(lambda: list(
            query.order_by(Event.ts.desc(), Event.id.desc())
            .limit(limit).dicts()))

    def payload(self, job_id: str) -> "bytes | None":
        """The original message kept for a dead-lettered job."""
        Job = self.Job
        row = self._read(lambda: Job.select(Job.payload)
                         .where(Job.id == job_id, Job.app == self.app_name)
                         .tuples().first())
        return bytes(row[0]) if row and row[0] is not None else None

    def _read(self, query):
        try:
            if isinstance(self.db, _ExistingSqlite):
                self.db.refresh()
            return query()
        except peewee.PeeweeException as exc:
            self._reset()
            raise StoreUnavailable("cannot read the job store %s: %s"
                                   % (redact_url(self.url), exc)) from None

    # ------------------------------------------------------------ retention

    def expired_jobs(self, max_age: float, max_count: int,
                     now: "float | None" = None, limit: int = 10_000
                     ) -> "list[tuple[str, str]]":
        """(id, queue) of finished jobs past retention: older than
        ``max_age``, or beyond the newest ``max_count`` of their state."""
        now = time.time() if now is None else now
        Job = self.Job
        mine = Job.app == self.app_name
        found = self._read(lambda: list(
            Job.select(Job.id, Job.queue)
            .where(mine, Job.state.in_(FINISHED),
                   Job.updated_at < now - max_age).limit(limit).tuples()))
        for state in FINISHED:
            edge = self._read(lambda: Job.select(Job.enqueued_at)
                              .where(mine, Job.state == state)
                              .order_by(Job.enqueued_at.desc())
                              .offset(max_count).limit(1).scalar())
            if edge is not None:
                found += self._read(lambda: list(
                    Job.select(Job.id, Job.queue)
                    .where(mine, Job.state == state, Job.enqueued_at <= edge)
                    .limit(limit).tuples()))
        return list(dict.fromkeys(found))

    def delete_jobs(self, job_ids: "Iterable[str]") -> int:
        """Delete jobs and their history."""
        deleted = 0
        Job, Event = self.Job, self.Event
        for chunk in peewee.chunked(list(job_ids), 500):
            with self._lock, self.db.atomic():
                deleted += Job.delete().where(Job.app == self.app_name,
                                              Job.id.in_(chunk)).execute()
                Event.delete().where(
                    Event.queue.startswith(self.app_name + "."),
                    Event.task_id.in_(chunk)).execute()
        return deleted

    def enforce_retention(self, max_age: float, max_count: int,
                          now: "float | None" = None) -> int:
        """Delete finished jobs past retention (see :meth:`expired_jobs`),
        and events and watchdog actions older than ``max_age``. Returns the
        number of jobs deleted."""
        now = time.time() if now is None else now
        deleted = self.delete_jobs(j for j, _ in
                                   self.expired_jobs(max_age, max_count, now))
        Event, WEvent = self.Event, self.WatchdogEvent
        with self._lock, self.db.atomic():
            Event.delete().where(Event.queue.startswith(self.app_name + "."),
                                 Event.ts < now - max_age).execute()
            WEvent.delete().where(WEvent.app == self.app_name,
                                  WEvent.ts < now - max_age).execute()
        return deleted


def merge_changes(changes: Iterable[dict]) -> "list[dict]":
    """Fold several changes to one job into one, keeping their order."""
    merged: "dict[str, dict]" = {}
    for change in changes:
        current = merged.get(change["id"])
        if current is None:
            merged[change["id"]] = dict(change)
            continue
        for key, value in change.items():
            if key in _DELTA_COLUMNS:
                current[key] = current.get(key, 0) + (value or 0)
            elif value is not None:
                current[key] = value
    return list(merged.values())


def _successor(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _row(job: dict) -> tuple:
    # None means "leave as it is"; readers default what was never set.
    return tuple(job.get(col) for col in _JOB_COLUMNS)


def normalize(row: "dict | None") -> "dict | None":
    """A stored job row with defaults for columns never written."""
    if row is None:
        return None
    row.pop("app", None)
    row["state"] = row.get("state") or "pending"
    row["task"] = row.get("task") or ""
    row["queue"] = row.get("queue") or ""
    for col in ("priority", "attempts", "redeliveries"):
        row[col] = row.get(col) or 0
    return row


class JobRecorder(huey_stats.HueyStats):
    """huey's buffered stats writer, extended with job rows.

    It records huey's signals as events exactly as huey.contrib.stats does,
    and takes job changes and extra events from the worker; one writer thread
    per process flushes both every ``flush_interval``.
    """

    def __init__(self, huey, store: Store, flush_interval: float = 0.5,
                 capture_args: bool = False) -> None:
        self.store = store
        self._jobs: "list[dict]" = []
        self._done: "list" = []
        self._forgettable: "list" = []
        super().__init__(huey, store.db, retention_hours=24 * 365,
                         max_events=10 ** 9, capture_args=capture_args,
                         create_tables=False, flush_interval=flush_interval,
                         flush_max=500)

    def job(self, change: dict) -> None:
        """Buffer a change to a job row."""
        with self._lock:
            self._jobs.append(change)

    def done(self, handle) -> None:
        """Note a finished message to forget once its record is stored."""
        with self._lock:
            self._done.append(handle)

    def event(self, task_id: str, task: str, signal: str,
              detail: "str | None" = None, duration: "float | None" = None,
              ts: "float | None" = None) -> None:
        """Buffer one event of hueyq's own (dead, recovered, killed...)."""
        row = job_records.event(self.name, task_id, task, signal, detail,
                                at=ts or time.time(), duration=duration)
        with self._lock:
            self._buf.append(row)

    def _reset_after_fork(self) -> None:
        super()._reset_after_fork()
        self._jobs, self._done, self._forgettable = [], [], []

    def _flush(self) -> None:
        # A finished message is forgotten one flush after its record was
        # written, by when its ack (riding the worker's next lease) is in.
        # A flush that notes finished messages or forgets some commits
        # durably first: the store's record of a job must be on disk before
        # the queue forgets its message, or a power cut can leave the job
        # in neither place (the queue file's next durable commit keeps the
        # forgetting). A record noted just after its done() is in this
        # batch or the next, which is then durable too.
        with self._flush_lock:
            with self._lock:
                events, self._buf = self._buf, []
                jobs, self._jobs = self._jobs, []
                done, self._done = self._done, []
            forgettable = self._forgettable
            if not events and not jobs and not forgettable and not done:
                return
            try:
                self.store.write(jobs, events,
                                 durable=bool(done or forgettable))
            except Exception:
                logger.exception("job store write failed; %d job changes and "
                                 "%d events kept for the next flush",
                                 len(jobs), len(events))
                with self._lock:
                    self._buf[:0] = events[-_MAX_BUFFER:]
                    self._jobs[:0] = jobs[-_MAX_BUFFER:]
                    self._done[:0] = done
                return
            self._forgettable = done
            if forgettable:
                try:
                    self.huey.storage.forget(forgettable)
                except Exception:
                    logger.exception("could not drop %d finished messages; "
                                     "the sweep will", len(forgettable))

    def _maybe_prune(self) -> None:
        # Retention is the job of the periodic retention task on `low`.
        return
