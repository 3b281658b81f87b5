"""The backend contract (hueyq.backends.base.Backend), checked on every
backend: each registered class implements every abstract method, opens from
its URL through the scheme registry, and behaves as the contract says
(lease, ack, release, dead; pause flags checked inside the lease; lease
recovery; listing with pagination; records; health). A new backend joins by
being added to the ``any_backend_url`` fixture in conftest.py; then this
file and tests/test_backends.py run on it. The App's one backend object
(hueyq.backends.AppBackend) is checked at the end."""

import inspect
import time
import uuid

import pytest
from huey.storage import BaseStorage, MemoryStorage

from hueyq import backends
from hueyq.backends import (DEAD, DONE, PENDING, RUNNING, SCHEDULED, Backend,
                            Finding, Lease, MessageInfo)
from hueyq.backends.sqlite import SqliteBackend
from hueyq.envelope import EnvelopeSerializer

SER = EnvelopeSerializer()
OWNER = "host:4242:Worker-1"


def message(name="tests.echo", eta=None, priority=None):
    task_id = uuid.uuid4().hex
    header = {"id": task_id, "name": name, "eta": eta, "t": time.time()}
    if priority is not None:
        header["priority"] = priority
    return task_id, SER.serialize_with_header(("payload", task_id), header)


def _registered_classes():
    return {backends.backend_class(name + "://x") for name in backends.SCHEMES}


# ---------------------------------------------------------------- shape

def test_every_registered_backend_implements_every_abstract_method():
    required = Backend.__abstractmethods__
    assert {"lease", "ack", "release", "requeue", "flags", "list_messages",
            "put_record", "health", "from_url"} <= required
    for cls in _registered_classes():
        assert issubclass(cls, Backend) and issubclass(cls, BaseStorage), cls
        assert not inspect.isabstract(cls), (cls, cls.__abstractmethods__)
        for name in required:
            assert getattr(cls, name) is not getattr(Backend, name), \
                "%s does not implement %s" % (cls.__name__, name)


def test_a_backend_missing_a_method_cannot_be_made():
    namespace = {name: (lambda self, *a, **k: None)
                 for name in Backend.__abstractmethods__ if name != "lease"}
    namespace["from_url"] = classmethod(lambda cls, url, name: cls(name))
    partial = type("Partial", (Backend, MemoryStorage), namespace)
    with pytest.raises(TypeError, match="lease"):
        partial("a.high")
    namespace["lease"] = lambda self, owner, ack=None: None
    whole = type("Whole", (Backend, MemoryStorage), namespace)
    assert isinstance(whole("a.high"), Backend)


def test_the_registry_opens_each_url_with_its_backend(any_backend_url,
                                                     app_name):
    s = backends.open_storage(any_backend_url, app_name, "low")
    try:
        assert type(s) is backends.backend_class(any_backend_url)
        assert (s.app_name, s.queue) == (app_name, "low")
        assert backends.check_url(any_backend_url).split(":", 1)[0] == \
            any_backend_url.split(":", 1)[0]
        assert isinstance(backends.driver_errors(), tuple)
        assert all(issubclass(e, BaseException)
                   for e in type(s).driver_errors)
    finally:
        s.close()


class Renamed(SqliteBackend):
    """A backend for a made-up scheme: ``edge://<file>``."""

    @classmethod
    def from_url(cls, url, name, **options):
        return cls(name, filename=url.split("://", 1)[1], **options)


def test_a_new_scheme_registers_in_one_place(monkeypatch, tmp_path):
    monkeypatch.setattr(backends, "SCHEMES", dict(backends.SCHEMES))
    backends.register_scheme(("Edge",), __name__ + ":Renamed",
                             lambda url: url, "edge:///path")
    url = "edge://%s" % (tmp_path / "q.db")
    assert backends.check_url(url) == url
    s = backends.open_storage(url, "a", "high")
    try:
        assert type(s) is Renamed
    finally:
        s.close()
    with pytest.raises(ValueError, match="edge:///path"):
        backends.check_url("ftp://host/q")


# ---------------------------------------------------------------- enqueue once

