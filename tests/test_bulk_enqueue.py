"""Bulk enqueue (issue 22, target 2): ``app.enqueue_many(...)`` and
``task.map(...)`` on each backend. Every item is its own job (id, record,
result, huey's signals and settings) run exactly once; each queue's items are
written in one step (one SQLite transaction; one Redis pipeline of scripts,
each storing a chunk atomically); an item
that cannot be serialised fails the whole call before anything is written."""

import threading

import pytest
from huey import signals as S
from huey.api import ResultGroup, group

from hueyq.backends import PENDING, SCHEDULED
from hueyq.exceptions import EnqueueError

from conftest import wait_for


@pytest.fixture
def run(inline):
    """Run every queue of an app with the real worker until nothing is left."""
    def drain(app):
        workers = {q: inline(app, q) for q in app.queues}
        while sum(worker.run() for worker in workers.values()):
            pass
    return drain


def lines(path) -> "list[str]":
    """The tokens the tasks recorded, in the order they ran."""
    try:
        with open(path) as fh:
            return [line.split()[0] for line in fh]
    except FileNotFoundError:
        return []


def test_map_enqueues_one_job_per_item_each_run_once(app, run, tmp_path):
    path = str(tmp_path / "ran")
    results = app.tasks.touch.map([(path, "t%d" % i) for i in range(50)])
    assert isinstance(results, ResultGroup) and len(results) == 50
    ids = [r.id for r in results]
    assert len(set(ids)) == 50
    assert {app.job(i).state for i in ids} == {PENDING}
    assert app.storage("high").count(PENDING) == 50
    run(app)
    assert sorted(lines(path)) == sorted("t%d" % i for i in range(50))
    assert results.get() == ["t%d" % i for i in range(50)]
    assert {app.job(i).state for i in ids} == {"complete"}


def test_map_takes_single_arguments_as_huey_s_map_does(app, run):
    results = app.tasks.echo.map(["a", "b", ("c",)])
    run(app)
    assert results.get() == ["a", "b", "c"]


def test_a_batch_task_maps_each_element_as_one_item(profile_path, make_app,
                                                   run):
    app = make_app(profile_path, "apps.batching", max_size=4, max_wait="0s")
    results = app.tasks.square.map([2, 3, "bad", 4])
    run(app)
    handles = list(results)
    assert [handles[i].get() for i in (0, 1, 3)] == [4, 9, 16]
    assert app.job(handles[2].id).state == "failed"
    app.tasks.square.map([(1, 2)])          # a tuple is one item too
    assert [t.args for t in app.huey("medium").pending()] == [((1, 2),)]


def test_enqueue_many_groups_items_by_queue_and_keeps_input_order(app, run):
    tasks = app.tasks
    items = [tasks.echo.s("a"), tasks.add.s(1, 2), tasks.echo.s("b"),
             tasks.add.s(3, 4), tasks.chore.s("/dev/null", "c")]
    commits = _commits(app)
    results = app.enqueue_many(items)
    assert [r.id for r in results] == [t.id for t in items]
    if commits is not None:  # SQLite: one transaction per queue
        assert commits() == {"high": 1, "medium": 1, "low": 1, "gpu": 0}
    assert [app.job(t.id).queue for t in items] == \
        ["high", "medium", "high", "medium", "low"]
    run(app)
    assert [r.get() for r in results] == ["a", 3, "b", 7, "c"]


def test_priority_order_and_fifo_among_equals_are_kept(app, run, tmp_path):
    path = str(tmp_path / "ran")
    touch = app.tasks.touch
    priorities = [1, 5, 3, 5, 1, 9]
    app.enqueue_many([touch.s(path, "p%d-%d" % (p, i), priority=p)
                      for i, p in enumerate(priorities)])
    run(app)
    assert lines(path) == ["p9-5", "p5-1", "p5-3", "p3-2", "p1-0", "p1-4"]


def test_huey_settings_hold_per_item(app, run, tmp_path):
    path = str(tmp_path / "ran")
    touch = app.tasks.touch
    seen = []

    @app.signal(S.SIGNAL_ENQUEUED, S.SIGNAL_SCHEDULED)
    def note(signal, task):
        seen.append((signal, task.id))

    now, later, revoked, expiring = app.enqueue_many([
        touch.s(path, "now"), touch.s(path, "later", delay=3600),
        touch.s(path, "revoked"), touch.s(path, "expiring", expires=3600)])
    assert app.job(later.id).state == SCHEDULED
    assert sorted(seen) == sorted(
        [(S.SIGNAL_ENQUEUED, r.id) for r in (now, later, revoked, expiring)]
        + [(S.SIGNAL_SCHEDULED, later.id)])
    pending = {t.id: t for t in app.huey("high").pending()}
    assert pending[expiring.id].expires_resolved is not None
    app.revoke_by_id(revoked.id)
    run(app)
    assert lines(path) == ["now", "expiring"]
    assert now.get() == "now" and app.job(later.id).state == SCHEDULED


