"""Celery's task API on a hueyq App, so Celery code moves by its imports.

This is a thin layer over hueyq's own API, not a second runtime: ``Celery``
is a :class:`hueyq.App` (its queues, backend and limits come from the
profile), each Celery task is an ``app.task`` whose body is the user's
function, ``AsyncResult`` reads ``app.job()``, ``update_state`` is
``hueyq.progress()`` (its meta kept beside the job, returned by ``.info``),
``revoke`` is ``app.cancel()``, ``self.retry`` is huey's ``RetryTask`` and
``beat_schedule`` entries are periodic tasks of the same runtime. Run it
with ``hueyq run --app MODULE:app``. docs/from-celery.md has the mapping.

Celery's states are mapped from hueyq's: pending and scheduled are
``PENDING``, running is ``STARTED`` (or the state a task set with
``update_state``), retrying is ``RETRY``, complete is ``SUCCESS``, failed
and dead are ``FAILURE``, cancelled and expired are ``REVOKED``.

What this layer deliberately does not do raises :class:`Unsupported` (a
``NotImplementedError``; the one such class, on purpose: it marks a
refusal, not unfinished work) with a message naming the hueyq way: canvas
(``chain``, ``chord``, linking: huey's pipelines ``.then()``), result
backends and brokers (the profile's backend), remote control and events
beyond revoke and purge (``hueyq status``, the web UI, ``app.workers()``),
schedules finer than a minute, and settings whose Celery meaning hueyq
cannot keep (``acks_late=False``, a non-UTC ``timezone``).
"""

import datetime
import fnmatch
import importlib
import logging
import random
import re
import threading
import time
from typing import Any, Callable

from huey import crontab as huey_crontab
from huey.exceptions import (CancelExecution, RateLimitExceeded, RetryTask,
                             TaskLockedException, TaskTimeout)
from huey.utils import Error, normalize_time

from hueyq import context, jobs
from hueyq.app import App, QueueHuey
from hueyq.exceptions import (HueyqError, InvalidState, JobNotFound,
                              SoftTimeLimitExceeded, Unsupported)

__all__ = ["Celery", "shared_task", "current_app", "AsyncResult",
           "GroupResult", "Signature", "signature", "group", "chain", "chord",
           "crontab", "states", "Retry", "MaxRetriesExceededError",
           "TaskRevokedError", "TimeLimitExceeded", "SoftTimeLimitExceeded",
           "WorkerLostError", "TimeoutError", "Unsupported"]

logger = logging.getLogger("hueyq.celery")

#: Hidden keyword carrying ``self.request.retries`` from one attempt to the
#: next (huey's own ``retries`` keeps meaning "retries left": zero here).
RETRIES_KEY = "_celery_retries"
_META = "celery:meta:%s"
#: huey and hueyq control flow a task's own exception handling never eats.
_CONTROL = (RetryTask, CancelExecution, RateLimitExceeded,
            TaskLockedException, TaskTimeout)
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*([smh]))?\s*$")


class states:
    """Celery's state names (``celery.states``)."""
    PENDING = "PENDING"
    RECEIVED = "RECEIVED"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    REVOKED = "REVOKED"
    RETRY = "RETRY"
    READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
    UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
    EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})


#: hueyq job state -> Celery state (running: STARTED or update_state's).
STATE_MAP = {"pending": states.PENDING, "scheduled": states.PENDING,
             "running": states.STARTED, "retrying": states.RETRY,
             "complete": states.SUCCESS, "failed": states.FAILURE,
             "dead": states.FAILURE, "cancelled": states.REVOKED,
             "expired": states.REVOKED}


# ---------------------------------------------------------------- errors

class Retry(RetryTask):
    """Raised by ``self.retry()``: huey runs the task again after ``when``."""

    def __init__(self, message: "str | None" = None, exc: Any = None,
                 when: Any = None) -> None:
        self.exc, self.when = exc, when
        eta = when if isinstance(when, datetime.datetime) else None
        delay = None if eta is not None else when
        RetryTask.__init__(self, message or "Retry in %ss" % (when,),
                           eta=eta, delay=delay)


class MaxRetriesExceededError(HueyqError):
    """``self.retry()`` past ``max_retries`` with no exception to re-raise."""


class TaskRevokedError(HueyqError):
    """The job was cancelled (revoked) or expired."""


class TimeLimitExceeded(HueyqError):
    """The job was killed at its hard time limit."""


class WorkerLostError(HueyqError):
    """The job's worker was killed (memory budget) or died."""


class TimeoutError(HueyqError, TimeoutError):  # noqa: A001 (Celery's name)
    """``AsyncResult.get(timeout=)`` ran out of time."""


def _exc_doc(exc: "BaseException | None") -> "dict | None":
    """An exception as plain data (Celery's exc_type/exc_message)."""
    if exc is None:
        return None
    args = exc.args if _plain(exc.args) else (str(exc),)
    return {"exc_type": type(exc).__name__,
            "exc_module": type(exc).__module__, "exc_message": list(args)}


