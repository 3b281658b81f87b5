"""systemd: generated units (golden files and systemd-analyze verify) and the
notify protocol against a real datagram socket."""

import os
import shutil
import socket
import subprocess
import sys

import pytest

from hueyq.runtime import notify

from conftest import HERE, wait_for

GOLDEN = HERE / "golden"


def cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, cwd=cwd,
                          env=dict(os.environ, **(env or {})), timeout=60)


def user_project(root) -> str:
    """A user's project with an App in myproject/tasks.py; its folder."""
    package = root / "myproject"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text(
        "import hueyq\napp = hueyq.App()\n\n@app.task()\n"
        "def chat(text):\n    return text\n")
    return str(root)


@pytest.mark.parametrize("profile, extra", [("jetson", ["--web"]), ("server", [])])
def test_units_match_the_golden_files(tmp_path, profile, extra):
    env = {"HUEYQ_SECRET": "not-in-the-unit", "HUEYQ_REDIS_URL":
           "redis://127.0.0.1:6379/0",
           "PYTHONPATH": user_project(tmp_path / "project")}
    result = cli("systemd", "--profile", profile, "--app", "myproject.tasks",
                 "--user", "daemon", "--exec", "/opt/hueyq/bin/hueyq",
                 "--workdir", "/srv/app", *extra, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    golden = GOLDEN / ("%s.units" % profile)
    if os.environ.get("HUEYQ_UPDATE_GOLDEN"):
        golden.write_text(result.stdout)
    assert result.stdout == golden.read_text()
    assert "not-in-the-unit" not in result.stdout


def test_units_follow_the_profile():
    from hueyq import systemd
    from hueyq.profile import load_profile
    jetson = load_profile("jetson", env={"STATE_DIRECTORY": "/var/lib/hueyq"})
    runtime, web = systemd.units(jetson, "jetson", "m.tasks", user="u", web=True,
                                 executable="/x/hueyq", workdir="/w")
    text = runtime.text
    assert "Type=notify" in text and "WatchdogSec=30s" in text
    assert "TimeoutStopSec=45s" in text          # 30s grace + 15s
    assert "KillMode=mixed" in text and "OOMPolicy=continue" in text
    budget = jetson.memory_budget()
    assert budget == int(6.5 * 1024 ** 3)
    limit = systemd.memory_max(jetson)
    assert "MemoryMax=%dM" % (limit >> 20) in text and limit > budget
    # The backstop leaves an 8 GB device's operating system over a GiB.
    assert limit == budget + systemd.MEMORY_OVERHEAD
    assert 8 * 1024 ** 3 - limit > 1024 ** 3
    assert "ReadWritePaths=/var/lib/hueyq" in text
    assert "ExecStart=/x/hueyq run --profile jetson --app m.tasks" in text
    assert "After=network-online.target hueyq-hueyq.service" in web.text


def test_install_writes_units_that_systemd_accepts(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    target = tmp_path / "units"
    result = cli("systemd", "--profile", "jetson", "--app", "hueyq.demo",
                 "--user", "daemon", "--web", "--install", "--dir", str(target),
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "systemctl enable --now hueyq-hueyq.service hueyq-hueyq-web.service" \
        in result.stdout
    files = sorted(p.name for p in target.iterdir())
    assert files == ["hueyq-hueyq-web.service", "hueyq-hueyq.service"]
    verify = subprocess.run(["systemd-analyze", "verify"] +
                            [str(target / f) for f in files],
                            capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stderr


def test_systemd_needs_a_profile(tmp_path):
    env = dict(os.environ)
    env.pop("HUEYQ_PROFILE", None)
    result = subprocess.run([sys.executable, "-m", "hueyq", "systemd", "--app",
                             "m.tasks"], capture_output=True, text=True,
                            env=env, cwd=tmp_path)
    assert result.returncode == 2 and "needs --profile" in result.stderr


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    yield path, sock
    sock.close()


def received(sock):
    out = []
    while True:
        try:
            out.extend(sock.recv(4096).decode().splitlines())
        except socket.timeout:
            return out


def test_notify_sends_datagrams(notify_socket, monkeypatch):
    path, sock = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    assert notify.notify("READY=1", "STATUS=ok")
    assert received(sock) == ["READY=1", "STATUS=ok"]
    monkeypatch.delenv("NOTIFY_SOCKET")
    assert not notify.notify("READY=1")
    monkeypatch.setenv("WATCHDOG_USEC", "10000000")
    assert notify.watchdog_interval() == 5.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert notify.watchdog_interval() is None


def test_abstract_notify_socket(monkeypatch):
    name = "hueyq-test-%d" % os.getpid()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify.notify("WATCHDOG=1")
        assert sock.recv(100) == b"WATCHDOG=1"
    finally:
        sock.close()


@pytest.mark.slow
def test_the_runtime_speaks_the_notify_protocol(notify_socket, profile_path,
                                                runtime):
    path, sock = notify_socket
    rt = runtime(profile_path, env={"NOTIFY_SOCKET": path,
                                    "WATCHDOG_USEC": "2000000"})
    seen = []
    wait_for(lambda: seen.extend(received(sock)) or
             {"READY=1", "WATCHDOG=1"} <= set(seen), 30,
             message="READY and WATCHDOG")
    wait_for(lambda: seen.extend(received(sock)) or
             any(l.startswith("STATUS=4/4 consumers up") for l in seen), 30,
             message="a STATUS line")
    assert rt.terminate() == 0
    seen.extend(received(sock))
    assert "STOPPING=1" in seen


@pytest.mark.parametrize("option, value", [
    ("--app", "myproject.tasks\nExecStartPre=/bin/sh -c 'id > /tmp/pwned'"),
    ("--user", "daemon\nUser=root"),
    ("--user", "two words"),
    ("--workdir", "{project}\n[Service]\nExecStartPost=/bin/true"),
    ("--exec", "/opt/hueyq/bin/hueyq\rUser=root")])
def test_a_value_that_would_become_a_directive_is_refused(tmp_path, option,
                                                          value):
    project = user_project(tmp_path / "project")
    args = {"--app": "myproject.tasks", "--user": "daemon",
            "--workdir": project, "--exec": "/opt/hueyq/bin/hueyq"}
    fine = cli("systemd", "--profile", "jetson", *[
        x for kv in args.items() for x in kv], cwd=project)
    assert fine.returncode == 0, fine.stderr
    args[option] = value.format(project=project)
    result = cli("systemd", "--profile", "jetson", *[
        x for kv in args.items() for x in kv], cwd=project)
    assert result.returncode == 2, result.stdout
    assert "control character" in result.stderr or "not a user name" in \
        result.stderr, result.stderr
    assert option in result.stderr and "Traceback" not in result.stderr
    assert "[Service]" not in result.stdout


def test_units_keep_the_state_directory_private():
    from hueyq import systemd
    from hueyq.profile import load_profile
    jetson = load_profile("jetson", env={"STATE_DIRECTORY": "/var/lib/hueyq"})
    for unit in systemd.units(jetson, "jetson", "m.tasks", web=True,
                              executable="/x/hueyq", workdir="/w"):
        assert "UMask=0027" in unit.text.splitlines()
        assert "StateDirectoryMode=0750" in unit.text.splitlines()


def test_systemd_refuses_an_app_that_does_not_import_and_an_unknown_user(
        tmp_path):
    project = user_project(tmp_path / "project")
    broken = cli("systemd", "--profile", "jetson", "--app", "myproject.nope",
                 cwd=project)
    assert broken.returncode == 2
    assert broken.stderr.count("\n") == 1 and "Traceback" not in broken.stderr
    assert "--app: cannot import 'myproject.nope'" in broken.stderr
    (tmp_path / "project" / "myproject" / "bad.py").write_text("1/0\n")
    raising = cli("systemd", "--profile", "jetson", "--app", "myproject.bad",
                  cwd=project)
    assert raising.returncode == 2 and "ZeroDivisionError" in raising.stderr
    assert raising.stderr.count("\n") == 1
    nobody = cli("systemd", "--profile", "jetson", "--app", "myproject.tasks",
                 "--user", "no-such-user-hq", cwd=project)
    assert nobody.returncode == 2 and nobody.stderr.count("\n") == 1
    assert "--user: no user 'no-such-user-hq'" in nobody.stderr
    fine = cli("systemd", "--profile", "jetson", "--app", "myproject.tasks",
               "--user", "daemon", cwd=project)
    assert fine.returncode == 0, fine.stderr
    assert "User=daemon" in fine.stdout
    # Checking the app created nothing beside the project.
    assert sorted(os.listdir(project)) == ["myproject"]
