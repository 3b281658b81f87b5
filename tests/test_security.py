"""Signed and bounded messages, forged and oversized input, redaction, logs."""

import json
import os
import pickle
import sqlite3
import subprocess
import sys
import time
import zlib
import gzip

import pytest

from hueyq.backends import DEAD
from hueyq.exceptions import PayloadTooLarge

from conftest import HERE, RedisServer, _need_redis, wait_for, write_profile

pytestmark = pytest.mark.slow


class Canary:
    """Unpickling this creates a file: proof that a forged message ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def signed(tmp_path, backend_url, app_name, make_app):
    profile = write_profile(tmp_path / "signed.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"security": {"secret": "s3cret"}})
    return profile, make_app(profile)


def test_forged_pickles_written_into_the_backend_never_run(signed, runtime, tmp_path,
                                                           backend_url):
    profile, app = signed
    canary = str(tmp_path / "canary")
    storage = app.storage("high")
    raw = pickle.dumps(Canary(canary))
    fake_envelope = b"HQ1\x00\x00\x0e" + b'{"id":"forged"}' [:14] + raw
    if backend_url.startswith("sqlite"):
        db = sqlite3.connect(storage.filename)
        with db:
            for data in (raw, fake_envelope):
                db.execute("insert into hueyq_message (queue, task_id, name, state,"
                           " data) values (?, 'forged', 'x', 'pending', ?)",
                           (storage.qname, data))
        db.close()
    else:
        storage.enqueue(raw)
        storage.enqueue(fake_envelope)
    good = app.tasks.echo("signed")
    rt = runtime(profile)
    rt.wait_ready()
    assert good(blocking=True, timeout=20) == "signed"
    wait_for(lambda: storage.count(DEAD) == 2, 20, message="dead letters")
    reasons = sorted(m.reason for m in storage.list_messages(DEAD))
    assert reasons == ["bad_signature", "undecodable"]
    assert not os.path.exists(canary)
    assert rt.terminate() == 0


def test_payloads_over_the_limit_are_refused_at_enqueue(app):
    with pytest.raises(PayloadTooLarge, match="is 10.0 MiB; the limit is 1.0 MiB"):
        app.tasks.echo(b"x" * (10 << 20))
    assert app.storage("high").count("pending") == 0


def test_decompression_bombs_do_not_grow_the_worker(tmp_path, backend_url, app_name,
                                                    make_app, runtime):
    profile = write_profile(tmp_path / "p.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"security": {"compression": True}})
    app = make_app(profile)
    storage = app.storage("high")
    zbomb = b"HQ1\x01\x00\x02{}" + zlib.compress(b"\0" * (512 << 20), 9)
    gbomb = b"HQ1\x01\x00\x02{}" + gzip.compress(b"\0" * (512 << 20), 9)
    rt = runtime(profile)
    rt.wait_ready()
    assert app.tasks.echo("warm")(blocking=True, timeout=20) == "warm"
    # Warm the worker up with harmless junk of the bombs' size, so what is
    # measured is decompression, not caches filling up.
    for _ in range(3):
        storage.enqueue(b"HQ1\x00\x00\x02{}" + os.urandom(len(zbomb)))
    wait_for(lambda: storage.count(DEAD) == 3, 20, message="the junk")
    consumer = next(p for p in rt.consumers() if "high" in p.cmdline())
    time.sleep(0.5)
    before = consumer.memory_info().rss
    storage.enqueue(zbomb)
    storage.enqueue(gbomb)
    wait_for(lambda: storage.count(DEAD) == 5, 20, message="the bombs")
    time.sleep(0.5)
    grown = consumer.memory_info().rss - before
    # Uncapped, the 512 MiB bombs would show; capped, only noise remains.
    assert grown < 6 << 20, "worker grew by %d bytes" % grown
    reasons = sorted(m.reason for m in storage.list_messages(DEAD, limit=2))
    assert reasons == ["too_large", "undecodable"]
    assert app.tasks.echo("after")(blocking=True, timeout=20) == "after"
    assert rt.terminate() == 0


def test_health_follows_redis_going_away_and_coming_back(tmp_path, app_name,
                                                         redis_server, make_app):
    from hueyq import health
    profile = write_profile(tmp_path / "p.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    assert health.check(app, require_runtime=False).healthy
    redis_server.stop()
    report = health.check(app, require_runtime=False)
    assert not report.healthy
    assert report.errors[0].check == "backend"
    assert "Connection refused" in report.errors[0].message
    redis_server.start()
    wait_for(lambda: health.check(app, require_runtime=False).healthy, 20,
             message="health to recover")


def test_redis_passwords_never_show(tmp_path, make_app, runtime):
    _need_redis()
    server = RedisServer(tmp_path)
    server.proc = subprocess.Popen(
        ["redis-server", "--port", str(server.port), "--requirepass", "hunter2",
         "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = "redis://:hunter2@127.0.0.1:%d/0" % server.port
    try:
        import redis
        client = redis.Redis.from_url(url)
        wait_for(lambda: _ping(client), 10, message="redis")
        profile = write_profile(tmp_path / "p.toml", url,
                                "sqlite://%s" % (tmp_path / "store.db"), "pw")
        env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
        outputs = []
        for args in (("status",), ("status", "--json"), ("doctor",),
                     ("profiles", "show", str(profile))):
            result = subprocess.run([sys.executable, "-m", "hueyq", *args],
                                    capture_output=True, text=True, env=env,
                                    cwd=tmp_path)
            outputs.append(result.stdout + result.stderr)
        app = make_app(profile)
        rt = runtime(profile)
        rt.wait_ready()
        assert app.tasks.echo(1)(blocking=True, timeout=20) == 1
        assert rt.terminate() == 0
        outputs.append(rt.log())
        assert all("hunter2" not in out for out in outputs)
        assert "redis://:***@127.0.0.1" in outputs[-2]
    finally:
        server.stop()


def _ping(client):
    import redis
    try:
        return client.ping()
    except redis.RedisError:
        return False


def test_json_logs_carry_the_task_fields(app, profile_path, runtime):
    handle = app.tasks.echo("logged")
    rt = runtime(profile_path, extra_args=["--log-format", "json"])
    rt.wait_ready()
    assert handle(blocking=True, timeout=20) == "logged"
    wait_for(lambda: handle.id in rt.log(), 10, message="the task line")
    assert rt.terminate() == 0
    lines = [json.loads(l) for l in rt.log().splitlines() if l.startswith("{")]
    task_line = next(l for l in lines if l.get("job_id") == handle.id)
    assert task_line["queue"] == "high" and task_line["attempt"] == 1
    assert task_line["task"] == "apps.basic.echo"
    assert task_line["level"] == "INFO" and "complete" in task_line["message"]
    assert all(isinstance(l, dict) for l in lines)