def _plain(value: Any) -> bool:
    if isinstance(value, (str, int, float, bool, type(None))):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _exc_from(doc: "dict | None", fallback: str = "") -> BaseException:
    """The exception ``_exc_doc`` described, rebuilt (as Celery does)."""
    if not doc or not doc.get("exc_type"):
        return _error_from_text(fallback)
    args = tuple(doc.get("exc_message") or ())
    try:
        cls = getattr(importlib.import_module(doc["exc_module"]),
                      doc["exc_type"])
        if isinstance(cls, type) and issubclass(cls, BaseException):
            return cls(*args)
    except Exception:  # an exception class that is gone or takes other args
        logger.debug("rebuilding %s failed", doc, exc_info=True)
    cls = type(doc["exc_type"], (Exception,),
               {"__module__": doc.get("exc_module") or __name__})
    return cls(*args)


def _error_from_text(error: str) -> BaseException:
    if jobs.is_time_limit(error):
        return TimeLimitExceeded(error)
    if jobs.is_killed(error) or jobs.is_poison(error):
        return WorkerLostError(error)
    if jobs.is_cancel(error):
        return TaskRevokedError("revoked")
    return Exception(error or "failed")


class CeleryQueueHuey(QueueHuey):
    """A queue's huey that keeps a failure's exception type and arguments
    in its error result, so ``AsyncResult.info`` rebuilds the exception."""

    def build_error_result(self, task, exception):
        result = super().build_error_result(task, exception)
        if exception is not None:
            result.update(_exc_doc(exception))
        return result


# ---------------------------------------------------------------- the app

_apps: "list[Celery]" = []


def current_app() -> "Celery":
    """The Celery app made last in this process (Celery's current_app)."""
    if not _apps:
        raise HueyqError("no hueyq.celery.Celery app has been created yet")
    return _apps[-1]


class Conf(dict):
    """``app.conf``: Celery's settings, readable as keys and attributes.

    Settings that act at run time here: ``task_routes``,
    ``task_default_queue``, ``task_time_limit``, ``task_soft_time_limit``,
    ``task_default_retry_delay``, ``task_ignore_result`` and
    ``beat_schedule``. Deployment settings (``worker_*``, ``broker_*``,
    ``task_queues``, ``result_expires``) are kept for ``hueyq profiles
    from-celery``, which writes them into a profile: hueyq reads them from
    there, not from here.
    """

    def __init__(self, app: "Celery") -> None:
        super().__init__()
        self._app = app

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self[name] = value

    def __setitem__(self, key: str, value: Any) -> None:
        key = key.lower()
        _check_setting(key, value)
        super().__setitem__(key, value)
        if key == "beat_schedule":
            self._app._schedule_beat(value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, value: Any = None) -> Any:
        if key not in self:
            self[key] = value
        return self[key]


def _check_setting(key: str, value: Any) -> None:
    always_on = ("task_acks_late", "task_reject_on_worker_lost",
                 "acks_late", "task_track_started")
    if key in always_on and value is False:
        raise Unsupported(
            "%s=False: hueyq always acks late (a job's lease ends only when "
            "it ended; a dead worker's jobs are redelivered) and always "
            "tracks started jobs; drop the setting" % key)
    if key == "timezone" and str(value).upper() not in ("UTC", "ETC/UTC"):
        raise Unsupported(
            "timezone=%r: hueyq runs periodic tasks on UTC; write crontab "
            "hours in UTC and drop the setting" % (value,))
    if key == "enable_utc" and value is False:
        raise Unsupported("enable_utc=False: hueyq keeps times in UTC")
    if key in ("result_backend", "broker_url", "broker"):
        if value:
            raise Unsupported(
                "%s: hueyq keeps queues and results in the profile's backend "
                "([backend] url, or HUEYQ_BACKEND); drop the setting" % key)


