"""A job's output stream, end to end: a real `hueyq run --web` (gunicorn)
on SQLite and Redis, a task calling ``hueyq.emit()``, and what a user reads
back: ``GET /api/jobs/<id>/stream`` with a real HTTP client (in order, while
the job runs, resumed with Last-Event-ID), the profile's bound and how it is
reported, ``hueyq job --follow`` and its exit status, and ``app.events()`` /
``app.aevents()`` in Python. The backend methods themselves are in
tests/test_backend_contract.py."""

import asyncio
import http.client
import json
import os
import subprocess
import sys
import urllib.parse

import pytest

import hueyq

from conftest import HERE, free_port, wait_for, write_profile

pytestmark = pytest.mark.slow

TOKEN = "t0ken-for-the-stream-tests"


class Sse:
    """One server-sent event stream, read as a browser would."""

    def __init__(self, url: str, token: "str | None" = TOKEN,
                 headers: "dict | None" = None, timeout: float = 30) -> None:
        parts = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                               timeout=timeout)
        sent = {"Accept": "text/event-stream", **(headers or {})}
        if token:
            sent["Authorization"] = "Bearer " + token
        path = parts.path + ("?" + parts.query if parts.query else "")
        self.conn.request("GET", path, headers=sent)
        self.response = self.conn.getresponse()
        self.status = self.response.status

    def events(self):
        """(id, event, data) of each event until the server ends the stream."""
        fields: dict = {}
        while True:
            line = self.response.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line == "":
                if "event" in fields:
                    yield (fields.get("id"), fields["event"],
                           json.loads(fields.get("data", "null")))
                fields = {}
            elif not line.startswith(":"):
                key, _, value = line.partition(":")
                fields[key] = value[1:] if value.startswith(" ") else value

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def served(tmp_path, backend_url, app_name, make_app, runtime):
    """A runtime with its web server (`hueyq run --web`, token required) on
    each backend, and the App a producer would hold."""
    def start(**backend):
        port = free_port()
        profile = write_profile(
            tmp_path / "stream.toml", backend_url,
            "sqlite://%s" % (tmp_path / "store.db"), app_name,
            {"web": {"bind": "127.0.0.1:%d" % port, "token": TOKEN,
                     "workers": 1}, "backend": backend})
        app = make_app(profile)
        rt = runtime(profile, extra_args=["--web"])
        rt.wait_ready()
        base = "http://127.0.0.1:%d" % port
        wait_for(lambda: _up(base), 30, message="the web server")
        return app, base, profile
    return start


def _up(base: str) -> bool:
    try:
        sse = Sse(base + "/api/health", timeout=2)
    except OSError:
        return False
    sse.close()
    return sse.status in (200, 503)


def test_sse_streams_the_chunks_in_order_while_the_job_runs_and_resumes(
        served, tmp_path):
    app, base, _ = served()
    gate = tmp_path / "gate"
    handle = app.tasks.chatter(20, gate=str(gate))
    sse = Sse(base + "/api/jobs/%s/stream" % handle.id)
    assert sse.status == 200
    assert sse.response.getheader("Content-Type").startswith(
        "text/event-stream")
    seen = []
    try:
        for event_id, kind, data in sse.events():
            seen.append((event_id, kind, data))
            if kind == "progress" and data["progress"] == 50:
                # Half of it arrived while the job waits at its gate.
                assert [d["seq"] for _, k, d in seen if k == "output"] == \
                    list(range(1, 11))
                assert app.job(handle.id).state == "running"
                gate.touch()
    finally:
        sse.close()
    outputs = [d for _, k, d in seen if k == "output"]
    assert [d["seq"] for d in outputs] == list(range(1, 21))
    assert [d["data"] for d in outputs] == ["t%d" % i for i in range(20)]
    assert all(d["dropped"] == 0 for d in outputs)
    assert [int(i) for i, k, _ in seen if k == "output"] == list(range(1, 21))
    states = [d["state"] for _, k, d in seen if k == "state"]
    assert states[-1] == "complete" and "running" in states
    assert seen[-1][1] == "state" and seen[-1][2]["result"] == 20
    assert {"progress": 50.0, "message": "half way"} in [
        d for _, k, d in seen if k == "progress"]

    # Resumed after chunk 15: the job's state, and only the later chunks.
    again = Sse(base + "/api/jobs/%s/stream" % handle.id,
                headers={"Last-Event-ID": "15"})
    try:
        resumed = list(again.events())
    finally:
        again.close()
    assert [d["seq"] for _, k, d in resumed if k == "output"] == \
        [16, 17, 18, 19, 20]
    assert resumed[-1][1:] == ("state", resumed[-1][2])
    assert resumed[-1][2]["state"] == "complete"
    after = Sse(base + "/api/jobs/%s/stream?after=19" % handle.id)
    assert [d["seq"] for _, k, d in after.events() if k == "output"] == [20]
    after.close()

    # Read like the job: a token, a known job, a number to resume after.
    for url, headers, token, status in (
            ("/api/jobs/%s/stream" % handle.id, {}, None, 401),
            ("/api/jobs/nope/stream", {}, TOKEN, 404),
            ("/api/jobs/%s/stream" % handle.id, {"Last-Event-ID": "x"},
             TOKEN, 400),
            ("/api/jobs/%s/stream?after=-1" % handle.id, {}, TOKEN, 400)):
        bad = Sse(base + url, token=token, headers=headers)
        body = bad.response.read()
        bad.close()
        assert bad.status == status, (url, body)
        assert "error" in json.loads(body)


