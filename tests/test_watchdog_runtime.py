"""The watchdog with real processes: memory kills, recycling, time limits,
pressure pauses, and what `hueyq status` shows of them."""

import json
import subprocess
import sys

import pytest

from conftest import wait_for, write_profile

pytestmark = pytest.mark.slow

MEDIUM = {"worker_type": "process", "workers": 1}


def profile_with(tmp_path, backend_url, app_name, **sections):
    return write_profile(tmp_path / "w.toml", backend_url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name, sections)


def done(app, handle, states=("complete", "failed", "dead", "cancelled")):
    return app.job(handle.id, history=False).state in states


def test_a_worker_over_its_hard_limit_is_killed_and_the_job_retried_then_failed(
        tmp_path, backend_url, app_name, make_app, runtime):
    profile = profile_with(tmp_path, backend_url, app_name, **{
        "queues.medium": dict(MEDIUM, worker_memory_hard="150MiB")})
    app = make_app(profile, "apps.memory")
    hog = app.tasks.grow(20, 30)
    fine = app.tasks.add(1, 2)
    rt = runtime(profile, "apps.memory")
    rt.wait_ready()
    wait_for(lambda: done(app, hog), 60, message="the hog to end")
    job = app.job(hog.id)
    assert job.state == "failed" and job.attempts == 2
    assert job.error.startswith("killed: memory budget exceeded (")
    assert job.error.endswith(" > 150.0 MiB)")
    events = [e["event"] for e in job.history]
    assert events.count("killed") == 2 and "retrying" in events
    assert fine(blocking=True, timeout=30) == 3
    actions = app.store.watchdog_events()
    assert [a["action"] for a in actions].count("kill") == 2
    assert all(a["limit"] == 150 << 20 and a["value"] > 150 << 20
               for a in actions if a["action"] == "kill")
    assert rt.terminate() == 0


def test_a_slowly_growing_worker_is_recycled_between_tasks(
        tmp_path, backend_url, app_name, make_app, runtime):
    profile = profile_with(tmp_path, backend_url, app_name, **{
        "queues.medium": dict(MEDIUM, worker_memory_soft="120MiB")})
    app = make_app(profile, "apps.memory")
    path = str(tmp_path / "done")
    handles = [app.tasks.leak(path, "l%02d" % i, 25) for i in range(12)]
    rt = runtime(profile, "apps.memory")
    rt.wait_ready()
    wait_for(lambda: all(done(app, h) for h in handles), 90, message="all leaks")
    assert all(app.job(h.id).state == "complete" for h in handles)
    with open(path) as fh:
        pids = {line.split()[1] for line in fh}
    assert len(pids) >= 2, "the worker was never replaced"
    recycles = [a for a in app.store.watchdog_events() if a["action"] == "recycle"]
    assert recycles and recycles[0]["limit"] == 120 << 20
    assert rt.terminate() == 0


def test_a_task_whose_memory_does_not_fit_waits_visibly_then_runs(
        tmp_path, backend_url, app_name, make_app, runtime):
    # 512 MiB for the queue: one 300 MiB task fits beside the workers'
    # measured use, a second waits for the first to end; undeclared work
    # goes on meanwhile.
    profile = profile_with(tmp_path, backend_url, app_name, **{
        "queues.medium": {"worker_type": "process", "workers": 2,
                          "memory_limit": "512MiB"}})
    app = make_app(profile, "apps.memory")
    path = str(tmp_path / "done")
    release = tmp_path / "release"
    first = app.tasks.bulky(path, "first", 120, str(release))
    second = app.tasks.bulky(path, "second", 0)
    rt = runtime(profile, "apps.memory")
    rt.wait_ready()
    wait_for(lambda: app.job(first.id, history=False).state == "running", 30,
             message="the first bulky task to start")
    wait_for(lambda: app.queue_stats()["medium"]["waiting_for_memory"] == 1,
             10, message="the second to be counted as waiting for memory")
    job = app.job(second.id, history=False)
    assert job.state == "pending" and job.memory == 300 << 20
    assert job.waiting.startswith("memory: needs 300.0 MiB, ")
    assert job.waiting.endswith(" left of the queue's budget")
    stats = app.queue_stats()["medium"]
    assert 0 <= stats["memory_room"] < 300 << 20
    [listed] = [j for j in app.jobs(queue="medium", state="pending")
                if j.id == second.id]
    assert listed.waiting == job.waiting
    shown = subprocess.run(
        [sys.executable, "-m", "hueyq", "job", "--profile", str(profile),
         "--app", "apps.memory", second.id], capture_output=True, text=True,
        cwd=str(tmp_path), env=rt.env)
    assert shown.returncode == 0, shown.stderr
    assert "waiting:      memory: needs 300.0 MiB" in shown.stdout
    status = subprocess.run(
        [sys.executable, "-m", "hueyq", "status", "--profile", str(profile),
         "--app", "apps.memory"], capture_output=True, text=True,
        cwd=str(tmp_path), env=rt.env)
    assert status.returncode == 0, status.stderr
    assert "medium: 1 pending job(s) waiting for memory (" in status.stdout
    assert app.tasks.add(2, 3)(blocking=True, timeout=30) == 5
    assert app.job(second.id, history=False).state == "pending"
    release.touch()
    assert second(blocking=True, timeout=30) == "second"
    assert first(blocking=True, timeout=30) == "first"
    with open(path) as fh:
        assert [line.split()[0] for line in fh] == ["first", "second"]
    assert app.job(second.id, history=False).waiting is None
    assert rt.terminate() == 0


