"""Backend contract: one suite, run against a real SQLite file and a real
redis-server. Every atomic move of a message is checked here."""

import datetime
import threading
import time
import uuid

import pytest

from hueyq import backends
from hueyq.backends import DEAD, DONE, PENDING, RUNNING, SCHEDULED
from hueyq.envelope import EnvelopeSerializer

from conftest import RedisServer, wait_for

SER = EnvelopeSerializer()


def msg(task_id=None, eta=None, name="tests.echo", memory=None):
    task_id = task_id or uuid.uuid4().hex
    header = {"id": task_id, "name": name, "eta": eta, "t": time.time(),
              "time_limit": 5}
    if memory:
        header["memory"] = memory
    return task_id, SER.serialize_with_header(("payload", task_id), header)


def owner(n=1):
    return "host:%d:Worker-%d" % (12345, n)


def test_lease_ack_done_forget(storage):
    tid, data = msg()
    storage.enqueue(data)
    assert storage.counts() == {PENDING: 1, SCHEDULED: 0, RUNNING: 0, DEAD: 0}
    lease = storage.lease(owner())
    assert lease.task_id == tid and bytes(lease.data) == data
    assert lease.redeliveries == 0 and lease.last_error is None
    assert storage.lease(owner(2)) is None
    running = storage.leases()
    assert [(m.task_id, m.owner, m.meta["time_limit"]) for m in running] == \
        [(tid, owner(), 5)]
    assert running[0].pid == 12345 and running[0].worker == "Worker-1"
    storage.ack(lease.handle)
    assert storage.counts()[RUNNING] == 0
    assert storage.find(tid).state == DONE
    assert storage.forget([lease.handle]) == 1
    assert storage.find(tid) is None


def test_priority_then_fifo(storage):
    order = []
    for priority in (0, 10, 0, 10, 5):
        tid, data = msg()
        storage.enqueue(data, priority)
        order.append((priority, tid))
    expected = [t for _, t in sorted(order, key=lambda o: -o[0])]
    taken = []
    while True:
        lease = storage.lease(owner())
        if lease is None:
            break
        taken.append(lease.task_id)
        storage.ack(lease.handle)
    assert taken == expected
    assert [bytes(d) for d in storage.enqueued_items()] == []


def test_ack_rides_in_the_next_lease(storage):
    for _ in range(2):
        storage.enqueue(msg()[1])
    first = storage.lease(owner())
    second = storage.lease(owner(), ack=(first.handle, None, None))
    assert second is not None and second.handle != first.handle
    assert [m.handle for m in storage.leases()] == [second.handle]
    assert storage.lease(owner(), ack=(second.handle, DEAD, "failed")) is None
    assert storage.leases() == []
    dead = storage.list_messages(DEAD)
    assert [(m.handle, m.reason) for m in dead] == [(second.handle, "failed")]


def test_release_and_requeue_go_back_to_the_front(storage):
    tids = []
    for _ in range(3):
        tid, data = msg()
        storage.enqueue(data)
        tids.append(tid)
    first = storage.lease(owner())
    assert storage.release([first.handle]) == 1
    again = storage.lease(owner())
    assert again.task_id == tids[0] and again.redeliveries == 0
    assert storage.requeue(again.handle, "worker died", max_redeliveries=3) == PENDING
    third = storage.lease(owner())
    assert third.task_id == tids[0]
    assert third.redeliveries == 1 and third.last_error == "worker died"


def test_poison_after_max_redeliveries(storage):
    tid, data = msg()
    storage.enqueue(data)
    for expected in (PENDING, PENDING, DEAD):
        lease = storage.lease(owner())
        assert lease.task_id == tid
        assert storage.requeue(lease.handle, "crashed", max_redeliveries=2) == expected
    assert storage.lease(owner()) is None
    dead = storage.find(tid)
    assert dead.state == DEAD and dead.reason == "poison"
    assert dead.redeliveries == 3
    assert storage.message_data(dead.handle) == data


