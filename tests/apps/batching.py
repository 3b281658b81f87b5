"""A batched task for the batch tests (apps.batching)."""

import os
import time

import hueyq
from apps import basic


def make_app(profile=None, name=None, max_size=4, max_wait="0s"):
    app = basic.make_app(profile, name)

    @app.batch_task(queue="medium", max_size=max_size, max_wait=max_wait,
                    retries=1, retry_delay=0)
    def square(items):
        calls = os.environ.get("HUEYQ_TEST_BATCH_LOG")
        if calls:
            basic.record(calls, "batch%d" % len(items))
        if any(isinstance(i, dict) and i.get("sleep") for i in items):
            time.sleep(max(i.get("sleep", 0) for i in items
                           if isinstance(i, dict)))
            return [i.get("n", 0) ** 2 for i in items]
        if "explode" in items:
            raise RuntimeError("the whole batch failed")
        return [ValueError("bad item %r" % i) if i == "bad" else i * i
                for i in items]

    @app.batch_task(queue="medium", max_size=max_size, max_wait=max_wait,
                    time_limit="300ms")
    def patient(items):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            hueyq.progress(50)
            time.sleep(0.02)
        return items

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app(max_size=8, max_wait="200ms")
        return globals()["app"]
    raise AttributeError(name)
