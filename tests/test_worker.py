"""The leasing worker, driven in-process against real backends: every way a
message can end is recorded, and none disappears."""

import datetime
import threading
import time

import pytest
from huey.exceptions import TaskException

from hueyq.backends import DEAD, PENDING
from hueyq.exceptions import JobNotFound

from conftest import wait_for, write_profile


def test_complete_job_has_result_and_history(app, inline):
    handle = app.tasks.echo("hello")
    assert app.job(handle.id).state == "pending"
    assert inline(app, "high").run() == 1
    job = app.job(handle.id)
    assert (job.state, job.attempts, job.result, job.progress) == \
        ("complete", 1, "hello", 100.0)
    assert [e["event"] for e in job.history] == ["executing", "complete"]
    assert job.worker and job.started_at and job.finished_at >= job.started_at
    assert handle(blocking=True, timeout=5) == "hello"


def test_failure_keeps_the_message_and_the_traceback(app, inline):
    handle = app.tasks.fail("no data")
    inline(app, "low").run()
    job = app.job(handle.id)
    assert job.state == "failed" and job.reason == "failed"
    assert job.error == "ValueError('no data')"
    assert "raise ValueError(message)" in job.traceback
    assert job.has_payload
    assert app.storage("low").find(handle.id).state == DEAD
    with pytest.raises(TaskException, match="no data"):
        handle(blocking=True, timeout=5)


def test_retries_with_delay_then_complete(app, inline, tmp_path):
    path = str(tmp_path / "runs")
    handle = app.tasks.flaky(path, "a", 1)
    worker = inline(app, "low")
    worker.run()
    job = app.job(handle.id)
    assert job.state == "retrying" and "flaky a run 1" in job.error
    wait_for(lambda: app.storage("low").promote_due() or
             app.storage("low").count(PENDING), 5, message="the retry to be due")
    worker.run()
    job = app.job(handle.id)
    assert (job.state, job.attempts, job.result, job.error) == ("complete", 2, 2, None)
    assert [e["event"] for e in job.history].count("executing") == 2


def test_unknown_task_is_dead_lettered_then_retried_after_a_deploy(
        profile_path, make_app, inline):
    producer = make_app(profile_path, "apps.extra")
    consumer = make_app(profile_path)
    handle = producer.tasks.double(21)
    inline(consumer, "medium").run()
    job = consumer.job(handle.id)
    assert job.state == "dead" and job.reason == "unknown_task"
    assert "not found in TaskRegistry" in job.error and job.has_payload
    with pytest.raises(TaskException, match="unknown_task"):
        handle(blocking=True, timeout=5)
    deployed = make_app(profile_path, "apps.extra")
    consumer.retry(handle.id)
    assert consumer.job(handle.id).state == "pending"
    inline(deployed, "medium").run()
    job = deployed.job(handle.id)
    assert (job.state, job.result) == ("complete", 42)


def test_garbage_in_the_backend_is_dead_lettered_not_dropped(app, inline):
    storage = app.storage("high")
    storage.enqueue(b"\x80\x04not an envelope")
    inline(app, "high").run()
    dead = storage.list_messages(DEAD)
    assert len(dead) == 1 and dead[0].reason == "undecodable"
    job = app.job("undecodable-high-%s" % dead[0].handle)
    assert job.state == "dead" and "not a hueyq message" in job.error
    assert app.store.payload(job.id) == b"\x80\x04not an envelope"


def test_bad_signature_never_runs(tmp_path, backend_url, app_name, make_app, inline):
    signed_profile = write_profile(tmp_path / "signed.toml", backend_url,
                                   "sqlite://%s" % (tmp_path / "s.db"), app_name,
                                   {"security": {"secret": "s3cret"}})
    unsigned_profile = write_profile(tmp_path / "unsigned.toml", backend_url,
                                     "sqlite://%s" % (tmp_path / "s.db"), app_name)
    consumer = make_app(signed_profile)
    forger = make_app(unsigned_profile)
    canary = tmp_path / "canary"
    handle = forger.tasks.chore(str(canary), "x")
    inline(consumer, "low").run()
    assert not canary.exists()
    # It claims an id nobody vouches for: it is filed under its own.
    dead = consumer.storage("low").list_messages(DEAD)
    assert [m.task_id for m in dead] == ["bad_signature-low-%s" % dead[0].handle]
    job = consumer.job(dead[0].task_id)
    assert job.state == "dead" and job.reason == "bad_signature"
    assert job.task == "apps.basic.chore" and job.has_payload
    with pytest.raises(JobNotFound):
        consumer.job(handle.id)


def test_a_killed_attempt_is_retried_or_failed(app, inline, tmp_path):
    storage = app.storage("low")
    handle = app.tasks.flaky(str(tmp_path / "r"), "k", 0)
    lease = storage.lease("elsewhere:1:Worker-1")
    storage.requeue(lease.handle, "killed: memory budget exceeded (1.3 GiB > 1.0 GiB)",
                    count=False)
    worker = inline(app, "low")
    worker.run()
    job = app.job(handle.id)
    assert job.state == "retrying"
    assert job.error == "killed: memory budget exceeded (1.3 GiB > 1.0 GiB)"
    wait_for(lambda: storage.promote_due(), 5, message="the retry")
    worker.run()
    assert app.job(handle.id).state == "complete"

    handle = app.tasks.fail("x")
    lease = storage.lease("elsewhere:1:Worker-1")
    storage.requeue(lease.handle, "killed: time limit exceeded (1s)", count=False)
    worker.run()
    job = app.job(handle.id)
    assert job.state == "failed" and job.error == "killed: time limit exceeded (1s)"
    with pytest.raises(TaskException, match="time limit"):
        handle(blocking=True, timeout=5)