def test_a_task_past_its_time_limit_is_killed(tmp_path, backend_url, app_name,
                                               make_app, runtime):
    profile = profile_with(tmp_path, backend_url, app_name, **{
        "queues.medium": dict(MEDIUM, time_limit="1s")})
    app = make_app(profile, "apps.memory")
    sleepy = app.tasks.nap(30)
    rt = runtime(profile, "apps.memory")
    rt.wait_ready()
    wait_for(lambda: done(app, sleepy), 30, message="the time limit")
    job = app.job(sleepy.id)
    assert (job.state, job.error) == ("failed", "killed: time limit exceeded (1s)")
    assert app.tasks.add(2, 2)(blocking=True, timeout=30) == 4
    assert rt.terminate() == 0


def test_low_system_memory_pauses_lowest_first_and_resumes(
        tmp_path, backend_url, app_name, make_app, runtime):
    starved = profile_with(tmp_path, backend_url, app_name,
                           memory={"min_available": "100000GiB"})
    app = make_app(starved)
    rt = runtime(starved)
    rt.wait_ready()

    def paused_by_memory():
        stats = app.queue_stats()
        return sorted(q for q, s in stats.items() if "memory" in s["paused_by"])
    def pause_order():
        return [a["queue"] for a in reversed(app.store.watchdog_events())
                if a["action"] == "pause"]
    wait_for(lambda: paused_by_memory() == ["gpu", "low", "medium"], 20,
             message="three pressure pauses")
    # Each pause is recorded just after its flag is set.
    wait_for(lambda: len(pause_order()) == 3, 10, message="three records")
    assert pause_order() == ["low", "gpu", "medium"]
    assert app.tasks.echo("still served")(blocking=True, timeout=20) == "still served"
    status = subprocess.run([sys.executable, "-m", "hueyq", "status"], env=rt.env,
                            cwd=tmp_path, capture_output=True, text=True)
    assert "memory" in status.stdout
    assert rt.terminate() == 0
    (tmp_path / "w.toml").unlink()
    relieved = profile_with(tmp_path, backend_url, app_name)
    rt2 = runtime(relieved)
    rt2.wait_ready()
    wait_for(lambda: paused_by_memory() == [], 20, message="pauses lifted")
    assert app.tasks.add(1, 1)(blocking=True, timeout=20) == 2
    assert rt2.terminate() == 0


def test_status_shows_each_worker_memory_and_current_job(
        tmp_path, backend_url, app_name, make_app, runtime):
    profile = profile_with(tmp_path, backend_url, app_name, **{
        "queues.medium": dict(MEDIUM, worker_memory_hard="1GiB")})
    app = make_app(profile, "apps.memory")
    long = app.tasks.nap(20)
    rt = runtime(profile, "apps.memory")
    rt.wait_ready()

    def busy():
        workers = [w for w in app.workers() if w["queue"] == "medium"
                   and w["kind"] == "worker" and w["jobs"]]
        return workers and workers[0]
    worker = wait_for(busy, 20, message="a busy medium worker")
    assert worker["jobs"][0]["id"] == long.id
    assert worker["memory"] > 1 << 20 and worker["memory_kind"] in ("pss", "rss")
    assert worker["worker_memory_hard"] == 1 << 30
    out = subprocess.run([sys.executable, "-m", "hueyq", "status", "--json"],
                         env=rt.env, cwd=tmp_path, capture_output=True, text=True)
    report = json.loads(out.stdout)
    assert any(j["id"] == long.id for w in report["workers"] for j in w["jobs"])
    text = subprocess.run([sys.executable, "-m", "hueyq", "status"], env=rt.env,
                          cwd=tmp_path, capture_output=True, text=True).stdout
    assert long.id[:8] in text and "nap" in text
    app.cancel(long.id)
    wait_for(lambda: done(app, long), 20, message="the cancel")
    assert app.job(long.id).state == "cancelled"
    assert rt.terminate() == 0