def test_kill_annotation_survives_a_purposeful_requeue(storage):
    storage.enqueue(msg()[1])
    lease = storage.lease(owner())
    assert storage.annotate(lease.handle, "killed: time limit exceeded (1s)")
    assert storage.requeue(lease.handle, "killed: time limit exceeded (1s)",
                           count=False) == PENDING
    again = storage.lease(owner())
    assert again.redeliveries == 0
    assert again.last_error == "killed: time limit exceeded (1s)"
    assert storage.requeue("no-such-handle" if isinstance(again.handle, str)
                           else 10 ** 9) is None


def test_scheduled_messages_are_promoted_atomically(storage):
    now = time.time()
    tid, data = msg(eta=now + 60)
    storage.enqueue(data)
    storage.add_to_schedule(msg()[1], datetime.datetime.utcnow()
                            + datetime.timedelta(seconds=120))
    assert storage.counts()[SCHEDULED] == 2 and storage.count(PENDING) == 0
    assert storage.lease(owner()) is None
    assert storage.promote_due(now + 1) == 0
    assert storage.promote_due(now + 61) == 1
    assert storage.lease(owner()).task_id == tid
    assert storage.schedule_size() == 1 and len(storage.scheduled_items()) == 1
    assert storage.read_schedule(datetime.datetime.utcnow()
                                 + datetime.timedelta(seconds=200)) == []
    assert storage.count(PENDING) == 1


def test_a_message_is_due_at_exactly_its_eta(storage):
    # huey's test_consumer_schedule_task runs a task at exactly its eta;
    # microseconds that round up in 14 digits must not push it later.
    eta = datetime.datetime.utcnow().replace(microsecond=999_996) + \
        datetime.timedelta(days=1)
    storage.add_to_schedule(msg()[1], eta)
    assert storage.read_schedule(eta - datetime.timedelta(
        microseconds=100)) == []
    assert storage.count(PENDING) == 0
    assert storage.read_schedule(eta) == []
    assert storage.count(PENDING) == 1 and storage.schedule_size() == 0


def test_a_paused_queue_hands_out_nothing(storage):
    storage.enqueue(msg()[1])
    storage.set_flag("paused:user", {"by": "user"})
    storage.set_flag("paused:memory", {"by": "memory"})
    assert set(storage.flags()) == {"paused:user", "paused:memory"}
    assert storage.lease(owner()) is None
    assert storage.clear_flag("paused:user")
    assert storage.lease(owner()) is None
    assert storage.clear_flag("paused:memory")
    assert not storage.clear_flag("paused:memory")
    assert storage.lease(owner()) is not None


GIB = 1024 ** 3


def admission_queue(storage) -> "tuple[str, str, str]":
    """A queue under admission with jobs declaring 3 GiB, 1 GiB and nothing,
    enqueued in that order; their ids."""
    storage.admission = True
    ids = []
    for memory in (3 * GIB, 1 * GIB, None):
        task_id, data = msg(memory=memory)
        storage.enqueue(data)
        ids.append(task_id)
    return tuple(ids)


def test_admission_starts_a_task_only_when_its_memory_fits(storage):
    gib = GIB
    big, small, plain = admission_queue(storage)
    storage.set_flag("admission", 2 * gib)
    first = storage.lease(owner())
    assert first.task_id == small
    second = storage.lease(owner(2))
    assert second.task_id == plain
    assert storage.lease(owner(3)) is None
    assert storage.find(big).state == PENDING
    storage.ack(first.handle)
    assert storage.lease(owner(3)) is None
    storage.set_flag("admission", 4 * gib)
    assert storage.lease(owner(3)).task_id == big


