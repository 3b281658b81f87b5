"""Tasks that use memory, for the watchdog's real-process tests."""

import os
import time

from apps import basic

_kept = []


def make_app(profile=None, name=None):
    app = basic.make_app(profile, name)

    @app.task(queue="medium", retries=1)
    def grow(step_mb, steps, delay=0.05):
        """Allocate memory step by step (and touch it, so it is resident)."""
        held = []
        for _ in range(steps):
            held.append(bytearray(b"x" * (step_mb << 20)))
            time.sleep(delay)
        return sum(len(b) for b in held)

    @app.task(queue="medium")
    def leak(path, token, mb, delay=0.15):
        """Keep memory after the task ends, as a leaky model cache would."""
        _kept.append(bytearray(b"y" * (mb << 20)))
        time.sleep(delay)
        basic.record(path, token)
        return token

    @app.task(queue="medium", memory="300MiB")
    def bulky(path, token, seconds, until=None):
        """Declares 300 MiB for admission and holds the worker for
        ``seconds``, or until the file ``until`` exists if one is named."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if until is not None and os.path.exists(until):
                break
            time.sleep(0.05)
        basic.record(path, token)
        return token

    @app.task(queue="medium", retries=0)
    def nap(seconds):
        time.sleep(seconds)
        return seconds

    return basic.attach_tasks(app, locals())


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
