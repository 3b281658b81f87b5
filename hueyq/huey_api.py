"""huey's ``Huey`` API on the App, with app-wide meaning.

Code written for one ``Huey`` moves to hueyq by changing its constructor:
``App`` offers huey's user-facing methods (signals, hooks, locks, rate
limits, enqueue, revokes, listing, results, flush, immediate mode) and gives
each the meaning it has for a single huey, over every queue of the app. A
signal receiver, a hook or a startup function registers on every queue's
huey; a task, a pipeline, a group or a chord goes to each task's own queue;
listings cover every queue, highest priority first; results, revokes, locks
and counters live in one namespace per app, so any queue's huey finds them.

Also here: what the App's hueys need to keep that meaning, the in-memory
storage of immediate mode (a queue and schedule per queue, one result store
per app) and the wrapper that puts a serializer a user set on a huey inside
hueyq's envelope.
"""

from typing import Any, Callable

from huey.api import Huey, RateLimit, Task, TaskLock, TaskWrapper
from huey.storage import MemoryStorage


class ImmediateStorage(MemoryStorage):
    """huey's in-memory storage for one queue in immediate mode; results,
    revokes, locks and counters are shared by the app's queues, as they are
    on its real backend."""

    def __init__(self, name: str, app: Any) -> None:
        shared = app.__dict__.setdefault("_immediate_kv", _SharedKV())
        super().__init__(name)
        self._shared = shared

    @property
    def _results(self) -> dict:
        return self._shared.results

    @_results.setter
    def _results(self, value: dict) -> None:
        if "_shared" in self.__dict__:  # flush_results(), not __init__
            self._shared.results = value

    @property
    def _counters(self) -> dict:
        return self._shared.counters

    @_counters.setter
    def _counters(self, value: dict) -> None:
        if "_shared" in self.__dict__:
            self._shared.counters = value


class _SharedKV:
    def __init__(self) -> None:
        self.results: dict = {}
        self.counters: dict = {}


class ForeignSerializer:
    """A serializer a user set on an App's huey (huey's own ``Serializer``,
    say) writing the body of hueyq's envelope: the header, signature, size
    limit and encryption stay, and only workers unpickle."""

    def __init__(self, envelope: Any, inner: Any) -> None:
        self.envelope = envelope
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.envelope, name)

    def serialize(self, data: Any) -> bytes:
        return self.envelope.serialize(self.inner.serialize(data))

    def serialize_with_header(self, data: Any, header: dict) -> bytes:
        return self.envelope.serialize_with_header(self.inner.serialize(data),
                                                   header)

    def preview(self, data: bytes) -> Any:
        """What a read path may show (EnvelopeSerializer.preview)."""
        return self.envelope.preview(data, inner=self.inner)

    def deserialize(self, data: bytes) -> Any:
        value = self.envelope.deserialize(data)
        # Written before the serializer was set: hueyq's own pickle.
        return self.inner.deserialize(value) if isinstance(value, bytes) \
            else value


class AppLock(TaskLock):
    """huey's TaskLock named for the app (``<app>.lock.<name>``), not for
    one queue's huey, so tasks of every queue share it."""

    def __init__(self, app: Any, name: str, ttl: "int | None" = None) -> None:
        super().__init__(app.any_huey, name, ttl)
        self._huey._locks.discard(self._key)
        self._key = "%s.lock.%s" % (app.name, name)
        for huey in app._hueys.values():
            huey._locks.add(self._key)


class AppRateLimit(RateLimit):
    """huey's RateLimit counted for the app (``<app>.rl.<name>``)."""

    def __init__(self, app: Any, name: str, limit: int, per: int,
                 retry: bool = True) -> None:
        super().__init__(app.any_huey, name, limit, per, retry=retry)
        self._counter_key = "%s.rl.%s" % (app.name, name)
        self._window_key = "%s.rl.%s.w" % (app.name, name)


