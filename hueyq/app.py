"""The App: the user's handle on one profile's queues, tasks and jobs.

An App holds one :class:`QueueHuey` per enabled queue, all on one backend and
named ``<app>.<queue>``, sharing one task registry so any consumer can run
any task (a route change never strands queued messages). ``@app.task`` is
huey's decorator with a ``queue=`` (or a route from the profile) and two
settings of hueyq's own: ``time_limit`` (a hard limit: process workers are
killed, thread workers stop at their next ``hueyq.progress()``),
``soft_time_limit`` (:class:`hueyq.SoftTimeLimitExceeded` raised inside the
task first, so it can clean up) and ``memory`` (what the task needs, for
admission).

Job state lives in two places: the backend knows the live states (pending,
scheduled, running, dead messages) and the store knows the history.
:meth:`App.job` and :meth:`App.jobs` merge the two, so a job enqueued a
moment ago is visible as pending before any consumer has seen it.
"""

import contextlib
import copy
import functools
import gc
import inspect
import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

from huey import signals as S
from huey.api import Huey, ResultGroup, Task, TaskWrapper
from huey.constants import EmptyData
from huey.registry import Registry

from hueyq import aio
from hueyq import backends, context, defaults, files, huey_api
from hueyq import jobs
from hueyq.backends import DEAD, DONE, PENDING, RUNNING, SCHEDULED
from hueyq.envelope import Envelope, EnvelopeSerializer, epoch
from hueyq.logs import Outage
from hueyq.memory import fits, waiting
from hueyq.exceptions import (BackendUnavailable, BadSignature,
                              ConfigurationError, EnqueueError, JobNotFound,
                              PayloadTooLarge, QueueNotFound, Undecodable)
from hueyq.profile import Profile, load_profile, select
from hueyq.store import (ENDED, FINISHED, REASON_STATE, STATES, Job, Store,
                         change_seq, check_driver)
from hueyq.units import format_size, parse_duration, parse_size

if TYPE_CHECKING:
    from hueyq.control import CancelResult

logger = logging.getLogger("hueyq.app")

_SECRET_WORDS = ("password", "passwd", "secret", "token", "key", "auth",
                 "credential")


def backend_errors() -> tuple:
    """Exception classes that mean the backend could not be reached."""
    return backends.driver_errors()


#: The variant nibble of a uuid4 (binary 10xx) for each random nibble.
_UUID_VARIANT = "89ab89ab89ab89ab"


def new_ids(count: int) -> "list[str]":
    """``count`` job ids, random uuid4 strings as huey's ``create_id`` makes
    them, from one read of the OS's random source (``uuid.uuid4()`` reads it,
    and builds a UUID object, once per id)."""
    hexed = os.urandom(16 * count).hex()
    return ["%s-%s-4%s-%s%s-%s" % (
        hexed[i:i + 8], hexed[i + 8:i + 12], hexed[i + 13:i + 16],
        _UUID_VARIANT[int(hexed[i + 16], 16)], hexed[i + 17:i + 20],
        hexed[i + 20:i + 32]) for i in range(0, 32 * count, 32)]


@contextlib.contextmanager
def collector_paused():
    """Pause the cyclic garbage collector: a bulk enqueue makes tens of
    thousands of objects that all live until it returns, which the collector
    would scan again and again (reference counting still frees as usual)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


#: Longest key ``key=`` takes.
MAX_KEY_LENGTH = 200


def check_key(key: Any) -> str:
    """The key of an enqueue (``key=``), or ValueError saying why not."""
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise ValueError("key must be a non-empty string of at most %d "
                         "characters, got %r" % (MAX_KEY_LENGTH, key))
    return key


class QueueTaskWrapper(TaskWrapper):
    """huey's TaskWrapper, whose ``map`` writes every item in one step, and
    whose call takes ``key=``: the job is enqueued once per key (see
    :meth:`QueueHuey.enqueue_messages`). A task whose function has a
    parameter named ``key`` gets it as its argument, as before."""

    def s(self, *args, **kwargs):
        key = None
        if "key" in kwargs and not self.takes_key:
            key = check_key(kwargs.pop("key"))
        task = super().s(*args, **kwargs)
        if key is not None:
            task.key = key
        return task

    @functools.cached_property
    def takes_key(self) -> bool:
        """Whether the task's function has a parameter named ``key``."""
        try:
            return "key" in inspect.signature(self.func).parameters
        except (TypeError, ValueError):  # a callable without a signature
            return False

    def map(self, it):
        """Enqueue one job per item of ``it`` (a tuple of arguments, or the
        one argument) as :meth:`App.enqueue_many` does: one transaction on
        SQLite, one round trip on Redis. Returns huey's ResultGroup, in the
        order of ``it``."""
        app = self.huey.app
        with collector_paused():
            items = list(it)
            tasks = [self.s(*self._arguments(item), id=job_id)
                     for item, job_id in zip(items, new_ids(len(items)))]
            results = app._enqueue_groups(tasks, {
                app._home(self).queue: list(range(len(tasks)))})
        # As huey's map: no group when the result store is off.
        return ResultGroup(results) if self.huey.results else None

    def _arguments(self, item) -> tuple:
        return item if isinstance(item, tuple) else (item,)

    create_task = aio.coroutine_task(TaskWrapper.create_task)

    async def aio(self, *args: Any, **kwargs: Any):
        """Enqueue as calling the task does, from a coroutine: the write
        (on SQLite an fsync) runs on a thread, never on the event loop.
        Returns a Result with ``await result.aget(timeout=)``."""
        return await aio.off_loop(self, *args, **kwargs)