class Celery(App):
    """A hueyq App that speaks Celery's API.

    ``Celery("proj", profile="profile.toml")`` instead of
    ``Celery("proj", broker=..., backend=...)``: the profile (or
    ``--profile``/``HUEYQ_PROFILE``) decides the backend and queues.
    ``include`` modules are imported in every worker before its first task.
    """

    queue_huey_class = CeleryQueueHuey

    def __init__(self, main: "str | None" = None, *,
                 profile: Any = None, include: "list[str] | tuple" = (),
                 broker: "str | None" = None, backend: "str | None" = None,
                 name: "str | None" = None, **settings: Any) -> None:
        for what, value in (("broker", broker), ("backend", backend)):
            if value:
                raise Unsupported(
                    "Celery(%s=...): hueyq keeps queues and results in the "
                    "profile's backend: Celery(%r, profile='profile.toml') "
                    "(see hueyq profiles from-celery)" % (what, main))
        super().__init__(profile, name=name)
        self.main = main
        self.conf = Conf(self)
        self.tasks: "dict[str, CeleryTask]" = {}
        self.include = list(include)
        self._beat: "set[str]" = set()
        self.conf.update(settings)
        self.on_startup()(self._import_include)
        _apps.append(self)
        _declare_shared(self)

    def __repr__(self) -> str:
        return "<hueyq.celery.Celery %s profile=%s>" % (self.main or self.name,
                                                        self.profile.name)

    # ------------------------------------------------------------ tasks

    def task(self, *args: Any, **options: Any):
        """``@app.task`` or ``@app.task(bind=True, queue=..., ...)``."""
        if len(args) == 1 and callable(args[0]) and not options:
            return CeleryTask(self, args[0])
        if args:
            raise TypeError("app.task() takes options as keywords")
        return lambda func: CeleryTask(self, func, **options)

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,
                  **options: Any) -> "AsyncResult":
        """Enqueue the task registered as ``name`` (imported in this
        process: hueyq's messages name a registered task)."""
        self._import_include()
        task = self.tasks.get(name)
        if task is None:
            raise HueyqError("send_task(%r): no task of that name is defined "
                             "in this process; import its module first "
                             "(tasks: %s)" % (name, ", ".join(sorted(
                                 self.tasks)) or "none"))
        return task.apply_async(args, kwargs, **options)

    def AsyncResult(self, task_id: str) -> "AsyncResult":
        return AsyncResult(task_id, app=self)

    def GroupResult(self, results: list) -> "GroupResult":
        return GroupResult(results)

    def autodiscover_tasks(self, packages: Any = (),
                           related_name: str = "tasks",
                           force: bool = False) -> None:
        """Import ``<package>.<related_name>`` in every worker before its
        first task (now, with ``force``)."""
        if callable(packages):
            packages = packages()
        for package in packages:
            self.include.append("%s.%s" % (package, related_name))
        if force:
            self._import_include()

    def config_from_object(self, obj: Any, namespace: "str | None" = None,
                           **_: Any) -> None:
        """Read settings from a module (or its dotted name) or object."""
        if isinstance(obj, str):
            obj = importlib.import_module(obj)
        items = obj.items() if isinstance(obj, dict) else \
            ((k, getattr(obj, k)) for k in dir(obj) if not k.startswith("_"))
        prefix = (namespace + "_") if namespace else ""
        for key, value in items:
            if prefix:
                if not key.startswith(prefix):
                    continue
                key = key[len(prefix):]
            if key.lower() == key or prefix:
                self.conf[key] = value

    def _import_include(self) -> None:
        for module in self.include:
            importlib.import_module(module)

    @property
    def control(self) -> "Control":
        return Control(self)

    @property
    def backend(self):
        raise Unsupported("app.backend: results live in the profile's "
                          "backend; read them with AsyncResult(id) or "
                          "app.job(id)")

    @property
    def events(self):
        raise Unsupported("app.events: hueyq records every job transition "
                          "in its store: app.job(id).history, the web UI, "
                          "GET /api/stream")

    def worker_main(self, *args: Any, **kwargs: Any):
        raise Unsupported("app.worker_main(): run hueyq run --app "
                          "MODULE:app --profile profile.toml")

    start = worker_main

    # ------------------------------------------------------------ routing

    def route(self, name: str, args: tuple = (), kwargs: "dict | None" = None,
              options: "dict | None" = None) -> "str | None":
        """The queue ``task_routes`` gives a task name, or None."""
        for pattern, route in _routes(self.conf.get("task_routes")):
            if callable(route):
                found = route(name, args, kwargs or {}, options or {})
            elif _matches(pattern, name):
                found = route
            else:
                continue
            queue = found.get("queue") if isinstance(found, dict) else found
            if queue:
                return str(getattr(queue, "name", queue))
        return None

    def default_queue(self) -> "str | None":
        """``task_default_queue`` when the profile has it; None leaves an
        unrouted task to the profile's routes."""
        default = self.conf.get("task_default_queue")
        return default if default in self.queues else None

    def _meta_huey(self) -> QueueHuey:
        # Results and other keys share one namespace per app: any queue's.
        return self.huey(self.queues[0])

    def _put_meta(self, task_id: str, doc: dict) -> None:
        self._meta_huey().put(_META % task_id, doc)

    def _meta(self, task_id: str) -> "dict | None":
        return self._meta_huey().get(_META % task_id, peek=True)

    def _forget_meta(self, task_id: str) -> None:
        self._meta_huey().delete(_META % task_id)

    # ------------------------------------------------------------ beat

    def _schedule_beat(self, entries: dict) -> None:
        for entry, spec in (entries or {}).items():
            if entry in self._beat:
                continue
            validate = _schedule(entry, spec.get("schedule"))
            sender = _beat_sender(self, entry, spec)
            self.periodic_task(validate, queue=self.queues[-1],
                               name="beat:%s" % entry)(sender)
            self._beat.add(entry)


def _beat_sender(app: Celery, entry: str, spec: dict) -> Callable:
    def send():
        return app.send_task(spec["task"], tuple(spec.get("args") or ()),
                             dict(spec.get("kwargs") or {}),
                             **dict(spec.get("options") or {})).id
    send.__name__ = "beat"
    send.__module__ = __name__
    send.__doc__ = "Celery beat entry %r: enqueue %s" % (entry, spec["task"])
    return send