def test_memory_room_and_jobs_waiting_for_it(storage):
    gib = GIB
    big, small, _ = admission_queue(storage)
    assert storage.memory_room() is None          # no budget, no admission
    storage.set_flag("admission", 2 * gib)
    assert storage.memory_room() == 2 * gib
    assert storage.waiting_for_memory(2 * gib) == 1
    running = storage.lease(owner())
    assert running.task_id == small
    assert storage.memory_room() == 1 * gib       # less what running declared
    assert storage.waiting_for_memory(storage.memory_room()) == 1
    assert storage.waiting_for_memory(1 * gib, limit=1) == 1
    storage.ack(running.handle)
    storage.set_flag("admission", 4 * gib)
    assert storage.waiting_for_memory(storage.memory_room()) == 0
    assert storage.find(big).state == PENDING


def test_cancel_drain_revive(storage):
    a, data_a = msg()
    b, data_b = msg(eta=time.time() + 60)
    c, data_c = msg()
    for data in (data_a, data_b, data_c):
        storage.enqueue(data)
    running = storage.lease(owner())
    assert running.task_id == a
    assert storage.cancel(a) == []
    cancelled = storage.cancel(b)
    assert [(m.task_id, m.state, m.reason) for m in cancelled] == [(b, DEAD, "cancelled")]
    drained = storage.drain()
    assert [m.task_id for m in drained] == [c]
    assert storage.count(PENDING) == 0 and storage.count(DEAD) == 2
    revived = storage.revive(c)
    assert revived.state == PENDING and revived.reason is None
    assert storage.lease(owner(2)).task_id == c
    assert storage.revive(a) is None


def test_listing_and_find(storage):
    tids = []
    for i in range(5):
        tid, data = msg()
        storage.enqueue(data, priority=i)
        tids.append(tid)
    page1 = storage.list_messages(PENDING, limit=2)
    page2 = storage.list_messages(PENDING, limit=2, offset=2)
    assert [m.task_id for m in page1 + page2] == tids[::-1][:4]
    info = storage.find(tids[0])
    assert info.state == PENDING and info.name == "tests.echo"
    assert info.size > 0 and info.enqueued_at == pytest.approx(time.time(), abs=5)
    assert storage.find("nope") is None
    assert storage.queue_size() == 5 and len(storage.enqueued_items(3)) == 3


def test_purge_and_sweep(storage):
    for _ in range(4):
        storage.enqueue(msg()[1])
    for _ in range(3):
        lease = storage.lease(owner())
        storage.ack(lease.handle, DEAD, "failed")
    assert storage.purge_dead(before=0, keep=1) == 2
    assert storage.count(DEAD) == 1
    lease = storage.lease(owner())
    storage.ack(lease.handle)
    assert storage.sweep_done(time.time() - 60) == 0
    assert storage.sweep_done(time.time() + 1) == 1
    assert storage.find(lease.task_id) is None


def test_records_live_and_expire(storage):
    storage.put_record("runtime:h:1", {"hb": 1}, ttl=0.3)
    storage.put_record("runtime:h:2", {"hb": 2})
    storage.put_record("other", {"x": 1})
    assert storage.records("runtime:") == {"runtime:h:1": {"hb": 1},
                                           "runtime:h:2": {"hb": 2}}
    wait_for(lambda: "runtime:h:1" not in storage.records("runtime:"), 5,
             message="the record to expire")
    storage.delete_record("runtime:h:2")
    assert storage.records("runtime:") == {}


def test_records_age_on_the_backends_own_clock(storage):
    storage.put_record("runtime:h:1", {"hb": 1}, ttl=60)
    (record, first), = storage.record_ages("runtime:").values()
    assert record == {"hb": 1} and 0 <= first < 5
    wait_for(lambda: storage.record_ages("runtime:")["runtime:h:1"][1]
             > first + 0.2, 5, message="the record to age")


