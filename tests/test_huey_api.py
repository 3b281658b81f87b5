"""The App is a Huey: huey's user-facing API on App, with app-wide meaning,
on each backend, with hueyq's real worker (and huey's immediate mode, as
huey's testing guide uses it)."""

import datetime
import io
import unittest

import pytest
from huey import crontab
from huey import signals as S
from huey.api import chord, group
from huey.exceptions import CancelExecution, TaskException

import hueyq

from conftest import write_profile


@pytest.fixture
def run(inline):
    """Run every queue of an app with the real worker until nothing is left
    (results of one queue feed tasks of another)."""
    def drain(app):
        workers = {q: inline(app, q) for q in app.queues}
        while sum(worker.run() for worker in workers.values()):
            pass
    return drain


def test_signals_and_hooks_see_the_tasks_of_every_queue(app, run):
    seen, hooks = [], []

    @app.signal(S.SIGNAL_COMPLETE)
    def on_complete(signal, task):
        seen.append((signal, type(task).queue))

    @app.pre_execute()
    def before(task):
        hooks.append(("pre", task.name))
        if task.args == ("skip",):
            raise CancelExecution()

    @app.post_execute()
    def after(task, value, exc):
        hooks.append(("post", task.name, value))

    app.tasks.echo("hi")
    app.tasks.add(1, 2)
    skipped = app.tasks.echo("skip")
    run(app)
    assert sorted(seen) == [("complete", "high"), ("complete", "medium")]
    assert ("post", "echo", "hi") in hooks and ("post", "add", 3) in hooks
    assert app.job(skipped.id).state == "cancelled"
    app.disconnect_signal(on_complete)
    assert app.unregister_pre_execute(before)
    assert app.unregister_post_execute("after")
    app.tasks.echo("again")
    run(app)
    assert len(seen) == 2


def test_startup_and_shutdown_hooks_by_name_or_queue(app, inline):
    calls = []
    app.on_startup()(lambda: calls.append("every"))

    @app.on_startup("high")            # hueyq's form: a queue name
    def warm():
        calls.append("high")

    @app.on_startup(name="named", queue="low")
    def load():
        calls.append("low")

    @app.on_shutdown()
    def bye():
        calls.append("bye")

    worker = inline(app, "high")
    assert calls == ["every", "high"]
    worker.worker.shutdown()
    assert calls[-1] == "bye"
    assert app.unregister_on_startup("warm")
    assert "warm" not in app.huey("high")._startup
    assert "named" in app.huey("low")._startup


def test_pipelines_groups_and_chords_go_to_each_task_s_queue(app, run):
    @app.task(queue="low")
    def total(values):
        return sum(values)

    pipe = app.tasks.echo.s(2).then(app.tasks.add, 3)
    first, second = app.enqueue(pipe)
    assert app.find_message(first.id).queue == "high"
    together = app.enqueue(group([app.tasks.echo.s(1), app.tasks.add.s(1, 1)]))
    assert {app.find_message(r.id).queue for r in together} == \
        {"high", "medium"}
    summed = app.enqueue(chord([app.tasks.echo.s(1), app.tasks.add.s(2, 3)],
                               total.s()))
    run(app)
    assert second.get() == 5 and together.get() == [1, 2]
    assert summed.get() == 6
    assert app.job(summed.callback.id).queue == "low"


def test_context_task_and_an_app_wide_lock_and_rate_limit(app, run):
    entered = []

    class Resource:
        def __enter__(self):
            entered.append(1)
            return "conn"

        def __exit__(self, *exc):
            entered.append(-1)

    @app.context_task(Resource(), as_argument=True, queue="low")
    def use(conn, n):
        return (conn, n)

    lock = app.lock_task("shared")

    @app.task(queue="high")
    @lock
    def locked():
        return "ran"

    limit = app.rate_limit("api", 1, 3600, retry=False)

    @app.task(queue="medium")
    @limit
    def limited(n):
        return n

    @app.task(queue="low")
    @limit
    def limited_too(n):
        return n

    assert use(1).id
    with lock:                      # held here: the task of high is refused
        assert app.is_locked("shared")
        held = locked()
        run(app)
    assert use.call_local(2) == ("conn", 2) and entered == [1, -1, 1, -1]
    with pytest.raises(TaskException, match="unable to acquire lock"):
        held.get()
    assert locked()  # and once released it runs
    ok, refused = limited(1), limited_too(2)   # one window, two queues
    run(app)
    assert ok.get() == 1
    with pytest.raises(TaskException, match="RateLimitExceeded"):
        refused.get()
    assert app.flush_locks("shared") == set()


