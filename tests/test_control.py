"""Controls on both backends and both stores: pause, resume, drain, cancel,
retry, from any process, with the races that matter."""

import threading
import time

import pytest
from huey.exceptions import TaskException

from hueyq import App
from hueyq.backends import DEAD, PENDING
from hueyq.exceptions import InvalidState, JobNotFound, QueueNotFound

from conftest import wait_for, write_profile


@pytest.fixture(params=["sqlite-store", "postgres-store"])
def full_app(request, tmp_path, backend_url, app_name, make_app):
    if request.param == "sqlite-store":
        store = "sqlite://%s" % (tmp_path / "store.db")
    else:
        store = request.getfixturevalue("postgres_url")
    profile = write_profile(tmp_path / "p.toml", backend_url, store, app_name)
    return make_app(profile)


def other_process_view(app):
    """A second App on the same profile, as the CLI or web UI would open."""
    return App(app.profile)


def test_pause_stops_new_work_keeps_everything_and_persists(full_app, inline):
    app = full_app
    handles = [app.tasks.echo(i) for i in range(3)]
    app.pause("high", reason="maintenance")
    assert not app.pause("high")
    assert inline(app, "high").run() == 0
    view = other_process_view(app)
    stats = view.queue_stats()["high"]
    assert stats["paused"] and stats["paused_by"] == ["user"]
    assert stats["pauses"]["user"]["reason"] == "maintenance"
    assert stats["pending"] == 3
    assert view.resume("high") and not view.resume("high")
    assert inline(app, "high").run() == 3
    assert [h(blocking=True, timeout=5) for h in handles] == [0, 1, 2]
    actions = [e["action"] for e in app.store.watchdog_events()]
    assert actions[:2] == ["resume", "pause"]
    view.close()


def test_user_and_watchdog_pauses_are_independent(full_app, inline):
    app = full_app
    from hueyq import control
    app.tasks.echo(1)
    app.pause("high")
    control.pause(app, "high", by="memory", reason="low memory")
    app.resume("high")
    assert app.queue_stats()["high"]["paused_by"] == ["memory"]
    assert inline(app, "high").run() == 0
    control.resume(app, "high", by="memory")
    assert inline(app, "high").run() == 1


def test_drain_cancels_pending_and_scheduled_and_counts(full_app, inline):
    app = full_app
    pending = [app.tasks.add(i, i) for i in range(4)]
    later = app.tasks.add.schedule((1, 1), delay=300)
    assert app.drain("medium") == 5
    assert app.drain("medium") == 0
    assert inline(app, "medium").run() == 0
    for handle in pending + [later]:
        job = app.job(handle.id)
        assert (job.state, job.reason) == ("cancelled", "drained")
        assert "drained" in [e["event"] for e in job.history]
    assert app.queue_stats()["medium"]["pending"] == 0


def test_cancel_pending_never_runs_and_answers_waiters(full_app, inline, tmp_path):
    app = full_app
    path = tmp_path / "ran"
    handle = app.tasks.chore(str(path), "x")
    answer = app.cancel(handle.id)
    assert answer.state == "cancelled" and "pending" in answer.detail
    assert inline(app, "low").run() == 0
    assert not path.exists()
    assert app.job(handle.id).state == "cancelled"
    with pytest.raises(TaskException, match="cancelled"):
        handle(blocking=True, timeout=5)
    with pytest.raises(InvalidState, match="already cancelled"):
        app.cancel(handle.id)
    with pytest.raises(JobNotFound):
        app.cancel("no-such-job")


def test_cancel_a_finished_job_is_refused(full_app, inline):
    app = full_app
    handle = app.tasks.echo("x")
    inline(app, "high").run()
    with pytest.raises(InvalidState, match="already complete"):
        app.cancel(handle.id)


def test_retry_failed_cancelled_and_unknown(full_app, inline, tmp_path):
    app = full_app
    failed = app.tasks.fail("boom")
    inline(app, "low").run()
    job = app.retry(failed.id)
    assert job.state == "pending"
    inline(app, "low").run()
    job = app.job(failed.id)
    assert job.state == "failed" and job.attempts == 2
    assert [e["event"] for e in job.history].count("retried") == 1

    path = tmp_path / "ran"
    cancelled = app.tasks.chore(str(path), "c")
    app.cancel(cancelled.id)
    app.retry(cancelled.id)
    inline(app, "low").run()
    assert app.job(cancelled.id).state == "complete" and path.exists()
    assert cancelled(blocking=True, timeout=5) == "c"

    with pytest.raises(InvalidState, match="only failed"):
        app.retry(cancelled.id)
    waiting = app.tasks.echo("w")
    with pytest.raises(InvalidState, match="is pending"):
        app.retry(waiting.id)
    with pytest.raises(JobNotFound):
        app.retry("no-such-job")


def test_retry_run_at_once_by_a_fast_worker_keeps_its_record(full_app,
                                                              inline):
    # A worker may take the job the instant its message is back, and finish
    # and record it before retry() returns: that record must stand.
    app = full_app
    failed = app.tasks.fail("boom")
    worker = inline(app, "low")
    worker.run()
    storage = app.storage("low")
    revive = storage.revive

    def revive_and_run_at_once(job_id):
        info = revive(job_id)
        assert worker.run() == 1
        return info
    storage.revive = revive_and_run_at_once
    app.retry(failed.id)
    job = app.job(failed.id)
    assert (job.state, job.attempts) == ("failed", 2)
    assert "boom" in job.error and "ValueError" in job.traceback


