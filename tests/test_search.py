"""Listing and searching jobs: the store's filters and indexes (SQLite and
PostgreSQL), the backends' newest live messages, and App.jobs merging the
two, so a job no consumer has seen yet is listed, newest first."""

import logging
import time
import uuid

import pytest

from hueyq.store import ERROR_WINDOW, Store

from conftest import write_profile


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    url = "sqlite://%s" % (tmp_path / "store.db") if request.param == \
        "sqlite" else request.getfixturevalue("postgres_url")
    s = Store(url, "app%s" % uuid.uuid4().hex[:8])
    yield s
    s.close()


def fill(store, now):
    """24 jobs: tasks a.send / a.resize / b.send, states, errors, times."""
    rows = []
    for i in range(24):
        task = ("a.send", "a.resize", "b.send")[i % 3]
        state = ("complete", "failed", "dead", "complete")[i % 4]
        rows.append({"id": "%02d-%s" % (i, "abcdef"[i % 6]), "task": task,
                     "queue": ("high", "low")[i % 2], "state": state,
                     "enqueued_at": now - 1000 + i * 10,
                     "finished_at": now - 995 + i * 10,
                     "updated_at": now - 995 + i * 10, "duration": 0.5,
                     "error": "ValueError('Disk %d full')" % i
                     if state == "failed" else None,
                     "reason": "poison" if state == "dead" else None})
    store.write(rows)
    return rows


def ids(rows):
    return [r["id"] for r in rows]


def test_every_filter_narrows_and_pages(store):
    now = time.time()
    rows = fill(store, now)
    newest = list(reversed(ids(rows)))
    assert ids(store.jobs(limit=100)) == newest
    sends = store.jobs(tasks=["a.send"], limit=100)
    assert ids(sends) == [i for i in newest if int(i[:2]) % 3 == 0]
    both = store.jobs(tasks=["a.send", "b.send"], state="failed", limit=100)
    assert {r["task"] for r in both} == {"a.send", "b.send"}
    assert all(r["state"] == "failed" for r in both)
    assert ids(store.jobs(id_prefix="1", limit=100)) == \
        [i for i in newest if i.startswith("1")]
    assert ids(store.jobs(id_prefix="07-", limit=100)) == ["07-b"]
    assert store.jobs(id_prefix="7", limit=100) == []
    window = store.jobs(since=now - 1000 + 50, until=now - 1000 + 100,
                        limit=100)
    assert ids(window) == ["09-d", "08-c", "07-b", "06-a", "05-f"]
    disk = store.jobs(error="disk 1", limit=100)   # any case, error text
    assert ids(disk) == ["17-f", "13-b", "01-b"]
    assert ids(store.jobs(error="POISON", limit=3)) == ["22-e", "18-a", "14-c"]
    assert ids(store.jobs(error="50%_", limit=100)) == []  # no wildcards
    assert store.count() == 24 and store.count(state="dead") == 6
    assert store.count(states=["failed", "dead"]) == 12
    assert store.count(states=["failed", "dead"], queue="low") == 6
    assert store.count(error="disk") == 6
    page = store.jobs(tasks=["a.resize"], limit=3)
    rest = store.jobs(tasks=["a.resize"], limit=100,
                      before=page[-1]["enqueued_at"])
    assert ids(page) + ids(rest) == [i for i in newest if int(i[:2]) % 3 == 1]
    assert store.task_names() == ["a.resize", "a.send", "b.send"]
    assert set(store.get_many(["00-a", "nope", "23-f"])) == {"00-a", "23-f"}


def test_error_text_is_searched_in_a_bounded_window(store, monkeypatch):
    import hueyq.store as store_module
    now = time.time()
    fill(store, now)
    monkeypatch.setattr(store_module, "ERROR_WINDOW", 8)
    # The newest 8 jobs hold 2 failed ones; older matches are not looked at.
    assert ids(store.jobs(error="disk", limit=100)) == ["21-d", "17-f"]
    assert store.count(error="disk") == 2
    older = store.jobs(error="disk", limit=100, before=now - 1000 + 160)
    assert ids(older) == ["13-b", "09-d"]
    assert ERROR_WINDOW == 10_000


