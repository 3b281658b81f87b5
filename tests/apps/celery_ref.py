"""The same Celery task code, declared on a real Celery app (the reference)
or on hueyq.celery's (run by `hueyq run --app apps.celery_ref`).

Tasks that must be caught mid-way wait for a gate file the test creates.
"""

import os
import time


def wait_gate(path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def define(app) -> dict:
    """Declare the reference tasks on ``app``; returns them by name."""

    @app.task
    def add(a, b):
        return a + b

    @app.task
    def boom():
        raise ValueError("boom")

    @app.task(bind=True)
    def prog(self, gate):
        self.update_state(state="PROGRESS",
                          meta={"progress": 50, "status": "half"})
        wait_gate(gate)
        return "done"

    @app.task
    def hold(gate):
        wait_gate(gate)
        return "held"

    @app.task(bind=True, max_retries=3)
    def flaky(self):
        if self.request.retries < 1:
            raise self.retry(exc=OSError("flaky"), countdown=1.5)
        return self.request.retries

    @app.task(bind=True, max_retries=1)
    def never(self):
        try:
            raise KeyError("missing")
        except KeyError as exc:
            raise self.retry(exc=exc, countdown=0.2)

    @app.task(bind=True, autoretry_for=(ConnectionError,), max_retries=2,
              retry_backoff=False, default_retry_delay=0.2)
    def transient(self):
        if self.request.retries < 2:
            raise ConnectionError("try again")
        return "after %d retries" % self.request.retries

    return dict(add=add, boom=boom, prog=prog, hold=hold, flaky=flaky,
                never=never, transient=transient)


def __getattr__(name):
    if name in ("app", "tasks"):
        from hueyq.celery import Celery
        app = Celery("ref")
        globals().update(app=app, tasks=define(app))
        return globals()[name]
    raise AttributeError(name)