def _schedule(entry: str, schedule: Any) -> Callable:
    """A huey periodic validator for a beat entry's schedule."""
    if isinstance(schedule, crontab):
        return schedule.validate
    if isinstance(schedule, datetime.timedelta):
        schedule = schedule.total_seconds()
    if isinstance(schedule, (int, float)) and schedule >= 60 and \
            schedule % 60 == 0:
        minutes = int(schedule // 60)
        return lambda dt: int(dt.timestamp() // 60) % minutes == 0
    raise Unsupported(
        "beat_schedule[%r]: schedule %r: hueyq's periodic tasks run on whole "
        "minutes; use crontab(...) or a multiple of 60 seconds" % (entry,
                                                                  schedule))


def _routes(config: Any) -> "list[tuple[Any, Any]]":
    if not config:
        return []
    if isinstance(config, dict):
        return list(config.items())
    out = []
    for item in config:
        if isinstance(item, dict):
            out.extend(item.items())
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            out.append(tuple(item))
        elif callable(item):
            out.append((None, item))
        else:
            raise Unsupported("task_routes entry %r: use a dict of glob -> "
                              "queue (or {'queue': q})" % (item,))
    return out


def _matches(pattern: Any, name: str) -> bool:
    if hasattr(pattern, "match"):
        return bool(pattern.match(name))
    return fnmatch.fnmatchcase(name, pattern)


class Control:
    """``app.control``: revoke and purge; the rest is hueyq's status."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def revoke(self, task_id: Any, terminate: bool = False,
               signal: "str | None" = None, **_: Any) -> None:
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        for each in ids:
            AsyncResult(each, app=self.app).revoke(terminate=terminate,
                                                   signal=signal)

    def purge(self) -> int:
        """Drain every queue (``hueyq drain``); returns how many jobs."""
        return sum(self.app.drain(q) for q in self.app.queues)

    def inspect(self, *args: Any, **kwargs: Any):
        raise Unsupported("app.control.inspect(): use hueyq status (or "
                          "app.queue_stats(), app.workers(), "
                          "GET /api/workers)")

    def __getattr__(self, name: str):
        raise Unsupported("app.control.%s: hueyq's controls are pause, "
                          "resume, drain, cancel and retry (app.pause(q), "
                          "hueyq pause Q, ...)" % name)


# ---------------------------------------------------------------- tasks

class Request:
    """``self.request`` of a running task."""

    def __init__(self, task: "CeleryTask", job: Any, args: tuple,
                 kwargs: dict, retries: int) -> None:
        self.id = job.id if job is not None else None
        self.task = task.name
        self.args, self.kwargs = args, kwargs
        self.retries = retries
        self.called_directly = job is None
        self.is_eager = False
        self.hostname = task.app.host_id if job is not None else None
        queue = job.queue if job is not None else None
        self.delivery_info = {"routing_key": queue, "exchange": "",
                              "priority": getattr(job.task, "priority", None)
                              if job is not None else None,
                              "redelivered": bool(job and job.attempt > 1)}
        self.root_id = self.correlation_id = self.id
        self.parent_id = None
        self.wrote_meta = False


class CeleryTask:
    """A Celery task: call it to run it here, ``.delay()`` to enqueue it.

    ``.hueyq`` is the hueyq task (huey's TaskWrapper) it is made of.
    """

    def __init__(self, app: Celery, func: Callable, *, bind: bool = False,
                 name: "str | None" = None, queue: "str | None" = None,
                 max_retries: "int | None" = 3,
                 default_retry_delay: "float | None" = None,
                 autoretry_for: tuple = (), retry_kwargs: "dict | None" = None,
                 retry_backoff: Any = False, retry_backoff_max: float = 600,
                 retry_jitter: bool = True,
                 soft_time_limit: "float | None" = None,
                 time_limit: "float | None" = None,
                 rate_limit: "str | float | None" = None,
                 acks_late: bool = True, reject_on_worker_lost: bool = True,
                 ignore_result: "bool | None" = None,
                 priority: "int | None" = None, expires: Any = None,
                 track_started: bool = True, typing: bool = True,
                 serializer: "str | None" = None,
                 base: Any = None, **unknown: Any) -> None:
        if unknown:
            raise TypeError("unknown task option(s) %s" % ", ".join(unknown))
        if base is not None:
            raise Unsupported("base=: a custom Task class; use hueyq hooks "
                              "(app.on_startup, huey's signals) instead")
        for option, value in (("acks_late", acks_late),
                              ("reject_on_worker_lost", reject_on_worker_lost),
                              ("track_started", track_started)):
            _check_setting(option, value)
        conf = app.conf
        self.app, self.run, self.bind = app, func, bind
        self.name = name or "%s.%s" % (func.__module__, func.__name__)
        self.max_retries = max_retries
        self.default_retry_delay = default_retry_delay if default_retry_delay \
            is not None else conf.get("task_default_retry_delay", 180)
        self.autoretry_for = tuple(autoretry_for or ())
        self.retry_kwargs = dict(retry_kwargs or {})
        self.retry_backoff, self.retry_backoff_max = retry_backoff, \
            retry_backoff_max
        self.retry_jitter = retry_jitter
        self.ignore_result = conf.get("task_ignore_result", False) \
            if ignore_result is None else ignore_result
        self.priority, self.expires = priority, expires
        self.acks_late = self.reject_on_worker_lost = True
        self.rate_limit = _parse_rate(rate_limit)
        self.queue = queue or app.route(self.name) or app.default_queue()
        self._local = threading.local()
        self.__doc__, self.__name__ = func.__doc__, func.__name__
        self.__module__ = func.__module__
        self.hueyq = App.task(
            app, queue=self.queue, name=name, priority=priority,
            time_limit=time_limit or conf.get("task_time_limit"),
            soft_time_limit=soft_time_limit or conf.get(
                "task_soft_time_limit"))(self._runner())
        self.queue = self.hueyq.task_class.queue
        self._queued: "dict[str, type]" = {}
        app.tasks[self.name] = self

    def __repr__(self) -> str:
        return "<@task: %s of %s>" % (self.name,
                                      self.app.main or self.app.name)

    # ------------------------------------------------------------ running

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now, as Celery does."""
        stack = self._stack()
        stack.append(Request(self, None, args, kwargs, 0))
        try:
            return self._call(args, kwargs)
        finally:
            stack.pop()

    def _call(self, args: tuple, kwargs: dict) -> Any:
        if self.bind:
            return self.run(self, *args, **kwargs)
        return self.run(*args, **kwargs)

    def _stack(self) -> list:
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    @property
    def request(self) -> Request:
        stack = self._stack()
        return stack[-1] if stack else Request(self, None, (), {}, 0)

    def _runner(self) -> Callable:
        task = self

        def run(*args: Any, **kwargs: Any) -> Any:
            retries = kwargs.pop(RETRIES_KEY, 0)
            request = Request(task, context.current_job(), args, kwargs,
                              retries)
            stack = task._stack()
            stack.append(request)
            keep_meta = False
            try:
                value = task._attempt(args, kwargs)
            except Retry:
                keep_meta = True
                raise
            finally:
                stack.pop()
                if not keep_meta and (request.wrote_meta or retries):
                    task.app._forget_meta(request.id)
            return None if task.ignore_result else value
        run.__name__, run.__module__ = self.run.__name__, self.run.__module__
        run.__doc__ = self.run.__doc__
        return run

    def _attempt(self, args: tuple, kwargs: dict) -> Any:
        try:
            if self.rate_limit is not None:
                limit, per = self.rate_limit
                with self.hueyq.huey.rate_limit(self.name, limit, per):
                    return self._call(args, kwargs)
            return self._call(args, kwargs)
        except _CONTROL:
            raise
        except self.autoretry_for as exc:
            options = dict(self.retry_kwargs)
            if self.retry_backoff and "countdown" not in options:
                options["countdown"] = backoff_interval(
                    int(self.retry_backoff), self.request.retries,
                    self.retry_backoff_max, self.retry_jitter)
            raise self.retry(exc=exc, **options) from None

    # ------------------------------------------------------------ in a task

    def update_state(self, task_id: "str | None" = None,
                     state: "str | None" = None, meta: Any = None,
                     **_: Any) -> None:
        """Set the job's Celery state and meta (``.state``, ``.info``) and,
        for the running job, its hueyq progress from the meta's
        ``progress`` (or ``percent``, or ``current``/``total``) and
        ``status`` (or ``message``)."""
        request = self.request
        task_id = task_id or request.id
        if task_id is None:
            return
        self.app._put_meta(task_id, {"state": state or "PROGRESS",
                                     "meta": meta})
        if task_id != request.id:
            return
        request.wrote_meta = True
        job = context.current_job()
        percent, message = _progress_of(meta, job.progress if job else None)
        context.progress(percent, message)

    def retry(self, args: Any = None, kwargs: Any = None,
              exc: "BaseException | None" = None, throw: bool = True,
              eta: "datetime.datetime | None" = None,
              countdown: "float | None" = None,
              max_retries: "int | None" = None, **options: Any):
        """Run the job again after ``countdown`` seconds (or at ``eta``);
        past ``max_retries`` re-raise ``exc`` (or MaxRetriesExceededError)."""
        request = self.request
        if request.called_directly:
            raise exc if exc is not None else Retry("Task can be retried")
        if not throw or options:
            raise Unsupported("retry(throw=False, %s): a retry ends the "
                              "attempt in hueyq; raise self.retry(...)"
                              % ", ".join(options) or "...")
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                "Can't retry %s[%s] args:%s kwargs:%s" % (
                    self.name, request.id, request.args, request.kwargs))
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        huey_task = context.current_job().task
        if args is not None:
            huey_task.args = tuple(args)
        huey_task.kwargs = dict(request.kwargs if kwargs is None else kwargs,
                                **{RETRIES_KEY: request.retries + 1})
        self.app._put_meta(request.id, {"state": states.RETRY,
                                        "exc": _exc_doc(exc)})
        raise Retry(exc=exc, when=eta if eta is not None else countdown)

    # ------------------------------------------------------------ sending

    def delay(self, *args: Any, **kwargs: Any) -> "AsyncResult":
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Any = None, kwargs: Any = None,
                    countdown: "float | None" = None,
                    eta: "datetime.datetime | None" = None,
                    queue: "str | None" = None, priority: "int | None" = None,
                    expires: Any = None, task_id: "str | None" = None,
                    routing_key: "str | None" = None,
                    **options: Any) -> "AsyncResult":
        """Enqueue with Celery's options; returns an AsyncResult."""
        _check_send_options(options)
        if queue is None and routing_key is not None:
            queue = routing_key
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        target = queue or self.app.route(self.name, args, kwargs) or self.queue
        self.app.huey(target)
        if countdown is not None or eta is not None:
            eta = normalize_time(eta, countdown, utc=True)
        expires = self.expires if expires is None else expires
        task = self._class_for(target)(
            args, kwargs, id=task_id, eta=eta,
            priority=self.priority if priority is None else priority,
            expires=expires)
        self.app.huey(target).enqueue(task)
        return AsyncResult(task.id, app=self.app)

    def _class_for(self, queue: str) -> type:
        """The hueyq task class, or one that enqueues on ``queue`` (same
        registered name, so any worker runs it as this task)."""
        base = self.hueyq.task_class
        if queue == base.queue:
            return base
        if queue not in self._queued:
            self._queued[queue] = type(base.__name__, (base,),
                                       {"queue": queue,
                                        "__module__": base.__module__})
        return self._queued[queue]

    def s(self, *args: Any, **kwargs: Any) -> "Signature":
        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> "Signature":
        return Signature(self, args, kwargs, immutable=True)

    def signature(self, args: Any = None, kwargs: Any = None,
                  **options: Any) -> "Signature":
        return Signature(self, tuple(args or ()), dict(kwargs or {}), options)

    def AsyncResult(self, task_id: str) -> "AsyncResult":
        return AsyncResult(task_id, app=self.app)

    def apply(self, *args: Any, **kwargs: Any):
        raise Unsupported("task.apply(): call the task to run it here "
                          "(task(*args)), or .delay() to enqueue it")

    def map(self, *args: Any, **kwargs: Any):
        raise Unsupported("task.map()/starmap()/chunks(): use group(...) or "
                          "a batch task (@app.batch_task)")

    starmap = chunks = map


def _check_send_options(options: dict) -> None:
    ignored = {"retry", "retry_policy", "serializer", "compression",
               "ignore_result", "add_to_parent", "shadow"}
    for key in options:
        if key in ignored:
            continue
        if key in ("link", "link_error"):
            raise Unsupported("apply_async(%s=): canvas callbacks; use huey's "
                              "pipelines (task.hueyq.s(...).then(...)) or "
                              "on_error" % key)
        if key in ("time_limit", "soft_time_limit"):
            raise Unsupported("apply_async(%s=): hueyq's limits are set per "
                              "task (@app.task(%s=...)) or per queue in the "
                              "profile" % (key, key))
        raise Unsupported("apply_async(%s=): not an option hueyq has; "
                          "queue=, countdown=, eta=, priority=, expires= and "
                          "task_id= are" % key)


def backoff_interval(factor: int, retries: int, maximum: float,
                     full_jitter: bool) -> float:
    """Celery's exponential back-off: ``factor * 2**retries`` seconds, at
    most ``maximum``, drawn uniformly below it with ``full_jitter``."""
    countdown = min(maximum, factor * (2 ** retries))
    if full_jitter:
        countdown = random.randrange(int(countdown) + 1)
    return max(0, countdown)


def _parse_rate(rate: "str | float | None") -> "tuple[int, int] | None":
    """Celery's "10/m" as (limit, seconds per window)."""
    if rate is None or rate == "":
        return None
    if isinstance(rate, (int, float)):
        return int(rate), 1
    match = _RATE.match(str(rate))
    if not match:
        raise ValueError("rate_limit %r: expected N/s, N/m or N/h" % (rate,))
    return int(float(match.group(1))), {"s": 1, "m": 60, "h": 3600,
                                        None: 1}[match.group(2)]


def _progress_of(meta: Any,
                 last: "float | None") -> "tuple[float, str | None]":
    percent = last or 0.0
    message = None
    if isinstance(meta, dict):
        for key in ("progress", "percent", "pct"):
            if isinstance(meta.get(key), (int, float)):
                percent = meta[key]
                break
        else:
            current, total = meta.get("current"), meta.get("total")
            if isinstance(current, (int, float)) and \
                    isinstance(total, (int, float)) and total:
                percent = 100.0 * current / total
        for key in ("status", "status_message", "message", "step"):
            if meta.get(key) is not None:
                message = str(meta[key])
                break
    return min(100.0, max(0.0, float(percent))), message


# ---------------------------------------------------------------- shared

class _SharedTask:
    """``@shared_task``: the task on the current app, declared on first use
    (or as soon as an app exists)."""

    def __init__(self, func: Callable, options: dict) -> None:
        self._func, self._options = func, options
        self._tasks: "dict[int, CeleryTask]" = {}
        self.__name__, self.__doc__ = func.__name__, func.__doc__
        self.__module__ = func.__module__
        self.__wrapped__ = func

    def _task(self) -> CeleryTask:
        app = current_app()
        task = self._tasks.get(id(app))
        if task is None:
            task = self._tasks[id(app)] = CeleryTask(app, self._func,
                                                     **self._options)
        return task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task()(*args, **kwargs)

    def __repr__(self) -> str:
        return "<@shared_task: %s>" % self.__name__


_shared: "list[_SharedTask]" = []


def shared_task(*args: Any, **options: Any):
    """``@shared_task`` / ``@shared_task(bind=True, ...)``."""
    def decorate(func: Callable) -> _SharedTask:
        shared = _SharedTask(func, options)
        _shared.append(shared)
        if _apps:
            shared._task()
        return shared
    if len(args) == 1 and callable(args[0]) and not options:
        return decorate(args[0])
    return decorate


def _declare_shared(app: Celery) -> None:
    for shared in _shared:
        shared._tasks.pop(id(app), None)
        shared._task()


# ---------------------------------------------------------------- results

class AsyncResult:
    """A job, seen as Celery sees it (``app.job(id)`` underneath)."""

    def __init__(self, id: str, app: "Celery | None" = None,
                 **_: Any) -> None:
        self.id = self.task_id = id
        self.app = app or current_app()

    def __repr__(self) -> str:
        return "<AsyncResult: %s>" % self.id

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        return other == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def _job(self):
        try:
            return self.app.job(self.id, history=False)
        except JobNotFound:
            return None

    def _view(self) -> "tuple[str, Any, Any]":
        """(Celery state, info, the Job) from one read."""
        job = self._job()
        if job is None:
            return states.PENDING, None, None
        state = STATE_MAP.get(job.state, states.PENDING)
        if state == states.STARTED:
            meta = self.app._meta(self.id)
            if meta and meta.get("state") != states.RETRY:
                return meta["state"], meta.get("meta"), job
            return state, _started_info(job), job
        if state == states.RETRY:
            meta = self.app._meta(self.id) or {}
            if meta.get("state") != states.RETRY:
                # Waiting out a rate limit, as a Celery task waits unstarted.
                return states.PENDING, None, job
            return state, _exc_from(meta.get("exc"), job.error or ""), job
        if state == states.SUCCESS:
            return state, self._value(job), job
        if state == states.FAILURE:
            return state, self._exception(job), job
        if state == states.REVOKED:
            return state, TaskRevokedError(job.reason if job.state == "expired"
                                           else "revoked"), job
        return state, None, job

    def _value(self, job) -> Any:
        """The job's result as the task returned it: a producer decodes its
        own app's results, as huey's ``Result`` does (``Job.result`` is the
        read paths' plain-data preview)."""
        try:
            return self.app.huey(job.queue).get(self.id, peek=True)
        except Exception:  # a queue no longer in the profile, a bad value
            logger.debug("no result for %s", self.id, exc_info=True)
            return job.result

    def _error(self, job) -> "dict | None":
        """huey's error result of a failed job (CeleryQueueHuey's keys)."""
        try:
            stored = self.app.huey(job.queue).get(self.id, peek=True)
        except Exception:  # a queue no longer in the profile, a bad value
            logger.debug("no error result for %s", self.id, exc_info=True)
            return None
        return stored.metadata if isinstance(stored, Error) else None

    def _exception(self, job) -> BaseException:
        doc = self._error(job)
        return _exc_from(doc, (doc or {}).get("error") or job.error or "")

    @property
    def state(self) -> str:
        return self._view()[0]

    status = state

    @property
    def info(self) -> Any:
        """The meta while running (update_state's), the exception after a
        failure or retry, the return value after success."""
        return self._view()[1]

    result = info

    @property
    def traceback(self) -> "str | None":
        """The traceback of the failure (or of the attempt before a retry)."""
        job = self._job()
        if job is None or job.state not in ("failed", "dead", "retrying"):
            return None
        stored = self._error(job) if job.state != "retrying" else None
        return (stored or {}).get("traceback") or job.traceback

    @property
    def date_done(self) -> "datetime.datetime | None":
        job = self._job()
        if job is None or not job.finished_at:
            return None
        return datetime.datetime.fromtimestamp(job.finished_at,
                                               datetime.timezone.utc)

    @property
    def name(self) -> "str | None":
        job = self._job()
        return job.task if job is not None else None

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: "float | None" = None, propagate: bool = True,
            interval: float = 0.5, disable_sync_subtasks: bool = True,
            **_: Any) -> Any:
        """Wait for the job to end; its value, or raise its exception."""
        if disable_sync_subtasks and context.current_job() is not None:
            raise RuntimeError("Never call result.get() within a task!")
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = min(0.05, interval)
        while True:
            state, info, _ = self._view()
            if state in states.READY_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("The operation timed out.")
            time.sleep(pause if deadline is None else
                       max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 1.5, interval)
        if state != states.SUCCESS and propagate:
            raise info
        return info

    wait = get

    def revoke(self, connection: Any = None, terminate: bool = False,
               signal: "str | None" = None, wait: bool = False,
               timeout: "float | None" = None) -> None:
        """Cancel the job (``app.cancel``): a pending one never runs; with
        ``terminate`` a running one is stopped (process workers: killed;
        thread workers: at the next progress()/update_state())."""
        if signal not in (None, "SIGTERM", "TERM", "SIGKILL", "KILL"):
            raise Unsupported("revoke(signal=%r): hueyq stops a running job "
                              "by killing its process worker (thread "
                              "workers: at the next progress())" % signal)
        job = self._job()
        if job is None or (job.state == "running" and not terminate):
            return
        try:
            self.app.cancel(self.id)
        except (InvalidState, JobNotFound):
            return

    def forget(self) -> None:
        """Drop the stored result and meta (not the job's history)."""
        job = self._job()
        if job is not None and job.queue in self.app.queues:
            self.app.huey(job.queue).delete(self.id)
        self.app._forget_meta(self.id)

    def then(self, *args: Any, **kwargs: Any):
        raise Unsupported("AsyncResult.then(): use huey's pipelines "
                          "(task.hueyq.s(...).then(next_task))")


