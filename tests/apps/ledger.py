"""A task that keeps a ledger of its executions, for the many-hosts tests.

Every execution appends ``start <token> <host> <pid> <t>`` when it begins
and ``done <token> <host> <pid> <t>`` when its body ends (one O_APPEND write
per line, so lines from every host's processes stay whole); ``t`` is this
machine's monotonic clock, which every host on one machine shares.
"""

import os
import time

import hueyq


def note(path: str, what: str, token: str) -> None:
    line = "%s %s %s %d %.6f\n" % (what, token, os.environ.get(
        "HUEYQ_HOST_ID", "-"), os.getpid(), time.monotonic())
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def make_app(profile=None):
    app = hueyq.App(profile)

    @app.task(queue="high")
    def step(path, token, seconds):
        note(path, "start", token)
        time.sleep(seconds)
        note(path, "done", token)
        return token

    app.step = step
    return app


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