class HueyAPI:
    """huey's user-facing ``Huey`` methods over every queue of an App.

    The App provides ``_hueys`` (queue name to huey), ``huey(queue)``,
    ``queues``, ``name`` and ``task()``.
    """

    utc = True
    results = True
    store_none = False

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return self.pending_count()

    @property
    def any_huey(self):
        """The first (highest-priority) queue's huey: for what is the app's
        (results, revokes, locks, counters), any queue's huey would do."""
        return next(iter(self._hueys.values()))

    def _home(self, task: Any):
        """The huey of a task's queue (a Task, a class or a TaskWrapper)."""
        cls = task.task_class if isinstance(task, TaskWrapper) else (
            task if isinstance(task, type) else type(task))
        queue = getattr(cls, "queue", None)
        return self._hueys.get(queue) or self.any_huey

    # ------------------------------------------------------------ immediate

    @property
    def immediate(self) -> bool:
        """huey's immediate mode, for every queue at once: tasks run when
        called, on in-memory storage (one result store for the app)."""
        return all(h.immediate for h in self._hueys.values())

    @immediate.setter
    def immediate(self, value: bool) -> None:
        if value and not self.immediate:
            self.__dict__.pop("_immediate_kv", None)
        for huey in self._hueys.values():
            huey.immediate = value

    # ------------------------------------------------------------ hooks

    def signal(self, *signals: str):
        """Register a receiver of huey's signals for the tasks of every
        queue (all signals when none are named)."""
        def decorator(fn):
            for huey in self._hueys.values():
                huey.signal(*signals)(fn)
            return fn
        return decorator

    def disconnect_signal(self, receiver: Callable, *signals: str) -> None:
        """Disconnect a receiver from every queue (from some signals)."""
        for huey in self._hueys.values():
            huey.disconnect_signal(receiver, *signals)

    def pre_execute(self, name: "str | None" = None):
        """A hook run before every task of every queue (raise
        CancelExecution to skip the task)."""
        return self._hook("pre_execute", name)

    def post_execute(self, name: "str | None" = None):
        """A hook run after every task of every queue: ``fn(task,
        task_value, exc)``."""
        return self._hook("post_execute", name)

    def unregister_pre_execute(self, name: "str | Callable") -> bool:
        return self._unregister("unregister_pre_execute", name)

    def unregister_post_execute(self, name: "str | Callable") -> bool:
        return self._unregister("unregister_post_execute", name)

    def on_startup(self, name: "str | None" = None,
                   queue: "str | None" = None):
        """Run the decorated function in every worker of ``queue`` (every
        queue when None) as it starts, before it takes a task: the place to
        load a model once per worker process. A first argument that names
        one of the app's queues is taken as ``queue``."""
        name, queue = self._name_or_queue(name, queue)
        return self._hook("on_startup", name, queue)

    def on_shutdown(self, name: "str | None" = None,
                    queue: "str | None" = None):
        """Run the decorated function in every worker of ``queue`` (every
        queue when None) as it stops."""
        name, queue = self._name_or_queue(name, queue)
        return self._hook("on_shutdown", name, queue)

    def unregister_on_startup(self, name: "str | Callable") -> bool:
        return self._unregister("unregister_on_startup", name)

    def unregister_on_shutdown(self, name: "str | Callable") -> bool:
        return self._unregister("unregister_on_shutdown", name)

    def _name_or_queue(self, name, queue) -> tuple:
        if queue is None and name in self._hueys:
            return None, name
        if queue is not None:
            self.huey(queue)
        return name, queue

    def _hook(self, kind: str, name: "str | None",
              queue: "str | None" = None):
        def decorator(fn):
            for q in ([queue] if queue else self.queues):
                getattr(self.huey(q), kind)(name or fn.__name__)(fn)
            return fn
        return decorator

    def _unregister(self, method: str, name: "str | Callable") -> bool:
        found = [getattr(h, method)(name) for h in self._hueys.values()]
        return any(found)

    # ------------------------------------------------------------ decorators

    def context_task(self, obj: Any, as_argument: bool = False,
                     **kwargs: Any):
        """huey's context_task: the task runs inside ``with obj``."""
        return Huey.context_task(self, obj, as_argument, **kwargs)

    def lock_task(self, lock_name: str, ttl: "int | None" = None) -> AppLock:
        """A lock shared by the tasks of every queue (decorator or context
        manager), as huey's ``lock_task``."""
        return AppLock(self, lock_name, ttl)

    def is_locked(self, lock_name: str) -> bool:
        return AppLock(self, lock_name).is_locked()

    def flush_locks(self, *names: str) -> "set[str]":
        """Release the app's locks (every lock declared through any huey of
        the app, and ``names``); returns the names released."""
        keys = set()
        for huey in self._hueys.values():
            keys.update(huey._locks)
        keys.update("%s.lock.%s" % (self.name, n.strip()) for n in names)
        return {key.split(".lock.", 1)[-1] for key in keys
                if self.any_huey.delete(key)}

    def rate_limit(self, name: str, limit: int, per: int,
                   retry: bool = True) -> AppRateLimit:
        """A rate limit counted over the tasks of every queue."""
        return AppRateLimit(self, name, limit, per, retry=retry)

    # ------------------------------------------------------------ enqueue

    def enqueue(self, task: Any):
        """Enqueue a task, a pipeline, a group or a chord; every task goes to
        its own queue. Returns huey's Result (ResultGroup, ChordResult)."""
        if isinstance(task, Task):
            return self._home(task).enqueue(task)
        return self.any_huey.enqueue(task)

    def dequeue(self):
        """huey's at-most-once dequeue: the next task of the highest-priority
        queue that has one (hueyq's workers lease instead)."""
        for huey in self._hueys.values():
            task = huey.dequeue()
            if task is not None:
                return task
        return None

    def execute(self, task: Task, timestamp: Any = None) -> Any:
        """Run a task here, now, as a worker of its queue would."""
        return self._home(task).execute(task, timestamp)

    def ready_to_run(self, task: Task, timestamp: Any = None) -> bool:
        return self.any_huey.ready_to_run(task, timestamp)

    # ------------------------------------------------------------ revokes

    def revoke(self, task: Task, revoke_until: Any = None,
               revoke_once: bool = False) -> None:
        self.any_huey.revoke(task, revoke_until, revoke_once)

    def restore(self, task: Task) -> bool:
        return self.any_huey.restore(task)

    def revoke_by_id(self, id: str, revoke_until: Any = None,
                     revoke_once: bool = False) -> None:
        self.any_huey.revoke_by_id(id, revoke_until, revoke_once)

    def restore_by_id(self, id: str) -> bool:
        return self.any_huey.restore_by_id(id)

    def revoke_all(self, task_class: Any, revoke_until: Any = None,
                   revoke_once: bool = False) -> None:
        """Revoke every call of a task (a TaskWrapper or task class)."""
        self._home(task_class).revoke_all(task_class, revoke_until,
                                          revoke_once)

    def restore_all(self, task_class: Any) -> bool:
        return self._home(task_class).restore_all(task_class)

    def is_revoked(self, task: Any, timestamp: Any = None,
                   peek: bool = True) -> bool:
        if isinstance(task, (Task, TaskWrapper, type)):
            return self._home(task).is_revoked(task, timestamp, peek)
        return self.any_huey.is_revoked(task, timestamp, peek)

    # ------------------------------------------------------------ listing

    def pending(self, limit: "int | None" = None) -> list:
        """Pending tasks of every queue, highest priority first, each queue
        in the order its workers take them."""
        return self._gather("pending", limit)

    def scheduled(self, limit: "int | None" = None) -> list:
        """Scheduled tasks of every queue (each queue by eta)."""
        return self._gather("scheduled", limit)

    def _gather(self, method: str, limit: "int | None") -> list:
        out: list = []
        for huey in self._hueys.values():
            if limit is not None and len(out) >= limit:
                break
            out.extend(getattr(huey, method)(
                None if limit is None else limit - len(out)))
        return out

    def pending_count(self) -> int:
        return sum(h.pending_count() for h in self._hueys.values())

    def scheduled_count(self) -> int:
        return sum(h.scheduled_count() for h in self._hueys.values())

    def all_results(self) -> dict:
        """The app's result store: key to serialized value."""
        return self.any_huey.all_results()

    def result_count(self) -> int:
        return self.any_huey.result_count()

    def read_periodic(self, timestamp: Any) -> list:
        """The periodic tasks of every queue due at ``timestamp``."""
        return [task for huey in self._hueys.values()
                for task in huey.read_periodic(timestamp)]

    # ------------------------------------------------------------ results

    def result(self, id: str, blocking: bool = False,
               timeout: "float | None" = None, backoff: float = 1.15,
               max_delay: float = 1.0, revoke_on_timeout: bool = False,
               preserve: bool = False) -> Any:
        """A task's result by id (huey's ``Huey.result``)."""
        return self.any_huey.result(id, blocking, timeout, backoff, max_delay,
                                    revoke_on_timeout, preserve)

    def get(self, key: str, peek: bool = False) -> Any:
        return self.any_huey.get(key, peek)

    def get_raw(self, key: str, peek: bool = False) -> Any:
        return self.any_huey.get_raw(key, peek)

    def put(self, key: str, data: Any) -> Any:
        return self.any_huey.put(key, data)

    def put_result(self, key: str, data: Any) -> Any:
        return self.any_huey.put_result(key, data)

    def put_if_empty(self, key: str, data: Any,
                     ttl: "int | None" = None) -> bool:
        return self.any_huey.put_if_empty(key, data, ttl)

    def delete(self, key: str) -> bool:
        return self.any_huey.delete(key)

    def flush(self) -> None:
        """Empty every queue and schedule of the app and its result store
        (results, revokes, locks) and counters. Dead letters, pause flags,
        the runtime's records and the job store stay."""
        for huey in self._hueys.values():
            huey.storage.flush_queue()
            huey.storage.flush_schedule()
        storage = self.any_huey.storage
        storage.flush_results()
        storage.flush_counters()