def test_leases_are_numbered_from_the_apps_sequence(storage):
    for _ in range(3):
        storage.enqueue(msg()[1])
    first = storage.lease(owner())
    control = storage.next_seq()
    second = storage.lease(owner(), ack=(first.handle, None, None))
    assert first.seq < control < second.seq
    assert storage.find(second.task_id).lease_seq == second.seq
    batch = storage.lease_batch(owner(2), "tests.echo", 5)
    assert [l.seq for l in batch] == [second.seq + 1]


def test_suspects_are_left_out_of_batches(storage):
    ids = [storage.enqueue(msg()[1]) for _ in range(2)]
    lease = storage.lease(owner())
    storage.requeue(lease.handle, "suspect: worker died running 2 jobs",
                    count=False)
    batch = storage.lease_batch(owner(2), "tests.echo", 5)
    assert len(batch) == 1 and batch[0].task_id != lease.task_id
    again = storage.lease(owner(3))
    assert again.task_id == lease.task_id
    assert again.last_error.startswith("suspect:") and ids


def test_notify_wakes_a_waiting_worker(storage):
    storage.wait(0.01)  # starts listening
    woke = threading.Event()

    def waiter():
        storage.wait(10)
        woke.set()
    thread = threading.Thread(target=waiter)
    thread.start()
    wait_for(lambda: _inside(thread, type(storage).wait), 5,
             message="the worker to wait")
    assert not woke.is_set()
    storage.enqueue(msg()[1])
    assert woke.wait(5), "enqueue did not wake the waiting worker"
    thread.join()


def _inside(thread: threading.Thread, function) -> bool:
    """Whether ``thread`` is running ``function`` now."""
    import sys
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is function.__code__:
            return True
        frame = frame.f_back
    return False


def test_concurrent_workers_never_share_a_message(storage, any_backend_url,
                                                  app_name):
    for _ in range(200):
        storage.enqueue(msg()[1])
    taken, lock = [], threading.Lock()

    def worker(n):
        own = backends.open_storage(any_backend_url, app_name, "high")
        ack = None
        while True:
            lease = own.lease(owner(n), ack)
            if lease is None:
                if ack is not None:
                    own.ack(*ack)
                break
            with lock:
                taken.append(lease.task_id)
            ack = (lease.handle, None, None)
        own.close()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 200 and len(set(taken)) == 200
    assert storage.leases() == [] and storage.count(PENDING) == 0


def test_huey_api_still_works(storage):
    storage.enqueue(msg()[1])
    assert storage.dequeue() is not None
    assert storage.dequeue() is None
    storage.put_data("k", b"v")
    assert storage.peek_data("k") == b"v"
    assert storage.delete_data("k") and not storage.delete_data("k")
    storage.enqueue(msg()[1])
    storage.flush_all()
    assert storage.counts() == {PENDING: 0, SCHEDULED: 0, RUNNING: 0, DEAD: 0}


def test_a_queue_file_of_an_earlier_version_gains_the_lease_seq(tmp_path):
    import sqlite3
    path = tmp_path / "old.db"
    backends.open_storage("sqlite://%s" % path, "app", "high").close()
    conn = sqlite3.connect(path)
    conn.execute("alter table hueyq_message drop column lease_seq")
    conn.close()
    storage = backends.open_storage("sqlite://%s" % path, "app", "high")
    try:
        storage.enqueue(msg()[1])
        assert storage.lease(owner()).seq == 1
    finally:
        storage.close()


def test_sqlite_reads_back_wal_and_full_sync(tmp_path):
    s = backends.open_storage("sqlite://%s" % (tmp_path / "q.db"), "a", "high")
    findings = {f.check: f for f in s.health()}
    assert findings["sqlite.journal_mode"].level == "ok"
    assert findings["sqlite.journal_mode"].message == "journal_mode=wal"
    assert findings["sqlite.synchronous"].message == "synchronous=FULL"
    assert str(tmp_path / "q.db") in findings["sqlite.file"].message
    assert "free" in findings["disk.free"].message
    s.close()