def _started_info(job) -> dict:
    """Celery's STARTED info: the worker's pid and hostname."""
    host, pid = None, None
    if job.worker:
        parts = job.worker.split(":")
        if len(parts) >= 2:
            host, pid = parts[0], int(parts[1]) if parts[1].isdigit() else None
    return {"pid": pid, "hostname": host}


class GroupResult:
    """The results of a group, in order."""

    def __init__(self, results: "list[AsyncResult]") -> None:
        self.results = list(results)

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def get(self, timeout: "float | None" = None, propagate: bool = True,
            **kwargs: Any) -> list:
        deadline = None if timeout is None else time.monotonic() + timeout
        out = []
        for result in self.results:
            left = None if deadline is None else max(0.0, deadline -
                                                     time.monotonic())
            out.append(result.get(timeout=left, propagate=propagate, **kwargs))
        return out

    join = get

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def successful(self) -> bool:
        return all(r.successful() for r in self.results)

    def failed(self) -> bool:
        return any(r.failed() for r in self.results)

    def completed_count(self) -> int:
        return sum(1 for r in self.results if r.successful())

    def revoke(self, terminate: bool = False, **kwargs: Any) -> None:
        for result in self.results:
            result.revoke(terminate=terminate, **kwargs)


# ---------------------------------------------------------------- canvas