class QueueHuey(Huey):
    """huey for one queue of an App."""

    #: Set by hueyq's consumer: an interrupted task's lease is handed back.
    hands_back = False

    def __init__(self, app: "App", queue: str) -> None:
        self.app = app
        self.queue = queue
        self._outage = Outage(logger, "promoting scheduled tasks of %s"
                              % queue)
        super().__init__("%s.%s" % (app.name, queue), results=True,
                         store_none=False, utc=True,
                         serializer=app.serializer,
                         store_intermediate_errors=app
                         .store_intermediate_errors)
        self._registry = app.registry

    def get_storage(self, **kwargs: Any):
        storage = self.app.queue_backend.storage(self.queue)
        storage.lease_limit = self.serializer.max_wire_size
        return storage

    def get_immediate_storage(self):
        return huey_api.ImmediateStorage(self.name, self.app)

    def get_task_wrapper_class(self):
        return QueueTaskWrapper

    @property
    def serializer(self):
        return self._serializer

    @serializer.setter
    def serializer(self, value) -> None:
        # huey's own serializer (or any other) set on an App's huey writes
        # the body of hueyq's envelope, which keeps its header and checks.
        if not isinstance(value, (EnvelopeSerializer,
                                  huey_api.ForeignSerializer)):
            value = huey_api.ForeignSerializer(self.app.serializer, value)
        self._serializer = value

    def task(self, *args: Any, **kwargs: Any):
        # A task declared with this huey's own decorator lives on its queue:
        # routed there, and its periodic schedule read by this queue.
        kwargs.setdefault("queue", self.queue)
        decorate = super().task(*args, **kwargs)

        def register(func):
            return self.app.register_wrapper(decorate(func))
        return register

    def periodic_task(self, validate_datetime, *args: Any, **kwargs: Any):
        kwargs.setdefault("queue", self.queue)
        return super().periodic_task(validate_datetime, *args, **kwargs)

    def serialize_task(self, task: Task) -> bytes:
        message = self._registry.create_message(task)
        cls = type(task)
        header = {"id": task.id, "name": message.name, "eta": epoch(task.eta),
                  "t": time.time()}
        if task.priority:
            # For a retry added to the schedule, whose storage call carries
            # no priority (huey's add_to_schedule takes none).
            header["priority"] = task.priority
        for attr in ("time_limit", "memory"):
            value = getattr(cls, attr, None)
            if value:
                header[attr] = value
        if self.app.profile.store.args_preview and \
                not self.app.profile.security.encryption_keys:
            # Encrypted, the arguments stay out of the plaintext header; the
            # worker records their preview when it decrypts them.
            header["args"] = args_preview(task.args, task.kwargs)
        data = Envelope(self.serializer.serialize_with_header(message,
                                                              header))
        data.header = header
        return data

    def enqueue(self, task):
        home = getattr(type(task), "queue", None)
        if isinstance(task, Task) and home and home != self.queue \
                and home in self.app.queues:
            return self.app.huey(home).enqueue(task)
        if isinstance(task, Task) and context.interrupted(task.id):
            # huey's recipe re-enqueues an interrupted task from its
            # SIGNAL_INTERRUPTED handler; hueyq hands the lease back itself,
            # so the task runs again once, not twice.
            logger.info("%s: not enqueued again from SIGNAL_INTERRUPTED: "
                        "hueyq hands it back", task.id)
            results = self._pipeline_results(task)
            return ResultGroup(results) if len(results) > 1 else results[0]
        return context.persist(lambda: self._enqueue(task))

    def _enqueue(self, task):
        if getattr(task, "key", None) is not None:
            if task.on_complete is not None:
                raise EnqueueError("key= makes one job once: a pipeline "
                                   "(%s.then(...)) cannot take one"
                                   % task.name)
            if self._immediate:
                return self._run_once(task)
            return self.enqueue_messages([task], [self.message_of(task)])[0]
        try:
            result = aio.async_handles(super().enqueue(task), self)
        except backend_errors() as exc:
            raise BackendUnavailable("cannot enqueue: %s"
                                     % self.storage.explain(exc)) from None
        if isinstance(task, Task) and not self._immediate and task.eta \
                and task.eta > self._get_timestamp():
            # The backend put it straight into the schedule, where huey's
            # worker would have added it (and sent this) on first sight.
            self._emit(S.SIGNAL_SCHEDULED, task)
        return result

    def message_of(self, task: Task) -> "tuple[bytes, Any]":
        """(message, priority) of ``task`` for :meth:`enqueue_messages`, its
        ``expires`` resolved from now, as huey's enqueue resolves it."""
        if task.expires:
            task.resolve_expires(self.utc)
        return self.serialize_task(task), task.priority

    def enqueue_messages(self, tasks: "list[Task]", messages: list) -> list:
        """Write the messages of ``tasks`` (:meth:`message_of`) in one step
        of the backend (``enqueue_many``), with huey's signals and result
        handles for each, as :meth:`enqueue` gives them. When some tasks
        carry a ``key`` the step is the backend's ``enqueue_once``: a task
        whose key another job holds is not written, and its handle is that
        job's."""
        written = list(zip(tasks, messages))
        skipped = context.interrupting_task()
        if skipped is not None:
            written = [(t, m) for t, m in written if t.id != skipped]
        if any(getattr(t, "key", None) is not None for t, _ in written):
            return self._enqueue_once(tasks, written)
        if self._has_receivers(S.SIGNAL_ENQUEUED):
            for task, _ in written:
                self._emit(S.SIGNAL_ENQUEUED, task)
        try:
            context.persist(lambda: self.storage.enqueue_many(
                [m for _, m in written]))
        except backend_errors() as exc:
            raise BackendUnavailable("cannot enqueue: %s"
                                     % self.storage.explain(exc)) from None
        if self._has_receivers(S.SIGNAL_SCHEDULED):
            now = self._get_timestamp()
            for task, _ in written:
                if task.eta and task.eta > now:
                    self._emit(S.SIGNAL_SCHEDULED, task)
        return [self._result_of(task) for task in tasks]

    def _enqueue_once(self, tasks: list, written: list) -> list:
        window = self.app.profile.backend.dedupe_window
        keyed = [(data, priority, self._scoped_key(task))
                 for task, (data, priority) in written]
        try:
            held = context.persist(lambda: self.storage.enqueue_once(
                keyed, window))
        except backend_errors() as exc:
            raise BackendUnavailable("cannot enqueue: %s"
                                     % self.storage.explain(exc)) from None
        # huey's signals after the write: only for the jobs it made.
        now = self._get_timestamp()
        handles = {}
        for (task, _), (job_id, stored) in zip(written, held):
            if stored:
                self._emit(S.SIGNAL_ENQUEUED, task)
                if task.eta and task.eta > now:
                    self._emit(S.SIGNAL_SCHEDULED, task)
            else:
                handles[id(task)] = _as_job(task, job_id)
        return [self._result_of(handles.get(id(task), task))
                for task in tasks]

    def _scoped_key(self, task: Task) -> "str | None":
        """A task's key as the backend keeps it: one namespace per task."""
        key = getattr(task, "key", None)
        if key is None:
            return None
        return "%s:%s" % (self._registry.task_to_string(type(task)), key)

    def _run_once(self, task):
        """Immediate mode's ``key=``: the app remembers keys in memory."""
        held = self.app.__dict__.setdefault("_immediate_keys", {})
        scoped = self._scoped_key(task)
        now = time.time()
        job_id, until = held.get(scoped, (None, 0.0))
        if job_id is not None and until > now:
            return self._result_of(_as_job(task, job_id))
        held[scoped] = (task.id, max(now, epoch(task.eta) or 0)
                        + self.app.profile.backend.dedupe_window)
        return super().enqueue(task)

    def _has_receivers(self, signal: str) -> bool:
        receivers = self._signal.receivers
        return bool(receivers.get(signal) or receivers.get("any"))

    def _result_of(self, task: Task):
        """huey's enqueue's return value: a Result, a pipeline's group."""
        if task.on_complete is None:
            return aio.Result(self, task)
        return ResultGroup(self._pipeline_results(task))

    def _emit(self, signal, task, *args, **kwargs):
        if signal == S.SIGNAL_INTERRUPTED and self.hands_back:
            with context.interrupting(task.id):
                return super()._emit(signal, task, *args, **kwargs)
        return super()._emit(signal, task, *args, **kwargs)

    def flush(self) -> None:
        """Empty this queue: its pending and scheduled messages and the
        locks and rate limits taken through this huey. Results, revokes and
        counters are the app's: ``App.flush()`` empties them."""
        self.storage.flush_queue()
        self.storage.flush_schedule()
        prefix = self.name + "."
        for key in list(self.storage.result_items()):
            if key.startswith(prefix):
                self.storage.delete_data(key)

    def put_result(self, key, data):
        # After a task ran, the worker holds its outcome through a backend
        # error (context.persist) rather than run the task again.
        stored = context.persist(lambda: super(QueueHuey, self).put_result(
            key, data))
        self._notify_result()
        return stored

    def _notify_result(self) -> None:
        # Wakes the processes awaiting results (``result.aget()``): a hint,
        # as they also read now and then, so a failure only costs latency.
        notify = getattr(self.storage, "notify_results", None)
        if notify is None:
            return
        try:
            notify()
        except backend_errors() as exc:
            logger.debug("could not announce a result: %s", exc)

    def read_schedule(self, timestamp=None):
        # The scheduler asks every second; an unreachable backend is logged
        # a few times, not with a traceback a second.
        try:
            found = super().read_schedule(timestamp)
        except backend_errors() + (BackendUnavailable,) as exc:
            self._outage.failed(exc)
            return []
        self._outage.ok()
        return found

    def read_periodic(self, timestamp):
        return [task for task in super().read_periodic(timestamp)
                if getattr(type(task), "queue", None) == self.queue]

    def is_revoked(self, task, timestamp=None, peek=True):
        # The lease read the revoke keys in its own transaction: ask again
        # only when it found one (revoke_once and revoke_until need huey).
        if not peek and isinstance(task, Task):
            running, revoked = context.leased(task.id)
            if running and revoked is False:
                return False
            if running:
                # A revoke_once or expired revoke_until key is deleted here,
                # by huey, as it restores the task.
                with context.restoring():
                    return super().is_revoked(task, timestamp, peek)
        return super().is_revoked(task, timestamp, peek)

    def delete(self, key):
        # huey deletes a task's revoke key after running it; under hueyq's
        # worker the ack does that in its own transaction, for free.
        if key.startswith("r:") and not context.is_restoring() and \
                context.leased(key[2:])[0]:
            context.note_revoke_cleared()
            return False
        return super().delete(key)


