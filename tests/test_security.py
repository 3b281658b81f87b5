"""Signed and bounded messages, forged and oversized input, redaction, logs."""

import gzip
import json
import os
import pickle
import sqlite3
import stat
import struct
import subprocess
import sys
import time
import uuid
import zlib

import pytest

from hueyq.backends import DEAD
from hueyq.backends.sql import SqlBackend
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
    if isinstance(storage, SqlBackend):
        for data in (raw, fake_envelope):
            as_attacker(storage, "insert into hueyq_message (queue, task_id,"
                        " name, state, data) values (?, 'forged', 'x',"
                        " 'pending', ?)", (storage.qname, data))
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
    # Measured once the worker is idle: the dead letters' records written.
    wait_for(lambda: len(app.jobs(state="dead")) == 3, 20,
             message="the junk's records")
    consumer = next(p for p in rt.consumers() if "high" in p.cmdline())
    before = consumer.memory_info().rss
    storage.enqueue(zbomb)
    storage.enqueue(gbomb)
    wait_for(lambda: storage.count(DEAD) == 5, 20, message="the bombs")
    wait_for(lambda: len(app.jobs(state="dead")) == 5, 20,
             message="the bombs' records")
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


# ---------------------------------------------------------------- forgeries
#
# What an attacker who can write to the backend does: rows straight into
# the SQLite file or the PostgreSQL database, keys straight into Redis,
# never through hueyq's enqueue.

def as_attacker(storage, sql: str, params: tuple = ()):
    """Run one statement (``?`` for each parameter) on a SQL backend's
    database through a connection of its own; its first row, if any."""
    if hasattr(storage, "filename"):
        db = sqlite3.connect(storage.filename)
    else:
        import psycopg
        db = psycopg.connect(storage.dsn)
    try:
        cur = db.execute(sql.replace("?", storage.placeholder), params)
        row = cur.fetchone() if cur.description else None
        db.commit()
        return row
    finally:
        db.close()


def forge(storage, data: bytes, task_id: str = "forged", name: str = "x",
          info=None, state: str = "pending", owner: "str | None" = None):
    """Write one message into the backend by hand; returns its handle."""
    now = time.time()
    if isinstance(storage, SqlBackend):
        handle = as_attacker(
            storage, "insert into hueyq_message (queue, task_id, name, state,"
            " enqueued_at, updated_at, owner, meta, data) values"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?) returning id",
            (storage.qname, task_id, name, state, now, now, owner, info,
             data))[0]
    else:
        handle = "9%015d" % (uuid.uuid4().int % 10 ** 15)
        keys = storage.keys
        conn = storage.conn
        conn.hset(keys["msg"], handle, data)
        conn.hset(keys["info"], handle, info if info is not None else json.dumps(
            {"task_id": task_id, "name": name, "state": state, "priority": 0,
             "enqueued_at": now, "updated_at": now, "redeliveries": 0,
             "owner": owner, "meta": {}, "size": len(data)}))
        conn.hset(keys["ids"], task_id, handle)
        conn.zadd(keys["running" if state == "running" else "pending"],
                  {handle: now if state == "running" else 0})
    storage.notify()
    return handle


def envelope(header: bytes, body: bytes, flags: int = 0,
             size: "int | None" = None) -> bytes:
    return b"HQ1" + bytes([flags]) + struct.pack(
        ">H", len(header) if size is None else size) + header + body


def hueyq_cli(profile, *args):
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, env=env,
                          timeout=60)


