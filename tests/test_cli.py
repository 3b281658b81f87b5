"""The command line: output, exit statuses, one-line errors."""

import json
import os
import re
import subprocess
import sys

import pytest

from conftest import HERE, RedisServer, _need_redis


def cli(*args, env=None, cwd=None, timeout=60):
    full = dict(os.environ, PYTHONPATH=str(HERE), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=timeout)


@pytest.fixture
def env(profile_path):
    return {"HUEYQ_PROFILE": str(profile_path)}


def test_version_and_help():
    assert cli("--version").stdout.startswith("hueyq, version ")
    out = cli("--help").stdout
    for command in ("run", "web", "status", "jobs", "job", "cancel", "retry",
                    "pause", "resume", "drain", "profiles", "doctor", "demo"):
        assert command in out


def test_status_without_a_runtime(app, env, tmp_path):
    app.tasks.echo(1)
    result = cli("status", "--app", "apps.basic", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "runtime: not running" in result.stdout
    high = next(l for l in result.stdout.splitlines() if l.startswith("high"))
    assert high.split()[:3] == ["high", "100", "1"]
    report = json.loads(cli("status", "--json", env=env, cwd=tmp_path).stdout)
    assert report["queues"]["high"]["pending"] == 1 and report["runtimes"] == []


def test_jobs_job_cancel_retry_pause_resume_drain(app, env, tmp_path, inline):
    failed = app.tasks.fail("kaput")
    inline(app, "low").run()
    listed = cli("jobs", "--state", "failed", env=env, cwd=tmp_path)
    assert failed.id in listed.stdout and "ValueError('kaput')" in listed.stdout
    shown = cli("job", failed.id, env=env, cwd=tmp_path)
    assert "state:        failed" in shown.stdout and "traceback:" in shown.stdout
    assert "history:" in shown.stdout
    data = json.loads(cli("job", failed.id, "--json", env=env, cwd=tmp_path).stdout)
    assert data["state"] == "failed" and data["attempts"] == 1
    retried = cli("retry", failed.id, env=env, cwd=tmp_path)
    assert retried.stdout == "%s queued again on low (attempt 2 next)\n" \
        % failed.id
    assert app.job(failed.id).state == "pending"

    waiting = app.tasks.echo("x")
    out = cli("cancel", waiting.id, env=env, cwd=tmp_path)
    assert out.returncode == 0 and "cancelled: it was pending" in out.stdout
    assert cli("pause", "high", "--reason", "upgrade", env=env, cwd=tmp_path).stdout \
        == "high paused\n"
    assert "paused" in cli("pause", "high", env=env, cwd=tmp_path).stdout
    assert app.queue_stats()["high"]["paused_by"] == ["user"]
    assert cli("resume", "high", env=env, cwd=tmp_path).stdout == "high resumed\n"
    for i in range(3):
        app.tasks.add(i, i)
    drained = cli("drain", "medium", "--yes", env=env, cwd=tmp_path)
    assert drained.stdout == "medium drained: 3 jobs cancelled\n"


@pytest.mark.parametrize("args, message", [
    (("job", "nope"), "hueyq: no job 'nope'"),
    (("cancel", "nope"), "hueyq: no job 'nope'"),
    (("pause", "urgent"), "hueyq: no queue 'urgent'"),
    (("drain", "urgent", "--yes"), "hueyq: no queue 'urgent'"),
    (("jobs", "--state", "weird"), "hueyq: error: unknown state 'weird'"),
])
def test_domain_errors_are_one_line(app, env, tmp_path, args, message):
    result = cli(*args, env=env, cwd=tmp_path)
    expected = 2 if "error:" in message else 1
    assert result.returncode == expected
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(message)
    assert "Traceback" not in result.stderr


def test_retry_of_a_pending_job_is_refused(app, env, tmp_path):
    handle = app.tasks.echo(1)
    result = cli("retry", handle.id, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert "is pending; only failed, cancelled, dead, expired jobs can be " \
           "retried" in result.stderr


def test_run_with_a_bad_app_exits_2(env, tmp_path):
    result = cli("run", "--app", "no.such.module", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("hueyq: error: --app: cannot import "
                                     "'no.such.module' (no module named 'no')")
    result = cli("run", "--app", "apps.basic:nothing", env=env, cwd=tmp_path)
    assert result.returncode == 2 and "has no hueyq.App named 'nothing'" in result.stderr


def test_doctor(app, env, tmp_path, backend_url):
    result = cli("doctor", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    lines = {tuple(l.split()[:2]): l for l in result.stdout.splitlines()[1:]}
    if backend_url.startswith("sqlite"):
        assert lines[("ok", "sqlite.journal_mode")].endswith("journal_mode=wal")
        assert lines[("ok", "sqlite.synchronous")].endswith("synchronous=FULL")
    elif backend_url.startswith("postgres"):
        assert lines[("ok", "postgres.synchronous_commit")].endswith(
            "synchronous_commit=on")
    else:
        assert lines[("ok", "redis.maxmemory_policy")].endswith("noeviction")
        assert lines[("ok", "redis.persistence")].endswith("AOF on")
    assert ("WARN", "security.secret") in lines
    assert ("WARN", "runtime") in lines
    strict = cli("doctor", "--require-runtime", env=env, cwd=tmp_path)
    assert strict.returncode == 1 and "ERROR runtime" in strict.stdout
    report = json.loads(cli("doctor", "--json", env=env, cwd=tmp_path).stdout)
    assert report["healthy"] is True


def test_doctor_flags_an_evicting_redis_and_the_server_profile_refuses_it(tmp_path):
    _need_redis()
    server = RedisServer(tmp_path, appendonly=False, policy="allkeys-lru").start()
    try:
        env = {"HUEYQ_REDIS_URL": server.url, "HUEYQ_SECRET": "s3cret",
               "HUEYQ_DATA_DIR": str(tmp_path)}
        doctor = cli("doctor", "--profile", "server", env=env, cwd=tmp_path)
        assert doctor.returncode == 1
        assert "ERROR redis.maxmemory_policy" in doctor.stdout
        assert "allkeys-lru" in doctor.stdout and "noeviction" in doctor.stdout
        assert "ERROR redis.persistence" in doctor.stdout
        run = cli("run", "--profile", "server", "--app", "hueyq.demo", env=env,
                  cwd=tmp_path, timeout=30)
        assert run.returncode == 2
        assert ("Redis maxmemory-policy is allkeys-lru, which can silently delete "
                "queued tasks; set maxmemory-policy noeviction") in run.stderr
        nosecret = cli("run", "--profile", "server", "--app", "hueyq.demo",
                       env=dict(env, HUEYQ_SECRET=""), cwd=tmp_path)
        assert nosecret.returncode == 2 and "requires a secret" in nosecret.stderr
    finally:
        server.stop()


def test_doctor_on_postgresql_shows_its_durability_and_connections(
        postgres_url, tmp_path):
    import psycopg
    with psycopg.connect(postgres_url) as conn:
        version = conn.execute("show server_version").fetchone()[0]
    env = {"HUEYQ_PG_URL": postgres_url, "HUEYQ_SECRET": "s3cret"}
    doctor = cli("doctor", "--profile", "server-pg", env=env, cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout
    lines = {tuple(l.split()[:2]): l for l in doctor.stdout.splitlines()[1:]}
    assert lines[("ok", "postgres.version")].endswith("PostgreSQL " + version)
    assert lines[("ok", "postgres.synchronous_commit")].endswith(
        "synchronous_commit=on")
    used, most = re.search(r"(\d+) of (\d+) connections in use$", lines[
        ("ok", "postgres.connections")]).groups()
    assert 1 <= int(used) < int(most)
    # Off for hueyq's sessions: acked enqueues may be lost in a crash.
    env["HUEYQ_PG_URL"] += "?options=-c%20synchronous_commit%3Doff"
    off = cli("doctor", "--profile", "server-pg", env=env, cwd=tmp_path)
    assert off.returncode == 0, off.stdout          # a warning, not an error
    assert re.search(r"^WARN +postgres.synchronous_commit +synchronous_commit"
                     r"=off: an enqueue returns before its commit is on disk",
                     off.stdout, re.M), off.stdout


def typed(text, *args, env=None, cwd=None):
    """The command with ``text`` typed on its standard input."""
    full = dict(os.environ, PYTHONPATH=str(HERE), **(env or {}))
    return subprocess.run([sys.executable, "-m", "hueyq", *args], input=text,
                          capture_output=True, text=True, env=full, cwd=cwd,
                          timeout=60)


def test_status_and_jobs_speak_the_glossarys_words(app, env, tmp_path, inline):
    app.tasks.fail("x")
    inline(app, "low").run()
    waiting = app.tasks.echo("never seen by a consumer")
    out = cli("status", env=env, cwd=tmp_path).stdout
    header = next(l for l in out.splitlines() if l.startswith("queue"))
    assert header.split() == ["queue", "prio", "pending", "scheduled",
                              "running", "retryable", "paused", "complete/1h",
                              "failed/1h", "success", "p95"]
    low = next(l for l in out.splitlines() if l.startswith("low")).split()
    assert low[5] == "1" and low[8] == "1"       # retryable, failed/1h
    listed = cli("jobs", env=env, cwd=tmp_path).stdout.splitlines()
    assert listed[1].split()[:4] == [waiting.id, "echo", "high", "pending"]
    assert listed[2].split()[3] == "failed"
    data = json.loads(cli("jobs", "--json", env=env, cwd=tmp_path).stdout)
    assert data[0]["id"] == waiting.id and "enqueued_at" in data[0]
    assert "created_at" not in data[0]


def test_jobs_search_options(app, env, tmp_path, inline):
    done = app.tasks.echo("done")
    inline(app, "high").run()
    failed = app.tasks.fail("Disk full")
    inline(app, "low").run()
    fresh = app.tasks.echo("fresh")

    def listed(*args):
        result = cli("jobs", "--json", *args, env=env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        return [j["id"] for j in json.loads(result.stdout)]
    assert listed("--task", "echo") == [fresh.id, done.id]
    assert listed("--id", failed.id[:6]) == [failed.id]
    assert listed("--error", "DISK") == [failed.id]
    assert listed("--since", "1h", "--task", "fail") == [failed.id]
    assert listed("--until", "1h") == []
    assert listed("--since", str(app.job(fresh.id).enqueued_at)) == [fresh.id]
    assert listed("--since", "2000-01-01", "--state", "complete") == [done.id]
    bad = cli("jobs", "--since", "yesterday", env=env, cwd=tmp_path)
    assert bad.returncode == 2 and "'yesterday' is not a time" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_bulk_retry_and_delete_ask_first(app, env, tmp_path, inline):
    jobs = [app.tasks.fail("boom") for _ in range(3)]
    inline(app, "low").run()
    no = typed("n\n", "retry", "--state", "failed", "--task", "fail",
               env=env, cwd=tmp_path)
    assert no.returncode == 1
    assert "Retry 3 failed jobs matching task=fail? [y/N]" in no.stdout
    assert {app.job(j.id).state for j in jobs} == {"failed"}
    yes = typed("y\n", "retry", "--state", "failed", "--task", "fail",
                env=env, cwd=tmp_path)
    assert yes.returncode == 0, yes.stderr
    assert "3 of 3 matching jobs retried" in yes.stdout
    assert {app.job(j.id).state for j in jobs} == {"pending"}
    inline(app, "low").run()
    closed = typed("", "delete", "--state", "failed", env=env, cwd=tmp_path)
    assert closed.returncode == 1 and app.count_jobs(state="failed") == 3
    gone = cli("delete", "--state", "failed", "--id", jobs[0].id, "--yes",
               env=env, cwd=tmp_path)
    assert gone.returncode == 0 and "1 of 1 matching jobs deleted" in \
        gone.stdout
    assert app.count_jobs(state="failed") == 2
    assert cli("delete", "--yes", "--state", "dead", env=env,
               cwd=tmp_path).stdout == "no dead jobs match\n"
    nothing = cli("delete", "--yes", env=env, cwd=tmp_path)
    assert nothing.returncode == 2 and "choose the jobs" in nothing.stderr
    both = cli("retry", jobs[1].id, "--state", "failed", env=env, cwd=tmp_path)
    assert both.returncode == 2 and "not both" in both.stderr
    wrong = cli("retry", "--state", "complete", env=env, cwd=tmp_path)
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    actions = [e["action"] for e in app.store.watchdog_events(limit=5)]
    assert actions[:2] == ["delete", "retry"]