def _as_job(task: Task, job_id: str) -> Task:
    """A copy of ``task`` standing for the job ``job_id`` (the one holding
    its key), so its result handle reads that job's result."""
    other = copy.copy(task)
    other.id = job_id
    other.revoke_id = "r:%s" % job_id
    return other


class BatchTaskWrapper(QueueTaskWrapper):
    """A task called with one item; workers run pending items in batches."""

    def s(self, *args, **kwargs):
        if len(args) != 1 or set(kwargs) - {"eta", "delay", "id", "retries",
                                             "retry_delay", "retry_backoff",
                                             "priority", "expires", "timeout",
                                             "key"}:
            raise TypeError("batch task %s takes exactly one item per call"
                            % self.name)
        return super().s(*args, **kwargs)

    def _arguments(self, item) -> tuple:
        # map(): every element is one item, a tuple too.
        return (item,)


def args_preview(args: tuple, kwargs: dict, limit: int = 200) -> str:
    """A short repr of task arguments with secret-looking keywords hidden."""
    shown = {k: ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
             for k, v in kwargs.items()}
    try:
        text = ", ".join([repr(a) for a in args] +
                         ["%s=%r" % kv for kv in shown.items()])
    except Exception:  # a repr() of user data may raise anything
        text = "<unrepresentable>"
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


