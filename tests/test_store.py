"""The job store on SQLite and PostgreSQL: upserts, history, stats, retention."""

import time
import uuid

import pytest

from hueyq.exceptions import StoreUnavailable
from hueyq.store import JobRecorder, Store, merge_changes

from conftest import free_port, write_profile


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return "sqlite://%s" % (tmp_path / "store.db")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(store_url):
    s = Store(store_url, "app%s" % uuid.uuid4().hex[:8])
    yield s
    s.close()


def test_merge_changes_folds_a_batch():
    merged = merge_changes([
        {"id": "a", "state": "running", "attempts": 1, "updated_at": 1},
        {"id": "b", "state": "running", "attempts": 1, "updated_at": 1},
        {"id": "a", "progress": 50.0, "updated_at": 2},
        {"id": "a", "state": "retrying", "error": "x", "updated_at": 3},
        {"id": "a", "state": "running", "attempts": 1, "updated_at": 4},
    ])
    a = next(m for m in merged if m["id"] == "a")
    assert a == {"id": "a", "state": "running", "attempts": 2, "progress": 50.0,
                 "error": "x", "updated_at": 4}


def test_upsert_keeps_the_newest_and_adds_attempts(store):
    store.write([{"id": "j", "task": "t.x", "queue": "high", "state": "running",
                  "attempts": 1, "updated_at": 10.0, "started_at": 10.0}])
    store.write([{"id": "j", "state": "failed", "updated_at": 20.0,
                  "error": "boom"}])
    store.write([{"id": "j", "state": "running", "updated_at": 15.0}])
    row = store.get("j")
    assert (row["state"], row["error"], row["attempts"], row["task"]) == \
        ("failed", "boom", 1, "t.x")
    store.write([{"id": "j", "state": "running", "attempts": 1, "updated_at": 30.0}])
    assert store.get("j")["attempts"] == 2
    assert store.get("nope") is None


def test_history_and_payload(store):
    now = time.time()
    store.write([{"id": "k", "queue": "low", "state": "dead", "updated_at": now,
                  "payload": b"\x00raw\xff"}],
                [{"ts": now, "queue": store.app_name + ".low", "task_id": "k",
                  "task": "t.y", "signal": "dead", "duration": None,
                  "error": "unknown_task: t.y", "args": None}])
    assert store.payload("k") == b"\x00raw\xff"
    assert store.history("k") == [{"ts": pytest.approx(now), "event": "dead",
                                   "detail": "unknown_task: t.y",
                                   "duration": None, "queue": "low"}]


def test_lists_stats_and_throughput(store):
    now = time.time()
    rows = []
    for i in range(30):
        state = "complete" if i % 3 else "failed"
        rows.append({"id": "j%02d" % i, "task": "t.z", "queue": "medium",
                     "state": state, "enqueued_at": now - 100 + i,
                     "finished_at": now - 50 + i, "duration": (i + 1) / 100.0,
                     "updated_at": now})
    store.write(rows)
    newest = store.jobs(queue="medium", limit=5)
    assert [r["id"] for r in newest] == ["j29", "j28", "j27", "j26", "j25"]
    older = store.jobs(queue="medium", limit=5, before=newest[-1]["enqueued_at"])
    assert older[0]["id"] == "j24"
    failed = store.jobs(state="failed", limit=100)
    assert len(failed) == 10 and all(r["state"] == "failed" for r in failed)
    window = store.window(now - 3600, ["medium", "high"])
    assert window["medium"]["complete"] == 20 and window["medium"]["failed"] == 10
    assert window["high"]["complete"] == 0 and window["high"]["p95_runtime"] is None
    durations = sorted((i + 1) / 100.0 for i in range(30) if i % 3)
    assert window["medium"]["mean_runtime"] == pytest.approx(sum(durations) / 20)
    assert window["medium"]["p95_runtime"] == pytest.approx(durations[18])
    series = store.throughput("medium", minutes=60)
    assert sum(series) == 20 and len(series) == 60
    assert (store.count(queue="medium", state="complete"),
            store.count(queue="medium", state="failed")) == (20, 10)


def test_retention_by_age_and_count(store):
    now = time.time()
    store.write([{"id": "old", "queue": "low", "state": "complete",
                  "enqueued_at": now - 10_000, "updated_at": now - 10_000},
                 {"id": "live", "queue": "low", "state": "running",
                  "enqueued_at": now - 10_000, "updated_at": now - 10_000}] +
                [{"id": "c%d" % i, "queue": "low", "state": "failed",
                  "enqueued_at": now - i, "updated_at": now} for i in range(5)])
    deleted = store.enforce_retention(max_age=3600, max_count=3, now=now)
    assert deleted == 3
    assert store.get("old") is None and store.get("live") is not None
    assert sorted(r["id"] for r in store.jobs(state="failed")) == ["c0", "c1", "c2"]


