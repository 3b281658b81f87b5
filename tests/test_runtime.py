"""The real runtime: `hueyq run` processes, real signals, real crashes.

Every test here spawns the real command and cleans up in the fixture."""

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter

import psutil
import pytest

from hueyq.backends import DEAD, RUNNING

from conftest import wait_for, write_profile

pytestmark = pytest.mark.slow

PROCESS_MEDIUM = {"queues.medium": {"worker_type": "process", "workers": 2}}


def settings(*parts: dict) -> dict:
    merged = {}
    for part in parts:
        for section, values in part.items():
            merged.setdefault(section, {}).update(values)
    return merged


def runs(path) -> Counter:
    """How many times each token was recorded as done."""
    if not os.path.exists(path):
        return Counter()
    with open(path) as fh:
        return Counter(line.split()[0] for line in fh if line.strip())


def wait_states(app, handles, states=("complete",), timeout=60.0):
    def done():
        return all(app.job(h.id, history=False).state in states for h in handles)
    try:
        wait_for(done, timeout, interval=0.1,
                 message="jobs to reach %s" % (states,))
    except AssertionError:
        late = [app.job(h.id) for h in handles]
        late = [j for j in late if j.state not in states]
        raise AssertionError("%d jobs not %s, e.g. %r; backend: %r" % (
            len(late), states, late[0],
            app.find_message(late[0].id))) from None


def queue_consumer(rt, queue):
    for proc in rt.consumers():
        try:
            if "--queue" in proc.cmdline() and queue in proc.cmdline():
                return proc
        except psutil.Error:
            continue
    return None


def test_every_queue_runs_and_sigterm_exits_cleanly(app, profile_path, runtime,
                                                    tmp_path):
    path = str(tmp_path / "done")
    handles = [app.tasks.echo("hi"), app.tasks.add(2, 3),
               app.tasks.gpu_work(path, "g"), app.tasks.chore(path, "c")]
    rt = runtime(profile_path)
    rt.wait_ready()
    wait_states(app, handles)
    assert [h(blocking=True, timeout=5) for h in handles[:2]] == ["hi", 5]
    assert {app.job(h.id).queue for h in handles} == {"high", "medium", "gpu", "low"}
    status = subprocess.run([sys.executable, "-m", "hueyq", "status", "--json"],
                            capture_output=True, text=True, env=rt.env, cwd=tmp_path)
    import json
    report = json.loads(status.stdout)
    assert report["runtimes"][0]["alive"]
    assert {w["queue"] for w in report["workers"]} == {"high", "medium", "gpu", "low"}
    assert rt.terminate() == 0
    log = rt.log()
    assert "stopped" in log and "Traceback" not in log
    assert "queue=high job=%s" % handles[0].id in log
    assert app.runtimes() == []


SIGNAL_STORM = r"""
import os, signal, sys, threading, time
from hueyq.runtime.supervisor import _Wakeup
wake, seen = _Wakeup(), []
signal.signal(signal.SIGUSR1, lambda n, f: seen.append(n))
wake.install()
started = time.monotonic()
threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1)).start()
wake.wait(30)
print("woke after %.2f s" % (time.monotonic() - started))
def storm():
    for _ in range(5000):
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0)
sender = threading.Thread(target=storm, daemon=True)
sender.start()
while sender.is_alive():
    wake.wait(0.0005)
print("signals", len(seen))
"""


