"""Async tasks on the ``io`` queue (``worker_type = "async"``), for the
async worker's runtime tests."""

import asyncio

import hueyq
from apps import basic

#: The async queue the tests add to their profile.
IO_QUEUE = {"priority": 60, "workers": 1, "worker_type": "async",
            "concurrency": 200}


def make_app(profile=None, name=None):
    app = basic.make_app(profile, name)
    state = {"running": 0, "peak": 0}

    @app.task(queue="io")
    async def remote(seconds):
        """A stand-in for a remote call; returns the most tasks this
        process had running at once."""
        state["running"] += 1
        state["peak"] = max(state["peak"], state["running"])
        try:
            await asyncio.sleep(seconds)
        finally:
            state["running"] -= 1
        return state["peak"]

    @app.task(queue="io")
    async def note(path, token, seconds):
        """Waits, then notes one line per execution."""
        await asyncio.sleep(seconds)
        basic.record(path, token)
        return token

    @app.task(queue="io")
    async def report(steps):
        for i in range(steps):
            await asyncio.sleep(0.01)
            hueyq.progress(100.0 * (i + 1) / steps, "step %d" % (i + 1))
        return hueyq.current_job().id

    @app.task(queue="io")
    async def hang(path):
        """Sleeps for a long time; notes its cancellation on the way out."""
        basic.record(path, "started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            basic.record(path, "cancelled")
            raise
        return "never"

    @app.task(queue="io", time_limit="500ms")
    async def overrun(path):
        basic.record(path, "started")
        await asyncio.sleep(60)
        return "never"

    @app.task(queue="io", soft_time_limit="200ms")
    async def soft(path):
        """Reports progress until the soft limit lands there."""
        for _ in range(1000):
            await asyncio.sleep(0.01)
            try:
                hueyq.progress(10, "working")
            except hueyq.SoftTimeLimitExceeded:
                basic.record(path, "cleaned-up")
                return "stopped"
        return "never"

    @app.task(queue="io", retries=2)
    async def flaky(path):
        basic.record(path, "attempt")
        with open(path) as fh:
            attempts = len(fh.readlines())
        if attempts < 3:
            raise RuntimeError("attempt %d failed" % attempts)
        return attempts

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