def test_revokes_listing_results_and_data_across_queues(app, run):
    app.tasks.echo("a")
    app.tasks.add(1, 1)
    later = app.tasks.chore.schedule(("/dev/null", "x"), delay=3600)
    assert len(app) == app.pending_count() == 2 and bool(app)
    assert [t.name for t in app.pending()] == ["echo", "add"]
    assert [t.id for t in app.scheduled()] == [later.id]
    assert app.scheduled_count() == 1
    assert [t.name for t in app.pending(limit=1)] == ["echo"]
    app.revoke_all(app.tasks.add)
    assert app.is_revoked(app.tasks.add)
    run(app)
    assert app.pending_count() == 0
    assert app.restore_all(app.tasks.add)
    handle = app.tasks.add(2, 2)
    app.revoke_by_id(handle.id)
    assert app.is_revoked(handle.id)
    assert app.restore_by_id(handle.id)
    run(app)
    assert app.result(handle.id, preserve=True) == 4
    app.put("k", {"v": 1})
    assert app.get("k", peek=True) == {"v": 1}
    assert app.put_if_empty("k", 2) is False
    assert app.delete("k") and app.get("k") is None
    assert app.result_count() >= 1 and handle.id in app.all_results()
    app.flush()
    assert app.result_count() == 0 and app.scheduled_count() == 0


def test_a_periodic_task_is_read_from_its_queue(app):
    @app.periodic_task(crontab(minute="0"), queue="low")
    def hourly():
        return 1

    stamp = datetime.datetime(2024, 1, 1, 10, 0)
    assert [t.name for t in app.read_periodic(stamp)].count("hourly") == 1
    assert "hourly" not in [t.name for t in
                            app.read_periodic(stamp.replace(minute=1))]


# ---------------------------------------------------------------- immediate

def test_huey_s_testing_guide_with_app_immediate(tmp_path, app_name):
    """huey's guide ("Immediate mode", "Testing Guidelines"), with the App."""
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    app = hueyq.App(str(profile))
    database = []

    @app.task(queue="high")
    def add(a, b):
        return a + b

    @app.periodic_task(crontab(hour="2"), queue="low")
    def run_reports():
        database.append(True)
        return 42

    class TestMyTasks(unittest.TestCase):
        def setUp(self):
            app.immediate = True

        def tearDown(self):
            app.immediate = False

        def test_task(self):
            result_handle = add(3, 4)
            self.assertEqual(result_handle.get(), 7)
            self.assertEqual(add.call_local(3, 4), 7)

        def test_task_exceptions(self):
            result_handle = add(3, None)
            with self.assertRaises(TaskException):
                result_handle.get()
            with self.assertRaises(TypeError):
                add.call_local(3, None)

        def test_periodic(self):
            self.assertEqual(run_reports.call_local(), 42)
            self.assertEqual(database, [True])

        def test_guide_session(self):
            self.assertEqual(add(1, 2)(), 3)
            add.revoke(revoke_once=True)
            self.assertTrue(add(2, 3)() is None)
            self.assertEqual(add(3, 4)(), 7)
            result = add.schedule((4, 5), delay=60)
            self.assertTrue(result() is None)
            self.assertEqual([t.id for t in app.scheduled()], [result.id])

    outcome = unittest.TextTestRunner(stream=io.StringIO()).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(TestMyTasks))
    assert outcome.wasSuccessful(), outcome.failures + outcome.errors
    assert not app.immediate
    assert add(1, 1).id and app.huey("high").pending_count() == 1
    app.close()


def test_immediate_mode_shares_one_result_store(app, profile_path):
    assert hueyq.App(str(profile_path), immediate=True).immediate
    app.immediate = True
    assert all(app.huey(q).immediate for q in app.queues)
    handle = app.tasks.echo("x")          # runs on high's huey
    assert app.result(handle.id, preserve=True) == "x"
    assert app.huey("low").result(handle.id) == "x"
    app.immediate = False
    assert app.tasks.echo("y").id and app.pending_count() == 1