class Signature:
    """``task.s(...)``: a task with its arguments, to enqueue later."""

    def __init__(self, task: CeleryTask, args: tuple = (),
                 kwargs: "dict | None" = None, options: "dict | None" = None,
                 immutable: bool = False) -> None:
        self.task, self.args = task, tuple(args)
        self.kwargs, self.options = dict(kwargs or {}), dict(options or {})
        self.immutable = immutable

    def __repr__(self) -> str:
        return "%s(%s)" % (self.task.name, ", ".join(
            [repr(a) for a in self.args] +
            ["%s=%r" % kv for kv in self.kwargs.items()]))

    def set(self, **options: Any) -> "Signature":
        self.options.update(options)
        return self

    def clone(self, args: tuple = (), kwargs: "dict | None" = None,
              **options: Any) -> "Signature":
        return Signature(self.task, self.args + tuple(args),
                         dict(self.kwargs, **(kwargs or {})),
                         dict(self.options, **options), self.immutable)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: tuple = (), kwargs: "dict | None" = None,
                    **options: Any) -> AsyncResult:
        return self.task.apply_async(self.args + tuple(args or ()),
                                     dict(self.kwargs, **(kwargs or {})),
                                     **dict(self.options, **options))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(*(self.args + args), **dict(self.kwargs, **kwargs))

    def __or__(self, other: Any):
        raise Unsupported("sig | sig (chain): use huey's pipelines: "
                          "task.hueyq.s(...).then(next_task.hueyq, ...)")