class App(huey_api.HueyAPI):
    """One profile's queues, tasks and jobs, and huey's ``Huey`` API over
    all of its queues (``hueyq.huey_api``).

    ``profile`` is a built-in name, a path to a .toml file, or a Profile;
    ``--profile`` (through HUEYQ_PROFILE) wins over it.
    ``store_intermediate_errors`` and ``immediate`` are huey's: a failed
    attempt with retries left stores its error as the result and runs
    ``.error()`` handlers; immediate mode runs tasks as they are called.
    """

    queue_huey_class = QueueHuey

    def __init__(self, profile: "str | Profile | None" = None,
                 name: "str | None" = None, *,
                 overrides: "dict | None" = None,
                 require_secret: bool = True,
                 maintenance: bool = True,
                 store_intermediate_errors: bool = True,
                 immediate: bool = False) -> None:
        self.store_intermediate_errors = store_intermediate_errors
        if isinstance(profile, Profile):
            self.profile = profile
        else:
            self.profile = load_profile(select(profile), overrides=overrides)
        self.name = name or self.profile.app_name
        check_driver(self.profile.store.url)
        security = self.profile.security
        if require_secret and security.require_secret and not security.secret:
            raise ConfigurationError(
                "%s: security.secret: profile %s requires a secret to sign "
                "messages; set HUEYQ_SECRET" % (self.profile.source,
                                                self.profile.name))
        self.serializer = EnvelopeSerializer(
            secret=security.secret, max_size=security.max_message_size,
            compression=security.compression,
            encryption_keys=security.encryption_keys)
        self.registry = Registry()
        #: Task wrappers by registered name (for submission over HTTP).
        self._wrappers: "dict[str, TaskWrapper]" = {}
        #: How this App opens its files (``hueyq.files``): ``create`` unless
        #: it was built inside ``files.access(...)``.
        self.access = files.current_access()
        self._store: "Store | None" = None
        self._lock = threading.Lock()
        #: The backend: every queue's storage and the app's own parts (not
        #: ``backend``, which hueyq.celery's App refuses as Celery's).
        self.queue_backend = backends.AppBackend(
            self.profile.backend.url, self.name, self.profile.queue_names,
            **self._storage_options())
        self._hueys = {q: self.queue_huey_class(self, q)
                       for q in self.profile.queue_names}
        if maintenance:
            from hueyq import maintenance as builtin
            builtin.install(self)
        if immediate:
            self.immediate = True

    def __repr__(self) -> str:
        return "<hueyq.App %s profile=%s>" % (self.name, self.profile.name)

    def _storage_options(self) -> dict:
        url = self.profile.backend.url
        try:
            cls = backends.backend_class(url)
            return cls.shared_options(url, self.access,
                                      **cls.profile_options(self.profile))
        except ConfigurationError as exc:
            raise ConfigurationError("%s: backend.url: %s" % (
                self.profile.source, exc)) from None

    # ------------------------------------------------------------ structure

    @property
    def queues(self) -> "tuple[str, ...]":
        """Names of the enabled queues, highest priority first."""
        return tuple(self._hueys)

    def huey(self, queue: str) -> QueueHuey:
        """The huey instance of ``queue``."""
        try:
            return self._hueys[queue]
        except KeyError:
            raise QueueNotFound("no queue %r in profile %s (queues: %s)"
                                % (queue, self.profile.name,
                                   ", ".join(self.queues))) from None

    def storage(self, queue: str):
        """The backend storage of ``queue``."""
        return self.huey(queue).storage

    @property
    def any_storage(self):
        """The storage of the app's own parts: ``backend.home`` (kept for
        older callers; use :attr:`backend`)."""
        return self.queue_backend.home

    @property
    def store(self) -> Store:
        """The job store, opened on first use."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store(self.profile.store.url, self.name,
                                        access=self.access)
        return self._store

    @property
    def host_id(self) -> str:
        """This host's id in lease owners."""
        return self.profile.host_id

    def explain(self, exc: BaseException) -> str:
        """One line for a user about an error the backend raised."""
        return self.queue_backend.explain(exc)

    def close(self) -> None:
        """Close backend connections and the store."""
        self.queue_backend.close()
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------ tasks

    def task(self, queue: "str | Callable | None" = None, *, retries: int = 0,
             retry_delay: "float | str" = 0, retry_backoff: float = 0,
             priority: "int | None" = None, timeout: "float | str | None" = None,
             expires: "float | str | None" = None,
             time_limit: "float | str | None" = None,
             memory: "int | str | None" = None, name: "str | None" = None,
             context: bool = False,
             soft_time_limit: "float | str | None" = None,
             http: bool = False, **kwargs: Any):
        """Decorate a function as a task (huey's ``task`` plus a queue);
        ``http=True`` lets ``POST /api/tasks/<name>`` enqueue it."""
        if callable(queue):
            return self.task()(queue)

        def decorator(func):
            q = self._route(func, name, queue)
            self._check_memory(q, func, memory)
            return self.huey(q).task(
                retries=retries, retry_delay=_seconds(retry_delay),
                retry_backoff=retry_backoff, priority=priority,
                timeout=_seconds(timeout), expires=_seconds(expires),
                name=name, context=context, queue=q, http=http,
                **_limits(time_limit, memory, soft_time_limit),
                **kwargs)(func)
        return decorator

    def periodic_task(self, validate_datetime: Callable, queue: "str | None"
                      = None, *, retries: int = 0, retry_delay: float = 0,
                      priority: "int | None" = None,
                      timeout: "float | str | None" = None,
                      time_limit: "float | str | None" = None,
                      memory: "int | str | None" = None,
                      name: "str | None" = None,
                      soft_time_limit: "float | str | None" = None,
                      **kwargs: Any):
        """Decorate a function to run on a schedule (huey's crontab)."""
        def decorator(func):
            q = self._route(func, name, queue)
            return self.huey(q).periodic_task(
                validate_datetime, retries=retries,
                retry_delay=_seconds(retry_delay), priority=priority,
                timeout=_seconds(timeout), name=name, queue=q,
                **_limits(time_limit, memory, soft_time_limit),
                **kwargs)(func)
        return decorator

    def batch_task(self, queue: "str | None" = None, *, max_size: int = 64,
                   max_wait: "float | str" = "250ms", retries: int = 0,
                   retry_delay: "float | str" = 0, retry_backoff: float = 0,
                   priority: "int | None" = None,
                   time_limit: "float | str | None" = None,
                   memory: "int | str | None" = None,
                   name: "str | None" = None, **kwargs: Any):
        """Decorate ``func(items) -> results`` as a batched task.

        Each call enqueues one item and returns that item's own Result; a
        worker takes up to ``max_size`` pending items of the task (waiting at
        most ``max_wait`` for the batch to fill), calls ``func`` once with the
        list, and expects one result per item, in order (an exception instance
        as a result fails just that item). Every item stays its own job, with
        its own result, retries and record.
        """
        if max_size < 1:
            raise ConfigurationError("batch_task max_size must be >= 1")

        def decorator(func):
            q = self._route(func, name, queue)

            def one(item):
                value = batch_results(func([item]), 1)[0]
                if isinstance(value, BaseException):
                    raise value
                return value
            one.__name__, one.__module__ = func.__name__, func.__module__
            one.__doc__ = func.__doc__
            return self.register_wrapper(BatchTaskWrapper(
                self.huey(q), one, name=name, default_retries=retries,
                default_retry_delay=_seconds(retry_delay),
                default_retry_backoff=retry_backoff, default_priority=priority,
                queue=q, batch_size=max_size,
                batch_wait=_seconds(max_wait), batch_func=staticmethod(func),
                **_limits(time_limit, memory), **kwargs))
        return decorator

    def _check_memory(self, queue: str, func: Callable,
                      memory: "int | str | None") -> None:
        limit = self.profile.queues[queue].memory_limit
        if memory is not None and limit and parse_size(memory) > limit:
            raise ConfigurationError(
                "task %s declares memory=%s but queue %s has memory_limit %s: "
                "it could never start" % (func.__name__, memory, queue,
                                          format_size(limit)))

    def _route(self, func: Callable, name: "str | None",
               queue: "str | None") -> str:
        if queue is not None:
            self.profile.queue(queue)
            return queue
        short = name or func.__name__
        full = "%s.%s" % (func.__module__, short)
        routed = self.profile.route(full, short)
        if routed is not None:
            return routed
        if defaults.DEFAULT_QUEUE in self.queues:
            return defaults.DEFAULT_QUEUE
        return self.queues[-1]

    def check_worker_types(self, queues: "Iterable[str]") -> None:
        """Refuse (ConfigurationError) a task an async queue among
        ``queues`` cannot run: a plain function or a batch task."""
        asynchronous = {q for q in queues
                        if self.profile.queues[q].worker_type == "async"}
        for name, cls in sorted(self.registry._registry.items()):
            queue = getattr(cls, "queue", None)
            if queue not in asynchronous:
                continue
            if getattr(cls, "batch_func", None) is not None:
                raise ConfigurationError(
                    "batch task %s is on async queue %s: batch tasks need a "
                    "thread or process queue" % (name, queue))
            if not aio.is_async_task(cls):
                raise ConfigurationError(
                    "task %s is not an async def but its queue %s has "
                    "worker_type = \"async\": make it async def or route "
                    "it to a thread or process queue" % (name, queue))

    def task_names(self) -> "list[str]":
        """Registered task names (``module.name``)."""
        return sorted(self.registry._registry)

    def register_wrapper(self, wrapper: TaskWrapper) -> TaskWrapper:
        """Note a task's wrapper under its registered name; returns it."""
        name = self.registry.task_to_string(wrapper.task_class)
        self._wrappers[name] = wrapper
        return wrapper

    def http_task(self, name: str) -> "TaskWrapper | None":
        """The task ``POST /api/tasks/<name>`` enqueues: one declared with
        ``http=True`` or named in the profile's ``web.submit_tasks``; None
        for any other name."""
        wrapper = self._wrappers.get(name)
        if wrapper is None or not (
                getattr(wrapper.task_class, "http", False)
                or name in self.profile.web.submit_tasks):
            return None
        return wrapper

    def submit(self, task: Task, queue: "str | None" = None):
        """Enqueue ``task`` on ``queue`` (None: its own), as the JSON API's
        ``POST /api/tasks/<name>`` does; a retry of it goes back to the
        task's own queue. Returns huey's Result."""
        if queue is None:
            return self.enqueue(task)
        huey = self.huey(queue)
        return context.persist(lambda: huey._enqueue(task))

    def task_queue(self, task_name: str) -> "str | None":
        """The queue a registered task is enqueued on."""
        cls = self.registry._registry.get(task_name)
        return getattr(cls, "queue", None) if cls is not None else None

    def enqueue_many(self, tasks: "Iterable[Task]") -> list:
        """Enqueue many jobs at once: ``tasks`` are huey's tasks
        (``echo.s(1)``, ``add.s(1, 2, priority=5, delay=60)``), of any
        tasks and queues. Each is its own job, with its own id, as
        ``app.enqueue`` would make it (eta or delay: scheduled; priority,
        expires, retries; huey's signals), but each queue's jobs are written
        in one step, waking its workers once: one transaction (one commit)
        on SQLite; on Redis one pipeline (one round trip) of scripts, each
        storing 1,000 jobs atomically.

        Returns huey's result handles in the order of ``tasks``. Every task
        is serialised before anything is written: one that cannot be raises
        EnqueueError and nothing is enqueued. A backend error raises
        BackendUnavailable; queues written before it keep their jobs, and on
        Redis so may the first chunks of its own queue (delivery is at least
        once: enqueue them again)."""
        with collector_paused():
            tasks = list(tasks)
            return self._enqueue_groups(tasks, self._queue_groups(tasks))

    def _enqueue_groups(self, tasks: list, groups: "dict[str, list[int]]"
                        ) -> list:
        """enqueue_many of ``tasks``, whose input positions ``groups``
        lists by queue."""
        messages = {q: self._messages(q, tasks, indexes)
                    for q, indexes in groups.items()}
        results: list = [None] * len(tasks)
        for queue, indexes in groups.items():
            huey = self.huey(queue)
            group = [tasks[i] for i in indexes]
            done = ([huey.enqueue(t) for t in group] if huey.immediate else
                    huey.enqueue_messages(group, messages[queue]))
            for i, result in zip(indexes, done):
                results[i] = result
        return results

    def _queue_groups(self, tasks: list) -> "dict[str, list[int]]":
        """Input positions of ``tasks`` by the queue each is enqueued on."""
        groups: "dict[str, list[int]]" = {}
        for index, task in enumerate(tasks):
            if not isinstance(task, Task):
                raise TypeError(
                    "enqueue_many takes tasks made with task.s(...); item %d "
                    "is %s (enqueue a group or chord with app.enqueue)"
                    % (index, type(task).__name__))
            groups.setdefault(self._home(task).queue, []).append(index)
        return groups

    def _messages(self, queue: str, tasks: list, indexes: list) -> list:
        huey = self.huey(queue)
        if huey.immediate:
            return []
        out = []
        for i in indexes:
            try:
                out.append(huey.message_of(tasks[i]))
            except Exception as exc:  # anything pickle or a task may raise
                raise EnqueueError(
                    "cannot enqueue item %d of %d (%s, id %s): %s: %s; "
                    "nothing was enqueued" % (
                        i, len(tasks), tasks[i].name, tasks[i].id,
                        type(exc).__name__, exc)) from exc
        return out

    def enqueue_raw(self, queue: str, data: bytes,
                    priority: "float | None" = None) -> None:
        """Put an already-encoded message on a queue (retry of a kept one)."""
        try:
            self.storage(queue).enqueue(data, priority)
        except backend_errors() as exc:
            raise BackendUnavailable(str(exc)) from None

    # ------------------------------------------------------------ queries

    def find_message(self, job_id: str) -> "backends.MessageInfo | None":
        """The backend's newest message for a job, across queues."""
        found = []
        for q in self.queues:
            info = self.storage(q).find(job_id)
            if info is not None:
                if info.state == RUNNING:
                    return info
                found.append(info)
        found.sort(key=lambda i: i.updated_at or 0, reverse=True)
        return found[0] if found else None

    def job(self, job_id: str, history: bool = True) -> Job:
        """One job, wherever it is; JobNotFound if it is nowhere."""
        row = self.store.get(job_id)
        message = self.find_message(job_id)
        if row is None and message is None:
            raise JobNotFound("no job %r" % job_id)
        job = merge_job(row, message)
        if job.state == PENDING and job.memory:
            job = _waiting(job, self.storage(job.queue).memory_room())
        if job.state == "complete":
            result, unreadable = self._peek_result(job)
            job = _replace(job, result=result, result_error=unreadable)
        if history:
            job = _replace(job, history=tuple(self.store.history(job_id)))
        return job

    async def ajob(self, job_id: str, history: bool = True) -> Job:
        """:meth:`job` from a coroutine, read on a thread."""
        return await aio.off_loop(self.job, job_id, history)

    async def ajobs(self, *args: Any, **kwargs: Any) -> "list[Job]":
        """:meth:`jobs` from a coroutine, read on a thread."""
        return await aio.off_loop(self.jobs, *args, **kwargs)

    async def aenqueue(self, task: Any):
        """:meth:`enqueue` from a coroutine: the write runs on a thread."""
        return await aio.off_loop(self.enqueue, task)

    def _peek_result(self, job: Job) -> "tuple[Any, str | None]":
        """(result, why it cannot be shown) of a complete job, as read
        paths show it: verified, and built as plain data only
        (EnvelopeSerializer.preview), never a full unpickle."""
        try:
            raw = self.huey(job.queue).storage.peek_data(job.id)
        except QueueNotFound as exc:
            logger.debug("no result for %s: %s", job.id, exc)
            return None, None
        if raw is EmptyData:
            return None, None
        try:
            return self.huey(job.queue).serializer.preview(raw), None
        except BadSignature:
            return None, "result unreadable: bad signature"
        except (Undecodable, PayloadTooLarge) as exc:
            return None, "result unreadable: %s" % exc

    def jobs(self, queue: "str | None" = None, state: "str | None" = None,
             limit: int = 50, before: "float | None" = None,
             offset: int = 0, *, task: "str | None" = None,
             id_prefix: "str | None" = None, error: "str | None" = None,
             since: "float | None" = None, until: "float | None" = None,
             before_id: "str | None" = None) -> "list[Job]":
        """Jobs newest first (by enqueue time, then id), from the backend and
        the store together: a job enqueued a moment ago is listed before any
        consumer has seen it. ``before`` and ``before_id``, the enqueue time
        and id of the previous page's last job, page them (``before`` alone:
        jobs enqueued before it).

        pending, scheduled and running with no other filter list in the
        order they will run instead (``offset`` pages them). Filters narrow:
        ``task`` (a full name, or its last dotted part: ``echo``),
        ``id_prefix``, ``error`` (text in the error or reason, searched in
        the store's newest jobs, see :data:`hueyq.store.ERROR_WINDOW`),
        ``since <= enqueued_at < until``."""
        queues = [queue] if queue else list(self.queues)
        if queue is not None:
            self.huey(queue)
        if state is not None and state not in STATES:
            raise ValueError("unknown state %r (states: %s)"
                             % (state, ", ".join(STATES)))
        search = self.job_filters(task, id_prefix, error, since, until)
        filtered = any(v is not None for v in search.values())
        if state in (PENDING, SCHEDULED, RUNNING) and not filtered:
            return self._live_jobs(queues, state, limit, offset)
        live = ()
        if state in (None, PENDING, SCHEDULED, RUNNING) and not error:
            live = self._newest_live(queues, state, limit, before, search,
                                     before_id)
        rows = []
        if state not in (PENDING, SCHEDULED, RUNNING):
            # Every queue's rows (not just the enabled ones'): no IN list
            # to steer the store away from its (app, enqueued_at) index.
            rows = self.store.jobs(queue=queue, state=state, limit=limit,
                                   before=before, before_id=before_id,
                                   **search)
        return self._merge_page(live, rows, state, limit)

    def count_jobs(self, queue: "str | None" = None,
                   state: "str | None" = None, *,
                   states: "tuple[str, ...] | None" = None,
                   **filters: Any) -> int:
        """How many stored jobs match ``state`` (or any of ``states``) and
        the filters of :meth:`jobs`. Finished jobs are all in the store;
        pending ones no consumer has seen yet are not."""
        if queue is not None:
            self.huey(queue)
        return self.store.count(queue=queue, state=state, states=states,
                                **self.job_filters(**filters))

    def job_filters(self, task: "str | None" = None,
                    id_prefix: "str | None" = None,
                    error: "str | None" = None, since: "float | None" = None,
                    until: "float | None" = None) -> dict:
        """The store's search arguments for the filters of :meth:`jobs`."""
        return dict(tasks=self.task_matches(task) if task else None,
                    id_prefix=id_prefix or None, error=error or None,
                    since=since, until=until)

    def task_matches(self, name: str) -> "list[str]":
        """Full task names that ``name`` means: every registered or recorded
        task called ``name`` or whose name ends with ``.name`` (``name``
        itself when none is)."""
        known = set(self.task_names()) | set(self.store.task_names())
        return sorted(n for n in known if n == name
                      or n.endswith("." + name)) or [name]

    def _newest_live(self, queues: list, state: "str | None", limit: int,
                     before: "float | None", search: dict,
                     before_id: "str | None" = None) -> list:
        states = (state,) if state else (PENDING, SCHEDULED, RUNNING)
        found = []
        for q in queues:
            storage = self.storage(q)
            try:
                found.extend(_newest_page(storage, limit, before, before_id,
                                          search, states))
            except backend_errors() as exc:
                raise BackendUnavailable(storage.explain(exc)) from None
        if search["until"] is not None:
            found = [m for m in found
                     if (m.enqueued_at or 0) < search["until"]]
        found.sort(key=_newest_first, reverse=True)
        return found[:limit]

    def _live_jobs(self, queues: list, state: str, limit: int,
                   offset: int) -> "list[Job]":
        messages = []
        for q in queues:
            messages.extend(self.storage(q).list_messages(
                state, limit=limit + offset, offset=0))
        if len(queues) > 1:
            messages.sort(key=lambda m: m.enqueued_at or 0, reverse=True)
        messages = messages[offset:offset + limit]
        rows = {}
        if state == RUNNING and messages:
            rows = self.store.get_many(m.task_id for m in messages)
        jobs = [merge_job(rows.get(m.task_id), m) for m in messages]
        if state == PENDING:
            rooms = {q: self.storage(q).memory_room()
                     for q in {j.queue for j in jobs if j.memory}}
            jobs = [_waiting(j, rooms[j.queue]) if j.memory else j
                    for j in jobs]
        return jobs

    def _merge_page(self, live, rows: list, state: "str | None",
                    limit: int) -> "list[Job]":
        """One page from the backend's newest live messages and the store's
        newest rows: each job once, its state as :func:`merge_job` says."""
        by_id = {m.task_id: m for m in live}
        stored = self.store.get_many(by_id)
        stored.update((r["id"], r) for r in rows if r["id"] not in by_id)
        jobs = []
        for job_id, row in stored.items():
            message = by_id.get(job_id)
            if message is None and row["state"] not in FINISHED:
                # The store may be behind the backend: ask it how things are.
                message = self.storage(row["queue"]).find(job_id) \
                    if row["queue"] in self._hueys else None
            jobs.append(merge_job(row, message))
        jobs += [merge_job(None, m) for m in live if m.task_id not in stored]
        if state is not None:
            jobs = [j for j in jobs if j.state == state
                    or (state == PENDING and j.state == "retrying")]
        jobs.sort(key=lambda j: (j.enqueued_at or 0, j.id), reverse=True)
        jobs = jobs[:limit]
        rooms = {q: self.storage(q).memory_room() for q in
                 {j.queue for j in jobs if j.memory and j.state == PENDING}}
        return [_waiting(j, rooms[j.queue]) if j.queue in rooms else j
                for j in jobs]

    def queue_stats(self, window: float = 3600.0) -> "dict[str, dict]":
        """Per queue, in the words of the glossary (docs/ARCHITECTURE.md): the backend's
        ``pending``, ``scheduled`` and ``running`` jobs and ``retryable``
        messages (kept after a job failed, was cancelled, drained, expired or
        died, so it can be retried); ``paused`` (and ``paused_by``); the jobs
        that ended in the last ``window`` seconds by state
        (``complete_recent``, ``failed_recent``, ``cancelled_recent``,
        ``expired_recent``, ``dead_recent``), the success rate and mean and
        p95 run time over it; for a queue with a memory budget, what
        admission leaves for tasks that declared ``memory=``
        (``memory_room``) and how many of the next 1,000 pending jobs wait
        for more (``waiting_for_memory``)."""
        stats = {}
        for q in self.queues:
            storage = self.storage(q)
            counts = storage.counts()
            flags = storage.flags()
            pauses = jobs.pauses(flags)
            paused_by = sorted(pauses)
            config = self.profile.queues[q]
            room = storage.memory_room()
            waiting = storage.waiting_for_memory(room) \
                if room is not None and counts[PENDING] else 0
            stats[q] = dict(pending=counts[PENDING],
                            scheduled=counts[SCHEDULED],
                            running=counts[RUNNING], retryable=counts[DEAD],
                            paused=bool(paused_by),
                            memory_room=room, waiting_for_memory=waiting,
                            paused_by=paused_by,
                            pauses=pauses,
                            priority=config.priority, workers=config.workers,
                            worker_type=config.worker_type)
        recent = self.store.window(time.time() - window, self.queues)
        for q, figures in recent.items():
            ended = figures["complete"] + figures["failed"] + figures["dead"]
            stats[q].update(
                {state + "_recent": figures[state] for state in FINISHED},
                window=window,
                success_rate=(figures["complete"] / ended) if ended else None,
                mean_runtime=figures["mean_runtime"],
                p95_runtime=figures["p95_runtime"])
        return stats

    def runtimes(self) -> "list[dict]":
        """Status records of the supervisors running this app, freshest
        first; ``age`` is counted by the backend's own clock (this host's
        monotonic clock on SQLite, the server's on Redis), never by
        comparing two hosts' wall clocks."""
        out = []
        for key, (record, age) in self.queue_backend.record_ages(
                "runtime:").items():
            record = runtime_record(record)
            if record is None:
                backends.report_bad("status record %s of %s" % (key, self.name))
                continue
            out.append(dict(record, age=age,
                            alive=age < 3 * record.get("interval", 1.0) + 2))
        out.sort(key=lambda r: r["age"])
        return out

    def workers(self) -> "list[dict]":
        """Every worker process of every live runtime, with its current jobs
        (a thread consumer is one process running several jobs)."""
        by_pid: "dict[tuple, list]" = {}
        for q in self.queues:
            for lease in self.storage(q).leases():
                by_pid.setdefault((lease.host, lease.pid), []).append(
                    {"id": lease.task_id, "task": lease.name,
                     "worker": lease.worker, "started_at": lease.updated_at})
        out = []
        for runtime in self.runtimes():
            if not runtime["alive"]:
                continue
            for worker in runtime.get("workers", []):
                jobs = by_pid.get((runtime["host"], worker["pid"]), [])
                out.append(dict(_worker_words(worker), host=runtime["host"],
                                jobs=jobs))
        return out

    # ------------------------------------------------------------ output

    def output(self, job_id: str, after: int = 0, limit: int = 1000):
        """The chunks of a job's output stream after ``after`` (an
        ``OutputPage``; their ``data`` is JSON text)."""
        return self.queue_backend.read_output(job_id, after, limit)

    def events(self, job_id: str, after: int = 0,
               timeout: "float | None" = None):
        """A job's events as they come (``hueyq.output.Event``: ``state``,
        ``progress``, ``output``), until it has finished or ``timeout``
        seconds passed; ``after`` skips the chunks up to that number.
        JobNotFound for an unknown job."""
        from hueyq import output
        return output.events(self, job_id, after, timeout)

    def aevents(self, job_id: str, after: int = 0,
                timeout: "float | None" = None):
        """:meth:`events` for ``async for event in app.aevents(id)``."""
        from hueyq import output
        return output.aevents(self, job_id, after, timeout)
    def hosts(self) -> "list[dict]":
        """Every host running this app (a host id, ``runtime.host_id``), as
        its runtimes' status records tell, silent ones too until their
        record expires: ``alive`` while one of its runtimes is, ``age``
        (seconds since its freshest heartbeat, on the backend's clock), its
        runtimes' ``pids``, its ``consumers`` (queue, pid, alive, restarts)
        and ``running``, the leases its workers hold now (a silent host's
        are recovered by the others after ``runtime.lease_timeout``)."""
        running: "dict[str, int]" = {}
        for q in self.queues:
            for lease in self.storage(q).leases():
                running[lease.host] = running.get(lease.host, 0) + 1
        hosts: "dict[str, dict]" = {}
        for runtime in self.runtimes():
            host = hosts.setdefault(runtime["host"], {
                "host": runtime["host"], "alive": False,
                "age": runtime["age"], "pids": [], "consumers": [],
                "running": running.get(runtime["host"], 0)})
            host["alive"] = host["alive"] or runtime["alive"]
            host["age"] = min(host["age"], runtime["age"])
            host["pids"].append(runtime["pid"])
            consumers = runtime.get("consumers")
            for c in consumers if isinstance(consumers, list) else ():
                if isinstance(c, dict) and isinstance(c.get("queue"), str):
                    host["consumers"].append({
                        "queue": c["queue"], "pid": c.get("pid"),
                        "alive": bool(c.get("alive")) and runtime["alive"],
                        "restarts": c.get("restarts") or 0})
        for name, count in running.items():
            if name not in hosts and name is not None:
                # Leases of a host whose status record has expired.
                hosts[name] = {"host": name, "alive": False, "age": None,
                               "pids": [], "consumers": [], "running": count}
        return sorted(hosts.values(), key=lambda h: h["host"])

    # ------------------------------------------------------------ controls

    def pause(self, queue: str, reason: str = "") -> bool:
        """Stop consumers taking from ``queue``; nothing is discarded."""
        from hueyq import control
        return control.pause(self, queue, by="user", reason=reason)

    def resume(self, queue: str) -> bool:
        """Undo a user's pause of ``queue``."""
        from hueyq import control
        return control.resume(self, queue, by="user")

    def drain(self, queue: str) -> int:
        """Remove every pending job of ``queue`` (recorded as cancelled,
        reason drained); returns how many."""
        from hueyq import control
        return control.drain(self, queue)

    def cancel(self, job_id: str) -> "CancelResult":
        """Cancel a job: pending ones never start, running ones stop."""
        from hueyq import control
        return control.cancel(self, job_id)

    def retry(self, job_id: str) -> Job:
        """Run a failed, cancelled or dead job again."""
        from hueyq import control
        return control.retry(self, job_id)

    def retry_matching(self, state: "str | None" = None,
                       queue: "str | None" = None, **filters: Any):
        """Retry the failed (or dead, or both when ``state`` is None) jobs
        that match the filters of :meth:`jobs`, newest first, at most
        :data:`hueyq.control.BULK_LIMIT`; returns a BulkResult."""
        from hueyq import control
        return control.retry_many(self, state, queue, **filters)

    def delete_matching(self, state: "str | None" = None,
                        queue: "str | None" = None, **filters: Any):
        """Delete the failed or dead jobs that match the filters (records,
        history, results and kept messages), as :meth:`retry_matching`
        chooses them; returns a BulkResult."""
        from hueyq import control
        return control.delete_many(self, state, queue, **filters)


