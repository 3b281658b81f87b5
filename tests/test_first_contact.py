"""A new user's first hour: the README's quick start from a clone's root on
every Python we support, one clear line for every mistake and missing part,
commands that look without creating anything, and the easy accidents the
runtime protects against. Everything runs the real `hueyq` command."""

import concurrent.futures
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import HERE, free_port, wait_for, write_profile

REPO = HERE.parent
COMMANDS = {
    "status": ["status"], "jobs": ["jobs"], "job": ["job", "nope"],
    "pause": ["pause", "high"], "resume": ["resume", "high"],
    "drain": ["drain", "high", "--yes"], "cancel": ["cancel", "nope"],
    "retry": ["retry", "nope"], "web": ["web"],
    "run": ["run", "--app", "apps.basic"], "doctor": ["doctor"],
}


def hueyq(*args, env=None, cwd=None, timeout=60):
    full = {k: v for k, v in os.environ.items() if not k.startswith("HUEYQ_")}
    full.update(PYTHONPATH=str(HERE), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=timeout)


def one_line(result) -> str:
    """The single line a failed command printed, checked to be one."""
    err = result.stderr
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- quick start

def _pythons() -> "list[str]":
    """Interpreters of Python 3.10 and 3.12 that run here."""
    import glob
    found = []
    for version in ("3.10", "3.12"):
        candidates = sorted(glob.glob(os.path.expanduser(
            "~/.pyenv/versions/%s*/bin/python%s" % (version, version))))
        candidates += [p for p in ["/usr/bin/python%s" % version,
                                   shutil.which("python%s" % version)] if p]
        for path in candidates:
            if os.path.exists(path) and subprocess.run(
                    [path, "-c", "import venv"],
                    capture_output=True).returncode == 0:
                found.append(path)
                break
    return found