def signature(task: Any, args: tuple = (), kwargs: "dict | None" = None,
              **options: Any) -> Signature:
    """``signature(task_or_name, args, kwargs, **options)``."""
    if isinstance(task, str):
        task = current_app().tasks[task]
    elif isinstance(task, _SharedTask):
        task = task._task()
    return Signature(task, args, kwargs, options)


class group:
    """``group(sig, sig, ...)``: enqueue each; a GroupResult of them."""

    def __init__(self, *tasks: Any) -> None:
        if len(tasks) == 1 and not isinstance(tasks[0], Signature):
            tasks = tuple(tasks[0])
        self.tasks = tasks

    def apply_async(self, args: tuple = (), kwargs: "dict | None" = None,
                    **options: Any) -> GroupResult:
        return GroupResult([sig.apply_async(args, kwargs, **options)
                            for sig in self.tasks])

    def delay(self, *args: Any, **kwargs: Any) -> GroupResult:
        return self.apply_async(args, kwargs)

    __call__ = delay


def chain(*tasks: Any, **options: Any):
    """Celery passes each result as the next task's first argument; huey's
    pipelines pass it last, so a chain is not translated silently."""
    raise Unsupported("chain(...): use huey's pipelines: "
                      "first.hueyq.s(...).then(second.hueyq, ...) (the "
                      "previous result is appended to the next task's "
                      "arguments), enqueued with first.hueyq.huey.enqueue()")