def test_the_bound_drops_the_oldest_chunks_and_says_so(served):
    app, base, _ = served(output_max_chunks=5, output_max_bytes=64)
    many = app.tasks.chatter(20)            # 20 chunks over a bound of 5
    wide = app.tasks.chatter(6, size=20)    # 22 bytes each: 2 fit in 64
    huge = app.tasks.chatter(3, size=100)   # one chunk over the bound
    for handle in (many, wide, huge):
        wait_for(lambda: app.job(handle.id).state in ("complete", "failed"),
                 30, message="the job to end")
    page = app.output(many.id)
    assert [c.seq for c in page.chunks] == [16, 17, 18, 19, 20]
    assert (page.last_seq, page.dropped) == (20, 15)
    sse = Sse(base + "/api/jobs/%s/stream" % many.id)
    outputs = [d for _, k, d in sse.events() if k == "output"]
    sse.close()
    assert outputs[0]["seq"] == 16 and outputs[0]["dropped"] == 15
    assert [d["dropped"] for d in outputs[1:]] == [0, 0, 0, 0]
    page = app.output(wide.id)
    assert [c.seq for c in page.chunks] == [5, 6]
    assert page.dropped == 4
    # The state comes from the backend at once, the error with the store's
    # next flush; the stream's final state event waits for it.
    sse = Sse(base + "/api/jobs/%s/stream" % huge.id)
    failed = [d for _, k, d in sse.events() if k == "state"][-1]
    sse.close()
    assert failed["state"] == "failed"
    assert "OutputTooLarge" in failed["error"] and \
        "backend.output_max_bytes (64)" in failed["error"]
    assert app.output(huge.id).last_seq == 0


def test_a_job_that_runs_again_appends_its_new_runs_chunks(app, inline,
                                                          tmp_path):
    handle = app.tasks.chatter_again(str(tmp_path / "flag"))
    inline(app, "high").run()
    assert app.job(handle.id).state == "complete"
    outputs = [e.data for e in app.events(handle.id) if e.kind == "output"]
    assert [d["data"] for d in outputs] == ["first", "second"]
    assert [d["seq"] for d in outputs] == [1, 2]
    assert outputs[0]["run"] < outputs[1]["run"]


def _follow(profile, job_id: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    return subprocess.run([sys.executable, "-m", "hueyq", "job", job_id,
                           "--follow", "--app", "apps.basic", *args],
                          env=env, capture_output=True, text=True, timeout=60)


def test_job_follow_prints_the_chunks_and_exits_with_the_jobs_status(
        served, tmp_path):
    app, _, profile = served()
    gate = tmp_path / "gate"
    ok = app.tasks.chatter(6, gate=str(gate))
    bad = app.tasks.chatter(3, fail=True)
    wait_for(lambda: app.output(ok.id).last_seq == 3, 30,
             message="the first chunks")
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    follower = subprocess.Popen(
        [sys.executable, "-m", "hueyq", "job", ok.id, "--follow", "--app",
         "apps.basic"], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        # It follows the job while it runs (waiting at its gate).
        first = follower.stderr.readline()
        assert first == "progress: 50% half way\n"
        assert app.job(ok.id).state == "running"
        gate.touch()
        out, err = follower.communicate(timeout=60)
        err = first + err
    finally:
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 0, err
    assert out == "t0t1t2t3t4t5\n"
    assert "state: complete" in err and "progress: 50% half way" in err
    wait_for(lambda: app.job(bad.id).state == "failed", 30,
             message="the failing job")
    failed = _follow(profile, bad.id)
    assert failed.returncode == 1
    assert failed.stdout == "t0t1t2\n"
    assert "state: failed: ValueError" in failed.stderr
    lines = _follow(profile, ok.id, "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["data"]["data"] for e in events if e["event"] == "output"] == \
        ["t%d" % i for i in range(6)]
    assert events[-1]["event"] == "state"
    missing = _follow(profile, "no-such-job")
    assert missing.returncode == 1
    assert "Traceback" not in missing.stderr and "no-such-job" in \
        missing.stderr


def test_python_follows_with_events_and_async_for(served, tmp_path):
    app, _, _ = served()
    gate = tmp_path / "gate"
    handle = app.tasks.chatter(8, gate=str(gate))
    kinds = []
    for event in app.events(handle.id):
        kinds.append((event.kind, event.data))
        if event.kind == "output" and event.data["seq"] == 4:
            gate.touch()
    assert [d["data"] for k, d in kinds if k == "output"] == \
        ["t%d" % i for i in range(8)]
    assert kinds[-1][0] == "state" and kinds[-1][1]["state"] == "complete"

    async def follow():
        got = []
        async for event in app.aevents(handle.id, after=6):
            got.append(event)
        return got
    got = asyncio.run(follow())
    assert [e.data["seq"] for e in got if e.kind == "output"] == [7, 8]
    assert got[-1].kind == "state" and got[-1].id == 8

    async def leave_early():
        async for event in app.aevents(handle.id):
            return event
    assert asyncio.run(leave_early()).kind in ("output", "state")
    with pytest.raises(hueyq.JobNotFound):
        list(app.events("no-such-job"))