def test_progress_and_cooperative_cancel_on_a_thread_worker(app, inline):
    handle = app.tasks.steps(200, 0.02)
    worker = inline(app, "medium")
    thread = threading.Thread(target=worker.run)
    thread.start()
    try:
        def moving():
            worker.recorder._flush()
            job = app.job(handle.id, history=False)
            return job.state == "running" and (job.progress or 0) > 0 and job
        job = wait_for(moving, 10, message="progress")
        assert job.message.startswith("step")
        answer = app.cancel(handle.id)
        assert answer.state == "cancelling"
        assert "thread worker" in answer.detail and "progress()" in answer.detail
    finally:
        thread.join(20)
    job = app.job(handle.id)
    assert job.state == "cancelled" and 0 < job.progress < 100
    assert app.storage("medium").find(handle.id).reason == "cancelled"


def test_a_cancel_after_the_lease_takes_the_running_path(app, inline):
    # Once leased a job counts as running: cancel says how it will stop (a
    # thread worker: at its next progress() call). A task that never calls
    # progress() runs to the end; one that does is stopped there.
    quick, looping = app.tasks.echo("x"), app.tasks.steps(50, 0.0)
    worker = inline(app, "high")
    lease = worker.worker.take()
    answer = app.cancel(quick.id)
    assert answer.state == "cancelling" and "progress()" in answer.detail
    worker.worker.process(lease)
    worker.flush()
    assert app.job(quick.id).state == "complete"
    medium = inline(app, "medium")
    lease = medium.worker.take()
    app.cancel(looping.id)
    medium.worker.process(lease)
    medium.flush()
    assert app.job(looping.id).state == "cancelled"


def test_a_task_revoked_before_its_lease_never_runs(app, inline, tmp_path):
    from hueyq.backends import DEAD
    path = tmp_path / "ran"
    handle = app.tasks.chore(str(path), "x")
    app.huey("low").revoke_by_id(handle.id)
    inline(app, "low").run()
    assert not path.exists()
    assert app.job(handle.id).state == "cancelled"
    assert app.storage("low").find(handle.id).state == DEAD
    app.tasks.chore.revoke()                     # huey's revoke of a whole task
    second = app.tasks.chore(str(path), "y")
    inline(app, "low").run()
    assert not path.exists() and app.job(second.id).state == "cancelled"
    app.tasks.chore.restore()
    third = app.tasks.chore(str(path), "z")
    inline(app, "low").run()
    assert path.exists() and app.job(third.id).state == "complete"


def test_expired_and_scheduled(app, inline):
    echo = app.tasks.echo
    late = echo.s("late", expires=datetime.datetime.utcnow()
                  - datetime.timedelta(seconds=5))
    expired = app.huey("high").enqueue(late)
    later = echo.schedule(("x",), delay=60)
    assert app.job(later.id).state == "scheduled"
    assert app.job(later.id).eta == pytest.approx(time.time() + 60, abs=5)
    inline(app, "high").run()
    assert app.job(expired.id).state == "expired"
    assert app.job(later.id).state == "scheduled"


def test_pipelines_follow_each_task_to_its_queue(app, inline):
    add, echo = app.tasks.add, app.tasks.echo
    pipeline = add.s(1, 2).then(echo)
    results = app.huey("medium").enqueue(pipeline)
    inline(app, "medium").run()
    assert app.storage("high").count(PENDING) == 1
    inline(app, "high").run()
    assert [r.get(blocking=True, timeout=5) for r in results] == [3, 3]


def test_a_message_is_marked_done_only_after_the_record_that_ends_it(
        app, inline, tmp_path):
    """The recorder forgets a done message one flush after it was noted;
    that flush must already hold the job's final record, or a flush between
    the two (a worker thread stalled under load) forgets a message whose job
    the store still calls running: after a power cut, in neither place."""
    worker = inline(app, "low")
    recorder = worker.recorder
    seen = []
    noted = recorder.done

    def done(handle):
        with recorder._lock:
            seen.append([dict(c) for c in recorder._jobs])
        noted(handle)
    recorder.done = done
    completes = app.tasks.chore(str(tmp_path / "c"), "c")
    retries = app.tasks.flaky(str(tmp_path / "r"), "r", 1)
    worker.run()
    killed = app.tasks.flaky(str(tmp_path / "k"), "k", 0)
    storage = app.storage("low")
    lease = storage.lease("elsewhere:1:Worker-1")
    assert lease is not None and lease.task_id == killed.id
    storage.requeue(lease.handle, "killed: memory budget exceeded", count=False)
    worker.run()
    # Each done() found its job's end already buffered: complete, retrying
    # (it raised), retrying (its last worker was killed).
    ends = [[(c["id"], c["state"]) for c in changes
             if c.get("state") in ("complete", "retrying")][-1:]
            for changes in seen]
    assert ends == [[(completes.id, "complete")], [(retries.id, "retrying")],
                    [(killed.id, "retrying")]]