def test_sqlite_consumers_commit_normal_and_producers_full(tmp_path):
    url = "sqlite://%s" % (tmp_path / "q.db")
    producer = backends.open_storage(url, "a", "high")
    consumer = backends.open_storage(url, "a", "high")
    consumer.consumer_side()
    producer.enqueue(msg()[1])
    lease = consumer.lease("host:1:w")
    assert lease is not None and consumer.counts()[RUNNING] == 1

    def level(storage):
        return storage.conn.execute("pragma synchronous").fetchone()[0]
    assert (level(producer), level(consumer)) == (2, 1)
    # Each side's health reads its own level back against what it expects.
    consumer_sync = {f.check: f for f in consumer.health()}["sqlite.synchronous"]
    assert (consumer_sync.level, consumer_sync.message) == ("ok",
                                                            "synchronous=NORMAL")
    producer.conn.execute("pragma synchronous = normal")
    producer_sync = {f.check: f for f in producer.health()}["sqlite.synchronous"]
    assert producer_sync.level == "error"
    assert producer_sync.message == "synchronous=NORMAL (expected FULL)"
    producer.close()
    consumer.close()


def test_sqlite_writers_of_other_processes_wait_for_the_lock(tmp_path):
    """Writers take turns on ``<db>.lock`` across processes: a forked
    producer waits while this process holds the writer lock (it would share
    the parent's lock, and the parent's held thread lock, had it not opened
    its own), then enqueues the moment the lock is released."""
    import os
    url = "sqlite://%s" % (tmp_path / "q.db")
    queue = backends.open_storage(url, "a", "high")
    queue.enqueue(msg()[1])
    assert (tmp_path / "q.db.lock").exists()
    read_end, write_end = os.pipe()
    with queue._write_lock:
        held = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: a producer of its own
            code = 1
            try:
                producer = backends.open_storage(url, "a", "high")
                producer.enqueue(msg()[1])
                os.write(write_end, b"%f" % time.monotonic())
                code = 0
            finally:
                os._exit(code)
        wait_for(lambda: _blocked_on_a_lock(pid), 10,
                 message="the child to wait for the writer lock")
        assert queue.counts()[PENDING] == 1  # the child is still waiting
        released = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    enqueued = float(os.read(read_end, 64))
    os.close(read_end)
    os.close(write_end)
    assert released > held and enqueued >= released
    assert queue.counts()[PENDING] == 2
    queue.close()


def _blocked_on_a_lock(pid: int) -> bool:
    """Whether process ``pid`` waits for a file lock (a ``->`` line of
    /proc/locks names the blocked request)."""
    with open("/proc/locks") as fh:
        return any(line.split()[1] == "->" and line.split()[5] == str(pid)
                   for line in fh if len(line.split()) > 5)


def test_redis_eviction_policy_is_an_error(tmp_path):
    from conftest import _need_redis
    _need_redis()
    server = RedisServer(tmp_path, appendonly=False, policy="allkeys-lru").start()
    try:
        s = backends.open_storage(server.url, "a", "high")
        findings = {f.check: f for f in s.health()}
        assert findings["redis.maxmemory_policy"].level == "error"
        assert "allkeys-lru" in findings["redis.maxmemory_policy"].message
        assert findings["redis.persistence"].level == "warning"
        strict = {f.check: f for f in s.health(require_aof=True)}
        assert strict["redis.persistence"].level == "error"
        s.close()
    finally:
        server.stop()


# ------------------------------------------------------- huey's meaning

def _utc(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc) \
        .replace(tzinfo=None)


def test_due_messages_move_in_eta_order_behind_pending_and_note_when(storage):
    now = time.time()
    late, late_data = msg(eta=now + 30)
    early, early_data = msg(eta=now + 20)
    storage.enqueue(late_data)          # inserted first, due last
    storage.enqueue(early_data)
    waiting, waiting_data = msg()
    storage.enqueue(waiting_data)       # pending before either is due
    assert storage.promote_due(now + 40) == 2
    order = storage.list_messages(PENDING)
    assert [m.task_id for m in order] == [waiting, early, late]
    assert all(m.meta["promoted"] >= now for m in order[1:])
    assert "promoted" not in order[0].meta
    assert storage.find(early).handle == order[1].handle
    assert storage.lease(owner()).task_id == waiting


