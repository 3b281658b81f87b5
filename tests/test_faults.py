"""Faults injected into a real runtime: a task that kills its thread
consumer, reboots and runtime kills, SIGTERM to every process, a second
Ctrl-C, a Redis that is full or stopped under a running task, a long reader
of the SQLite file, and a Redis without AOF."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from hueyq.backends import PENDING, RUNNING
from hueyq.exceptions import BackendUnavailable
from hueyq.owner import boot_id, owner_name, start_ticks

from conftest import RedisServer, wait_for, write_profile
from test_runtime import (PROCESS_MEDIUM, queue_consumer, runs, settings,
                          wait_states)


def cli(rt, *args, timeout=60):
    """Run a ``hueyq`` command with a runtime's environment."""
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, env=rt.env,
                          cwd=rt.cwd, timeout=timeout)


def one_line(text: str) -> bool:
    return len(text.strip().splitlines()) == 1 and "Traceback" not in text


# ---------------------------------------------------------------- crashes

@pytest.mark.slow
def test_a_crash_on_a_thread_queue_is_charged_to_the_job_that_caused_it(
        make_app, tmp_path, app_name, runtime):
    profile = write_profile(
        tmp_path / "p.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        {"queues.medium": {"worker_type": "thread", "workers": 4},
         "runtime": {"max_redeliveries": 2, "restart_backoff_max": "1s"}})
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    innocent = [app.tasks.nap(path, "n%02d" % i, 0.05) for i in range(99)]
    poison = app.tasks.die(path, "poison")
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    wait_states(app, [poison], states=("dead",), timeout=90)
    wait_states(app, innocent, timeout=90)
    job = app.job(poison.id)
    assert job.reason == "poison" and "killed its worker 3 times" in job.error
    # Charged once per crash it caused running alone; the first crash, with
    # three other jobs in the process, was charged to nobody.
    assert runs(path)["poison"] in (3, 4)
    assert all(app.job(h.id).redeliveries == 0 for h in innocent)
    assert set(runs(path)) >= {"n%02d" % i for i in range(99)}
    assert rt.terminate() == 0


def _lease_as(storage, owner: str):
    lease = storage.lease(owner)
    assert lease is not None
    return lease


def test_leases_of_an_earlier_boot_or_a_reused_pid_are_recovered_uncharged(
        app, tmp_path):
    from hueyq.runtime.supervisor import Supervisor
    storage = app.storage("high")
    handles = [app.tasks.echo(i) for i in range(3)]
    me, ticks = os.getpid(), start_ticks(os.getpid())
    other_boot = "%s:%d:Worker-1|%s|%d|%d.%d|%d" % (
        app.host_id, me, uuid.uuid4(), ticks, me, ticks, me)
    reused_pid = "%s:%d:Worker-1|%s|%d|1.1|%d" % (
        app.host_id, me, boot_id(), ticks + 1, me)
    live = owner_name(app.host_id, "Worker-1")
    leases = [_lease_as(storage, o) for o in (other_boot, reused_pid, live)]
    supervisor = Supervisor(app, "apps.basic")
    # A live process with the lease's pid does not keep a lease from an
    # earlier boot, or one whose process started at another tick, alive.
    assert supervisor.recover() == 2
    found = {h.id: app.find_message(h.id) for h in handles}
    assert [found[l.task_id].state for l in leases] == [PENDING, PENDING,
                                                        RUNNING]
    assert [found[l.task_id].redeliveries for l in leases] == [0, 0, 0]
    assert "after a reboot" in found[leases[0].task_id].last_error
    assert supervisor.recover() == 0


