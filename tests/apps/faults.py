"""The basic app plus tasks for fault injection: long tasks that report
progress, a task that fails once, a thread-queue task that kills its
process, and a task with a large result."""

import os
import time

import hueyq

from apps import basic
from apps.basic import record


def make_app(profile=None, name=None):
    app = basic.make_app(profile, name)

    @app.task(queue="medium")
    def long(path, token, seconds, step=0.1):
        """Record the start, report progress every ``step``, record the end."""
        record(path, "start-" + token)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(step)
            left = max(deadline - time.monotonic(), 0.0)
            hueyq.progress(100.0 * (1 - left / seconds))
        record(path, token)
        return token

    @app.task(queue="low")
    def fail_once(path, token):
        """Fails on its first run, succeeds after."""
        record(path, token)
        with open(path) as fh:
            runs = sum(1 for line in fh if line.split()[0] == token)
        if runs == 1:
            raise RuntimeError("first run of %s fails" % token)
        return runs

    @app.task(queue="medium")
    def die(path, token):
        """Kills the whole (thread) consumer process it runs in."""
        record(path, token)
        os._exit(1)

    @app.task(queue="medium")
    def nap(path, token, seconds=0.3):
        time.sleep(seconds)
        record(path, token)
        return token

    @app.task(queue="medium")
    def big_result(path, token, size):
        record(path, token)
        return "x" * size

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