def _worker_words(worker: dict) -> dict:
    """A worker's status record in the profile's words (a runtime of an
    older version wrote ``soft_limit`` and ``hard_limit``)."""
    worker = dict(worker)
    for old, new in (("soft_limit", "worker_memory_soft"),
                     ("hard_limit", "worker_memory_hard")):
        if old in worker:
            worker.setdefault(new, worker.pop(old))
    return worker


def _replace(job: Job, **changes: Any) -> Job:
    import dataclasses
    return dataclasses.replace(job, **changes)


def merge_job(row: "dict | None", message) -> Job:
    """A Job from the store's row and the backend's message (either None).

    The backend is right about live states; the store about how a job ended
    and about a retry waiting in the queue.
    """
    if message is None:
        return _from_row(row)
    live = message.state
    finished = row is not None and row["state"] in FINISHED
    if live == DEAD:
        state = row["state"] if finished else REASON_STATE.get(message.reason,
                                                               "dead")
    elif live == DONE:
        state = row["state"] if finished else "complete"
    elif finished and _row_is_later(row, message):
        state = row["state"]  # done; its message is about to be acked
    elif row is not None and row["state"] == "retrying" and live != RUNNING:
        state = "retrying"
    else:
        state = live
    base = _from_row(row) if row is not None else Job(
        id=message.task_id, task=message.name, queue=message.queue,
        state=state)
    if state in (PENDING, SCHEDULED, RUNNING, "retrying"):
        # Not finished: the row's end times are the previous attempt's, and
        # a row that started before this lease reports that attempt's
        # progress until the worker's first record of this one arrives.
        stale = live == RUNNING and (
            row is None or row["state"] != RUNNING or
            (base.started_at or 0) < (message.updated_at or 0) - 1)
        base = _replace(base, finished_at=None, duration=None,
                        progress=None if stale else base.progress,
                        message=None if stale else base.message)
    return _replace(
        base, state=state, queue=message.queue, task=base.task or message.name,
        priority=message.priority,
        enqueued_at=base.enqueued_at or message.enqueued_at,
        redeliveries=max(base.redeliveries, message.redeliveries),
        worker=message.holder if live == RUNNING else base.worker,
        started_at=message.updated_at if live == RUNNING else base.started_at,
        eta=message.eta, reason=base.reason or message.reason,
        error=base.error or message.last_error,
        args=base.args or message.meta.get("args"),
        has_payload=base.has_payload or live == DEAD,
        finished_at=base.finished_at or (message.updated_at if live == DONE
                                         else None),
        progress=100.0 if live == DONE and state == "complete"
        else base.progress,
        memory=int(message.meta.get("memory") or 0) or None)


