"""huey users' code behaves as huey documents it, through the real `hueyq
run` on each backend (issue 21, items 1-8): intermediate errors, expiry of
scheduled tasks and retries, the priority of a delayed retry, huey's own
periodic decorator, persistent and one-time revokes, huey's own consumer on
an App's huey, the interrupted-task recipe, SIGNAL_SCHEDULED, due tasks in
eta order, a queue's flush() and huey's own serializer."""

import os
import signal
import subprocess
import sys
import time

import pytest
from huey.exceptions import TaskException

from apps.hueyish import count, lines
from conftest import HERE, wait_for, write_profile

pytestmark = pytest.mark.slow

MODULE = "apps.hueyish"


@pytest.fixture
def log(tmp_path, monkeypatch):
    path = str(tmp_path / "log")
    monkeypatch.setenv("HUEYQ_TEST_LOG", path)
    return path


def profile(tmp_path, backend_url, app_name, **extra):
    return write_profile(tmp_path / "profile.toml", backend_url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name,
                         extra)


@pytest.fixture
def setup(tmp_path, backend_url, app_name, make_app, runtime, log):
    """(app, start): the producer's App and a starter of `hueyq run`."""
    def build(**extra):
        path = profile(tmp_path, backend_url, app_name, **extra)
        app = make_app(path, MODULE)

        def start(queues="medium", **env):
            rt = runtime(path, MODULE, queues=queues,
                         env=dict({"HUEYQ_TEST_LOG": log}, **env))
            rt.wait_ready()
            return rt
        return app, start
    return build


def state(app, handle):
    return app.job(handle.id, history=False).state


def final(handle):
    """The stored result, None while an attempt's error stands in for it."""
    handle.reset()
    try:
        return handle.get(preserve=True)
    except TaskException:
        return None


# ---------------------------------------------------------------- 1

def test_intermediate_errors_are_stored_and_error_handlers_run_per_attempt(
        setup, log):
    app, start = setup()
    flaky = app.tasks.fail_once("f")
    failing = app.enqueue(app.tasks.always_fails.s("a").error(
        app.tasks.on_error.s("a")))
    start()

    def first_error():
        try:
            return flaky.get() is None and False
        except TaskException as exc:
            return "first attempt of f" in exc.metadata["error"]
    wait_for(first_error, 10, message="the first attempt's error")
    flaky.reset()
    assert flaky.get(blocking=True, timeout=10) == "f"
    wait_for(lambda: count(log, "error-handler", "a") == 2, 10,
             message="an error handler per attempt")
    assert count(log, "attempt", "a") == 2
    with pytest.raises(TaskException, match="always a"):
        failing.get(blocking=True, timeout=5)


# ---------------------------------------------------------------- 2

def test_expires_counts_from_when_a_scheduled_task_or_retry_is_due(
        setup, log):
    app, start = setup()
    start()
    # The guide's example: scheduled, and once due it has `expires` to run.
    # (Counted from the enqueue, 2.5 s would have passed before it was due;
    # counted from due, a loaded machine has 2.5 s to start it; the same
    # for the retry, 4 s after its failure with expires=2.5.)
    later = app.tasks.record.schedule(("later",), delay=4, expires=2.5)
    retried = app.tasks.expiring_retry("r")
    assert later.get(blocking=True, timeout=15) == "later"
    wait_for(lambda: final(retried) == "r", 15, message="the retry to run")
    assert count(log, "attempt", "r") == 2
    assert state(app, later) == "complete"


# ---------------------------------------------------------------- 3

def test_a_delayed_retry_keeps_its_priority(setup, log):
    app, start = setup(**{"queues.medium": {"workers": 1}})
    app.tasks.urgent("P")
    app.tasks.filler("f1", 2.5)       # the retry falls due while f1 runs
    app.tasks.filler("f2")
    last = app.tasks.filler("f3")
    start()
    wait_for(lambda: state(app, last) == "complete", 15,
             message="every task to run")
    assert [token for what, token in lines(log) if what == "ran"] == \
        ["P", "f1", "P", "f2", "f3"]


# ---------------------------------------------------------------- 4

def test_a_periodic_task_of_huey_s_own_decorator_runs(setup, log):
    app, start = setup()
    assert app.task_queue("apps.hueyish.every_minute") == "medium"
    start()
    wait_for(lambda: count(log, "periodic", "medium") == 1, 10,
             message="the periodic task to run")


# ---------------------------------------------------------------- 5

