"""Async task bodies and asyncio producers, through the real `hueyq run`
on each backend: an async queue runs many tasks at once on one event loop,
cancels, time limits and retries work there as on thread workers, and a
coroutine enqueues and awaits results without blocking its loop."""

import asyncio
import os
import signal
import threading
import time

import pytest
from huey import signals as S
from huey.exceptions import ResultTimeout

import hueyq
from conftest import wait_for, write_profile
from test_cli import cli

from apps import aio as aio_app


@pytest.fixture
def io_profile(tmp_path, backend_url, app_name):
    return write_profile(tmp_path / "p.toml", backend_url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name,
                         {"queues.io": aio_app.IO_QUEUE})


def lines(path):
    try:
        with open(path) as fh:
            return [line.split()[0] for line in fh]
    except FileNotFoundError:
        return []


def ended(app, job_id):
    """The job ended and the store has its final record (error and all)."""
    job = app.job(job_id, history=False)
    return job.state in ("complete", "cancelled") or \
        (job.state in ("failed", "dead") and job.error)


@pytest.mark.slow
def test_many_async_tasks_at_once_enqueued_and_awaited_off_the_loop(
        io_profile, make_app, runtime):
    app = make_app(io_profile, "apps.aio")
    enqueued_on = set()
    app.signal(S.SIGNAL_ENQUEUED)(
        lambda signal, task: enqueued_on.add(threading.get_ident()))
    rt = runtime(io_profile, "apps.aio", queues="io")
    rt.wait_ready()

    async def produce():
        ticks = []

        async def heartbeat():
            while True:
                ticks.append(time.monotonic())
                await asyncio.sleep(0.01)
        beat = asyncio.ensure_future(heartbeat())
        await asyncio.sleep(0.05)
        handles = await asyncio.gather(
            *[app.tasks.remote.aio(0.5) for _ in range(200)])
        first = len(ticks)
        peaks = await asyncio.gather(*[h.aget(timeout=60) for h in handles])
        during = ticks[first:]
        beat.cancel()
        return threading.get_ident(), handles, peaks, during

    loop_thread, handles, peaks, during = asyncio.run(produce())
    # Many tasks ran at once in the one consumer process...
    assert len(peaks) == 200 and max(peaks) >= 50, max(peaks)
    # ...the enqueues ran on threads, never on the loop, and the loop kept
    # ticking while the results were awaited.
    assert enqueued_on and loop_thread not in enqueued_on
    assert len(during) >= 20
    assert max(b - a for a, b in zip(during, during[1:])) < 1.0
    job = asyncio.run(app.ajob(handles[0].id))
    assert job.id == handles[0].id and job.task == "apps.aio.remote"
    assert rt.terminate() == 0


@pytest.mark.slow
def test_each_async_task_sees_its_own_job_and_progress(io_profile, make_app,
                                                       runtime):
    app = make_app(io_profile, "apps.aio")
    handles = [app.tasks.report(5) for _ in range(20)]
    rt = runtime(io_profile, "apps.aio", queues="io")
    rt.wait_ready()
    for handle in handles:
        assert handle.get(blocking=True, timeout=30) == handle.id
    wait_for(lambda: app.job(handles[0].id).progress == 100.0, 10,
             message="the last progress record")
    job = app.job(handles[0].id)
    assert (job.state, job.message) == ("complete", "step 5")
    assert rt.terminate() == 0


@pytest.mark.slow
def test_cancel_time_limits_and_retries_of_async_tasks(io_profile, make_app,
                                                      runtime, tmp_path):
    app = make_app(io_profile, "apps.aio")
    hang_path, overrun_path = str(tmp_path / "hang"), str(tmp_path / "over")
    flaky_path = str(tmp_path / "flaky")
    hang = app.tasks.hang(hang_path)
    overrun = app.tasks.overrun(overrun_path)
    flaky = app.tasks.flaky(flaky_path)
    soft_path = str(tmp_path / "soft")
    soft = app.tasks.soft(soft_path)
    rt = runtime(io_profile, "apps.aio", queues="io")
    rt.wait_ready()
    wait_for(lambda: lines(hang_path) == ["started"], 20,
             message="the task to start")
    result = app.cancel(hang.id)
    assert "async worker" in result.detail
    wait_for(lambda: ended(app, hang.id), 20, message="the cancel")
    assert lines(hang_path) == ["started", "cancelled"]
    assert app.job(hang.id).state == "cancelled"

    wait_for(lambda: ended(app, overrun.id), 20, message="the time limit")
    job = app.job(overrun.id)
    assert (job.state, job.error) == (
        "failed", "TaskTimeout('time limit exceeded (500ms)')")
    assert lines(overrun_path) == ["started"]

    assert soft.get(blocking=True, timeout=30) == "stopped"
    assert lines(soft_path) == ["cleaned-up"]
    wait_for(lambda: "soft-time-limit" in [
        e["event"] for e in app.job(soft.id).history], 10,
        message="the soft limit in the history")

    assert flaky.get(blocking=True, timeout=30) == 3
    job = app.job(flaky.id)
    assert job.state == "complete"
    assert [e["event"] for e in job.history].count("retrying") == 2
    # The loop still serves.
    assert app.tasks.remote(0.01).get(blocking=True, timeout=20) >= 1
    assert rt.terminate() == 0


