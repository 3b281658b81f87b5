"""Wall-clock steps under a running runtime: nothing is recovered that is
alive, and no job record freezes.

A real `hueyq run` runs with tests/clockshim.c preloaded, which moves
CLOCK_REALTIME and /proc/stat's btime together by the seconds written in a
file, as the kernel does when NTP sets the clock of a device without an RTC;
the monotonic clock and the start ticks of processes do not move. A test
writes the file to step the clock of the whole process tree at once.
"""

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import HERE, missing, wait_for, write_profile
from test_runtime import runs

pytestmark = pytest.mark.slow

PROCESS_MEDIUM = {"queues.medium": {"worker_type": "process", "workers": 2}}


@pytest.fixture(scope="session")
def clockshim(tmp_path_factory):
    """The shim, built with the system's C compiler."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        missing("a C compiler (cc) is needed to build tests/clockshim.c")
    out = tmp_path_factory.mktemp("clockshim") / "clockshim.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(out),
                    str(HERE / "clockshim.c")], check=True)
    return out


class Clock:
    """The wall clock of every process started with :attr:`env`."""

    def __init__(self, shim, path) -> None:
        self.path = path
        self.env = {"LD_PRELOAD": str(shim),
                    "HUEYQ_CLOCK_OFFSET_FILE": str(path)}
        self.set(0)

    def set(self, seconds: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("%r\n" % float(seconds))
        os.replace(tmp, self.path)


@pytest.fixture
def make_clock(clockshim, tmp_path):
    counter = iter(range(100))
    return lambda: Clock(clockshim, tmp_path / ("offset%d" % next(counter)))


def status_records(app) -> "list[dict]":
    """The runtimes' status records as stored, whatever their age."""
    storage = app.any_storage
    if hasattr(storage, "sql"):
        raws = [r[0] for r in storage.sql(
            "select value from hueyq_record where key like ?",
            ("%s:runtime:%%" % app.name,), results=True)]
    else:
        raws = [raw for key, raw in storage.conn.hgetall(
            storage.keys["records"]).items() if key.startswith(b"runtime:")]
    docs = [json.loads(raw) for raw in raws]
    return [d["value"] if "value" in d else d for d in docs]


def runtime_clock(app, host=None):
    """(wall clock minus ours, heartbeat counter) of a runtime."""
    for record in status_records(app):
        if host is None or record["host"] == host:
            return record["heartbeat"] - time.time(), record["hb"]
    return None, None


def wait_ticks(app, offset, host=None, ticks=4):
    """Wait until the runtime's clock shows ``offset`` and it has ticked
    ``ticks`` more times since then."""
    def seen():
        skew, hb = runtime_clock(app, host)
        return hb if skew is not None and abs(skew - offset) < 60 else None
    first = wait_for(seen, 20, 0.05, message="the runtime to see the step")
    wait_for(lambda: (seen() or 0) >= first + ticks, 20, 0.05,
             message="ticks after the step")


def stored(app, handles, timeout=40.0):
    """Wait until the backend forgot each job, then the store's rows."""
    wait_for(lambda: all(app.find_message(h.id) is None for h in handles),
             timeout, 0.1, message="finished messages to be forgotten")
    return [app.store.get(h.id) for h in handles]


def test_clock_steps_forward_and_back_under_a_running_runtime(
        make_app, tmp_path, app_name, runtime, make_clock):
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "queue.db"),
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            PROCESS_MEDIUM)
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    clock = make_clock()
    rt = runtime(profile, "apps.faults", env=clock.env)
    rt.wait_ready()
    first = [app.tasks.long(path, "a%d" % i, 3.0) for i in range(2)]
    wait_for(lambda: {"start-a0", "start-a1"} <= set(runs(path)), 20,
             message="the first long jobs to start")
    clock.set(3600)                       # NTP sets the clock an hour ahead
    wait_ticks(app, 3600)
    rows = stored(app, first)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    second = [app.tasks.long(path, "b%d" % i, 3.0) for i in range(2)]
    wait_for(lambda: {"start-b0", "start-b1"} <= set(runs(path)), 20,
             message="the second long jobs to start")
    clock.set(-3600)                      # and then two hours back
    wait_ticks(app, -3600)
    rows = stored(app, second)
    # The completions, an hour and more "older" than the starts, are kept.
    assert [(r["state"], r["progress"]) for r in rows] == \
        [("complete", 100.0)] * 2
    after = app.tasks.echo("after the steps")
    assert after(blocking=True, timeout=20) == "after the steps"
    counts = runs(path)
    assert all(counts[t] == 1 for t in ("a0", "a1", "b0", "b1",
                                         "start-a0", "start-a1",
                                         "start-b0", "start-b1")), counts
    for handle in first + second:
        assert app.job(handle.id).redeliveries == 0
    log = rt.log()
    assert "recovered" not in log and "redelivered" not in log, log
    assert rt.terminate() == 0


def test_two_hosts_an_hour_apart_on_redis(make_app, tmp_path, app_name,
                                          redis_server, runtime, make_clock):
    profile = write_profile(tmp_path / "p.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile, "apps.faults")
    path = str(tmp_path / "done")
    behind = make_clock()
    behind.set(-3600)
    host_a = runtime(profile, "apps.faults", queues="high",
                     env=dict(make_clock().env, HUEYQ_HOST_ID="host-a"))
    host_b = runtime(profile, "apps.faults", queues="medium,low",
                     env=dict(behind.env, HUEYQ_HOST_ID="host-b"))
    host_a.wait_ready()
    host_b.wait_ready()
    wait_ticks(app, -3600, host="host-b")
    longs = [app.tasks.long(path, "l%d" % i, 5.0) for i in range(2)]
    once = app.tasks.fail_once(path, "f")
    wait_for(lambda: {"start-l0", "start-l1"} <= set(runs(path)), 20,
             message="host-b to start the long jobs")
    # host-a watches host-b's leases for longer than lease_timeout (3 s).
    wait_ticks(app, 0, host="host-a", ticks=16)
    wait_for(lambda: app.job(once.id, history=False).state == "failed", 20,
             message="the first run to fail on host-b")
    rows = stored(app, longs)
    assert [r["state"] for r in rows] == ["complete", "complete"]
    counts = runs(path)
    assert counts["start-l0"] == counts["start-l1"] == 1, counts
    assert "redelivered" not in host_a.log()
    # Both look alive to a third party: ages come from Redis's clock.
    assert sorted(r["host"] for r in app.runtimes() if r["alive"]) == \
        ["host-a", "host-b"]
    # A retry from this host (its clock an hour ahead of host-b's), then
    # host-b runs the job again: the record follows, not frozen at pending.
    app.retry(once.id)
    [row] = stored(app, [once])
    assert row["state"] == "complete" and row["attempts"] == 2
    counts = runs(path)
    assert counts["l0"] == counts["l1"] == 1 and counts["f"] == 2, counts
    for handle in longs:
        assert app.job(handle.id).redeliveries == 0
    for rt in (host_a, host_b):
        assert "recovered" not in rt.log() and "redelivered" not in rt.log()
    assert host_b.terminate() == 0 and host_a.terminate() == 0