def test_a_retry_added_to_the_schedule_keeps_its_priority(storage):
    tid = uuid.uuid4().hex
    data = SER.serialize_with_header(("payload",), {
        "id": tid, "name": "tests.echo", "eta": None, "t": time.time(),
        "priority": 7})
    storage.add_to_schedule(data, _utc(time.time() - 1))
    storage.promote_due()
    info, = storage.list_messages(PENDING)
    assert (info.task_id, info.priority) == (tid, 7)
    assert "priority" not in info.meta


def test_dequeue_and_a_skipped_task_s_ack_keep_the_revoke_key(storage):
    tid, data = msg()
    storage.enqueue(data)
    storage.put_data("r:" + tid, b"revoked")
    assert storage.dequeue() == data    # huey's dequeue, then its execute()
    assert storage.peek_data("r:" + tid) == b"revoked"
    storage.enqueue(data)
    lease = storage.lease(owner())
    storage.ack(lease.handle, DEAD, "cancelled")      # skipped as revoked
    assert storage.has_data_for_key("r:" + tid)
    storage.enqueue(msg(tid)[1])
    lease = storage.lease(owner())
    storage.ack(lease.handle)                          # ran: huey clears it
    assert not storage.has_data_for_key("r:" + tid)


def test_a_lease_carries_the_task_name_and_meta_the_backend_keeps(storage):
    tid, data = msg(name="tests.named", memory=GIB)
    storage.enqueue(data)
    lease = storage.lease(owner())
    assert lease.task_id == tid
    assert lease.name == "tests.named"
    assert lease.meta["memory"] == GIB and lease.meta["time_limit"] == 5


def test_sqlite_enqueue_once_on_a_file_from_before_keys(tmp_path):
    """A file an older version made has no table of keys; a process that
    only opens existing files (the web UI) still enqueues once."""
    import sqlite3
    from hueyq import files
    url = "sqlite://%s" % (tmp_path / "queue.db")
    backends.open_storage(url, "old", "high").close()
    conn = sqlite3.connect(str(tmp_path / "queue.db"))
    conn.execute("drop table hueyq_key")
    conn.commit()
    conn.close()
    storage = backends.open_storage(url, "old", "high",
                                    access=files.EXISTING)
    try:
        (a, first), (_, second) = msg(), msg()
        assert storage.enqueue_once([(first, None, "k"), (second, None, "k")],
                                    60) == [(a, True), (a, False)]
        storage.flush_all()
        assert storage.count(PENDING) == 0
    finally:
        storage.close()


def test_sqlite_followers_fifos_go_when_their_follower_is_gone(tmp_path):
    """A follower's FIFO is removed on close; one left by a follower that
    died (its descriptors closed, the file still there) is removed by the
    next append to its job, or by the next follower made."""
    import os
    storage = backends.open_storage("sqlite://%s" % (tmp_path / "q.db"),
                                    "fifo", "high")
    try:
        job = uuid.uuid4().hex
        folder = tmp_path / "q.db.fifo.follow"
        waiter = storage.output_waiter(job)
        assert len(os.listdir(folder)) == 1
        waiter.close()
        assert os.listdir(folder) == []
        for make_again in (False, True):
            dead = storage.output_waiter(job)
            os.close(dead._rfd), os.close(dead._wfd)    # its process died
            if make_again:
                live = storage.output_waiter(uuid.uuid4().hex)
                assert os.listdir(folder) == [os.path.basename(live.path)]
                live.close()
            else:
                storage.append_output(job, "1", 10, 100, 60)
            assert os.listdir(folder) == []
    finally:
        storage.close()