def test_malformed_headers_are_dead_lettered_once_with_a_record(
        app, profile_path, runtime):
    storage = app.storage("high")
    body = pickle.dumps("not a task either")
    deep = b"[" * 60_000
    handles = [forge(storage, envelope(deep, body), "deep"),
               forge(storage, envelope(b'{"eta":"tomorrow"}', body), "eta"),
               forge(storage, envelope(b"{}", body, size=65535), "length")]
    rt = runtime(profile_path)
    rt.wait_ready()
    assert app.tasks.echo("after")(blocking=True, timeout=20) == "after"
    wait_for(lambda: storage.count(DEAD) == 3, 20, message="dead letters")
    dead = storage.list_messages(DEAD)
    assert {m.reason for m in dead} == {"undecodable"}
    assert {m.redeliveries for m in dead} == {0}          # dead-lettered once
    ids = {"undecodable-high-%s" % h for h in handles}
    assert {m.task_id for m in dead} == ids
    wait_for(lambda: {j.id for j in app.jobs(state="dead")} == ids, 20,
             message="the store records")
    listed = hueyq_cli(profile_path, "jobs", "--state", "dead")
    assert listed.returncode == 0 and all(i in listed.stdout for i in ids)
    assert all("envelope header" in app.job(i).error for i in ids)
    assert rt.terminate() == 0
    assert "Traceback" not in rt.log() and "died" not in rt.log()


def _vm(process, field: str) -> int:
    with open("/proc/%d/status" % process.pid) as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def _store_bytes(tmp_path) -> int:
    return sum(os.path.getsize(p) for p in tmp_path.glob("store.db*"))


def test_a_giant_forged_message_never_enters_the_worker(
        app, profile_path, runtime, tmp_path, backend_url):
    storage = app.storage("high")
    rt = runtime(profile_path)
    rt.wait_ready()
    for i in range(3):
        assert app.tasks.echo(i)(blocking=True, timeout=20) == i
    consumer = next(p for p in rt.consumers() if "high" in p.cmdline())
    # Measured once the recorder's writes are in the store.
    wait_for(lambda: len(app.jobs(state="complete")) == 3, 20,
             message="the echoes' records")
    rss, peak, store = (consumer.memory_info().rss, _vm(consumer, "VmHWM"),
                        _store_bytes(tmp_path))
    forge(storage, envelope(b'{"name":"giant"}', os.urandom(50 << 20)),
          "giant")
    dead = wait_for(lambda: app.jobs(state="dead"), 30,
                    message="the dead letter's record")
    job_id = dead[0].id
    assert job_id.startswith("too_large-high-")
    assert app.tasks.echo("after")(blocking=True, timeout=20) == "after"
    wait_for(lambda: len(app.jobs(state="complete")) == 4, 20,
             message="the last echo's record")
    grown = consumer.memory_info().rss - rss
    peaked = _vm(consumer, "VmHWM") - peak
    stored = _store_bytes(tmp_path) - store
    print("50 MiB forged message on %s: worker RSS %+.1f MiB (peak %+.1f MiB),"
          " store %+.1f KiB" % (backend_url.split(":")[0], grown / 2 ** 20,
                                peaked / 2 ** 20, stored / 1024))
    assert grown < 10 << 20 and stored < 1 << 20
    job = app.job(job_id)
    assert job.reason == "too_large" and "50.0 MiB" in job.error
    kept = app.store.payload(job_id)
    assert kept.startswith(b'HQ1\x00\x00\x10{"name":"giant"}')
    assert len(kept) <= 66 * 1024
    assert rt.terminate() == 0
    storage.purge_dead(before=time.time() + 1, keep=0)