def test_enqueue_once_keeps_a_key_for_its_window(storage):
    (a, first), (b, second), (c, other) = message(), message(), message()
    assert storage.enqueue_once([(first, None, "k"), (second, None, "k"),
                                 (other, None, None)], 3600) == \
        [(a, True), (a, False), (c, True)]
    assert storage.count(PENDING) == 2 and storage.find(b) is None
    storage.ack(storage.lease(OWNER).handle)
    assert storage.find(a).state == DONE
    assert storage.enqueue_once([(second, None, "k")], 3600) == [(a, False)]
    assert storage.find(b) is None


def test_past_its_window_a_key_stays_while_its_job_lives(storage):
    (a, first), (b, second) = message(), message()
    assert storage.enqueue_once([(first, None, "k")], 0) == [(a, True)]
    assert storage.enqueue_once([(second, None, "k")], 0) == [(a, False)]
    lease = storage.lease(OWNER)
    assert lease.task_id == a
    assert storage.enqueue_once([(second, None, "k")], 0) == [(a, False)]
    storage.ack(lease.handle)
    assert storage.enqueue_once([(second, None, "k")], 0) == [(b, True)]
    assert storage.find(b).state == PENDING


def test_enqueue_once_of_a_scheduled_job_and_an_empty_batch(storage):
    (a, first), (_, second) = message(eta=time.time() + 60), message()
    assert storage.enqueue_once([], 10) == []
    assert storage.enqueue_once([(first, 5, "s")], 0) == [(a, True)]
    assert storage.find(a).state == SCHEDULED
    assert storage.enqueue_once([(second, 5, "s")], 0) == [(a, False)]
    assert storage.count(PENDING) == 0


RACER = """
import json, sys
import hueyq
app = hueyq.App(sys.argv[1])
@app.task(queue="high")
def echo(value):
    return value
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
ids = [echo(i, key="doc-%d" % i).id for i in range(1000)]
with open(sys.argv[2], "w") as out:
    json.dump(ids, out)
"""


