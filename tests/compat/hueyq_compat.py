"""pytest plugin that runs huey's own test suite against hueyq.

Loaded with ``-p hueyq_compat`` by ``tests/compat/run.py`` (``HUEYQ_COMPAT``
names the configuration); it swaps what huey's tests run on and skips, with
their reasons, the tests in ``skips.py``:

* ``baseline``: huey's own storages, untouched (must be green);
* ``backend-sqlite`` / ``backend-redis``: huey's ``Huey`` on hueyq's backend
  classes, ``SqliteBackend`` (a fresh file per huey) or ``RedisBackend`` (the
  run's private redis-server, emptied before each test), in place of huey's
  memory, SQLite and Redis storages;
* ``app-sqlite`` / ``app-redis``: the hueys an ``App`` builds (a fresh App
  per test), with huey's tests' ``execute_next`` and consumers running
  through hueyq's leasing worker.

Every configuration points redis-py's default port at the private server
(``HUEYQ_COMPAT_REDIS_PORT``), so huey's Redis tests never touch a shared
one.
"""

import os
import tempfile
import threading
import uuid

import pytest

CONFIG = os.environ.get("HUEYQ_COMPAT", "baseline")
REDIS_PORT = int(os.environ.get("HUEYQ_COMPAT_REDIS_PORT") or 6379)
TMP = tempfile.mkdtemp(prefix="hueyq-compat-")


def _point_redis_at_private_server() -> None:
    import redis
    original = redis.ConnectionPool.__init__

    def init(self, *args, **kwargs):
        if "path" not in kwargs and kwargs.get("port", 6379) == 6379 and \
                kwargs.get("host", "localhost") in ("localhost", "127.0.0.1"):
            kwargs["port"] = REDIS_PORT
        original(self, *args, **kwargs)
    redis.ConnectionPool.__init__ = init


def _redis_url() -> str:
    return "redis://127.0.0.1:%d/0" % REDIS_PORT


# ---------------------------------------------------------------- backends

def _backend_classes():
    from hueyq.backends.redis import RedisBackend
    from hueyq.backends.sqlite import SqliteBackend

    class CompatSqlite(SqliteBackend):
        """hueyq's SQLite backend taking huey's SqliteStorage arguments; a
        huey without a filename (huey's memory storage) gets a new file."""

        def __init__(self, name="huey", filename=None, **kwargs):
            kwargs.pop("create_tables", None)
            filename = filename or os.path.join(TMP, uuid.uuid4().hex + ".db")
            super().__init__("compat.%s" % name, filename=filename, **kwargs)

    class CompatRedis(RedisBackend):
        """hueyq's Redis backend taking huey's RedisStorage arguments, on
        the run's private server."""

        def __init__(self, name="huey", blocking=True, read_timeout=1,
                     connection_pool=None, url=None, **kwargs):
            kwargs.pop("clean_name", None)
            if connection_pool is None and url is None and not any(
                    kwargs.get(k) for k in ("host", "port", "db")):
                url = _redis_url()
            super().__init__("compat.%s" % name, url=url,
                             connection_pool=connection_pool,
                             read_timeout=read_timeout, blocking=blocking,
                             **kwargs)
    return CompatSqlite, CompatRedis


def _swap_storages(kind: str) -> None:
    from huey import api
    sqlite_class, redis_class = _backend_classes()
    chosen = sqlite_class if kind == "sqlite" else redis_class
    api.MemoryHuey.storage_class = chosen
    if kind == "sqlite":
        api.SqliteHuey.storage_class = sqlite_class
    else:
        for cls in (api.RedisHuey, api.PriorityRedisHuey):
            cls.storage_class = redis_class


# ---------------------------------------------------------------- apps

_PROFILE = """extends = "dev"
app_name = "%(name)s"
[backend]
url = "%(backend)s"
[store]
url = "sqlite://%(store)s"
flush_interval = "100ms"
"""


def make_app_huey(kind: str, **huey_options):
    """The ``medium`` queue's huey of a fresh App on ``kind``'s backend."""
    from hueyq.app import App
    name = "c%s" % uuid.uuid4().hex[:10]
    backend = ("sqlite://%s" % os.path.join(TMP, name + ".db")
               if kind == "sqlite" else _redis_url())
    path = os.path.join(TMP, name + ".toml")
    with open(path, "w") as fh:
        fh.write(_PROFILE % {"name": name, "backend": backend,
                             "store": os.path.join(TMP, name + "-store.db")})
    app = App(path, maintenance=False, **huey_options)
    huey = app.huey("medium")
    huey.storage.flush_all()
    return huey