def fresh_clone(target: Path) -> Path:
    """The working tree as a clone has it (tracked and untracked files git
    does not ignore), without build outputs or virtualenvs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard",
                             "-z"], cwd=REPO, capture_output=True, check=True)
    for name in listed.stdout.decode().split("\0"):
        if not name or not (REPO / name).is_file():
            continue
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target / name)
    return target


def quick_start(python: str, root: Path) -> "tuple[str, str]":
    """The README's quick start, with ``python`` as python3, run from the
    root of a fresh clone and then from another directory; (version,
    output)."""
    clone = fresh_clone(root / "hueyq")
    venv = root / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    version = subprocess.run([str(venv / "bin" / "python"), "-c",
                              "import sys; print('%d.%d' % sys.version_info"
                              "[:2])"], capture_output=True, text=True).stdout
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q",
                              "."], cwd=clone, capture_output=True, text=True,
                             timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HUEYQ_", "PYTHON"))}
    out = []
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    for cwd in (clone, elsewhere):
        demo = subprocess.run([str(venv / "bin" / "hueyq"), "demo", "--jobs",
                               "1"], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=180)
        assert demo.returncode == 0, (cwd, demo.stdout, demo.stderr)
        assert "runtime stopped with SIGTERM, exit status 0" in demo.stdout
        out.append(demo.stdout)
    return version.strip(), "\n".join(out)


@pytest.mark.slow
def test_the_quick_start_works_from_a_clone_root_on_every_python(tmp_path):
    pythons = _pythons()
    if not pythons:
        pytest.skip("no Python 3.10 or 3.12 here (CI's .ci/run covers 3.11)")
    roots = [tmp_path / str(i) for i in range(len(pythons))]
    for root in roots:
        root.mkdir()
    with concurrent.futures.ThreadPoolExecutor(len(pythons)) as pool:
        results = list(pool.map(quick_start, pythons, roots))
    versions = {version for version, _ in results}
    assert versions <= {"3.10", "3.12"} and len(versions) == len(pythons)
    for _, output in results:
        assert "high    1/1 complete" in output


@pytest.mark.slow
def test_run_with_web_from_the_source_root(tmp_path, app_name):
    """From the root of the checkout (where ./hueyq is the source folder),
    `hueyq run --web` starts its consumers and its web server."""
    port = free_port()
    profile = write_profile(tmp_path / "profile.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name,
                            extra={"web": {"bind": "127.0.0.1:%d" % port}})
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    proc = subprocess.Popen([sys.executable, "-m", "hueyq", "run", "--app",
                             "apps.basic", "--web"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_for(lambda: _status(port) == 200, 30, 0.2, "the web server")
        health = json.loads(urllib.request.urlopen(
            "http://127.0.0.1:%d/api/health" % port, timeout=5).read())
        assert health["healthy"], health
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, output
    assert "ModuleNotFoundError" not in output
    assert output.count("started consumer") == 4


def _status(port: int) -> "int | None":
    try:
        return urllib.request.urlopen("http://127.0.0.1:%d/api/health" % port,
                                      timeout=2).status
    except OSError:
        return None


# ---------------------------------------------------------------- one line

@pytest.fixture
def failures(tmp_path, redis_session, app_name):
    """(name, environment, expected exit status, words of the line) for
    each mistake and missing part the issue names."""
    sqlite_profile = write_profile(
        tmp_path / "profile.toml", "sqlite://%s" % (tmp_path / "q.db"),
        "sqlite://%s" % (tmp_path / "s.db"), app_name)
    blocker = tmp_path / "no-psycopg"
    for driver in ("psycopg", "psycopg2"):
        (blocker / driver).mkdir(parents=True)
        (blocker / driver / "__init__.py").write_text(
            "raise ImportError('No module named %s')\n" % driver)
    port = redis_session.port
    return [
        ("redis unreachable", {"HUEYQ_BACKEND": "redis://127.0.0.1:1/0"}, 1,
         "cannot connect to Redis at 127.0.0.1:1"),
        ("redis db out of range",
         {"HUEYQ_BACKEND": "redis://127.0.0.1:%d/99" % port}, 1,
         "has no database 99"),
        ("rediss to a plain Redis",
         {"HUEYQ_BACKEND": "rediss://127.0.0.1:%d/0" % port}, 1,
         "rediss:// is for a TLS server"),
        ("postgres store without its driver",
         {"HUEYQ_STORE": "postgresql://postgres@127.0.0.1/test",
          "PYTHONPATH": "%s:%s" % (blocker, HERE)}, 2,
         "the PostgreSQL job store needs its driver"),
        ("bind port 99999", {"HUEYQ_WEB__BIND": "127.0.0.1:99999"}, 2,
         "port 99999 out of range"),
    ], sqlite_profile


@pytest.mark.slow
def test_every_command_answers_each_failure_in_one_line(failures, tmp_path):
    cases, profile = failures
    jobs = []
    for name, env, status, words in cases:
        for command, args in COMMANDS.items():
            full = dict(os.environ, PYTHONPATH=str(HERE),
                        HUEYQ_PROFILE=str(profile))
            full.update(env)
            jobs.append((name, command, status, words, args, full))

    def run(job):
        name, command, status, words, args, env = job
        result = subprocess.run([sys.executable, "-m", "hueyq", *args],
                                capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=60)
        return job, result
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        done = list(pool.map(run, jobs))
    for (name, command, status, words, _, _), result in done:
        where = "%s / hueyq %s" % (name, command)
        assert result.returncode == status, (where, result.stdout,
                                             result.stderr)
        if command == "doctor" and status == 1:
            # doctor reports every check; the backend's line says it all.
            assert "Traceback" not in result.stdout + result.stderr
            backend = [l for l in result.stdout.splitlines()
                       if l.startswith("ERROR backend")]
            assert backend and words in backend[0], (where, result.stdout)
            continue
        line = one_line(result)
        assert words in line, (where, line)


def test_the_bind_flag_and_the_profile_before_the_subcommand(tmp_path,
                                                              app_name):
    bad = hueyq("web", "--bind", "127.0.0.1:99999", cwd=tmp_path)
    assert bad.returncode == 2
    assert "--bind" in one_line(bad) and "99999 out of range" in bad.stderr
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    subprocess.run([sys.executable, "-c", "import hueyq; hueyq.App(%r)"
                    % str(profile)], check=True, cwd=tmp_path)
    before = hueyq("--profile", str(profile), "status", cwd=tmp_path)
    after = hueyq("status", "--profile", str(profile), cwd=tmp_path)
    assert before.returncode == after.returncode == 0, before.stderr
    assert "q.db" in before.stdout and before.stdout == after.stdout
    unknown = hueyq("--profile", "nosuch", "status", cwd=tmp_path)
    assert unknown.returncode == 2 and "unknown profile 'nosuch'" in \
        one_line(unknown)


# ---------------------------------------------------------------- read only

def _tree(path: Path) -> "list[str]":
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_commands_that_look_create_nothing(tmp_path, app_name):
    home = tmp_path / "somewhere"
    home.mkdir()
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (home / "data" / "q.db"),
                            "sqlite://%s" % (home / "data" / "s.db"), app_name)
    env = {"HUEYQ_PROFILE": str(profile)}
    for args in (["status"], ["jobs"], ["job", "x"], ["doctor"],
                 ["jobs", "--state", "failed"], ["pause", "high"]):
        result = hueyq(*args, env=env, cwd=home)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        text = result.stdout + result.stderr
        assert "no queue database at %s" % (home / "data" / "q.db") in text
        assert "Traceback" not in text
    assert _tree(home) == []
    # The web UI neither: it refuses to start on files that do not exist.
    web = hueyq("web", "--bind", "127.0.0.1:%d" % free_port(), env=env,
                cwd=home)
    assert web.returncode == 1 and "no queue database" in one_line(web)
    assert _tree(home) == []
    # Once a producer made the queue file, looking still creates no store.
    subprocess.run([sys.executable, "-c", "import hueyq; a = hueyq.App(%r); "
                    "a.huey('high').storage.ping()" % str(profile)],
                   check=True, cwd=home)
    made = _tree(home)
    status = hueyq("status", env=env, cwd=home)
    assert status.returncode == 0, status.stderr
    assert "store:   sqlite://%s" % (home / "data" / "s.db") in status.stdout
    assert "backend: SQLite file %s" % (home / "data" / "q.db") in status.stdout
    assert hueyq("jobs", env=env, cwd=home).returncode == 0
    assert hueyq("doctor", env=env, cwd=home).returncode == 0
    assert _tree(home) == made and "data/s.db" not in made


def _as_user(uid: int, gid: int, argv: "list[str]", cwd: str
             ) -> "tuple[int, str]":
    """Run the CLI in a forked child that dropped root for ``uid``: real
    permission checks on real files. Modules are imported before the drop
    (the interpreter's own files are root's)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        code = 99
        try:
            os.close(read)
            import contextlib
            import importlib.readers  # noqa: F401 - read the profiles
            import io
            from hueyq import cli, files, health  # noqa: F401
            from hueyq.app import App  # noqa: F401
            from hueyq.backends import sqlite  # noqa: F401
            from hueyq.store import Store  # noqa: F401
            out = io.StringIO()
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with contextlib.redirect_stdout(out), \
                    contextlib.redirect_stderr(out):
                try:
                    cli.main(argv, prog_name="hueyq")
                except SystemExit as exc:
                    code = exc.code or 0
            os.write(write, out.getvalue().encode())
        except BaseException as exc:  # report anything to the parent
            os.write(write, ("child failed: %r" % exc).encode())
        finally:
            os._exit(code)
    os.close(write)
    chunks = []
    while True:
        chunk = os.read(read, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(read)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody")
def test_a_login_user_reads_the_service_files_or_is_told_why(tmp_path,
                                                             app_name):
    import pwd
    nobody = pwd.getpwnam("nobody")
    import tempfile
    service = Path(tempfile.mkdtemp(prefix="hueyq-service-"))
    try:
        os.chmod(service, 0o755)
        profile = write_profile(service / "profile.toml",
                                "sqlite://%s" % (service / "queue.db"),
                                "sqlite://%s" % (service / "store.db"),
                                app_name)
        os.chmod(profile, 0o644)
        # The service (root here) has queued three jobs and closed cleanly.
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert("
                        "0, %r); from apps.basic import make_app; a = "
                        "make_app(%r); [a.tasks.echo(i) for i in range(3)]; "
                        "a.close()" % (str(HERE), str(profile))], check=True,
                       cwd=service)
        for name in os.listdir(service):
            os.chmod(service / name, 0o644)
        before = _tree(service)
        code, out = _as_user(nobody.pw_uid, nobody.pw_gid,
                             ["status", "--profile", str(profile)], str(service))
        assert code == 0, out
        high = next(l for l in out.splitlines() if l.startswith("high"))
        assert high.split()[2] == "3", out
        assert "backend: SQLite file %s" % (service / "queue.db") in out
        assert _tree(service) == before
        os.chmod(service, 0o711)   # may pass through, may not list or read
        os.chmod(service / "queue.db", 0o600)
        code, out = _as_user(nobody.pw_uid, nobody.pw_gid,
                             ["jobs", "--profile", str(profile)], str(service))
        assert code == 1, out
        assert out.strip() == ("hueyq: cannot read the queue database %s: "
                               "permission denied (these are the service's "
                               "files: run as its user or join its group)"
                               % (service / "queue.db")), out
    finally:
        shutil.rmtree(service)


