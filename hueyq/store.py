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
only updated by a change at least as new as the row (``updated_at``), so a
late buffered write cannot move a job back in time.

On SQLite the store commits with ``synchronous=NORMAL``, which a power cut
may undo; a write that a forgotten message depends on (the record of a
finished job) is made durable first (``write(..., durable=True)``), so a job
is never in neither place.
"""

import contextlib
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import peewee
from huey.contrib import stats as huey_stats

from hueyq.exceptions import StoreUnavailable
from hueyq.profile import redact_url, sqlite_path

logger = logging.getLogger("hueyq.store")

#: Job states, in the order a job usually goes through them.
STATES = ("scheduled", "pending", "running", "retrying", "complete", "failed",
          "cancelled", "expired", "dead")
#: States a job does not leave by itself.
FINISHED = ("complete", "failed", "cancelled", "expired", "dead")
#: Dead-letter reasons of the backend, and the job state each one means.
REASON_STATE = {"failed": "failed", "cancelled": "cancelled",
                "drained": "cancelled", "expired": "expired"}
_JOB_COLUMNS = ("id", "app", "task", "queue", "state", "priority", "attempts",
                "redeliveries", "progress", "message", "enqueued_at",
                "started_at", "finished_at", "updated_at", "duration", "host",
                "pid", "worker", "error", "traceback", "reason", "args",
                "payload")
#: Columns an update adds to instead of replacing.
_DELTA_COLUMNS = ("attempts",)
#: Rows a recorder keeps for a store that does not answer.
_MAX_BUFFER = 100_000


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

    class Meta:
        table_name = "hueyq_job"
        indexes = ((("app", "queue", "state", "enqueued_at"), False),
                   (("app", "state", "enqueued_at"), False),
                   # Covers the last hour's counts, run times and series.
                   (("app", "queue", "finished_at", "state", "duration"),
                    False),
                   (("app", "enqueued_at"), False),
                   (("state", "updated_at"), False))


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
    created_at: "float | None" = None
    started_at: "float | None" = None
    finished_at: "float | None" = None
    updated_at: "float | None" = None
    duration: "float | None" = None
    eta: "float | None" = None
    worker: "str | None" = None
    args: "str | None" = None
    result: Any = None
    has_payload: bool = False
    #: Bytes the task declared with ``memory=`` (admission), if any.
    memory: "int | None" = None
    #: Why a pending job is not starting although workers may be free:
    #: ``"memory: needs 3.0 GiB, 1.2 GiB left of the queue's budget"``.
    waiting: "str | None" = None
    history: "tuple[dict, ...]" = field(default=(), repr=False)

    def as_dict(self) -> dict:
        """The job as JSON-ready data (the result as repr if not JSON)."""
        import json
        out = {k: getattr(self, k) for k in self.__dataclass_fields__
               if k != "history"}
        try:
            json.dumps(out["result"])
        except (TypeError, ValueError):
            out["result"] = repr(out["result"])
        out["history"] = list(self.history)
        return out


def open_database(url: str) -> peewee.Database:
    """A peewee database for a ``sqlite://`` or ``postgresql://`` URL."""
    if url.lower().startswith("sqlite:"):
        path = sqlite_path(url)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return peewee.SqliteDatabase(path, timeout=10, pragmas={
            "journal_mode": "wal", "synchronous": "normal",
            "busy_timeout": 10000})
    return peewee.PostgresqlDatabase(url.replace("postgres://",
                                                 "postgresql://", 1))


class Store:
    """Reads and writes jobs, history and watchdog events of one app."""

    def __init__(self, url: str, app_name: str, create: bool = True) -> None:
        self.url = url
        self.app_name = app_name
        self.db = open_database(url)
        meta = {"database": self.db}
        self.Job = type("Job", (_Job,), {"Meta": type("Meta", (), dict(
            meta, table_name="hueyq_job"))})
        self.Event = type("Event", (huey_stats.HueyEvent,), {
            "Meta": type("Meta", (), dict(meta, table_name="huey_event"))})
        self.WatchdogEvent = type("WatchdogEvent", (_WatchdogEvent,), {
            "Meta": type("Meta", (), dict(meta,
                                          table_name="hueyq_watchdog_event"))})
        self._lock = threading.Lock()
        if create:
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
        except peewee.PeeweeException as exc:
            raise StoreUnavailable("job store %s: %s"
                                   % (redact_url(self.url), exc)) from None

    def close(self) -> None:
        """Close this thread's connection."""
        if not self.db.is_closed():
            self.db.close()

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
               "update set %s where excluded.updated_at >= hueyq_job.updated_at"
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
                    self._insert_events([{
                        "ts": time.time(), "queue": queue,
                        "task_id": row["id"], "task": row.get("task") or "",
                        "signal": "repaired", "duration": None,
                        "error": detail, "args": None}])
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
             queues: "Iterable[str] | None" = None) -> "list[dict]":
        """Stored jobs, newest first (by enqueue time), ``before`` a cursor."""
        Job = self.Job
        query = Job.select(*[getattr(Job, c) for c in _JOB_COLUMNS
                             if c != "payload"]).where(Job.app == self.app_name)
        if queue is not None:
            query = query.where(Job.queue == queue)
        elif queues is not None:
            query = query.where(Job.queue.in_(list(queues)))
        if state is not None:
            query = query.where(Job.state == state)
        if before is not None:
            query = query.where(Job.enqueued_at < before)
        query = query.order_by(Job.enqueued_at.desc(), Job.id.desc())
        return [normalize(r) for r in
                self._read(lambda: list(query.limit(limit).dicts()))]

    def count_states(self, queue: str) -> "dict[str, int]":
        """Jobs of a queue per state, over the whole store."""
        Job = self.Job
        rows = self._read(lambda: list(
            Job.select(Job.state, peewee.fn.COUNT(Job.id))
            .where(Job.app == self.app_name, Job.queue == queue)
            .group_by(Job.state).tuples()))
        return dict(rows)

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
        row = {"ts": ts or time.time(), "queue": self.name, "task_id": task_id,
               "task": task, "signal": signal, "duration": duration,
               "error": detail, "args": None}
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