def test_an_unserialisable_item_enqueues_nothing(app):
    tasks = app.tasks
    seen = []

    @app.signal(S.SIGNAL_ENQUEUED)
    def note(signal, task):
        seen.append(task.id)

    items = [tasks.add.s(1, 2), tasks.echo.s("fine"),
             tasks.echo.s(threading.Lock()), tasks.echo.s("after")]
    with pytest.raises(EnqueueError, match=r"^cannot enqueue item 2 of 4 "
                       r"\(echo, id .*\): TypeError: cannot pickle .*; "
                       r"nothing was enqueued$"):
        app.enqueue_many(items)
    with pytest.raises(EnqueueError, match="item 1 of 3"):
        tasks.echo.map(["a", threading.Lock(), "c"])
    assert app.pending_count() == 0 and seen == []
    assert [app.storage(q).count(PENDING) for q in app.queues] == \
        [0] * len(app.queues)


def test_items_that_are_not_tasks_are_refused(app):
    with pytest.raises(TypeError, match="item 1 is group"):
        app.enqueue_many([app.tasks.echo.s(1), group([app.tasks.echo.s(2)])])
    assert app.pending_count() == 0


def test_an_empty_batch_writes_nothing(app):
    assert app.enqueue_many([]) == []
    assert len(app.tasks.echo.map([])) == 0


def test_immediate_mode_runs_each_item(app):
    app.immediate = True
    assert app.tasks.echo.map(["x", "y"]).get() == ["x", "y"]
    assert [r.get() for r in app.enqueue_many(
        [app.tasks.add.s(1, 1), app.tasks.echo.s("z")])] == [2, "z"]


def test_sqlite_writes_a_batch_in_one_transaction(make_app, tmp_path,
                                                 app_name):
    from conftest import write_profile
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "queue.db"),
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    storage = app.storage("high")
    statements = []
    storage.conn.set_trace_callback(statements.append)
    wakes = []
    real_notify = storage.notify
    storage.notify = lambda: (wakes.append(1), real_notify())
    app.tasks.echo.map(range(300))
    words = [s.split()[0].upper() for s in statements]
    assert words.count("BEGIN") == 1 and words.count("COMMIT") == 1
    assert words.count("INSERT") == 300 and len(wakes) == 1
    assert storage.count(PENDING) == 300


def test_redis_writes_a_batch_in_one_pipeline_of_scripts(make_app, tmp_path,
                                                app_name, redis_session,
                                                monkeypatch):
    from conftest import write_profile
    from hueyq.backends import redis as backend
    monkeypatch.setattr(backend, "ENQUEUE_CHUNK", 40)
    profile = write_profile(tmp_path / "p.toml", redis_session.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    storage = app.storage("high")
    sent = []
    real_pipeline = storage.conn.pipeline

    def pipeline(transaction=True, shard_hint=None):
        pipe = real_pipeline(transaction, shard_hint)
        real_execute = pipe.execute

        def execute(raise_on_error=True):
            sent.append((pipe.transaction, [c[0][0] for c in
                                            pipe.command_stack]))
            return real_execute(raise_on_error)
        pipe.execute = execute
        return pipe
    storage.conn.pipeline = pipeline
    results = app.tasks.echo.map(range(100))
    assert sent == [(False, ["EVALSHA", "LPUSH", "EVALSHA", "EVALSHA"])]
    assert storage.count(PENDING) == 100
    assert storage.conn.llen(storage.keys["wake"]) == backend.WAKE_TOKENS
    handles = [storage.find(r.id).handle for r in results]
    assert handles == sorted(handles) and len(set(handles)) == 100
    storage.conn.delete(storage.keys["wake"])
    app.enqueue_many([app.tasks.echo.s(1, delay=60)])
    assert storage.conn.llen(storage.keys["wake"]) == 0


@pytest.mark.slow
def test_every_item_runs_exactly_once_under_the_runtime(app, profile_path,
                                                        runtime, tmp_path):
    path = str(tmp_path / "ran")
    tasks = app.tasks
    items = [tasks.touch.s(path, "h%d" % i) if i % 3 else
             tasks.chore.s(path, "l%d" % i) for i in range(600)]
    results = app.enqueue_many(items)
    rt = runtime(profile_path)
    rt.wait_ready()
    wait_for(lambda: len(lines(path)) >= 600, 60,
             message="600 items to run")
    rt.terminate()
    ran = lines(path)
    assert len(ran) == 600 and len(set(ran)) == 600
    wait_for(lambda: all(app.job(r.id).state == "complete" for r in results),
             10, message="every job recorded complete")


def _commits(app):
    """On SQLite, a function that returns how many commits each queue's
    connection made since this call; None on Redis."""
    if not app.profile.backend.url.startswith("sqlite"):
        return None
    seen = {q: [] for q in app.queues}
    for queue, statements in seen.items():
        app.storage(queue).conn.set_trace_callback(statements.append)
    return lambda: {q: sum(1 for s in statements if s.upper().startswith(
        "COMMIT")) for q, statements in seen.items()}
