"""examples/from-celery/: five Celery deployments and the same code after
the import and configuration changes docs/from-celery.md lists, each run
through the real `hueyq run` on SQLite and on Redis, each profile what
`hueyq profiles from-celery` writes for the Celery version, and the diff
between the versions checked against the guide."""

import difflib
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "from-celery"
GUIDE = ROOT / "docs" / "from-celery.md"
NAMES = sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir())

#: The line changes the guide allows: (Celery line, hueyq line); a hueyq
#: line of None means the line is dropped.
ALLOWED = [
    (r"from celery import (.+)", r"from hueyq.celery import \1"),
    (r"from celery\.result import (.+)", r"from hueyq.celery import \1"),
    (r"from celery\.schedules import (.+)", r"from hueyq.celery import \1"),
    (r"from celery\.exceptions import (.+)", r"from hueyq.celery import \1"),
    (r"(\w+) = Celery\((.+?), broker=.*\)", r"\1 = Celery(\2)"),
    (r"broker_url=.*,", None),
    (r"result_backend=.*,", None),
]
#: Files rewritten on purpose (the guide's "Monitoring" section): Celery's
#: inspect API and broker reads become hueyq's queue_stats() and workers().
REWRITTEN = {"monitoring.py"}


def ported_files(name: str):
    celery_dir = EXAMPLES / name / "with_celery"
    for path in sorted(celery_dir.rglob("*.py")):
        yield path, EXAMPLES / name / "with_hueyq" / path.relative_to(
            celery_dir)


@pytest.mark.parametrize("name", NAMES)
def test_the_port_changes_only_what_the_guide_lists(name):
    guide = GUIDE.read_text()
    for celery_line, hueyq_line in [
            ("from celery import Celery", "from hueyq.celery import Celery"),
            ("from celery import shared_task",
             "from hueyq.celery import shared_task"),
            ("from celery.result import AsyncResult",
             "from hueyq.celery import AsyncResult"),
            ("from celery.schedules import crontab",
             "from hueyq.celery import crontab"),
            ("from celery.exceptions import SoftTimeLimitExceeded",
             "from hueyq.celery import SoftTimeLimitExceeded")]:
        assert "`%s`" % celery_line in guide and "`%s`" % hueyq_line in guide
    changed = 0
    for celery_file, hueyq_file in ported_files(name):
        assert hueyq_file.exists(), hueyq_file
        if celery_file.name in REWRITTEN:
            continue
        old = celery_file.read_text().splitlines()
        new = hueyq_file.read_text().splitlines()
        removed, added = [], []
        for line in difflib.ndiff(old, new):
            if line.startswith("- "):
                removed.append(line[2:].strip())
            elif line.startswith("+ "):
                added.append(line[2:].strip())
        expected = []
        for line in removed:
            for pattern, replacement in ALLOWED:
                match = re.fullmatch(pattern, line)
                if match:
                    if replacement is not None:
                        expected.append(match.expand(replacement))
                    break
            else:
                pytest.fail("%s: %r is not a change the guide lists"
                            % (celery_file.relative_to(EXAMPLES), line))
        assert added == expected, celery_file.relative_to(EXAMPLES)
        changed += len(removed)
    assert changed, "the hueyq version of %s is the Celery one" % name


def _generated(name: str) -> bool:
    """Whether the example's profile says it was written by from-celery
    (5-messaging-queues's is finished by hand: its README says why)."""
    lines = (EXAMPLES / name / "profile.toml").read_text().splitlines()
    return len(lines) > 1 and lines[1].startswith(
        "# (hueyq profiles from-celery ")