def test_a_stop_signal_cuts_the_supervisors_sleep_short_and_never_deadlocks():
    # The handler once set a threading.Event: a signal landing while the
    # main thread held that Event's lock hung `hueyq run` on SIGTERM.
    child = subprocess.run([sys.executable, "-c", SIGNAL_STORM],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    first, last = child.stdout.splitlines()
    assert float(first.split()[2]) < 5, first
    assert int(last.split()[1]) >= 500, last       # some coalesce


def test_sqlite_workers_commit_normal_and_the_producer_full(
        make_app, tmp_path, app_name, runtime):
    # An accepted job is fsynced (FULL); a consumer's acks are not (NORMAL),
    # on thread and process workers alike.
    for worker_type in ("thread", "process"):
        profile = write_profile(
            tmp_path / ("%s.toml" % worker_type),
            "sqlite://%s" % (tmp_path / ("%s.db" % worker_type)),
            "sqlite://%s" % (tmp_path / ("%s-store.db" % worker_type)),
            app_name, {"queues.medium": {"worker_type": worker_type}})
        app = make_app(profile)
        rt = runtime(profile)
        rt.wait_ready()
        assert app.tasks.sync_level()(blocking=True, timeout=30) == 1
        assert app.storage("medium").conn.execute(
            "pragma synchronous").fetchone()[0] == 2
        assert rt.terminate() == 0


def test_postgresql_workers_commit_asynchronously_and_the_producer_not(
        make_app, tmp_path, app_name, runtime, postgres_url):
    # An accepted job is flushed (synchronous_commit on); a consumer's acks
    # are not (off), in the process workers it forks too.
    profile = write_profile(tmp_path / "p.toml", postgres_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            PROCESS_MEDIUM)
    app = make_app(profile)
    rt = runtime(profile, queues="medium")
    rt.wait_ready()
    assert app.tasks.sync_level()(blocking=True, timeout=30) == "off"
    assert app.storage("medium").sql("show synchronous_commit", (),
                                     results=True)[0][0] == "on"
    assert rt.terminate() == 0


def test_a_dead_consumer_is_restarted(app, profile_path, runtime):
    rt = runtime(profile_path)
    rt.wait_ready()
    victim = wait_for(lambda: queue_consumer(rt, "high"), 10)
    victim.kill()
    wait_for(lambda: "exited with signal SIGKILL" in rt.log(), 10,
             message="the supervisor to notice")
    handle = app.tasks.echo("again")
    assert handle(blocking=True, timeout=20) == "again"
    new = queue_consumer(rt, "high")
    assert new is not None and new.pid != victim.pid
    assert rt.terminate() == 0


@pytest.fixture
def chaos_profile(tmp_path, chaos_backend_url, app_name):
    return write_profile(tmp_path / "chaos.toml", chaos_backend_url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name,
                         settings(PROCESS_MEDIUM, {"runtime": {"max_redeliveries": 10}}))


def test_killing_workers_loses_nothing(make_app, chaos_profile, runtime, tmp_path):
    app = make_app(chaos_profile)
    path = str(tmp_path / "done")
    handles = [app.tasks.work(path, "t%03d" % i, 0.02) for i in range(300)]
    rt = runtime(chaos_profile)
    rt.wait_ready()
    consumer = wait_for(lambda: queue_consumer(rt, "medium"), 10)
    held, killed = set(), set()
    rng = random.Random(7)
    medium = app.storage("medium")

    def workers():
        return [c for c in consumer.children()
                if c.pid not in killed and _running(c)]

    def running_a_job(victim):
        return not medium.count("pending") or any(
            l.pid == victim.pid for l in medium.leases())
    for _ in range(5):
        # Each victim is a live worker, killed while it runs a job (unless
        # the queue ran dry).
        victim = rng.choice(wait_for(workers, 10, message="workers"))
        wait_for(lambda: running_a_job(victim), 10,
                 message="the victim to run a job")
        held.update(l.task_id for l in medium.leases()
                    if l.pid == victim.pid)
        victim.kill()
        killed.add(victim.pid)
    wait_states(app, handles, timeout=90)
    counts = runs(path)
    assert set(counts) == {"t%03d" % i for i in range(300)}
    duplicated = {t for t, n in counts.items() if n > 1}
    by_token = {app.job(h.id).id: "t%03d" % i for i, h in enumerate(handles)}
    killed_tokens = {by_token[j] for j in held if j in by_token}
    assert duplicated <= killed_tokens
    assert app.storage("medium").leases() == []
    assert rt.terminate() == 0


def _running(proc: psutil.Process) -> bool:
    """A live process worker (not a zombie, nor the scheduler)."""
    from hueyq.runtime import SCHEDULER_PROCESS_NAME
    try:
        return proc.status() != psutil.STATUS_ZOMBIE and \
            proc.name() != SCHEDULER_PROCESS_NAME[:15]
    except psutil.Error:
        return False


def test_kill_9_of_the_whole_runtime_then_restart(make_app, chaos_profile, runtime,
                                                  tmp_path):
    app = make_app(chaos_profile)
    path = str(tmp_path / "done")
    handles = [app.tasks.work(path, "t%03d" % i, 0.02) for i in range(200)]
    rt = runtime(chaos_profile)
    rt.wait_ready()
    wait_for(lambda: len(runs(path)) > 40, 30, message="some progress")
    # Killed while it holds leases (between two 20 ms tasks it may hold
    # none, and then there would be nothing to recover).
    held = wait_for(lambda: {l.task_id for l in app.storage("medium").leases()},
                    10, 0.001, message="leases held")
    rt.kill_all()
    assert app.storage("medium").count(RUNNING) >= 1
    rt2 = runtime(chaos_profile)
    rt2.wait_ready()
    wait_states(app, handles, timeout=90)
    counts = runs(path)
    assert set(counts) == {"t%03d" % i for i in range(200)}
    ids = {h.id: "t%03d" % i for i, h in enumerate(handles)}
    assert {t for t, n in counts.items() if n > 1} <= {ids[j] for j in held if j in ids}
    assert "recovered" in rt2.log()
    assert rt2.terminate() == 0


def test_a_task_that_kills_its_worker_becomes_poison(
        make_app, tmp_path, chaos_backend_url, app_name, runtime):
    profile = write_profile(tmp_path / "p.toml", chaos_backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"runtime": {"max_redeliveries": 2}})
    app = make_app(profile)
    path = str(tmp_path / "done")
    handles = [app.tasks.gpu_work(path, "n%02d" % i, 0.0) for i in range(99)]
    poison = app.tasks.crash(path, "poison")
    handles.insert(50, poison)
    rt = runtime(profile)
    rt.wait_ready()
    wait_states(app, [poison], states=("dead",), timeout=60)
    normal = [h for h in handles if h is not poison]
    wait_states(app, normal, timeout=60)
    job = app.job(poison.id)
    assert job.reason == "poison" and "killed its worker 3 times" in job.error
    assert runs(path)["poison"] == 3
    assert app.storage("gpu").find(poison.id).state == DEAD
    from huey.exceptions import TaskException
    with pytest.raises(TaskException, match="poison"):
        poison(blocking=True, timeout=5)
    assert rt.terminate() == 0


