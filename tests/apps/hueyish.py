"""Tasks written the way huey's documentation writes them, for the tests that
check hueyq behaves as huey documents (tests/test_huey_semantics.py).

Everything a task or a signal receiver observes is one line in the file
named by ``HUEYQ_TEST_LOG`` (O_APPEND, any process): ``what token pid``.
"""

import os
import time

from huey import crontab
from huey import signals as S
from huey.serializer import Serializer

import hueyq

from apps.basic import attach_tasks


def log(what: str, token: str = "-") -> None:
    path = os.environ.get("HUEYQ_TEST_LOG")
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, ("%s %s %d\n" % (what, token, os.getpid())).encode())
    finally:
        os.close(fd)


def lines(path) -> "list[tuple[str, str]]":
    """(what, token) of every line logged so far."""
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [tuple(line.split()[:2]) for line in fh if line.strip()]


def count(path, what: str, token: str = "-") -> int:
    return lines(path).count((what, token))


def make_app(profile=None, name=None):
    app = hueyq.App(profile, name=name)
    medium = app.huey("medium")

    @app.task(queue="medium")
    def record(token):
        log("ran", token)
        return token

    @app.task(queue="medium", retries=1, retry_delay=1)
    def fail_once(token):
        log("attempt", token)
        if count(os.environ["HUEYQ_TEST_LOG"], "attempt", token) == 1:
            raise ValueError("first attempt of %s" % token)
        return token

    @app.task(queue="medium", retries=1, retry_delay=0.2)
    def always_fails(token):
        log("attempt", token)
        raise ValueError("always %s" % token)

    @app.task(queue="medium")
    def on_error(token, exc=None):
        log("error-handler", token)

    @app.task(queue="medium", priority=10, retries=1, retry_delay=0.1)
    def urgent(token):
        log("ran", token)
        if count(os.environ["HUEYQ_TEST_LOG"], "ran", token) == 1:
            raise ValueError("retry me")

    @app.task(queue="medium")
    def filler(token, seconds=0.0):
        log("ran", token)
        time.sleep(seconds)

    @app.task(queue="medium", expires=2.5, retries=1, retry_delay=4)
    def expiring_retry(token):
        log("attempt", token)
        if count(os.environ["HUEYQ_TEST_LOG"], "attempt", token) == 1:
            raise ValueError("retry me")
        return token

    @app.task(queue="medium")
    def interruptible(token):
        log("start", token)
        if count(os.environ["HUEYQ_TEST_LOG"], "start", token) == 1:
            time.sleep(60)
        log("done", token)
        return token

    @app.task(queue="high")
    def high_echo(value):
        return value

    @medium.periodic_task(crontab())
    def every_minute():
        log("periodic", "medium")

    @app.signal(S.SIGNAL_INTERRUPTED)
    def on_interrupted(signal, task, *args, **kwargs):
        # huey's recipe (docs/signals.rst, "Using SIGNAL_INTERRUPTED").
        log("interrupted", task.id)
        app.enqueue(task)

    @app.signal(S.SIGNAL_SCHEDULED, S.SIGNAL_EXECUTING, S.SIGNAL_COMPLETE)
    def on_signal(signal, task, *args, **kwargs):
        if task.kwargs.get("watch"):
            log(signal, task.kwargs["watch"])

    @app.task(queue="medium")
    def watched(watch):
        return watch

    if os.environ.get("HUEYQ_TEST_SERIALIZER") == "huey":
        medium.serializer = Serializer(compression=True)

    return attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    if name == "medium":  # huey's own consumer: huey_consumer MODULE.medium
        return __getattr__("app").huey("medium")
    raise AttributeError(name)