def _row_is_later(row: dict, message) -> bool:
    """Whether the store's row ended the message's latest delivery (by the
    job's own order when both know it, else by time)."""
    if row.get("seq") is not None and message.lease_seq is not None:
        return row["seq"] >= change_seq(message.lease_seq, ENDED)
    return row["updated_at"] >= (message.updated_at or 0)


def runtime_record(record: Any) -> "dict | None":
    """A supervisor's status record with the fields readers use of the types
    they expect, its workers that are well-formed; None when it is not one
    (forged or corrupt)."""
    if not isinstance(record, dict) or not isinstance(record.get("host"), str) \
            or not _is_int(record.get("pid")):
        return None
    record = dict(record)
    for key, default in (("interval", 1.0), ("started_at", time.time()),
                         ("heartbeat", time.time())):
        if not _is_number(record.get(key)):
            record[key] = default
    workers = record.get("workers")
    record["workers"] = [w for w in (workers if isinstance(workers, list)
                                     else ()) if _worker_ok(w)]
    return record


def _worker_ok(worker: Any) -> bool:
    return isinstance(worker, dict) and isinstance(worker.get("queue"), str) \
        and _is_int(worker.get("pid")) and isinstance(worker.get("kind"), str) \
        and all(worker.get(k) is None or _is_int(worker[k]) for k in (
            "memory", "rss", "soft_limit", "hard_limit")) \
        and (worker.get("gpu") is None or isinstance(worker["gpu"], dict))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value == value and abs(value) != float("inf")