def test_unknown_and_corrupt_messages_are_dead_lettered(app, profile_path, runtime):
    from hueyq.envelope import EnvelopeSerializer
    from huey.registry import Message
    storage = app.storage("high")
    ghost = Message("ghost-1", "apps.gone.task", None, 0, 0, None, (), {},
                    None, None, None, None, None, None, None)
    storage.enqueue(EnvelopeSerializer().serialize(ghost))
    storage.enqueue(b"\x00\x01corrupted bytes")
    good = app.tasks.echo("fine")
    rt = runtime(profile_path)
    rt.wait_ready()
    assert good(blocking=True, timeout=20) == "fine"
    wait_for(lambda: storage.count(DEAD) == 2, 20, message="dead letters")
    reasons = sorted(m.reason for m in storage.list_messages(DEAD))
    assert reasons == ["undecodable", "unknown_task"]
    assert app.job("ghost-1").state == "dead"
    assert rt.terminate() == 0


def test_sigterm_hands_back_tasks_longer_than_the_grace_period(
        make_app, tmp_path, chaos_backend_url, app_name, runtime):
    profile = write_profile(tmp_path / "p.toml", chaos_backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            settings(PROCESS_MEDIUM, {"runtime": {"grace_period": "1s"}}))
    app = make_app(profile)
    path = str(tmp_path / "done")
    long_ones = [app.tasks.slow(path, "long%d" % i, 4.0) for i in range(2)]
    rt = runtime(profile)
    rt.wait_ready()
    wait_for(lambda: sum(1 for t in runs(path) if t.startswith("start-")) == 2,
             20, message="both long tasks to start")
    started = time.monotonic()
    assert rt.terminate() == 0
    assert time.monotonic() - started < 8
    assert rt.log().count("handed back (shutdown)") == 2
    storage = app.storage("medium")
    assert storage.count(RUNNING) == 0 and storage.count("pending") == 2
    for handle in long_ones:
        assert app.job(handle.id).redeliveries == 0
    rt2 = runtime(profile)
    rt2.wait_ready()
    wait_states(app, long_ones, timeout=30)
    assert runs(path)["long0"] == 1 and runs(path)["long1"] == 1
    assert rt2.terminate() == 0


def test_redis_restart_mid_run_loses_nothing(make_app, tmp_path, app_name,
                                             redis_server, runtime):
    profile = write_profile(tmp_path / "p.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    path = str(tmp_path / "done")
    handles = [app.tasks.work(path, "r%03d" % i, 0.01) for i in range(150)]
    rt = runtime(profile)
    rt.wait_ready()
    wait_for(lambda: len(runs(path)) > 20, 30, message="some progress")
    before = len(rt.log().splitlines())
    redis_server.stop(signal.SIGKILL)
    # Down until the supervisor has met the outage.
    wait_for(lambda: "times in a row" in "\n".join(
        rt.log().splitlines()[before:]), 20, message="the outage to be seen")
    redis_server.start()
    wait_states(app, handles, timeout=90)
    assert set(runs(path)) == {"r%03d" % i for i in range(150)}
    assert rt.proc.poll() is None
    assert rt.terminate() == 0


def test_another_host_recovers_leases_after_its_heartbeat_stops(
        make_app, tmp_path, app_name, redis_session, runtime):
    profile = write_profile(tmp_path / "p.toml", redis_session.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            PROCESS_MEDIUM)
    app = make_app(profile)
    path = str(tmp_path / "done")
    handles = [app.tasks.work(path, "h%03d" % i, 0.05) for i in range(120)]
    first = runtime(profile, env={"HUEYQ_HOST_ID": "host-a"})
    first.wait_ready()
    wait_for(lambda: any(l.host == "host-a" for l in app.storage("medium").leases()),
             20, message="host-a to take work")
    second = runtime(profile, env={"HUEYQ_HOST_ID": "host-b"})
    second.wait_ready()
    wait_for(lambda: len(runs(path)) > 30, 30, message="progress")
    first.kill_all()
    wait_states(app, handles, timeout=90)
    assert set(runs(path)) == {"h%03d" % i for i in range(120)}
    assert "recovered" in second.log() or "redelivered" in second.log()
    assert second.terminate() == 0
