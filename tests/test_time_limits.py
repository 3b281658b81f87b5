"""Soft then hard time limits through the real `hueyq run`: the task gets
hueyq.SoftTimeLimitExceeded raised inside it and cleans up, then the hard
limit ends it; both are in the job's history."""

import pytest

from conftest import wait_for, write_profile

pytestmark = pytest.mark.slow


def finished(app, handle):
    """The job ended and the store has its final record (error and all)."""
    job = app.job(handle.id, history=False)
    return job.state in ("complete", "failed", "dead", "cancelled") and \
        (job.state == "complete" or job.error)


def lines(path):
    try:
        with open(path) as fh:
            return [line.split()[0] for line in fh]
    except FileNotFoundError:
        return []


def test_thread_worker_soft_limit_at_progress_then_cooperative_hard_limit(
        tmp_path, backend_url, app_name, make_app, runtime):
    profile = write_profile(tmp_path / "p.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile, "apps.limits")
    path = str(tmp_path / "cleanup")
    handle = app.tasks.loop_with_progress(path)
    rt = runtime(profile, "apps.limits", queues="high")
    rt.wait_ready()
    wait_for(lambda: finished(app, handle), 30, message="the hard limit")
    assert lines(path) == ["cleaned-up"]
    job = app.job(handle.id)
    assert job.state == "failed"
    assert job.error == "TaskTimeout('time limit exceeded (1.2s)')"
    events = [(e["event"], e["detail"]) for e in job.history]
    assert ("soft-time-limit", "soft time limit exceeded (400ms)") in events
    names = [e for e, _ in events]
    assert names.index("soft-time-limit") < names.index("timeout")
    assert app.tasks.echo("still serving")(blocking=True, timeout=20) == \
        "still serving"
    assert rt.terminate() == 0


def test_process_worker_soft_limit_by_signal_then_killed_by_the_watchdog(
        tmp_path, backend_url, app_name, make_app, runtime):
    profile = write_profile(
        tmp_path / "p.toml", backend_url,
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        {"queues.medium": {"worker_type": "process", "workers": 1,
                           "soft_time_limit": "500ms", "time_limit": "2s"}})
    app = make_app(profile, "apps.limits")
    path = str(tmp_path / "cleanup")
    handle = app.tasks.sleep_past_limits(path)
    quick = app.tasks.quick_under_limits(0.1)
    rt = runtime(profile, "apps.limits", queues="medium")
    rt.wait_ready()
    wait_for(lambda: finished(app, handle), 30, message="the hard limit")
    assert lines(path) == ["cleaned-up"]
    job = app.job(handle.id)
    assert (job.state, job.error) == ("failed",
                                      "killed: time limit exceeded (2s)")
    events = [(e["event"], e["detail"]) for e in job.history]
    assert ("soft-time-limit", "soft time limit exceeded (500ms)") in events
    names = [e for e, _ in events]
    assert names.index("soft-time-limit") < names.index("killed")
    assert quick(blocking=True, timeout=20) == "in time"
    assert app.job(quick.id).state == "complete"
    assert "soft-time-limit" not in [e["event"]
                                     for e in app.job(quick.id).history]
    assert rt.terminate() == 0


def test_soft_limit_must_be_under_the_hard_limit(tmp_path, app_name):
    import hueyq
    profile = write_profile(
        tmp_path / "p.toml", "sqlite://%s" % (tmp_path / "q.db"),
        "sqlite://%s" % (tmp_path / "s.db"), app_name,
        {"queues.medium": {"soft_time_limit": "10m", "time_limit": "5m"}})
    with pytest.raises(hueyq.ConfigurationError,
                       match="queues.medium.soft_time_limit: must be under"):
        hueyq.App(str(profile))
    ok = write_profile(tmp_path / "ok.toml", "sqlite://%s" % (tmp_path / "q.db"),
                       "sqlite://%s" % (tmp_path / "s.db"), app_name)
    app = hueyq.App(str(ok))
    try:
        with pytest.raises(hueyq.ConfigurationError, match="must be under"):
            app.task(soft_time_limit="2m", time_limit="1m")(lambda: None)
        assert app.profile.queues["medium"].soft_time_limit is None
    finally:
        app.close()