def test_retry_uses_the_stored_message_once_the_backend_purged_it(
        full_app, inline):
    app = full_app
    storage = app.storage("high")
    storage.enqueue(b"not a message at all")
    inline(app, "high").run()
    dead = storage.list_messages(DEAD)[0]
    job_id = "undecodable-high-%s" % dead.handle
    assert storage.purge_dead(before=time.time() + 1, keep=0) == 1
    app.retry(job_id)
    assert storage.count(PENDING) == 1
    assert bytes(storage.enqueued_items()[0]) == b"not a message at all"


def test_pause_during_a_burst_starts_nothing_after_pause_returns(full_app):
    app = full_app
    for i in range(200):
        app.tasks.echo(i)
    from conftest import InlineWorker
    worker = InlineWorker(app, "high")
    started_after_pause = []
    paused_at = []
    refused_after_pause = []
    stop = threading.Event()

    def run():
        while not stop.is_set():
            asked_after_pause = bool(paused_at)
            lease = worker.worker.take()
            if lease is None:
                if asked_after_pause:
                    refused_after_pause.append(1)
                time.sleep(0.005)
                continue
            if paused_at:
                started_after_pause.append(lease.task_id)
            worker.worker.process(lease)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: app.storage("high").count(PENDING) < 180, 10,
             message="the burst to start")
    app.pause("high")
    paused_at.append(time.time())
    # The worker asked for work again and again once pause returned.
    wait_for(lambda: len(refused_after_pause) >= 20, 10,
             message="the worker to ask after the pause")
    stop.set()
    thread.join()
    worker.close()
    assert started_after_pause == []
    assert app.storage("high").count(PENDING) > 0


def test_unknown_queue_is_a_clear_error(full_app):
    with pytest.raises(QueueNotFound, match="no queue 'nope'"):
        full_app.pause("nope")
    with pytest.raises(QueueNotFound):
        full_app.drain("nope")


def test_queue_stats_after_work(full_app, inline):
    app = full_app
    for i in range(6):
        app.tasks.echo(i)
    app.tasks.fail("x")
    inline(app, "high").run()
    inline(app, "low").run()
    stats = app.queue_stats()
    assert stats["high"]["complete_recent"] == 6
    assert stats["high"]["failed_recent"] == 0
    assert stats["high"]["success_rate"] == 1.0
    assert stats["high"]["p95_runtime"] is not None
    assert stats["low"]["failed_recent"] == 1
    assert stats["low"]["success_rate"] == 0.0
    assert stats["low"]["retryable"] == 1  # the failed job's kept message
    listed = app.jobs(queue="high", limit=3)
    assert len(listed) == 3 and all(j.state == "complete" for j in listed)
    assert [j.id for j in app.jobs(state="failed")] == \
        [app.jobs(queue="low")[0].id]


def test_bulk_retry_and_delete_of_the_matching_failed_jobs(full_app, inline):
    app = full_app
    boom = [app.tasks.fail("boom %d" % i) for i in range(3)]
    other = app.tasks.fail("disk full")
    kept = app.tasks.chore("/dev/null", "t")
    inline(app, "low").run(limit=4)
    assert app.queue_stats()["low"]["retryable"] == 4
    with pytest.raises(InvalidState, match="failed or dead"):
        app.retry_matching(state="complete")
    result = app.retry_matching(state="failed", error="boom")
    assert (result.action, result.matched, result.done, result.remaining) == \
        ("retry", 3, 3, 0)
    assert {app.job(j.id).state for j in boom} == {"pending"}
    assert app.job(other.id).state == "failed"
    event = app.store.watchdog_events(limit=1)[0]
    assert (event["action"], event["reason"]) == (
        "retry", "user: 3 failed jobs (error=boom)")
    inline(app, "low").run()       # the three fail again, the chore runs
    assert app.job(kept.id).state == "complete"
    assert app.count_jobs(state="failed") == 4
    gone = app.delete_matching(state="failed", task="fail",
                               id_prefix=boom[0].id[:8])
    assert (gone.matched, gone.done) == (1, 1)
    with pytest.raises(JobNotFound):
        app.job(boom[0].id)
    assert app.queue_stats()["low"]["retryable"] == 3
    rest = app.delete_matching()          # every failed and dead job
    assert rest.done == 3 and app.count_jobs(state="failed") == 0
    assert app.queue_stats()["low"]["retryable"] == 0
    assert app.job(kept.id).state == "complete"
    assert [e["action"] for e in app.store.watchdog_events(limit=2)] == \
        ["delete", "delete"]
    assert app.retry_matching().matched == 0


def test_bulk_actions_are_bounded(full_app, inline, monkeypatch):
    from hueyq import control
    app = full_app
    for i in range(5):
        app.tasks.fail("x%d" % i)
    inline(app, "low").run()
    monkeypatch.setattr(control, "BULK_LIMIT", 2)
    result = app.retry_matching(state="failed")
    assert (result.matched, result.done, result.remaining) == (5, 2, 3)
    assert str(result) == ("2 of 5 matching jobs retried; 3 more match: run "
                           "it again")