def running(app, queue):
    return app.queue_stats()[queue]["running"]


@pytest.mark.slow
def test_an_async_consumer_killed_mid_run_loses_no_task(
        io_profile, make_app, runtime, tmp_path):
    app = make_app(io_profile, "apps.aio")
    path = str(tmp_path / "done")
    handles = [app.tasks.note(path, "t%d" % i, 0.5) for i in range(8)]
    rt = runtime(io_profile, "apps.aio", queues="io")
    rt.wait_ready()
    wait_for(lambda: running(app, "io") == 8, 20, message="8 tasks running")
    [consumer] = rt.consumers()
    os.kill(consumer.pid, signal.SIGKILL)
    # The supervisor starts a new consumer and hands it the 8 leases; each
    # runs alone (it died with 7 others), and none is lost.
    assert [h.get(blocking=True, timeout=60) for h in handles] == \
        ["t%d" % i for i in range(8)]
    assert set(lines(path)) == {"t%d" % i for i in range(8)}
    assert rt.terminate() == 0


@pytest.mark.slow
def test_shutdown_lets_running_async_tasks_finish(io_profile, make_app,
                                                  runtime, tmp_path):
    app = make_app(io_profile, "apps.aio")
    path = str(tmp_path / "done")
    handles = [app.tasks.note(path, "t%d" % i, 1.0) for i in range(20)]
    rt = runtime(io_profile, "apps.aio", queues="io")
    rt.wait_ready()
    wait_for(lambda: running(app, "io") == 20, 20, message="20 running")
    assert rt.terminate() == 0
    assert sorted(lines(path)) == sorted("t%d" % i for i in range(20))
    assert [h.get() for h in handles] == ["t%d" % i for i in range(20)]
    assert app.queue_stats()["io"]["running"] == 0


@pytest.mark.slow
def test_a_plain_function_on_an_async_queue_is_refused_at_start(
        io_profile, tmp_path):
    result = cli("run", "--app", "apps.aio_sync", cwd=tmp_path,
                 env={"HUEYQ_PROFILE": str(io_profile)})
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines()
             if "error" in line.lower()]
    assert error == [
        "hueyq: error: task apps.aio_sync.blocking_call is not an async def "
        "but its queue io has worker_type = \"async\": make it async def or "
        "route it to a thread or process queue"], result.stderr
    assert "Traceback" not in result.stderr


def test_aget_times_out_without_a_worker(io_profile, make_app):
    app = make_app(io_profile, "apps.aio")

    async def wait():
        handle = await app.tasks.remote.aio(0.01)
        started = time.monotonic()
        with pytest.raises(ResultTimeout):
            await handle.aget(timeout=0.3)
        return time.monotonic() - started
    assert 0.3 <= asyncio.run(wait()) < 5


def test_async_tasks_run_in_immediate_mode(io_profile, make_app):
    app = make_app(io_profile, "apps.aio")
    app.immediate = True
    assert app.tasks.remote(0.01).get() == 1

    async def both():
        handle = await app.tasks.remote.aio(0.01)
        return await handle.aget(timeout=5)
    assert asyncio.run(both()) == 1


@pytest.mark.parametrize("settings, message", [
    ({"worker_type": "async", "workers": 2},
     "queues.io.workers: an async queue runs one event loop per consumer "
     "process: set concurrency, not workers (2)"),
    ({"worker_type": "async", "concurrency": 0},
     "queues.io.concurrency: expected an integer >= 1, got 0"),
    ({"worker_type": "greenlet"}, "queues.io.worker_type"),
])
def test_async_queue_settings_are_checked(tmp_path, app_name, settings,
                                          message):
    profile = write_profile(tmp_path / "p.toml", "sqlite://%s"
                            % (tmp_path / "q.db"), "sqlite://%s"
                            % (tmp_path / "s.db"), app_name,
                            {"queues.io": dict(aio_app.IO_QUEUE, **settings)})
    with pytest.raises(hueyq.ConfigurationError) as info:
        hueyq.App(str(profile))
    assert message in str(info.value)
