"""Tasks for the runtime, no-loss and lifecycle tests."""

import os
import time
import types

from huey.api import TaskWrapper

import hueyq


def record(path: str, token: str) -> None:
    """Append one line per execution (O_APPEND: whole lines, any process)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, ("%s %d\n" % (token, os.getpid())).encode())
    finally:
        os.close(fd)


def make_app(profile=None, name=None):
    app = hueyq.App(profile, name=name)

    @app.task(queue="high")
    def echo(value):
        return value

    @app.task(queue="high")
    def touch(path, token, seconds=0.0):
        record(path, token)
        time.sleep(seconds)
        return token

    @app.task(queue="medium")
    def sync_level():
        """How the worker's own connection commits: SQLite's pragma
        synchronous, PostgreSQL's synchronous_commit."""
        storage = app.storage("medium")
        if hasattr(storage, "dsn"):
            return storage.sql("show synchronous_commit", (),
                               results=True)[0][0]
        return storage.conn.execute("pragma synchronous").fetchone()[0]

    @app.task(queue="medium")
    def add(a, b):
        return a + b

    @app.task(queue="medium")
    def work(path, token, seconds=0.02):
        time.sleep(seconds)
        record(path, token)
        return token

    @app.task(queue="medium")
    def steps(count, delay=0.05):
        for i in range(count):
            time.sleep(delay)
            hueyq.progress(100.0 * (i + 1) / count, "step %d" % (i + 1))
        return count

    @app.task(queue="gpu")
    def gpu_work(path, token, seconds=0.02):
        time.sleep(seconds)
        record(path, token)
        return os.getpid()

    @app.task(queue="gpu")
    def gpu_steps(count, delay=0.05):
        for i in range(count):
            time.sleep(delay)
            hueyq.progress(100.0 * (i + 1) / count)
        return count

    @app.task(queue="low")
    def chore(path, token):
        record(path, token)
        return token

    @app.task(queue="low")
    def fail(message):
        raise ValueError(message)

    @app.task(queue="low", retries=2, retry_delay=0.1)
    def flaky(path, token, failures):
        record(path, token)
        with open(path) as fh:
            runs = sum(1 for line in fh if line.split()[0] == token)
        if runs <= failures:
            raise ConnectionError("flaky %s run %d" % (token, runs))
        return runs

    @app.task(queue="medium", retries=1, retry_delay=0)
    def flaky_progress(flag):
        """Reports a third done, then fails on its first attempt."""
        hueyq.progress(100.0 / 3, "a third")
        if not os.path.exists(flag):
            open(flag, "w").close()
            raise ConnectionError("first attempt fails")
        return "second attempt"

    @app.task(queue="gpu", retries=0)
    def crash(path, token):
        record(path, token)
        os._exit(1)

    @app.task(queue="gpu")
    def sleeper(seconds):
        time.sleep(seconds)
        return seconds

    @app.task(queue="medium")
    def slow(path, token, seconds):
        record(path, "start-" + token)
        time.sleep(seconds)
        record(path, token)
        return token

    @app.task(queue="high", retries=0)
    def chatter(count, size=0, gate=None, fail=False):
        """Emits ``count`` chunks ("t0", "t1", ...; or ``size`` x's each),
        the second half only once the file ``gate`` exists; then returns
        ``count`` or, with ``fail``, raises."""
        for i in range(count):
            if i == count // 2:
                hueyq.progress(50, "half way")
            if gate and i == count // 2:
                deadline = time.monotonic() + 30
                while not os.path.exists(gate) and \
                        time.monotonic() < deadline:
                    time.sleep(0.01)
            hueyq.emit("x" * size if size else "t%d" % i)
        if fail:
            raise ValueError("chatter failed after %d chunks" % count)
        return count

    @app.task(queue="high", retries=1, retry_delay=0)
    def chatter_again(flag):
        """Emits "first" and fails on its first run, "second" on its retry."""
        if not os.path.exists(flag):
            hueyq.emit("first")
            open(flag, "w").close()
            raise ConnectionError("first run fails")
        hueyq.emit("second")
        return "ok"

    @app.task(queue="high", retries=0)
    def stamper(count, pause=0.02):
        """Emits ``count`` chunks holding the time each was emitted (for
        the emit-to-client latency)."""
        for i in range(count):
            time.sleep(pause)
            hueyq.emit({"i": i, "t": time.time()})
        return count

    return attach_tasks(app, locals())


def attach_tasks(app, names: dict):
    """Expose the tasks defined in make_app as ``app.tasks.<name>``."""
    tasks = dict(vars(getattr(app, "tasks", types.SimpleNamespace())))
    tasks.update({k: v for k, v in names.items() if isinstance(v, TaskWrapper)})
    app.tasks = types.SimpleNamespace(**tasks)
    return app


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