def test_two_producers_racing_a_thousand_keys_make_one_job_each(
        any_backend_url, app_name, tmp_path, make_app):
    import json
    import subprocess
    import sys
    from conftest import write_profile
    profile_path = write_profile(
        tmp_path / "profile.toml", any_backend_url,
        "sqlite://%s" % (tmp_path / "store.db"), app_name)
    procs = [subprocess.Popen(
        [sys.executable, "-c", RACER, str(profile_path),
         str(tmp_path / ("ids%d.json" % n))], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True) for n in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline() == "ready\n"
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert [proc.wait(120) for proc in procs] == [0, 0]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdin.close()
            proc.stdout.close()
    first, second = (json.loads((tmp_path / ("ids%d.json" % n)).read_text())
                     for n in range(2))
    assert first == second and len(set(first)) == 1000
    storage = make_app(profile_path).storage("high")
    jobs = storage.list_messages(PENDING, limit=None)
    assert sorted(m.task_id for m in jobs) == sorted(first)


# ---------------------------------------------------------------- leases

def test_lease_ack_release_and_dead(storage):
    ids, datas = [], []
    for _ in range(3):
        task_id, data = message()
        storage.enqueue(data)
        ids.append(task_id)
        datas.append(data)
    first = storage.lease(OWNER)
    assert isinstance(first, Lease) and first.task_id == ids[0]
    assert bytes(first.data) == datas[0] and first.redeliveries == 0
    assert bytes(storage.message_data(first.handle)) == datas[0]
    assert [m.task_id for m in storage.leases()] == [ids[0]]
    # The ack of the first rides in the lease of the second.
    second = storage.lease(OWNER, ack=(first.handle, None, None))
    assert storage.find(ids[0]).state == DONE
    storage.ack(second.handle, DEAD, "failed")
    dead = storage.find(ids[1])
    assert (dead.state, dead.reason) == (DEAD, "failed")
    third = storage.lease(OWNER)
    storage.ack(third.handle, "release")
    again = storage.find(ids[2])
    assert (again.state, again.redeliveries) == (PENDING, 0)
    assert storage.release([storage.lease(OWNER).handle]) == 1
    assert storage.counts() == {PENDING: 1, SCHEDULED: 0, RUNNING: 0,
                                DEAD: 1}
    assert storage.forget([first.handle]) == 1
    assert storage.find(ids[0]) is None


OTHER = "other-host:77:Worker-2"


def test_an_ack_from_a_holder_that_lost_its_lease_is_fenced(storage, caplog):
    # A holds the lease; it is recovered (A looked dead) and B leases it
    # again: the same message, a new epoch. A's late ack, alone or riding
    # in its next lease, must not end B's lease, nor delete the job's
    # revoke key; it is counted and logged. B's ack ends it.
    task_id, data = message()
    storage.enqueue(data)
    storage.enqueue(message()[1])
    a = storage.lease(OWNER)
    a_fence = (OWNER, a.seq)
    assert storage.find(task_id).fence == a_fence
    assert storage.requeue(a.handle, "host stopped beating", count=False,
                           fence=a_fence) == PENDING
    b = storage.lease(OTHER)
    assert (b.handle, b.task_id) == (a.handle, task_id) and b.seq > a.seq
    storage.put_data("r:" + task_id, b"1")
    before = storage.fenced()
    with caplog.at_level("WARNING", logger="hueyq.backends"):
        assert storage.ack(a.handle, None, None, fence=a_fence) is False
        storage.ack_many([(a.handle, DEAD, "failed", a_fence)])
        assert storage.ack(a.handle, "release", fence=a_fence) is False
        nxt = storage.lease(OWNER, ack=(a.handle, None, None, a_fence))
    assert nxt is not None and nxt.task_id != task_id
    assert storage.fenced() == before + 4
    assert "refused the ack of message" in caplog.text
    held = storage.find(task_id)
    assert (held.state, held.owner, held.lease_seq) == \
        (RUNNING, OTHER, b.seq)
    assert storage.has_data_for_key("r:" + task_id)
    # Another supervisor's late recovery of A's lease is refused too.
    assert storage.requeue(a.handle, "late", fence=a_fence) is None
    assert storage.find(task_id).state == RUNNING
    assert storage.ack(b.handle, None, None, fence=(OTHER, b.seq)) is True
    assert storage.find(task_id).state == DONE
    assert not storage.has_data_for_key("r:" + task_id)
    # Once ended, a second ack in that epoch is refused as well.
    assert storage.ack(b.handle, None, None, fence=(OTHER, b.seq)) is False
    assert storage.fenced() == before + 5


def test_an_ack_without_a_fence_ends_whoever_holds_the_lease(storage):
    # What callers that name no delivery get (as before fencing).
    task_id, data = message()
    storage.enqueue(data)
    a = storage.lease(OWNER)
    storage.requeue(a.handle, count=False)
    storage.lease(OTHER)
    before = storage.fenced()
    assert storage.ack(a.handle) is True
    assert storage.find(task_id).state == DONE
    assert storage.fenced() == before


def test_a_batch_lease_carries_what_a_lease_carries(storage):
    before = time.time()
    for _ in range(3):
        storage.enqueue(message()[1])
    single = storage.lease(OWNER)
    batch = storage.lease_batch(OWNER, "tests.echo", 5)
    assert len(batch) == 2
    for lease in [single] + batch:
        assert lease.name == "tests.echo"
        assert lease.meta == storage.find(lease.task_id).meta
        assert isinstance(lease.meta.get("t"), float)
        assert before - 1 <= lease.enqueued_at <= time.time() + 1
        assert lease.seq is not None and lease.redeliveries == 0
    assert batch[0].enqueued_at <= batch[1].enqueued_at


def test_pause_flags_are_checked_inside_the_lease(storage):
    task_id, data = message()
    storage.enqueue(data)
    for name in ("paused:user", "paused:memory"):
        storage.set_flag(name, {"by": name})
        assert name in storage.flags()
        assert storage.lease(OWNER) is None
        assert storage.lease_batch(OWNER, "tests.echo", 5) == []
        assert storage.clear_flag(name) is True
        assert storage.clear_flag(name) is False
    storage.set_flag("note", {"x": 1})  # not a pause
    assert storage.flags() == {"note": {"x": 1}}
    assert storage.lease(OWNER).task_id == task_id


def test_recovery_requeues_then_dead_letters_as_poison(storage):
    task_id, data = message()
    storage.enqueue(data)
    lease = storage.lease(OWNER)
    assert storage.annotate(lease.handle, "killed: memory") is True
    assert storage.requeue(lease.handle, "worker died") == PENDING
    back = storage.find(task_id)
    assert (back.state, back.redeliveries, back.last_error) == \
        (PENDING, 1, "worker died")
    assert storage.requeue(lease.handle) is None  # no longer leased
    lease = storage.lease(OWNER)
    assert (lease.redeliveries, lease.last_error) == (1, "worker died")
    assert storage.requeue(lease.handle, "again", max_redeliveries=1) == DEAD
    assert storage.find(task_id).reason == "poison"
    assert storage.revive(task_id).state == PENDING
    assert storage.find(task_id).redeliveries == 0


# ---------------------------------------------------------------- listing

def test_listing_pages_in_lease_order(storage):
    ids = []
    for priority in (1, 5, 5, 0, 3, 5, 2):
        task_id, data = message(priority=priority)
        storage.enqueue(data, priority)
        ids.append((priority, task_id))
    order = [t for _, t in sorted(ids, key=lambda p: -p[0])]  # stable: FIFO
    pages = [storage.list_messages(PENDING, limit=3, offset=o)
             for o in (0, 3, 6, 9)]
    assert [len(p) for p in pages] == [3, 3, 1, 0]
    assert [m.task_id for p in pages for m in p] == order
    assert all(isinstance(m, MessageInfo) and m.queue == "high"
               for p in pages for m in p)
    assert storage.count(PENDING) == 7
    newest = storage.newest(2)
    assert [m.task_id for m in newest] == [ids[-1][1], ids[-2][1]]
    for task_id in order[:3]:
        storage.cancel(task_id)
    dead = storage.list_messages(DEAD, limit=2)
    assert [m.reason for m in dead] == ["cancelled"] * 2
    assert storage.list_messages(DEAD, limit=2, offset=2)[0].task_id not in \
        {m.task_id for m in dead}
    assert len(storage.drain()) == 4 and storage.count(PENDING) == 0


def test_scheduled_messages_become_pending_when_due(storage):
    eta = time.time() + 60
    task_id, data = message(eta=eta)
    storage.enqueue(data)
    assert storage.find(task_id).state == SCHEDULED
    assert storage.schedule_size() == 1 and storage.queue_size() == 0
    assert storage.promote_due(eta - 1) == 0
    assert storage.promote_due(eta + 1) == 1
    assert storage.find(task_id).state == PENDING
    assert storage.read_schedule(None) == []


# ---------------------------------------------------------------- records

def test_records_are_the_apps_and_filtered_by_prefix(storage,
                                                     any_backend_url,
                                                     app_name):
    storage.put_record("runtime:h:1", {"pid": 1}, ttl=60)
    storage.put_record("gpu:h:2", {"used": 2})
    other = backends.open_storage(any_backend_url, app_name, "low")
    try:
        assert other.records("runtime:") == {"runtime:h:1": {"pid": 1}}
        ages = other.record_ages()
        assert set(ages) == {"runtime:h:1", "gpu:h:2"}
        assert all(0 <= age < 60 for _, age in ages.values())
        other.delete_record("gpu:h:2")
        assert storage.records() == {"runtime:h:1": {"pid": 1}}
    finally:
        other.close()


def test_output_is_numbered_read_after_a_seq_and_per_job(storage):
    job = uuid.uuid4().hex
    assert storage.read_output(job) == backends.OutputPage([])
    seqs = [storage.append_output(job, '"t%d"' % i, 100, 10_000, 60)
            for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    page = storage.read_output(job)
    assert [c.data for c in page.chunks] == ['"t%d"' % i for i in range(5)]
    assert (page.last_seq, page.dropped) == (5, 0)
    assert all(abs(c.at - time.time()) < 60 for c in page.chunks)
    later = storage.read_output(job, after=3)
    assert [c.seq for c in later.chunks] == [4, 5]
    assert [c.seq for c in storage.read_output(job, 1, limit=2).chunks] == \
        [2, 3]
    assert storage.read_output(job, after=5).chunks == []
    assert {c.run for c in page.chunks} == {None}
    other = uuid.uuid4().hex
    assert storage.append_output(other, "1", 100, 10_000, 60, run=7) == 1
    # A job's stream is the app's: any queue's storage reads it.
    assert storage.read_output(other).last_seq == 1
    assert storage.read_output(other).chunks[0].run == 7


def test_output_drops_its_oldest_chunks_past_the_bound(storage):
    job = uuid.uuid4().hex
    for i in range(10):
        storage.append_output(job, '"%02d"' % i, 4, 1000, 60)
    page = storage.read_output(job)
    assert [c.seq for c in page.chunks] == [7, 8, 9, 10]
    assert (page.last_seq, page.dropped) == (10, 6)
    big = uuid.uuid4().hex
    for size in (4, 4, 4, 8):             # bytes: 4, 8, 12, then 20 > 12
        storage.append_output(big, "x" * size, 100, 12, 60)
    page = storage.read_output(big)
    assert [len(c.data) for c in page.chunks] == [4, 8]
    assert (page.last_seq, page.dropped) == (4, 2)


def test_an_output_waiter_wakes_on_an_append(storage):
    import threading
    job = uuid.uuid4().hex
    waiter = storage.output_waiter(job)
    try:
        started = time.monotonic()
        waiter.wait(0, 0.2)                 # nothing: waits the timeout
        assert time.monotonic() - started >= 0.15
        timer = threading.Timer(0.2, storage.append_output,
                                (job, '"x"', 10, 100, 60))
        timer.start()
        started = time.monotonic()
        waiter.wait(0, 10)
        assert time.monotonic() - started < 5
        timer.join()
        assert storage.read_output(job).last_seq == 1
    finally:
        waiter.close()


def test_output_is_deleted_and_purged(storage):
    jobs = [uuid.uuid4().hex for _ in range(3)]
    for job in jobs:
        storage.append_output(job, "1", 10, 100, 60)
    assert storage.delete_output(jobs[:1]) == 1
    assert storage.read_output(jobs[0]).last_seq == 0
    assert storage.delete_output([]) == 0
    purged = storage.purge_output(time.time() + 1)
    if isinstance(storage, backends.backend_class("redis://x")):
        assert purged == 0              # a TTL expires them instead
        assert storage.conn.ttl(storage.output_prefix + jobs[1]) > 0
    else:
        assert purged == 2
        assert storage.read_output(jobs[1]).last_seq == 0


def test_health_and_words(storage):
    storage.ping()
    findings = storage.health()
    assert findings and all(isinstance(f, Finding) and f.level in (
        "ok", "warning", "error") for f in findings)
    assert isinstance(storage.describe(), str) and storage.describe()
    line = storage.explain(RuntimeError("boom"))
    assert "boom" in line and "\n" not in line
    assert isinstance(storage.checkpoint(), bool)
    identity = storage.identity()
    assert identity is None or isinstance(identity, tuple)


# ---------------------------------------------------------------- the App's

def test_the_app_has_one_backend_for_its_queues_and_its_own_parts(app):
    backend = app.queue_backend
    assert all(backend.storage(q) is app.storage(q) for q in app.queues)
    assert backend.home is app.storage(app.queues[0])
    backend.put_record("note", {"n": 1})
    assert all(app.storage(q).records("note") == {"note": {"n": 1}}
               for q in app.queues)
    last = app.queues[-1]
    backend.set_flag(last, "paused:user", {"by": "test"})
    assert "paused:user" in backend.flags(last)
    assert all("paused:user" not in backend.flags(q) for q in app.queues[:-1])
    assert backend.clear_flag(last, "paused:user") is True
    backend.results.put_data("k", b"v")
    assert app.storage(last).peek_data("k") == b"v"
    assert backend.describe() == app.storage(last).describe()
    backend.ping()


def test_the_redis_scripts_are_files_shipped_as_package_data():
    import configparser
    import os
    from hueyq.backends import redis as redis_backend
    parts = {p for ps in redis_backend._SCRIPT_PARTS.values() for p in ps}
    assert sorted(os.listdir(redis_backend._LUA_DIR)) == \
        sorted(p + ".lua" for p in parts)
    assert set(redis_backend.SCRIPTS) == set(redis_backend._SCRIPT_PARTS)
    setup = configparser.ConfigParser()
    setup.read(os.path.join(os.path.dirname(__file__), "..", "setup.cfg"))
    shipped = setup["options.package_data"]["hueyq.backends"]
    assert "lua/*.lua" in [p.strip() for p in shipped.split(",")]