def test_a_persistent_revoke_survives_the_skip_and_revoke_once_does_not(
        setup):
    app, start = setup()
    kept = app.tasks.record("kept")
    kept.revoke(revoke_once=False)
    once = app.tasks.record("once")
    once.revoke(revoke_once=True)
    start()
    for handle in (kept, once):
        wait_for(lambda: state(app, handle) == "cancelled", 10,
                 message="the revoked task to be skipped")
    assert kept.is_revoked()
    assert not once.is_revoked()
    assert app.tasks.record.is_revoked() is False


# ---------------------------------------------------------------- 6

def test_huey_s_own_consumer_skips_a_revoked_task(setup, log, tmp_path):
    app, _ = setup()
    revoked = app.tasks.record("revoked")
    revoked.revoke()
    plain = app.tasks.record("plain")
    env = dict(os.environ, PYTHONPATH=str(HERE),
               HUEYQ_PROFILE=str(tmp_path / "profile.toml"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "huey.bin.huey_consumer",
         "apps.hueyish.medium",
         "-w", "1", "-d", "0.05", "-m", "0.1"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert plain.get(blocking=True, timeout=15) == "plain"
        wait_for(lambda: app.huey("medium").pending_count() == 0, 10,
                 message="the revoked task to be taken")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
    assert count(log, "ran", "revoked") == 0
    assert revoked.get() is None


# ---------------------------------------------------------------- 7

def test_huey_s_interrupted_task_recipe_runs_the_task_once_more(setup, log):
    app, start = setup(runtime={"grace_period": "1s"})
    handle = app.tasks.interruptible("i")
    rt = start()
    wait_for(lambda: count(log, "start", "i") == 1, 10,
             message="the task to start")
    assert rt.terminate() == 0
    assert count(log, "interrupted", handle.id) == 1  # the signal was sent
    assert app.huey("medium").pending_count() == 1    # once, not twice
    rt = start()
    assert handle.get(blocking=True, timeout=10) == "i"
    assert rt.terminate() == 0
    assert count(log, "start", "i") == 2 and count(log, "done", "i") == 1


# ---------------------------------------------------------------- 8

def test_schedule_sends_signal_scheduled_and_due_tasks_run_in_eta_order(
        setup, log):
    app, start = setup(**{"queues.medium": {"workers": 1}})
    watched = app.tasks.watched.schedule(kwargs={"watch": "w"}, delay=0.5)
    assert lines(log) == [("scheduled", "w")]     # sent by the producer
    second = app.tasks.record.schedule(("second",), delay=1.0)
    first = app.tasks.record.schedule(("first",), delay=0.6)
    eta = time.time() + 1.0
    wait_for(lambda: time.time() > eta, 5, message="both to be due")
    start()
    assert second.get(blocking=True, timeout=10) == "second"
    assert watched.get(blocking=True, timeout=10) == "w"
    assert [token for what, token in lines(log) if what == "ran"] == \
        ["first", "second"]
    assert [w for w, token in lines(log) if token == "w"] == \
        ["scheduled", "executing", "complete"]
    assert first.get() == "first"


def test_flush_of_one_queue_s_huey_leaves_the_other_queues(setup):
    app, start = setup()
    on_high = app.tasks.high_echo("kept")
    start(queues="high,medium")
    assert on_high.get(blocking=True, timeout=10, preserve=True) == "kept"
    app.pause("high")
    app.pause("medium")
    with app.huey("high").lock_task("other-queue"):
        app.tasks.record("pending")
        # (A periodic task due meanwhile may be pending there too.)
        assert [t.name for t in app.huey("medium").pending()].count(
            "record") == 1
        app.huey("medium").flush()
        assert app.huey("high").is_locked("other-queue")
    assert app.huey("medium").pending_count() == 0
    assert app.result(on_high.id, preserve=True) == "kept"
    assert app.queue_stats()["high"]["paused"]
    app.flush()
    assert app.result(on_high.id) is None


def test_huey_s_own_serializer_on_an_app_s_huey(setup, make_app, tmp_path,
                                                monkeypatch):
    monkeypatch.setenv("HUEYQ_TEST_SERIALIZER", "huey")
    app, start = setup()
    assert type(app.huey("medium").serializer.inner).__name__ == "Serializer"
    handle = app.tasks.record("compressed")
    start(HUEYQ_TEST_SERIALIZER="huey")
    assert handle.get(blocking=True, timeout=10, preserve=True) == "compressed"
    assert app.job(handle.id).result == "compressed"
