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


@pytest.mark.parametrize("name", NAMES)
def test_the_profile_is_what_from_celery_writes(name):
    pytest.importorskip("celery")
    profile = EXAMPLES / name / "profile.toml"
    first = profile.read_text().splitlines()[1]
    if not first.startswith("# (hueyq profiles from-celery "):
        pytest.skip("%s's profile is written by hand (its README says why)"
                    % name)
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