def test_series_buckets_completions_failures_and_run_times(store):
    start = 1_000_000.0
    store.write([
        {"id": "c1", "queue": "high", "state": "complete",
         "finished_at": start + 10, "duration": 1.0, "updated_at": 1},
        {"id": "c2", "queue": "high", "state": "complete",
         "finished_at": start + 50, "duration": 3.0, "updated_at": 1},
        {"id": "f1", "queue": "high", "state": "failed",
         "finished_at": start + 70, "duration": 9.0, "updated_at": 1},
        {"id": "c3", "queue": "high", "state": "complete",
         "finished_at": start + 239, "duration": 2.0, "updated_at": 1},
        {"id": "late", "queue": "high", "state": "complete",
         "finished_at": start + 241, "duration": 2.0, "updated_at": 1},
        {"id": "other", "queue": "low", "state": "complete",
         "finished_at": start + 10, "duration": 2.0, "updated_at": 1}])
    series = store.series("high", start, 60, 4)
    assert series["complete"] == [2, 0, 0, 1]
    assert series["failed"] == [0, 1, 0, 0]
    assert series["mean_runtime"] == [2.0, None, None, 2.0]
    assert series["max_runtime"] == [3.0, None, None, 2.0]


def _plans(store, queries):
    """(sql, plan lines) of every query the calls run."""
    seen = []

    class Catch(logging.Handler):
        def emit(self, record):
            if isinstance(record.msg, tuple):
                seen.append(record.msg)
    handler = Catch()
    peewee_log = logging.getLogger("peewee")
    peewee_log.addHandler(handler)
    level = peewee_log.level
    peewee_log.setLevel(logging.DEBUG)
    try:
        for query in queries:
            query()
    finally:
        peewee_log.removeHandler(handler)
        peewee_log.setLevel(level)
    out = []
    for sql, params in seen:
        if not sql.lower().startswith(("select", "with")):
            continue
        if store.db.__class__.__name__.startswith("Sqlite"):
            plan = [row[-1] for row in store.db.execute_sql(
                "explain query plan " + sql, params).fetchall()]
        else:
            store.db.execute_sql("set enable_seqscan = off")
            plan = [row[0] for row in store.db.execute_sql(
                "explain " + sql, params).fetchall()]
            store.db.execute_sql("set enable_seqscan = on")
        out.append((sql, plan))
    return out


SEARCHES = {
    "all": dict(), "state": dict(state="failed"), "queue": dict(queue="low"),
    "task": dict(tasks=["a.send"]), "task and state": dict(
        tasks=["a.send"], state="failed"),
    "id": dict(id_prefix="1"), "id and state": dict(id_prefix="1", state="failed"),
    "since": dict(since=0.0),
    "queue, state, until": dict(queue="low", state="dead", until=2e9),
    "error": dict(error="disk"), "error and task": dict(
        error="disk", tasks=["a.send"]),
}


@pytest.mark.parametrize("name", list(SEARCHES))
def test_every_search_reads_an_index(store, name):
    fill(store, time.time())
    filters = SEARCHES[name]
    plans = _plans(store, [lambda: store.jobs(limit=50, **filters),
                           lambda: store.count(**filters)])
    assert len(plans) >= 2
    for sql, plan in plans:
        text = "\n".join(plan)
        if "hueyq_job" not in sql:
            continue
        if store.db.__class__.__name__.startswith("Sqlite"):
            for line in plan:
                if "hueyq_job" in line and line.startswith(("SCAN", "SEARCH")):
                    assert "USING" in line and "INDEX" in line or \
                        "PRIMARY KEY" in line, (name, sql, text)
        else:
            assert "Seq Scan on hueyq_job" not in text, (name, sql, text)
            assert "Index" in text, (name, sql, text)


def test_task_names_are_read_one_seek_each(tmp_path):
    store = Store("sqlite://%s" % (tmp_path / "s.db"), "a")
    fill(store, time.time())
    plans = _plans(store, [store.task_names])
    text = "\n".join(line for _, plan in plans for line in plan)
    assert "SCAN hueyq_job" not in text.replace("USING COVERING INDEX", "")
    assert "USING COVERING INDEX job_app_task_enqueued_at (app=? AND task>?)" in text
    store.close()