def _waiting(job: Job, room: "int | None") -> Job:
    """The job, marked as waiting for memory when what it declared does not
    fit in its queue's memory room (None: the queue has no budget)."""
    if fits(job.memory, room):
        return job
    return _replace(job, waiting=waiting(job.memory, room))


def _from_row(row: dict) -> Job:
    worker = row.get("worker")
    if worker and row.get("host"):
        worker = "%s:%s:%s" % (row["host"], row.get("pid"), worker)
    return Job(id=row["id"], task=row["task"], queue=row["queue"],
               state=row["state"], attempts=row["attempts"],
               redeliveries=row["redeliveries"], priority=row["priority"],
               progress=row["progress"], message=row["message"],
               error=row["error"] or None, traceback=row["traceback"] or None,
               reason=row["reason"] or None, enqueued_at=row["enqueued_at"],
               started_at=row["started_at"], finished_at=row["finished_at"],
               updated_at=row["updated_at"], duration=row["duration"],
               worker=worker, args=row["args"],
               has_payload=row.get("payload") is not None)


def batch_results(values: Any, count: int) -> list:
    """Check a batch function's return value: one result per item."""
    if not isinstance(values, (list, tuple)) or len(values) != count:
        raise TypeError("a batch task must return a list with one result per "
                        "item: got %s for %d items"
                        % (type(values).__name__ if not isinstance(
                            values, (list, tuple)) else len(values), count))
    return list(values)