def test_apps_sharing_a_store_do_not_see_each_other(store_url):
    a, b = Store(store_url, "appa"), Store(store_url, "appb")
    a.write([{"id": "shared-%s" % uuid.uuid4().hex, "queue": "high",
              "state": "complete", "updated_at": time.time(),
              "enqueued_at": time.time()}])
    assert len(a.jobs()) >= 1 and b.jobs() == []
    a.close()
    b.close()


def test_recorder_keeps_rows_while_the_store_is_down(tmp_path, postgres_url):
    import huey
    dead = Store("postgresql://postgres@127.0.0.1:%d/x" % free_port(), "app",
                 create=False)
    with pytest.raises(StoreUnavailable):
        dead.ping()
    fake = huey.MemoryHuey("app.high")
    recorder = JobRecorder(fake, dead, flush_interval=3600)
    recorder.job({"id": "a", "queue": "high", "state": "complete",
                  "updated_at": time.time()})
    recorder._flush()
    assert [j["id"] for j in recorder._jobs] == ["a"]
    recorder.store = Store(postgres_url, "app")
    try:
        recorder._flush()
        assert recorder._jobs == [] and \
            recorder.store.get("a")["state"] == "complete"
    finally:
        recorder.store.close()
        dead.close()


def test_changes_apply_in_the_job_order_not_by_the_clock(store):
    # A clock stepped back an hour between the start and the completion:
    # the order is the backend's sequence, so the completion still applies.
    store.write([{"id": "c", "queue": "high", "state": "running",
                  "attempts": 1, "updated_at": 5000.0, "seq": 8 * 7 + 2}])
    store.write([{"id": "c", "state": "complete", "progress": 100.0,
                  "updated_at": 1400.0, "seq": 8 * 7 + 4}])
    assert store.get("c")["state"] == "complete"
    # A late write of an earlier delivery, clock ahead, changes nothing.
    store.write([{"id": "c", "state": "running", "progress": 10.0,
                  "updated_at": 9000.0, "seq": 8 * 3 + 2}])
    row = store.get("c")
    assert (row["state"], row["progress"], row["seq"]) == \
        ("complete", 100.0, 8 * 7 + 4)
    # A change with no order known falls back to the time.
    store.write([{"id": "c", "error": "late", "updated_at": 10.0}])
    assert store.get("c")["error"] is None
    store.write([{"id": "c", "error": "newer", "updated_at": 9999.0}])
    assert store.get("c")["error"] == "newer"


def test_a_store_of_an_earlier_version_gains_the_seq_column(tmp_path):
    import sqlite3
    path = tmp_path / "old.db"
    Store("sqlite://%s" % path, "a").close()
    conn = sqlite3.connect(path)
    conn.execute("alter table hueyq_job drop column seq")
    conn.execute("insert into hueyq_job (id, app, state, updated_at) values "
                 "('o', 'a', 'running', 1.0)")
    conn.commit()
    conn.close()
    old = Store("sqlite://%s" % path, "a")
    try:
        old.write([{"id": "o", "state": "complete", "updated_at": 2.0,
                    "seq": 12}])
        assert (old.get("o")["state"], old.get("o")["seq"]) == ("complete", 12)
    finally:
        old.close()


@pytest.mark.slow
def test_a_finished_job_is_on_disk_before_its_message_goes(
        tmp_path, cutfs, make_app, inline):
    """The recorder forgets a finished message only once the store's record
    of it is durable (issue 18 item 7): with the store on a filesystem that
    drops whatever was not synced, a power cut after the message went
    still finds the job complete."""
    store_url = "sqlite://%s/store.db" % cutfs.mountpoint
    profile = write_profile(tmp_path / "profile.toml",
                            "sqlite://%s" % (tmp_path / "queue.db"), store_url,
                            "t%s" % uuid.uuid4().hex[:8])
    app = make_app(profile)
    handles = [app.tasks.echo(i) for i in range(20)]
    inline(app, "high").run()
    assert all(app.storage("high").find(h.id) is None for h in handles)
    cutfs.cut()
    cutfs.mount()
    after = Store(store_url, app.name, create=False)
    try:
        assert [(after.get(h.id) or {}).get("state") for h in handles] == \
            ["complete"] * len(handles)
    finally:
        after.close()
