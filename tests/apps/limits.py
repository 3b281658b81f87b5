"""Tasks that overrun their soft and hard time limits, for the runtime
tests of soft time limits on thread and process workers."""

import time

import hueyq
from apps import basic


def make_app(profile=None, name=None):
    app = basic.make_app(profile, name)

    @app.task(queue="high", soft_time_limit="400ms", time_limit="1200ms")
    def loop_with_progress(path):
        """Reports progress in a loop (a thread worker's limits land there);
        cleans up on the soft limit and keeps going until the hard one."""
        start = time.monotonic()
        while time.monotonic() - start < 30:
            try:
                hueyq.progress(10, "working")
            except hueyq.SoftTimeLimitExceeded:
                basic.record(path, "cleaned-up")
            time.sleep(0.02)
        return "never"

    @app.task(queue="medium")
    def sleep_past_limits(path):
        """Sleeps without reporting: a process worker gets the soft limit
        through a signal, in the middle of time.sleep()."""
        try:
            time.sleep(30)
        except hueyq.SoftTimeLimitExceeded:
            basic.record(path, "cleaned-up")
        time.sleep(30)
        return "never"

    @app.task(queue="medium")
    def quick_under_limits(seconds):
        time.sleep(seconds)
        return "in time"

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
