"""@app.batch_task: items enqueued one by one, run in batches, each its own job."""

import os
import threading
import time

import pytest
from huey.exceptions import TaskException

from conftest import wait_for, write_profile


@pytest.fixture
def batch_log(tmp_path, monkeypatch):
    path = tmp_path / "batches"
    monkeypatch.setenv("HUEYQ_TEST_BATCH_LOG", str(path))
    return path


def batches(path):
    if not os.path.exists(path):
        return []
    with open(path) as fh:
        return [int(line.split()[0][5:]) for line in fh]


def test_items_run_in_batches_and_stay_individual_jobs(profile_path, make_app,
                                                       inline, batch_log):
    app = make_app(profile_path, "apps.batching", max_size=4, max_wait="0s")
    handles = [app.tasks.square(i) for i in range(10)]
    inline(app, "medium").run()
    assert batches(batch_log) == [4, 4, 2]
    assert [h(blocking=True, timeout=5) for h in handles] == [i * i for i in range(10)]
    for h in handles:
        job = app.job(h.id)
        assert job.state == "complete" and job.attempts == 1
        assert [e["event"] for e in job.history] == ["executing", "complete"]


def test_one_bad_item_fails_alone(profile_path, make_app, inline, batch_log):
    app = make_app(profile_path, "apps.batching")
    good, bad, also = app.tasks.square(3), app.tasks.square("bad"), app.tasks.square(5)
    inline(app, "medium").run()
    assert good(blocking=True, timeout=5) == 9 and also(blocking=True, timeout=5) == 25
    assert app.job(good.id).attempts == 1
    job = app.job(bad.id)
    assert job.state == "failed" and job.attempts == 2
    assert job.error == "ValueError(\"bad item 'bad'\")"
    with pytest.raises(TaskException, match="bad item"):
        bad(blocking=True, timeout=5)


def test_a_failing_batch_retries_each_item(profile_path, make_app, inline, batch_log):
    app = make_app(profile_path, "apps.batching")
    handles = [app.tasks.square(2), app.tasks.square("explode")]
    inline(app, "medium").run()
    assert batches(batch_log) == [2, 2]
    for handle in handles:
        job = app.job(handle.id)
        assert (job.state, job.attempts) == ("failed", 2)
        assert "the whole batch failed" in job.error
        assert [e["event"] for e in job.history].count("retrying") == 1


def test_the_batch_waits_for_more_items(profile_path, make_app, inline, batch_log):
    app = make_app(profile_path, "apps.batching", max_size=4, max_wait="3s")
    first = app.tasks.square(1)
    worker = inline(app, "medium")
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_for(lambda: app.job(first.id, history=False).state == "running"
             or app.storage("medium").count("running"), 5, message="the lease")
    rest = [app.tasks.square(n) for n in (2, 3, 4)]
    thread.join(10)
    assert batches(batch_log) == [4]
    assert [h(blocking=True, timeout=5) for h in [first] + rest] == [1, 4, 9, 16]


def test_a_batch_task_takes_one_item(profile_path, make_app):
    app = make_app(profile_path, "apps.batching")
    with pytest.raises(TypeError, match="exactly one item"):
        app.tasks.square(1, 2)
    assert app.tasks.square.call_local(7) == 49


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_no_item(tmp_path, backend_url, app_name,
                                                 make_app, runtime, batch_log):
    profile = write_profile(tmp_path / "p.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"queues.medium": {"worker_type": "process",
                                               "workers": 1}})
    app = make_app(profile, "apps.batching")
    handles = [app.tasks.square({"n": n, "sleep": 1.0}) for n in range(8)]
    rt = runtime(profile, "apps.batching",
                 env={"HUEYQ_TEST_BATCH_LOG": str(batch_log)})
    rt.wait_ready()
    leases = wait_for(lambda: app.storage("medium").leases(), 20,
                      message="a batch to start")
    worker_pid = leases[0].pid
    wait_for(lambda: len(app.storage("medium").leases()) == 8, 10,
             message="all eight items in the batch")
    os.kill(worker_pid, 9)
    wait_for(lambda: all(app.job(h.id, history=False).state == "complete"
                         for h in handles), 60, message="every item to complete")
    assert [h(blocking=True, timeout=5) for h in handles] == [n * n for n in range(8)]
    # A crash that took eight jobs down is charged to none of them: each is
    # a suspect that ran alone next (a batch of one), and none crashed.
    assert all(app.job(h.id).redeliveries == 0 for h in handles)
    assert "suspect" in rt.log()
    assert rt.terminate() == 0


def test_an_item_revoked_before_its_batch_ran_is_cancelled_without_a_run_time(
        profile_path, make_app, inline, batch_log):
    app = make_app(profile_path, "apps.batching", max_size=4, max_wait="0s")
    first, revoked = app.tasks.square(2), app.tasks.square(3)
    app.huey("medium").revoke_by_id(revoked.id)
    inline(app, "medium").run()
    assert batches(batch_log) == [1]
    job = app.job(revoked.id)
    assert (job.state, job.reason, job.duration) == ("cancelled", "cancelled",
                                                     None)
    assert job.finished_at is not None
    assert app.job(first.id).state == "complete"


def test_a_thread_batch_stops_at_its_time_limit_at_the_next_progress(
        profile_path, make_app, inline):
    app = make_app(profile_path, "apps.batching")
    handles = [app.tasks.patient(1), app.tasks.patient(2)]
    began = time.monotonic()
    inline(app, "medium").run()
    assert time.monotonic() - began < 5
    for handle in handles:
        job = app.job(handle.id)
        assert (job.state, job.error) == (
            "failed", "TaskTimeout('time limit exceeded (300ms)')")