def chord(*tasks: Any, **options: Any):
    raise Unsupported("chord(...): enqueue the group, then "
                      "GroupResult.get() in the producer, or use huey's "
                      "chords on the hueyq tasks")


# ---------------------------------------------------------------- crontab

_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5,
         "sat": 6}


class crontab:
    """Celery's ``crontab(minute, hour, day_of_week, day_of_month,
    month_of_year)`` as huey's crontab (evaluated in UTC)."""

    def __init__(self, minute: Any = "*", hour: Any = "*",
                 day_of_week: Any = "*", day_of_month: Any = "*",
                 month_of_year: Any = "*", **kwargs: Any) -> None:
        if kwargs:
            raise Unsupported("crontab(%s): hueyq's crontab is huey's: "
                              "minute, hour, day_of_week, day_of_month, "
                              "month_of_year" % ", ".join(kwargs))
        self.minute, self.hour = str(minute), str(hour)
        self.day_of_week = weekdays(str(day_of_week))
        self.day_of_month, self.month_of_year = str(day_of_month), \
            str(month_of_year)
        self.validate = huey_crontab(month=self.month_of_year,
                                     day=self.day_of_month,
                                     day_of_week=self.day_of_week,
                                     hour=self.hour, minute=self.minute)

    def __call__(self, timestamp: datetime.datetime) -> bool:
        return self.validate(timestamp)

    def __repr__(self) -> str:
        return ("<crontab: %s %s %s %s %s (m/h/dM/MY/d)>"
                % (self.minute, self.hour, self.day_of_month,
                   self.month_of_year, self.day_of_week))


def weekdays(value: str) -> str:
    """Celery's day_of_week (``"sunday"``, ``"mon-fri"``, 7 for Sunday) in
    huey's numbers (0 is Sunday)."""
    def one(word: str) -> str:
        word = word.strip().lower()
        if word[:3] in _DAYS:
            return str(_DAYS[word[:3]])
        return "0" if word == "7" else word
    return ",".join("-".join(one(w) for w in part.split("-"))
                    for part in value.split(","))