class Driver:
    """hueyq's real Worker for one App huey, driven synchronously."""

    def __init__(self, huey) -> None:
        from hueyq.runtime.consumer import (Worker, WorkerContext,
                                            collect_signal)
        from hueyq.store import JobRecorder
        self.huey = huey
        app = huey.app
        self.recorder = JobRecorder(_Pinned(huey), app.store,
                                    flush_interval=3600)
        self.recorder.connect()
        if collect_signal not in huey._signal.receivers.get("any", []):
            huey.signal()(collect_signal)
        context = WorkerContext(
            app=app, queue=huey.queue, recorder=self.recorder,
            host=app.host_id, poll_interval=0.05, progress_interval=0.0,
            worker_type="thread", gpu=False, gpu_memory_fraction=0.0,
            parent_pid=os.getpid())
        self.worker = Worker(huey, threading.Event(), 0.01, 0.05, 1.5,
                             context=context)
        self.worker.initialize()

    def execute_next(self, timestamp=None):
        lease = self.worker.take()
        assert lease is not None, "nothing to execute"
        values = []
        huey = self.huey
        original = type(huey).execute

        def execute(task, ts=None):
            value = original(huey, task, ts)
            values.append(value)
            return value
        huey.execute = execute
        try:
            self.worker.process(lease, timestamp)
        finally:
            del huey.execute
        if self.worker._ack is not None:
            self.worker.storage.ack(*self.worker._ack)
            self.worker._ack = None
        return values[0] if values else None

    def close(self) -> None:
        self.recorder.close()


class _Pinned:
    """A huey whose storage stays the one it had: the recorder forgets
    finished messages there even after a test switches the huey to
    immediate mode (in-memory storage)."""

    def __init__(self, huey) -> None:
        self._huey = huey
        self.storage = huey.storage

    def __getattr__(self, name):
        return getattr(self._huey, name)


def _app_consumer(huey, consumer_class, **params):
    """hueyq's Consumer, with the scheduler of huey's test consumer class."""
    from hueyq.runtime import consumer as hueyq_consumer
    driver = Driver(huey)
    scheduler = type("CompatScheduler", (hueyq_consumer.Scheduler,
                                         consumer_class.scheduler_class), {})
    cls = type("CompatConsumer", (hueyq_consumer.Consumer,),
               {"scheduler_class": scheduler})
    consumer = cls(huey, driver.worker.ctx, **params)
    for worker, _ in consumer.worker_threads:
        # huey's tests call a worker's loop() without starting it; hueyq's
        # worker names its lease owner as it starts.
        worker.initialize()
    return consumer


def _use_apps(kind: str) -> None:
    from huey.tests import base
    from huey import api

    def get_huey(self):
        return make_app_huey(kind)

    original_execute_next = base.BaseTestCase.execute_next

    def execute_next(self, timestamp=None):
        if getattr(self.huey, "app", None) is None:  # huey's own storage
            return original_execute_next(self, timestamp)
        driver = self.__dict__.get("_hueyq_driver")
        if driver is None or driver.huey is not self.huey:
            driver = self.__dict__["_hueyq_driver"] = Driver(self.huey)
        return driver.execute_next(timestamp)

    def consumer(self, **params):
        params.setdefault("initial_delay", 0.001)
        params.setdefault("max_delay", 0.001)
        params.setdefault("workers", 2)
        params.setdefault("check_worker_health", False)
        if getattr(self.huey, "app", None) is None:
            return self.consumer_class(self.huey, **params)
        return _app_consumer(self.huey, self.consumer_class, **params)

    original_teardown = base.BaseTestCase.tearDown

    def teardown(self):
        driver = self.__dict__.pop("_hueyq_driver", None)
        if driver is not None:
            driver.close()
        original_teardown(self)

    base.BaseTestCase.get_huey = get_huey
    base.BaseTestCase.execute_next = execute_next
    base.BaseTestCase.tearDown = teardown
    base.BaseTestCase.consumer = consumer
    # Tests that build a MemoryHuey of their own (a second huey, results
    # off, intermediate errors withheld) get an App's huey too.

    class AppMemoryHuey(api.MemoryHuey):
        def __new__(cls, name="huey", results=True, utc=True,
                    store_intermediate_errors=True, immediate=False, **kw):
            huey = make_app_huey(
                kind, store_intermediate_errors=store_intermediate_errors)
            huey.results = results
            if immediate:
                huey.immediate = True
            return huey
    for module in _test_modules():
        if getattr(module, "MemoryHuey", None) is api.MemoryHuey:
            module.MemoryHuey = AppMemoryHuey


def _test_modules():
    import importlib
    import pkgutil
    import huey.tests
    out = []
    for info in pkgutil.iter_modules(huey.tests.__path__):
        try:
            out.append(importlib.import_module("huey.tests." + info.name))
        except Exception:  # an optional dependency missing: huey skips it
            continue
    return out


# ---------------------------------------------------------------- pytest hooks

def pytest_configure(config):
    _point_redis_at_private_server()
    if CONFIG.startswith("backend-"):
        _swap_storages(CONFIG.split("-", 1)[1])
    elif CONFIG.startswith("app-"):
        _use_apps(CONFIG.split("-", 1)[1])


def pytest_collection_modifyitems(config, items):
    from skips import reason_for
    for item in items:
        reason = reason_for(CONFIG, _name(item))
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason="hueyq: " + reason))


def _name(item) -> str:
    """``module.Class.test`` of a huey test (``test_api.TestQueue.test_x``)."""
    module = item.module.__name__.rsplit(".", 1)[-1]
    return "%s.%s.%s" % (module, item.cls.__name__ if item.cls else "",
                         item.name)


@pytest.fixture(autouse=True)
def _fresh_redis():
    if CONFIG in ("backend-redis", "app-redis"):
        import redis
        client = redis.Redis(port=REDIS_PORT)
        client.flushdb()
        client.close()
    yield
