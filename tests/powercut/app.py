"""The power-cut test's tasks.

Each execution writes a line when it starts and when it ends to a log that
lies outside the filesystem that loses power (``POWERCUT_LOG``), with the
boot it ran in (``POWERCUT_BOOT``), so the test can count what ran, where
and how often, whatever the cut left of the queue and the store.
"""

import os
import time

import hueyq

_fds: "dict[int, int]" = {}


def log(kind: str, job_id: str) -> None:
    """One line per event: ``S|E|F job_id boot pid time`` (O_APPEND, whole;
    the time is the boot's wall clock, as the runtime sees it)."""
    fd = _fds.get(os.getpid())
    if fd is None:
        fd = _fds[os.getpid()] = os.open(
            os.environ["POWERCUT_LOG"],
            os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %s %s %d %.3f\n" % (kind, job_id, os.environ.get(
        "POWERCUT_BOOT", "0"), os.getpid(), time.time())).encode())


def _first_time(job_id: str) -> bool:
    marker = os.path.join(os.path.dirname(os.environ["POWERCUT_LOG"]),
                          "failed-once", job_id)
    os.makedirs(os.path.dirname(marker), exist_ok=True)
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return False
    return True


def make_app(profile=None):
    app = hueyq.App(profile)

    @app.task(queue="fast")
    def short(ms):
        job_id = hueyq.current_job().id
        log("S", job_id)
        time.sleep(ms / 1000.0)
        log("E", job_id)
        return ms

    @app.task(queue="fast", retries=1)
    def flaky():
        """Fails on its very first execution, then succeeds (a retry)."""
        job_id = hueyq.current_job().id
        log("S", job_id)
        if _first_time(job_id):
            log("F", job_id)
            raise RuntimeError("first attempt fails")
        log("E", job_id)
        return "ok"

    @app.task(queue="slow")
    def long(seconds):
        job_id = hueyq.current_job().id
        log("S", job_id)
        steps = max(1, int(seconds / 0.25))
        for i in range(steps):
            time.sleep(seconds / steps)
            hueyq.progress(100.0 * (i + 1) / steps)
        log("E", job_id)
        return seconds

    @app.task(queue="marathon")
    def marathon(seconds):
        """Longer than any boot before the last lasts: goes through every
        power cut."""
        job_id = hueyq.current_job().id
        log("S", job_id)
        time.sleep(seconds)
        log("E", job_id)
        return seconds

    app.tasks = {"short": short, "flaky": flaky, "long": long,
                 "marathon": marathon}
    return app


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