def _seconds(value: "float | str | None") -> "float | None":
    if value is None or isinstance(value, (int, float)):
        return value
    return parse_duration(value)


def _limits(time_limit: "float | str | None",
            memory: "int | str | None",
            soft_time_limit: "float | str | None" = None) -> dict:
    out = {}
    if time_limit is not None:
        out["time_limit"] = _seconds(time_limit)
    if memory is not None:
        out["memory"] = parse_size(memory)
    if soft_time_limit is not None:
        out["soft_time_limit"] = _seconds(soft_time_limit)
        if out.get("time_limit") and out["soft_time_limit"] >= \
                out["time_limit"]:
            raise ConfigurationError("soft_time_limit (%s) must be under "
                                     "time_limit (%s)" % (soft_time_limit,
                                                          time_limit))
    return out


def load_app(spec: str) -> App:
    """Import ``module[:attr]`` and return the App there (attr ``app``)."""
    import importlib
    import os
    import sys
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError("--app: cannot import %r (no module "
                                     "named %r)" % (module_name, exc.name)) \
                from None
        raise
    target = getattr(module, attr, None)
    if not isinstance(target, App):
        raise ConfigurationError("--app: %s has no hueyq.App named %r"
                                 % (module_name, attr))
    return target


#: The most messages enqueued at one same instant a page of the newest
#: jobs reads from a backend to order them by id.
TIES_LIMIT = 10_000


def _newest_first(message) -> tuple:
    return (message.enqueued_at or 0, message.task_id or "")


def _newest_page(storage, limit: int, before: "float | None",
                 before_id: "str | None", search: dict, states: tuple
                 ) -> list:
    """At least the ``limit`` newest live messages of one backend queue by
    (enqueue time, id) after the cursor (``before``, ``before_id``). A
    backend orders messages enqueued at the same instant by its own handle,
    not by id, so ties at the cursor, and a tie group the page's end would
    cut, are read whole."""
    def newest(count, until, since=None):
        if since is not None and search["since"] is not None:
            since = max(since, search["since"])
        return storage.newest(
            count, before=until, names=search["tasks"],
            id_prefix=search["id_prefix"],
            since=search["since"] if since is None else since, states=states)

    def ties(at):
        return newest(TIES_LIMIT, math.nextafter(at, math.inf), at)
    found = newest(limit + 1, before)
    if len(found) > limit and found[limit].enqueued_at is not None and \
            found[limit].enqueued_at == found[limit - 1].enqueued_at:
        found += ties(found[limit].enqueued_at)
    if before is not None and before_id is not None:
        found += [m for m in ties(before) if m.task_id < before_id]
    return list({m.handle: m for m in found}.values())