# ---------------------------------------------------------------- backends

def test_backends_list_their_newest_live_messages(app):
    first = [app.tasks.add(i, 1) for i in range(3)]
    later = app.tasks.add(9, 9)
    storage = app.storage("medium")
    newest = storage.newest(10)
    assert [m.task_id for m in newest] == [later.id] + [j.id for j in
                                                         reversed(first)]
    assert [m.task_id for m in storage.newest(2)] == [later.id, first[2].id]
    edge = newest[1].enqueued_at
    assert [m.task_id for m in storage.newest(10, before=edge)] == \
        [first[1].id, first[0].id]
    assert [m.task_id for m in storage.newest(10, since=edge)] == \
        [later.id, first[2].id]
    assert [m.task_id for m in storage.newest(
        10, id_prefix=later.id[:6])] == [later.id]
    assert storage.newest(10, names=["nope"]) == []
    assert len(storage.newest(10, names=[newest[0].name])) == 4
    assert storage.newest(10, states=("running",)) == []


def test_backends_delete_dead_messages_of_jobs(app, inline):
    failed = app.tasks.fail("x")
    pending = app.tasks.chore("/dev/null", "t")
    inline(app, "low").run(limit=1)
    storage = app.storage("low")
    assert storage.count("dead") == 1 and storage.count("pending") == 1
    assert storage.delete_dead([failed.id, pending.id, "nope"]) == 1
    assert storage.count("dead") == 0 and storage.count("pending") == 1
    assert storage.find(failed.id) is None


# ---------------------------------------------------------------- App.jobs

def test_a_job_no_consumer_has_seen_is_listed_newest_first(app, inline):
    done = app.tasks.echo("done")
    inline(app, "high").run()
    waiting = [app.tasks.echo(i) for i in range(3)]
    later = app.tasks.add(1, 2)
    assert app.store.get(later.id) is None      # no record yet
    listed = app.jobs()
    assert [j.id for j in listed] == [later.id] + [w.id for w in reversed(
        waiting)] + [done.id]
    assert [j.state for j in listed] == ["pending"] * 4 + ["complete"]
    assert [j.id for j in app.jobs(queue="high")] == \
        [w.id for w in reversed(waiting)] + [done.id]
    page = app.jobs(limit=2)
    rest = app.jobs(limit=10, before=page[-1].enqueued_at)
    assert [j.id for j in page + rest] == [j.id for j in listed]
    assert app.queue_stats()["high"]["pending"] == 3


def test_search_reaches_live_and_finished_jobs(app, inline):
    done = app.tasks.echo("done")
    failed = app.tasks.fail("Disk full")
    inline(app, "high").run()
    inline(app, "low").run()
    pending = app.tasks.echo("later")
    echo = [j.id for j in app.jobs(task="echo")]
    assert echo == [pending.id, done.id]
    full = [j.id for j in app.jobs(task=app.job(done.id).task)]
    assert full == echo
    assert [j.id for j in app.jobs(id_prefix=pending.id[:5])] == [pending.id]
    assert [j.id for j in app.jobs(error="disk FULL")] == [failed.id]
    assert [j.id for j in app.jobs(state="pending", task="echo")] == \
        [pending.id]
    assert [j.id for j in app.jobs(since=app.job(pending.id).enqueued_at)] \
        == [pending.id]
    assert app.jobs(task="nothing") == []
    assert app.count_jobs(state="failed", task="fail") == 1


def test_the_all_listing_shows_jobs_waiting_for_memory(make_app, tmp_path,
                                                       app_name):
    profile = write_profile(
        tmp_path / "mem.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        extra={"queues.medium": {"memory_limit": "512MiB"}})
    app = make_app(profile, "apps.memory")
    handle = app.tasks.bulky(str(tmp_path / "done"), "x", 0)
    app.storage("medium").set_flag("admission", 200 << 20)
    listed = app.jobs()
    assert [j.id for j in listed] == [handle.id]
    assert listed[0].state == "pending"
    assert listed[0].waiting.startswith("memory: needs 300.0 MiB")