@pytest.mark.parametrize("name", [n for n in NAMES if _generated(n)])
def test_the_profile_is_what_from_celery_writes(name):
    pytest.importorskip("celery")
    profile = EXAMPLES / name / "profile.toml"
    first = profile.read_text().splitlines()[1]
    args = shlex.split(first[len("# ("):-1])[1:]
    done = subprocess.run([sys.executable, "-m", "hueyq", *args],
                          cwd=EXAMPLES / name / "with_celery",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == profile.read_text()


# ---------------------------------------------------------------- running

class Port:
    """One ported example copied into tmp_path, with a runtime on it."""

    def __init__(self, name, tmp_path, backend_url, app_name, runtime):
        shutil.copytree(EXAMPLES / name / "with_hueyq", tmp_path,
                        dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(EXAMPLES / name / "profile.toml", tmp_path)
        self.dir = tmp_path
        self.profile = tmp_path / "profile.toml"
        self.env = {"HUEYQ_BACKEND": backend_url,
                    "HUEYQ_STORE": "sqlite://%s" % (tmp_path / "store.db"),
                    "HUEYQ_APP_NAME": app_name, "HUEYQ_SECRET": "s3cret",
                    "HUEYQ_DATA_DIR": str(tmp_path),
                    "HUEYQ_RUNTIME__GRACE_PERIOD": "3s",
                    "HUEYQ_MEMORY__MIN_AVAILABLE": "0",
                    "HUEYQ_STORE__FLUSH_INTERVAL": "100ms",
                    "HUEYQ_STORE__PROGRESS_INTERVAL": "50ms"}
        self._runtime = runtime
        self.rt = None

    def start(self, module: str) -> "Port":
        self.rt = self._runtime(self.profile, module, env=self.env)
        self.rt.wait_ready()
        return self

    def run(self, *args: str, timeout: float = 120) -> dict:
        """Run a script of the example like a user; its last JSON line."""
        done = subprocess.run([sys.executable, *args], cwd=self.dir,
                              env=self.rt.env, capture_output=True,
                              text=True, timeout=timeout)
        assert done.returncode == 0, "%s\n%s\nruntime log:\n%s" % (
            done.stdout, done.stderr, self.rt.log()[-4000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def app(self):
        import hueyq
        with pytest.MonkeyPatch.context() as mp:
            for key, value in self.env.items():
                mp.setenv(key, value)
            return hueyq.App(str(self.profile), maintenance=False)


@pytest.fixture
def port(tmp_path, backend_url, app_name, runtime):
    pytest.importorskip("flask")
    ports = []

    def make(name: str) -> Port:
        ports.append(Port(name, tmp_path, backend_url, app_name, runtime))
        return ports[-1]
    yield make


@pytest.mark.slow
def test_1_chat_platform_routes_each_task_to_its_tier(port):
    ported = port("1-chat-platform").start("tasks")
    out = ported.run("producer.py")
    app = ported.app()
    try:
        queues = {name: app.job(r["id"]).queue for name, r in out.items()}
    finally:
        app.close()
    assert queues == {"load_phi3": "high", "process_message": "high",
                      "process_document": "medium",
                      "generate_batch": "medium", "generate_report": "low"}
    assert all(r["state"] == "SUCCESS" for r in out.values())
    assert out["process_document"]["result"] == {
        "document_id": "d1", "chunks": 3, "dimensions": 2}
    assert out["process_message"]["result"]["reply"].endswith(
        "you said 4 words")
    assert ported.rt.terminate() == 0


@pytest.mark.slow
def test_2_training_studio_six_queues_and_its_monitoring_json(port):
    ported = port("2-training-studio").start("src.workers.celery_app:app")
    out = ported.run("producer.py")
    app = ported.app()
    try:
        queues = {name: app.job(r["id"]).queue for name, r in out.items()}
        config = app.profile.queues
        assert {q: (config[q].workers, config[q].worker_type)
                for q in app.queues} == {
            "high_priority": (8, "process"), "datasets": (4, "process"),
            "processing": (4, "process"), "training": (1, "process"),
            "extraction": (2, "process"), "low_priority": (2, "process")}
        assert config["training"].worker_memory_soft == 8000000 * 1024
        assert config["extraction"].worker_memory_soft == 4000000 * 1024
        assert (config["training"].soft_time_limit,
                config["training"].time_limit) == (1800, 3600)
        assert queues == {"train_model": "training",
                          "validate_dataset": "datasets",
                          "preprocess_dataset": "processing",
                          "extract_activations": "extraction",
                          "notify_user": "high_priority",
                          "weekly_report": "low_priority"}
        assert out["train_model"]["result"]["loss"] == 0.125
        assert out["preprocess_dataset"]["result"] == ["hello", "world"]
        train = app.job(out["train_model"]["id"])
        assert (train.progress, train.message) == (100.0, "epoch 3/3 loss "
                                                   "0.1250")

        calm = ported.run("monitoring.py")
        assert calm["queues"] == {"queues": {q: 0 for q in app.queues}}
        assert calm["health"]["workers_connected"] == 6
        assert calm["health"]["alert"] is False
        assert calm["health"]["warnings"] == []

        app.pause("low_priority")
        assert ported.run("producer.py", "--backlog", "101") == \
            {"enqueued": 101}
        busy = ported.run("monitoring.py")
        assert busy["queues"]["queues"]["low_priority"] == 101
        health = busy["health"]
        assert (health["total_queued"], health["alert"]) == (101, True)
        assert health["queues"]["low_priority"]["status"] == "paused"
        assert health["queues"]["training"] == {"queued": 0, "running": 0,
                                                "status": "ok"}
        assert health["warnings"] == [
            "low_priority is paused by user",
            "101 tasks queued (alert above 100)"]
        assert app.drain("low_priority") == 101
        app.resume("low_priority")
    finally:
        app.close()
    assert ported.rt.terminate() == 0


def http(method: str, url: str, body: "dict | None" = None):
    import urllib.error
    import urllib.request
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)
    except OSError:
        return 0, {}


@pytest.fixture
def server(tmp_path):
    """Start the example's HTTP server; killed afterwards."""
    import os
    import signal
    started = []

    def start(script: str, env: dict) -> str:
        port = free_port()
        log = open(tmp_path / "server.log", "ab")
        proc = subprocess.Popen([sys.executable, script, "--port", str(port)],
                                cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
        started.append((proc, log))
        base = "http://127.0.0.1:%d" % port
        wait_for(lambda: http("GET", base + "/jobs")[0] == 200, 30,
                 message="the API server")
        return base
    yield start
    for proc, log in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        log.close()


@pytest.mark.slow
def test_3_chatbot_job_status_api_progress_cancel_backoff_and_beat(
        port, server):
    ported = port("3-chatbot-api").start("tasks")
    base = server("api.py", ported.rt.env)

    status, created = http("POST", base + "/jobs",
                           {"message": "hello", "steps": 6,
                            "step_seconds": 0.15})
    assert status == 202 and set(created) == {"job_id", "status"}
    assert created["status"] == "PENDING"
    url = base + "/jobs/" + created["job_id"]
    seen = wait_for(lambda: (lambda b: b if b["status"] == "PROGRESS" else
                             None)(http("GET", url)[1]), 20,
                    interval=0.01, message="progress")
    assert 0 < seen["progress"] < 100
    assert seen["status_message"].startswith("generating token ")
    assert seen["result"] is None
    done = wait_for(lambda: (lambda b: b if b["status"] == "SUCCESS" else
                             None)(http("GET", url)[1]), 20,
                    message="the reply")
    assert done["progress"] == 100
    assert done["result"] == {"conversation_id": "default",
                              "reply": "You said: hello", "retries": 0}
    assert http("POST", base + "/jobs", {})[0] == 400

    status, long = http("POST", base + "/jobs", {"message": "a long one",
                                                 "steps": 200,
                                                 "step_seconds": 0.1})
    long_url = base + "/jobs/" + long["job_id"]
    wait_for(lambda: http("GET", long_url)[1]["status"] == "PROGRESS", 20,
             message="the long job to run")
    active = http("GET", base + "/jobs")[1]["jobs"]
    assert {"job_id": long["job_id"], "status": "PROGRESS"} in active
    assert http("DELETE", long_url)[1] == {"job_id": long["job_id"],
                                           "status": "REVOKED"}
    gone = wait_for(lambda: (lambda b: b if b["status"] == "REVOKED" else
                             None)(http("GET", long_url)[1]), 20,
                    message="the cancel")
    assert gone["status_message"] == "revoked"
    assert long["job_id"] not in [j["job_id"] for j in
                                  http("GET", base + "/jobs")[1]["jobs"]]

    status, busy = http("POST", base + "/jobs", {"message": "busy",
                                                 "busy": 1, "steps": 1})
    busy_url = base + "/jobs/" + busy["job_id"]
    ended = wait_for(lambda: (lambda b: b if b["status"] == "SUCCESS" else
                              None)(http("GET", busy_url)[1]), 30,
                     message="the retried reply")
    assert ended["result"]["retries"] == 1
    app = ported.app()
    try:
        history = [e["event"] for e in app.job(busy["job_id"]).history]
        assert "retrying" in history
        assert app.job(long["job_id"]).state == "cancelled"
    finally:
        app.close()

    beat = ported.run("-c", "\n".join([
        "import datetime, json",
        "from tasks import app",
        "tasks = {t.__name__: t for t in app.registry._periodic_tasks}",
        "at = lambda *a: datetime.datetime(*a)",
        "print(json.dumps({name: [task().validate_datetime(at(*when)) for when",
        "    in ((2026, 3, 1, 2, 0), (2026, 3, 1, 3, 0), (2026, 3, 2, 3, 0),",
        "        (2026, 3, 2, 2, 30))]",
        "    for name, task in tasks.items() if name.startswith('beat:')}))"]))
    # 2026-03-01 is a Sunday.
    assert beat == {"beat:daily-cleanup": [True, False, False, False],
                    "beat:hourly-result-cleanup": [True, True, True, False],
                    "beat:weekly-usage-report": [False, True, False, False]}
    assert ported.rt.terminate() == 0


@pytest.mark.slow
def test_4_document_pipeline_progress_batches_and_retry(port):
    ported = port("4-document-pipeline").start("celery_app:app")
    doc = ported.dir / "report.txt"
    doc.write_text(" ".join("word%d" % i for i in range(1000)))
    out = ported.run("submit.py", str(doc), str(ported.dir / "missing.txt"))
    seen = out[str(doc)]["seen"]
    states = [state for state, _ in seen]
    assert states[-1] == "SUCCESS" and "PROGRESS" in states
    final = {"document_id": "doc-0", "chunks": 25, "batches": 4,
             "vectors_path": str(doc) + ".vectors.json"}
    # submit.py reads .state, then .info (two reads, as on Celery): the task
    # may end between them, so the last PROGRESS may carry the result.
    progress = [info for state, info in seen if state == "PROGRESS"]
    if progress[-1] == final:
        progress.pop()
    assert progress and all(
        info["total"] == 25 and info["status"].startswith("embedded ")
        for info in progress)
    assert seen[-1][1] == final
    vectors = json.loads((ported.dir / "report.txt.vectors.json").read_text())
    assert len(vectors["vectors"]) == 25
    missing = out[str(ported.dir / "missing.txt")]["seen"]
    assert [s for s, _ in missing][-2:] == ["RETRY", "REVOKED"]
    assert missing[-2][1].startswith("FileNotFoundError(2, ")
    app = ported.app()
    try:
        job = app.job(out[str(doc)]["id"])
        assert (job.state, job.progress, job.message) == (
            "complete", 100.0, "embedded 25/25 chunks")
        assert app.job(out[str(ported.dir / "missing.txt")]["id"]).state == \
            "cancelled"
        assert app.profile.queues["celery"].max_tasks == 200
    finally:
        app.close()
    assert ported.rt.terminate() == 0


@pytest.mark.slow
def test_5_messaging_queue_types_as_a_profile(port):
    ported = port("5-messaging-queues").start("celery_app:app")
    out = ported.run("producer.py")
    code = ported.run("-c", "\n".join([
        "import json",
        "from celery_app import QUEUE_TYPES",
        "from tasks import send_notification as t",
        "print(json.dumps({'types': QUEUE_TYPES, 'notification': [",
        "    t.max_retries, t.default_retry_delay,",
        "    t.hueyq.task_class.time_limit, t.priority]}))"]))
    app = ported.app()
    try:
        config = app.profile.queues
        assert {q: (config[q].priority, config[q].workers, config[q].time_limit)
                for q in app.queues} == {
            q: (t["priority"] * 10, t["max_workers"], t["timeout"])
            for q, t in code["types"].items()}
        assert app.queues == ("notifications", "default", "reports",
                              "background")
        assert code["notification"] == [5, 10, 30, 8]
        queues = {name: app.job(r["id"]).queue for name, r in out.items()}
        assert queues == {"send_notification": "notifications",
                          "deliver_message": "default",
                          "build_report": "reports",
                          "compact_history": "background",
                          "gateway_down": "notifications"}
        assert out["send_notification"]["result"] == {"user_id": 1,
                                                      "sent": "hi"}
        assert out["gateway_down"]["state"] == "RETRY"
        assert out["gateway_down"]["info"] == \
            "GatewayDown('gateway timeout')"
        wait_for(lambda: app.job(out["gateway_down"]["id"]).state ==
                 "cancelled", 10, message="the revoke")
    finally:
        app.close()
    assert ported.rt.terminate() == 0