def test_the_service_directory_wins_once_it_exists(tmp_path, monkeypatch):
    from hueyq.profile import data_dir
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    env = {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    system = tmp_path / "var-lib-hueyq"
    assert data_dir(env, system=str(system)) == str(tmp_path / "xdg" / "hueyq")
    system.mkdir(mode=0o500)       # exists, not writable by this user
    assert data_dir(env, system=str(system)) == str(system)


# ---------------------------------------------------------------- accidents

@pytest.mark.slow
def test_a_second_runtime_on_the_same_sqlite_file_refuses(tmp_path, app_name,
                                                          runtime):
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    first = runtime(profile)
    first.wait_ready()
    second = hueyq("run", "--app", "apps.basic",
                   env={"HUEYQ_PROFILE": str(profile)}, cwd=tmp_path)
    assert second.returncode == 1
    line = one_line(second)
    assert "another runtime of app %s already works on SQLite file %s" % (
        app_name, tmp_path / "q.db") in line
    assert "pid %d on host" % first.pid in line
    assert first.proc.poll() is None
    assert first.terminate() == 0


@pytest.mark.slow
def test_a_second_runtime_as_the_same_redis_host_refuses(redis_session,
                                                         tmp_path, app_name,
                                                         runtime):
    profile = write_profile(tmp_path / "p.toml", redis_session.url,
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    env = {"HUEYQ_PROFILE": str(profile), "HUEYQ_HOST_ID": "box-a"}
    first = runtime(profile, env={"HUEYQ_HOST_ID": "box-a"})
    first.wait_ready()
    wait_for(lambda: "runtime: alive" in hueyq("status", env=env,
                                                cwd=tmp_path).stdout, 20,
             0.2, "the first runtime's status record")
    second = hueyq("run", "--app", "apps.basic", env=env, cwd=tmp_path)
    assert second.returncode == 1
    assert "already runs as host box-a (pid %d)" % first.pid in \
        one_line(second)
    other = runtime(profile, env={"HUEYQ_HOST_ID": "box-b"})
    other.wait_ready()
    assert other.proc.poll() is None
    assert other.terminate() == 0 and first.terminate() == 0


@pytest.mark.slow
@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_database_deleted_or_replaced_under_the_runtime_stops_it(
        tmp_path, app_name, runtime, how):
    db = tmp_path / "q.db"
    profile = write_profile(tmp_path / "p.toml", "sqlite://%s" % db,
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    rt = runtime(profile)
    rt.wait_ready()
    started = time.monotonic()
    if how == "deleted":
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
    else:
        shutil.copy(db, tmp_path / "copy.db")
        os.replace(tmp_path / "copy.db", db)
    assert rt.proc.wait(30) == 1
    assert time.monotonic() - started < 10
    assert "SQLite file %s was %s under the running runtime" % (db, how) \
        in rt.log()
    assert "Traceback" not in rt.log(), rt.log()[-4000:]


@pytest.mark.slow
def test_a_web_server_that_dies_is_restarted(tmp_path, app_name, runtime):
    port = free_port()
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name,
                            extra={"web": {"bind": "127.0.0.1:%d" % port}})
    rt = runtime(profile, extra_args=["--web"])
    rt.wait_ready()
    wait_for(lambda: _status(port) == 200, 30, 0.2, "the web server")

    def web_pid():
        for line in rt.log().splitlines():
            if "started the web server, pid" in line:
                pid = int(line.rsplit(" ", 1)[1])
        return pid
    first = web_pid()
    os.killpg(first, signal.SIGKILL)      # the server and its workers
    wait_for(lambda: web_pid() != first, 20, 0.1, "a new web server")
    assert "web server pid %d exited with signal SIGKILL; restarting" % first \
        in rt.log()
    wait_for(lambda: _status(port) == 200, 30, 0.2, "the new web server")
    assert rt.terminate() == 0


@pytest.mark.slow
def test_the_demo_reports_an_early_runtime_exit_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUEYQ_")}
    holder = subprocess.Popen([sys.executable, "-m", "hueyq", "run", "--app",
                               "hueyq.demo"], cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        wait_for(lambda: (tmp_path / ".hueyq" / "queue.db.hueyq.runtime")
                 .exists(), 20, 0.1, "the first runtime")
        demo = subprocess.run([sys.executable, "-m", "hueyq", "demo",
                               "--jobs", "1", "--timeout", "30"],
                              cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=90)
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(60)
    assert demo.returncode == 1
    assert demo.stderr.count("exited early") == 1, demo.stderr
    assert "the runtime exited early with exit status 1" in demo.stderr
    assert "SIGTERM" not in demo.stdout


def test_job_shows_the_current_attempt_rounded_with_its_arguments(
        tmp_path, app_name, make_app, inline):
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name,
                            extra={"store": {"args_preview": True}})
    app = make_app(profile)
    handle = app.tasks.flaky_progress(str(tmp_path / "flag"))
    inline(app, "medium").run(limit=1)      # attempt 1: 33.3%, then fails
    env = {"HUEYQ_PROFILE": str(profile)}
    shown = hueyq("job", handle.id, "--app", "apps.basic", env=env,
                  cwd=tmp_path)
    assert "progress:     33%" in shown.stdout, shown.stdout
    assert "args:" in shown.stdout and "flag" in shown.stdout
    lease = app.storage("medium").lease("elsewhere:1:w")   # attempt 2 starts
    assert lease is not None and lease.task_id == handle.id
    shown = hueyq("job", handle.id, "--app", "apps.basic", env=env,
                  cwd=tmp_path)
    assert "state:        running" in shown.stdout, shown.stdout
    assert "progress:" not in shown.stdout and "finished:" not in shown.stdout
    assert "started:" in shown.stdout