def test_symlinks_beside_the_database_are_never_followed(
        tmp_path, app_name, make_app, inline, caplog):
    db = tmp_path / "queue.db"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    hard = tmp_path / "hard-victim"
    hard.write_bytes(b"precious too")
    target = tmp_path / "made-by-hueyq"
    os.symlink(target, str(db) + ".lock")                       # dangling
    os.symlink(victim, "%s.%s.high.wake" % (db, app_name))      # a victim
    os.link(hard, "%s.%s.medium.wake" % (db, app_name))         # not a FIFO
    profile = write_profile(tmp_path / "p.toml", "sqlite://%s" % db,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    handles = [app.tasks.echo("e"), app.tasks.add(1, 2)]       # notify()
    for queue in ("high", "medium"):
        app.storage(queue).wait(0.01)                           # a consumer
        inline(app, queue).run()
    assert [h(blocking=True, timeout=5) for h in handles] == ["e", 3]
    assert victim.read_bytes() == b"precious"
    assert hard.read_bytes() == b"precious too"
    assert not os.path.lexists(target)
    assert os.path.islink(str(db) + ".lock")
    refused = [r.getMessage() for r in caplog.records
               if "not using the" in r.getMessage()]
    assert any("lock file" in m and "symlink" in m for m in refused)
    assert any("wake-up FIFO" in m for m in refused)


def test_bad_records_are_skipped_and_lease_recovery_goes_on(
        app, profile_path, runtime, backend_url):
    from hueyq.webui import create_app
    storage = app.storage("high")
    taken = app.tasks.echo("taken")
    lease = storage.lease("%s:%d:Worker-1" % (app.host_id, 2 ** 22 + 1))
    assert lease.task_id == taken.id           # its owner is a dead process
    first = app.tasks.echo("first")
    if backend_url.startswith("redis"):
        for hid in (lease.handle, storage.find(first.id).handle):
            storage.conn.hset(storage.keys["info"], hid, b"{not json")
        storage.conn.hset(storage.keys["records"], "runtime:x", b"[1, 2")
        storage.conn.hset(storage.keys["flags"], "admission", b"lots")
    else:
        # PostgreSQL's records carry when they were written.
        written = ("", "") if backend_url.startswith("sqlite") else (
            ", written", ", now()")
        for sql, params in (
                ("update hueyq_message set meta = '{not json' where task_id"
                 " = ?", (first.id,)),
                ("insert into hueyq_record (key, value%s) values (?, '[1, 2'"
                 "%s)" % written, ("%s:runtime:x" % app.name,)),
                ("insert into hueyq_flag values (?, 'admission', 'lots')",
                 (storage.qname,))):
            as_attacker(storage, sql, params)
    web = create_app(app).test_client()
    for path in ("/api/workers", "/metrics", "/api/queues", "/api/jobs",
                 "/api/jobs?state=running", "/api/jobs?state=pending"):
        assert web.get(path).status_code == 200, path
    for args in (("status",), ("status", "--json"), ("jobs",)):
        result = hueyq_cli(profile_path, *args)
        assert result.returncode == 0 and "Traceback" not in result.stderr, args
    rt = runtime(profile_path)
    rt.wait_ready()
    assert first(blocking=True, timeout=30) == "first"
    assert taken(blocking=True, timeout=30) == "taken"       # recovered
    assert web.get("/api/workers").status_code == 200
    assert rt.terminate() == 0
    assert "Traceback" not in rt.log()


def test_an_unverified_message_never_touches_another_job(signed, runtime,
                                                         backend_url):
    from huey.registry import Message
    from hueyq.envelope import EnvelopeSerializer
    profile, app = signed
    storage = app.storage("high")
    handle = app.tasks.echo("mine")
    rt = runtime(profile)
    rt.wait_ready()
    assert handle(blocking=True, timeout=20, preserve=True) == "mine"
    wait_for(lambda: app.store.get(handle.id) and app.store.get(handle.id)[
        "state"] == "complete" and app.find_message(handle.id) is None, 20,
        message="the job's record")
    forged = EnvelopeSerializer().serialize(Message(
        handle.id, "apps.basic.echo", None, 0, 0, None, ("forged",), {},
        None, None, None, None, None, None, None))
    forged_handle = forge(storage, forged, handle.id, "apps.basic.echo")
    own = "bad_signature-high-%s" % forged_handle
    wait_for(lambda: [j.id for j in app.jobs(state="dead")] == [own], 20,
             message="the forged message's own record")
    job = app.job(handle.id)
    assert (job.state, job.result, job.reason, job.error, job.has_payload) == \
        ("complete", "mine", None, None, False)
    assert app.job(own).reason == "bad_signature"
    assert app.huey("high").get(handle.id, peek=True) == "mine"
    assert rt.terminate() == 0


# ---------------------------------------------------------------- small ones

def test_a_password_in_the_query_string_never_shows(tmp_path, redis_session,
                                                     app_name):
    url = redis_session.url + "?password=hunter2&socket_timeout=5"
    profile = write_profile(tmp_path / "p.toml", url, "postgresql://u@h/db?"
                            "sslpassword=swordfish", app_name)
    outputs = [hueyq_cli(profile, *args) for args in (
        ("profiles", "show", str(profile)), ("profiles", "show", "--json",
                                             str(profile)), ("doctor",))]
    text = "".join(r.stdout + r.stderr for r in outputs)
    assert "?password=***&socket_timeout=5" in outputs[0].stdout
    assert "hunter2" not in text and "swordfish" not in text


def test_database_files_are_private(tmp_path, app_name, make_app, inline):
    old = os.umask(0o022)
    try:
        profile = write_profile(tmp_path / "p.toml", "sqlite://%s" % (
            tmp_path / "data" / "queue.db"), "sqlite://%s" % (
            tmp_path / "data" / "store.db"), app_name)
        app = make_app(profile)
        app.tasks.echo("x")
        inline(app, "high").run()
        app.storage("high").wait(0.01)          # the consumer's FIFO
    finally:
        os.umask(old)
    made = sorted(p.name for p in (tmp_path / "data").iterdir())
    for name in ("queue.db", "queue.db-wal", "queue.db-shm", "queue.db.lock",
                 "store.db", "store.db-wal", "store.db-shm"):
        assert name in made
    for path in (tmp_path / "data").iterdir():
        mode = stat.S_IMODE(path.lstat().st_mode)
        assert mode & 0o027 == 0, "%s is %o" % (path.name, mode)
    assert stat.S_IMODE((tmp_path / "data").stat().st_mode) & 0o027 == 0


def test_control_characters_in_ids_are_escaped_in_logs_and_tables(
        app, profile_path, runtime):
    forged_id = "x\n2026-01-01 00:00:00 INFO    hueyq.worker: all fine\x1b[2J"
    handle = app.tasks.echo.s("hi", id=forged_id)
    app.huey("high").enqueue(handle)
    rt = runtime(profile_path)
    rt.wait_ready()
    wait_for(lambda: app.store.get(forged_id) and app.store.get(forged_id)[
        "state"] == "complete", 20, message="the job")
    assert rt.terminate() == 0
    log = rt.log()
    assert "\x1b" not in log and "\nx\n" not in log
    assert not any(line.startswith("2026-01-01 00:00:00") for line in
                   log.splitlines())
    assert "job=x\\n2026-01-01" in log
    for args in (("jobs",), ("job", forged_id)):
        shown = hueyq_cli(profile_path, *args)
        assert shown.returncode == 0
        assert "\x1b" not in shown.stdout and "x\\n2026" in shown.stdout
        assert not any(line.startswith("2026-01-01") for line in
                       shown.stdout.splitlines())


def test_encryption_without_a_secret_refuses_plaintext(tmp_path, backend_url,
                                                       app_name, make_app,
                                                       runtime):
    fernet = pytest.importorskip("cryptography.fernet")
    key = fernet.Fernet.generate_key().decode()
    profile = write_profile(tmp_path / "enc.toml", backend_url, "sqlite://%s" % (
        tmp_path / "store.db"), app_name, {
            "security": {"encryption_keys": [key]},
            "store": {"args_preview": True}})
    app = make_app(profile)
    storage = app.storage("high")
    canary = str(tmp_path / "canary")
    forge(storage, envelope(b'{"name":"apps.basic.echo"}',
                            pickle.dumps(Canary(canary))))
    secret = app.tasks.echo("the launch codes")
    assert b"launch codes" not in storage.message_data(storage.find(
        secret.id).handle)
    assert "launch" not in json.dumps(storage.find(secret.id).meta)
    rt = runtime(profile)
    rt.wait_ready()
    assert secret(blocking=True, timeout=20) == "the launch codes"
    dead = wait_for(lambda: storage.list_messages(DEAD), 20, message="dead")
    assert dead[0].reason == "undecodable" and not os.path.exists(canary)
    wait_for(lambda: app.job(secret.id).args == "'the launch codes'", 20,
             message="the worker's preview of the decrypted arguments")
    error = wait_for(lambda: app.job(dead[0].task_id).error, 20,
                     message="the dead job's recorded error")
    assert "not encrypted" in error
    assert rt.terminate() == 0