@pytest.mark.slow
def test_runtime_kills_are_not_charged_to_the_running_job(
        make_app, tmp_path, app_name, runtime):
    profile = write_profile(
        tmp_path / "p.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        settings(PROCESS_MEDIUM, {"runtime": {"max_redeliveries": 2}}))
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    handle = app.tasks.long(path, "long", 2.0)
    for kill in range(4):
        rt = runtime(profile, "apps.faults")
        rt.wait_ready()
        wait_for(lambda: runs(path)["start-long"] == kill + 1, 20,
                 message="start %d of the long job" % (kill + 1))
        rt.kill_all()                 # a power cut, as the runtime sees it
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    wait_states(app, [handle], timeout=30)
    job = app.job(handle.id)
    assert job.state == "complete" and job.redeliveries == 0
    assert runs(path)["start-long"] == 5 and runs(path)["long"] == 1
    assert rt.terminate() == 0


# ---------------------------------------------------------------- signals

@pytest.mark.slow
def test_sigterm_to_every_process_hands_each_job_back_once(
        make_app, tmp_path, app_name, runtime):
    profile = write_profile(
        tmp_path / "p.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        settings(PROCESS_MEDIUM, {"runtime": {"grace_period": "2s"}}))
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    process_jobs = [app.tasks.long(path, "p%d" % i, 6.0) for i in range(2)]
    thread_job = app.tasks.touch(path, "t", 6.0)
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    wait_for(lambda: {"start-p0", "start-p1", "t"} <= set(runs(path)), 20,
             message="the jobs to start")
    tree = rt.tree()
    assert len(tree) >= 6        # supervisor, 4 consumers, 2 process workers
    for pid in tree:             # systemd KillMode=control-group, docker
        os.kill(pid, signal.SIGTERM)
    assert rt.proc.wait(30) == 0
    counts = runs(path)
    assert (counts["start-p0"], counts["start-p1"], counts["t"]) == (1, 1, 1)
    for storage in (app.storage("medium"), app.storage("high")):
        assert storage.count(RUNNING) == 0
    assert app.storage("medium").count(PENDING) == 2
    assert app.storage("high").count(PENDING) == 1
    rt2 = runtime(profile, "apps.faults")
    rt2.wait_ready()
    wait_states(app, process_jobs + [thread_job], timeout=40)
    assert all(app.job(h.id).redeliveries == 0
               for h in process_jobs + [thread_job])
    assert runs(path)["start-p0"] == 2 and runs(path)["p0"] == 1
    assert rt2.terminate() == 0


@pytest.mark.slow
def test_a_second_ctrl_c_interrupts_running_tasks_at_once(
        make_app, tmp_path, app_name, runtime):
    profile = write_profile(
        tmp_path / "p.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        settings(PROCESS_MEDIUM, {"runtime": {"grace_period": "30s"}}))
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    jobs = [app.tasks.long(path, "p", 20.0), app.tasks.touch(path, "t", 20.0)]
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    wait_for(lambda: {"start-p", "t"} <= set(runs(path)), 20,
             message="the jobs to start")
    rt.proc.send_signal(signal.SIGINT)
    # The idle consumers are gone once the first Ctrl-C reached them; the
    # busy ones are waiting for their tasks then.
    wait_for(lambda: queue_consumer(rt, "low") is None and
             queue_consumer(rt, "high") is not None, 10,
             message="the consumers to stop gracefully")
    started = time.monotonic()
    rt.proc.send_signal(signal.SIGINT)
    assert rt.proc.wait(30) == 0
    assert time.monotonic() - started < 8          # not the 30 s grace
    assert "interrupting running tasks now" in rt.log()
    assert app.storage("medium").count(PENDING) == 1
    assert app.storage("high").count(PENDING) == 1
    assert all(app.job(h.id).redeliveries == 0 for h in jobs)
    rt2 = runtime(profile, "apps.faults")
    rt2.wait_ready()
    wait_for(lambda: runs(path)["start-p"] == 2 and runs(path)["t"] == 2, 20,
             message="both jobs to start again after the restart")


# ---------------------------------------------------------------- Redis

def _fill(client) -> None:
    """Make Redis refuse every write that may grow memory (noeviction)."""
    used = client.info("memory")["used_memory"]
    client.config_set("maxmemory", used // 2)


@pytest.mark.slow
def test_a_full_redis_neither_reruns_nor_poisons_and_reads_answer(
        make_app, tmp_path, app_name, redis_server, runtime):
    import redis
    profile = write_profile(tmp_path / "p.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"runtime": {"max_redeliveries": 1}})
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    client = redis.Redis(port=redis_server.port)
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    handle = app.tasks.long(path, "full", 1.5)
    wait_for(lambda: "start-full" in runs(path), 20, message="the task")
    _fill(client)
    wait_for(lambda: "full" in runs(path), 20, message="the task to end")
    wait_for(lambda: "storing a finished task's outcome failed" in rt.log(),
             20, message="the result write to be refused")
    # Every read path answers, in one line where it must refuse.
    with pytest.raises(BackendUnavailable, match="Redis is out of memory"):
        app.tasks.echo("no room")
    with pytest.raises(BackendUnavailable, match="Redis is out of memory"):
        app.pause("low")
    assert app.resume("low") is False
    doctor = cli(rt, "doctor")
    assert doctor.returncode == 1 and "Traceback" not in doctor.stderr
    assert "ERROR redis.memory" in doctor.stdout
    assert "Redis is out of memory" in doctor.stdout
    status = cli(rt, "status")
    assert status.returncode == 0, status.stderr
    assert "runtime: alive" in status.stdout
    pause = cli(rt, "pause", "low")
    assert pause.returncode == 1 and one_line(pause.stderr)
    assert "Redis is out of memory" in pause.stderr
    from hueyq.webui import create_app
    web = create_app(app, config={"TESTING": True}).test_client()
    for url in ("/api/queues", "/api/health", "/metrics"):
        answer = web.get(url)
        assert answer.status_code in (200, 503), (url, answer.data)
    assert app.job(handle.id, history=False).state == "running"
    client.config_set("maxmemory", 0)
    assert handle(blocking=True, timeout=30) == "full"
    wait_states(app, [handle])
    job = app.job(handle.id)
    assert job.redeliveries == 0 and job.attempts == 1
    assert runs(path)["start-full"] == 1 and runs(path)["full"] == 1
    held = rt.log().count("storing a finished task's outcome failed")
    assert 1 <= held <= 5
    assert "works again" in rt.log()
    assert rt.terminate() == 0


@pytest.mark.slow
def test_a_redis_outage_under_a_running_task(make_app, tmp_path, app_name,
                                             redis_server, runtime):
    # The outage is 30 s; one that lasts until both tasks ended
    # takes the same code paths (the task reports progress and ends while
    # Redis is down).
    profile = write_profile(tmp_path / "p.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            PROCESS_MEDIUM)
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    jobs = [app.tasks.long(path, "p", 3.0), app.tasks.touch(path, "t", 3.0)]
    wait_for(lambda: {"start-p", "t"} <= set(runs(path)), 20,
             message="both tasks to start")
    before = len(rt.log().splitlines())
    redis_server.stop(signal.SIGTERM)

    def both_ended():
        outage = "\n".join(rt.log().splitlines()[before:])
        return runs(path)["p"] == 1 and outage.count(
            "storing a finished task's outcome failed") >= 2
    wait_for(both_ended, 30, message="both tasks to end in the outage")
    redis_server.start()
    assert [h(blocking=True, timeout=60) for h in jobs] == ["p", "t"]
    wait_states(app, jobs)
    assert all(app.job(h.id).redeliveries == 0 for h in jobs)
    assert runs(path)["start-p"] == 1 and runs(path)["p"] == 1
    assert runs(path)["t"] == 1
    outage = rt.log().splitlines()[before:]
    assert len(outage) < 60, "\n".join(outage)
    assert "Traceback" not in "\n".join(outage)
    assert rt.proc.poll() is None
    assert rt.terminate() == 0


def test_require_aof_refuses_to_start_and_doctor_says_what_is_lost(
        tmp_path, app_name):
    pytest.importorskip("redis")
    server = RedisServer(tmp_path, appendonly=False,
                         policy="allkeys-lru").start()
    try:
        profile = write_profile(tmp_path / "p.toml", server.url,
                                "sqlite://%s" % (tmp_path / "store.db"),
                                app_name, {"runtime": {"require_aof": True}})
        env = dict(os.environ, HUEYQ_PROFILE=str(profile),
                   PYTHONPATH=os.path.dirname(__file__))
        run = subprocess.run([sys.executable, "-m", "hueyq", "run", "--app",
                              "apps.basic"], capture_output=True, text=True,
                             env=env, cwd=tmp_path, timeout=60)
        assert run.returncode == 2, run.stderr
        lines = [l for l in run.stderr.splitlines() if l.startswith("hueyq:")]
        assert len(lines) == 1 and "Traceback" not in run.stderr
        assert "appendonly" in lines[0] and "require_aof" in lines[0]
        dev = write_profile(tmp_path / "dev.toml", server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
        env["HUEYQ_PROFILE"] = str(dev)
        doctor = subprocess.run([sys.executable, "-m", "hueyq", "doctor"],
                                capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=60)
        assert "WARN  redis.persistence" in doctor.stdout
        assert "will lose the jobs queued" in doctor.stdout
        assert "ERROR redis.maxmemory_policy" in doctor.stdout
        assert "will lose queued jobs" in doctor.stdout
    finally:
        server.stop()


# ---------------------------------------------------------------- SQLite WAL

@contextlib.contextmanager
def _reader(db: str):
    """Another process holding a read transaction open (a backup, a
    dashboard's long query) until the block ends; it yields the process."""
    code = ("import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('begin')\n"
            "c.execute('select count(*) from hueyq_message').fetchall()\n"
            "print('reading', flush=True)\n"
            "sys.stdin.readline()\n"
            "c.execute('commit')\n")
    with subprocess.Popen([sys.executable, "-c", code, db], text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
        try:
            assert proc.stdout.readline().strip() == "reading"
            yield proc
        finally:
            proc.stdin.close()          # the reader commits and exits
            proc.wait(30)


@pytest.mark.slow
def test_the_wal_shrinks_after_a_long_reader_under_load(
        make_app, tmp_path, app_name, runtime):
    db = str(tmp_path / "queue.db")
    profile = write_profile(tmp_path / "p.toml", "sqlite://%s" % db,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"queues.high": {"workers": 4}})
    app = make_app(profile, "apps.faults")
    rt = runtime(profile, "apps.faults")
    rt.wait_ready()
    stop = threading.Event()
    payload = "x" * 2000

    def produce():                      # a few hundred jobs a second
        while not stop.wait(0.002):
            app.tasks.echo(payload)
    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    wal = db + "-wal"
    try:
        wait_for(lambda: app.store.count(queue="high", state="complete")
                 > 100, 30, message="load")
        start = os.path.getsize(wal)
        with _reader(db) as reader:
            wait_for(lambda: os.path.getsize(wal) > 24 << 20, 30, 0.1,
                     message="the WAL to grow behind the reader")
            doctor = cli(rt, "doctor")
            assert "a checkpoint cannot complete: a read transaction is open" \
                " in" in doctor.stdout \
                and "pid %d (" % reader.pid in doctor.stdout, doctor.stdout
        peak = os.path.getsize(wal)
        ended = time.monotonic()
        wait_for(lambda: os.path.getsize(wal) < 16 << 20, 60, 0.1,
                 message="the WAL to shrink under load")
        took = time.monotonic() - ended
        done = app.store.count(queue="high", state="complete")
        wait_for(lambda: app.store.count(queue="high", state="complete")
                 > done, 20, message="load to go on")
    finally:
        stop.set()
        producer.join(10)
    print("WAL: %.1f MiB before the reader, %.1f MiB when it ended, %.1f MiB "
          "%.1fs later (under load)" % (start / 2 ** 20, peak / 2 ** 20,
                                        os.path.getsize(wal) / 2 ** 20, took))
    assert rt.terminate() == 0
