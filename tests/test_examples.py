"""The examples under examples/, each run for real in a copy of its folder.

Every slow test copies one example into its tmp_path, starts ``hueyq run
--app tasks`` there (the ``runtime`` fixture, which always kills what it
started), drives it with the example's own producer script as a user would,
and checks the outcome through a plain App on the example's profile. Timings
are printed (``pytest -s``), never asserted. The torch examples skip without
torch locally and fail without it in CI.
"""

import importlib.util
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import hueyq
from conftest import free_port, missing, wait_for

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FINISHED = ("complete", "failed", "cancelled", "dead", "expired")


@pytest.fixture
def example(tmp_path, monkeypatch):
    """Copy an example into tmp_path and work there; yields an opener."""
    apps = []

    def copy(name: str) -> hueyq.App:
        shutil.copytree(EXAMPLES / name, tmp_path, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".hueyq", "__pycache__"))
        monkeypatch.chdir(tmp_path)
        apps.append(hueyq.App(str(tmp_path / "profile.toml")))
        return apps[-1]
    yield copy
    for app in apps:
        app.close()


@pytest.fixture
def spawn(tmp_path):
    """Start helper processes (the chat server); killed afterwards."""
    started = []

    def start(args: "list[str]", env: dict) -> subprocess.Popen:
        log = open(tmp_path / ("%s.log" % Path(args[0]).stem), "ab")
        proc = subprocess.Popen([sys.executable, *args], cwd=tmp_path,
                                env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append((proc, log))
        return proc
    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


def need_torch() -> None:
    if importlib.util.find_spec("torch") is None:
        missing("torch is not installed (pip install torch==2.13.0)")


def run(args: "list[str]", rt, timeout: float = 120) -> str:
    """Run a script of the example (or ``-m hueyq``) like a user; stdout."""
    done = subprocess.run([sys.executable, *args], cwd=rt.cwd, env=rt.env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, "%s\n%s\nruntime log:\n%s" % (
        done.stdout, done.stderr, rt.log()[-3000:])
    return done.stdout


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def http(url: str, body: "dict | None" = None) -> "tuple[int, dict]":
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return 0, {}


# ---------------------------------------------------------------- chat

@pytest.mark.slow
def test_chat_replies_promptly_while_a_low_backlog_drains(example, runtime,
                                                          spawn):
    app = example("chat")
    rt = runtime(Path.cwd() / "profile.toml", "tasks", queues="high,low")
    rt.wait_ready()
    base = "http://127.0.0.1:%d" % free_port()
    spawn(["server.py", "--port", base.rsplit(":", 1)[1]], rt.env)
    wait_for(lambda: http(base + "/jobs/none")[0] == 404, 30,
             message="the chat server")

    status, accepted = http(base + "/chat", {"text": "hello there"})
    assert status == 202 and accepted["state"] == "pending"
    job = wait_for(lambda: _finished(http(base + accepted["poll"])[1]), 30,
                   message="the reply")
    assert job["state"] == "complete" and job["progress"] == 100
    assert job["result"]["reply"].endswith("you said 2 words: hello there")
    # The reply as it was streamed, token by token, then the final state.
    events = sse(base + accepted["stream"])
    tokens = [data for kind, data in events if kind == "output"]
    assert len(tokens) > 3 and "".join(d["data"] for d in tokens) == \
        job["result"]["reply"]
    assert [d["seq"] for d in tokens] == list(range(1, len(tokens) + 1))
    assert events[-1][0] == "state" and events[-1][1]["state"] == "complete"
    resumed = sse(base + accepted["stream"], {"Last-Event-ID": "3"})
    assert [d["seq"] for k, d in resumed if k == "output"][0] == 4
    assert http(base + "/jobs/none/stream")[0] == 404
    assert http(base + "/chat", {"text": " "})[0] == 400

    summary = last_json(run(["producer.py", "--url", base, "--backlog", "150",
                             "--chats", "12", "--interval", "0.02", "--json"],
                            rt))
    assert [r.rsplit(": ", 1)[1] for r in summary["replies"]] == \
        ["message number %d" % i for i in range(12)]
    assert summary["low_pending_when_chats_done"] > 0, \
        "the chat jobs waited for the low backlog to drain"
    low = app.queue_stats()["low"]
    assert low["complete_recent"] > 0
    print("\nchat enqueue-to-start during a low backlog: p50 %.1f ms, p99 "
          "%.1f ms; %d low jobs still pending"
          % (summary["enqueue_to_start_p50_ms"],
             summary["enqueue_to_start_p99_ms"],
             summary["low_pending_when_chats_done"]))
    assert rt.terminate() == 0


def sse(url: str, headers: "dict | None" = None) -> "list[tuple[str, dict]]":
    """(event, data) of a server-sent event stream, read to its end."""
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as response:
        text = response.read().decode()
    out = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines()
                      if ": " in line and not line.startswith(":"))
        if "event" in fields:
            out.append((fields["event"], json.loads(fields["data"])))
    return out


def _finished(job: dict) -> "dict | None":
    return job if job.get("state") in FINISHED and job.get("started_at") \
        else None


# ---------------------------------------------------------------- fastapi

def overlap(jobs) -> int:
    """The most jobs running at one moment, from their start and end times."""
    moments = sorted([(j.started_at, 1) for j in jobs] +
                     [(j.finished_at, -1) for j in jobs])
    most = now = 0
    for _, step in moments:
        now += step
        most = max(most, now)
    return most


@pytest.mark.slow
def test_fastapi_streams_replies_cancels_and_embeds_on_an_async_queue(
        example, runtime, spawn):
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            missing("%s is not installed (the test extra has it)" % module)
    app = example("fastapi")
    rt = runtime(Path.cwd() / "profile.toml", "tasks", queues="high,io")
    rt.wait_ready()
    port = free_port()
    base = "http://127.0.0.1:%d" % port
    spawn(["-m", "uvicorn", "server:api", "--port", str(port)], rt.env)
    wait_for(lambda: http(base + "/jobs/none")[0] == 404, 30,
             message="uvicorn serving the example")

    # What a frontend does: a chat reply followed token by token, then a
    # hundred embedding requests at once.
    summary = last_json(run(["client.py", "--base", base, "--requests", "100",
                             "--json"], rt))
    reply = summary["result"]["reply"]
    assert summary["reply"] == reply and reply.startswith(
        "You asked 5 words (tell me about task queues)")
    assert summary["states"][-1] == "complete"
    assert summary["vectors"] == 400
    def recorded():
        jobs = app.jobs(queue="io", state="complete", limit=200)
        return jobs if len(jobs) == 100 else None
    # Their results came before their records (written in batches).
    embedded = wait_for(recorded, 20, message="the hundred embed records")
    # One async consumer process ran them side by side, not one at a time.
    assert overlap(embedded) >= 20, overlap(embedded)

    # The stream again, resumed after the third chunk: only what came after.
    stream = base + "/jobs/%s/stream" % summary["id"]
    events = sse(stream)
    tokens = [data["data"] for kind, data in events if kind == "output"]
    assert "".join(tokens) == reply
    later = sse(stream, {"Last-Event-ID": "3"})
    assert [data["data"] for kind, data in later if kind == "output"] == \
        tokens[3:]
    assert later[-1][0] == "state" and later[-1][1]["state"] == "complete"

    # Cancel: a reply still pending never runs; a finished one is a 409.
    app.pause("high")
    status, accepted = http(base + "/chat", {"text": "never mind"})
    assert status == 202
    job_url = base + accepted["links"]["self"]
    assert call(job_url, "DELETE")[0] == 202
    app.resume("high")
    assert wait_for(lambda: http(job_url)[1].get("state") == "cancelled", 20,
                    message="the cancelled reply")
    assert call(base + "/jobs/%s" % summary["id"], "DELETE")[0] == 409
    assert call(base + "/jobs/nope", "DELETE")[0] == 404
    assert http(base + "/chat", {"text": " "})[0] == 400
    assert http(base + "/embed", {"texts": []})[0] == 400
    print("\nfastapi: first token after %.1f ms; 100 embedding requests in "
          "%.2f s, %d at once" % (summary["first_token_ms"],
                                  summary["embed_seconds"],
                                  overlap(embedded)))
    assert rt.terminate() == 0


def call(url: str, method: str) -> "tuple[int, dict]":
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


# ---------------------------------------------------------------- ingest

@pytest.mark.slow
def test_ingest_embeds_every_chunk_in_batches_across_documents(example,
                                                               runtime):
    need_torch()
    app = example("ingest")
    rt = runtime(Path.cwd() / "profile.toml", "tasks", queues="medium")
    rt.wait_ready()
    out = last_json(run(["producer.py", "--outage", "--json"], rt))

    ingest = app.job(out["ingest_job"])
    assert ingest.state == "complete" and ingest.progress == 100
    assert ingest.message.startswith("5/5 ")
    docs = sorted(p.name for p in (Path.cwd() / "docs").iterdir())
    db = Path.cwd() / ".hueyq" / "vectors.db"
    rows = _rows(db)
    assert len(rows) == out["chunks"] == len(out["chunk_jobs"])
    assert sorted({doc for doc, *_ in rows}) == docs
    for name in docs:
        indexes = sorted(i for doc, i, *_ in rows if doc == name)
        assert indexes == list(range(len(indexes)))
    assert all(dim == 32 and len(blob) == 4 * 32
               for _, _, dim, blob, _ in rows)
    vector = struct.unpack("<32f", rows[0][3])
    assert abs(sum(v * v for v in vector) - 1) < 1e-4
    per_batch = {}
    for doc, _, _, _, batch in rows:
        per_batch.setdefault(batch, set()).add(doc)
    assert max(len(d) for d in per_batch.values()) >= 2, \
        "no batch mixed chunks of several documents"
    jobs = [app.job(i) for i in out["chunk_jobs"]]
    assert all(j.state == "complete" for j in jobs)
    retried = [j for j in jobs if j.attempts > 1]
    assert retried and all("retrying" in [e["event"] for e in j.history]
                           for j in retried)
    print("\ningest: %d chunks of %d documents in %d batches, %s chunks/s "
          "(including a simulated outage and its retry)"
          % (out["chunks"], out["documents"], out["batches"],
             out["chunks_per_second"]))
    assert rt.terminate() == 0


def _rows(path: Path) -> list:
    import sqlite3
    db = sqlite3.connect(path)
    try:
        return db.execute("select doc, chunk, dim, vector, batch from chunks "
                          "order by doc, chunk").fetchall()
    finally:
        db.close()


# ---------------------------------------------------------------- train

@pytest.mark.slow
def test_train_checkpoints_gets_killed_over_budget_and_cancels(example,
                                                               runtime):
    need_torch()
    import torch
    app = example("train")
    rt = runtime(Path.cwd() / "profile.toml", "tasks", queues="gpu")
    rt.wait_ready()

    done = last_json(run(["producer.py", "--epochs", "3", "--json"], rt))
    assert done["state"] == "complete"
    state = torch.load(done["result"]["checkpoint"], weights_only=True)
    shapes = {k: tuple(v.shape) for k, v in state["model"].items()}
    assert shapes == {"encoder.weight": (256, 32), "encoder.bias": (256,),
                      "decoder.weight": (32, 256), "decoder.bias": (32,)}
    assert state["epoch"] == 2 and state["config"]["epochs"] == 3
    assert app.job(done["id"]).progress == 100

    killed = last_json(run(["producer.py", "--oversized", "--json"], rt))
    assert killed["state"] == "failed"
    assert killed["error"].startswith("killed: memory budget exceeded (")
    assert killed["error"].endswith(" > 768.0 MiB)")
    shown = run(["-m", "hueyq", "job", killed["id"], "--app", "tasks"], rt)
    assert "state:        failed" in shown
    assert "error:        killed: memory budget exceeded (" in shown

    long = run(["producer.py", "--epochs", "5000", "--detach"], rt).strip()
    wait_for(lambda: (app.job(long, history=False).progress or 0) > 10, 60,
             message="the long run's first epoch")
    answer = run(["-m", "hueyq", "cancel", long, "--app", "tasks"], rt)
    assert "cancelling" in answer or "cancelled" in answer
    wait_for(lambda: app.job(long, history=False).state in FINISHED, 30,
             message="the cancel")
    assert app.job(long).state == "cancelled"
    print("\ntrain: 3 epochs in %.2fs on %s; oversized run: %s"
          % (done["result"]["seconds"], done["result"]["device"],
             killed["error"]))
    assert rt.terminate() == 0


# ---------------------------------------------------------------- maintenance

@pytest.mark.slow
def test_maintenance_periodic_cleanup_warm_model_and_report(example, runtime):
    app = example("maintenance")
    made = subprocess.run([sys.executable, "producer.py", "scratch"],
                          capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    scratch = Path.cwd() / ".hueyq" / "scratch"
    assert len(list(scratch.iterdir())) == 5
    rt = runtime(Path.cwd() / "profile.toml", "tasks", queues="high,low")
    rt.wait_ready()

    def cleaned():
        # app.jobs(state="complete") raises ValueError (a core bug, reported)
        return [j for j in app.jobs(queue="low") if j.state == "complete"
                and j.task == "tasks.cleanup_scratch"]
    wait_for(cleaned, 30, message="the periodic cleanup to run at start-up")
    assert sorted(p.name for p in scratch.iterdir()) == ["new-3.tmp",
                                                         "new-4.tmp"]
    answers = [json.loads(line) for line in run(
        ["producer.py", "ask", "first?", "second?"], rt).splitlines()]
    assert [a["state"] for a in answers] == ["complete", "complete"]
    assert all(a["warm"] for a in answers), "a job waited for the model load"
    loads = (Path.cwd() / ".hueyq" / "warmup.log").read_text().splitlines()
    assert len(loads) == 1, "the model loaded more than once per process"
    report = Path(run(["producer.py", "report"], rt).strip())
    data = json.loads(report.read_text())
    assert report.parent.name == "reports"
    assert data["queues"]["high"]["complete_recent"] >= 2
    assert rt.terminate() == 0


# ---------------------------------------------------------------- jetson

def test_jetson_profile_loads_and_fits_in_8_gb():
    from hueyq.profile import load_profile
    path = str(EXAMPLES / "jetson" / "profile.toml")
    shown = subprocess.run([sys.executable, "-m", "hueyq", "profiles", "show",
                            path], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    profile = load_profile(path, env={})
    host = profile.memory_budget()
    cuda = sum(q.gpu_memory_fraction for q in profile.queues.values()
               if q.gpu) * (8 << 30)
    assert host is not None and host + cuda < 7 << 30
    assert all(q.worker_type == "process" for q in profile.queues.values()
               if q.worker_memory_hard), "hard limits need process workers"
    units = subprocess.run([sys.executable, "-m", "hueyq", "systemd",
                            "--profile", path, "--app", "tasks",
                            "--workdir", str(EXAMPLES / "chat"), "--user",
                            "daemon", "--web"], capture_output=True, text=True,
                           timeout=60)
    assert units.returncode == 0, units.stderr
    assert "# ---- hueyq-edge.service" in units.stdout
    assert "# ---- hueyq-edge-web.service" in units.stdout
