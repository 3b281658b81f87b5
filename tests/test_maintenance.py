"""Built-in maintenance: retention of jobs, results and dead messages; WAL
checkpoints that do not wait for idle queues."""

import os
import time

from hueyq import maintenance
from hueyq.backends import DEAD


def test_maintenance_tasks_run_on_the_lowest_queue(app):
    names = app.task_names()
    assert "hueyq.maintenance.retention" in names
    assert app.task_queue("hueyq.maintenance.retention") == "low"


def test_retention_deletes_old_jobs_their_results_and_dead_messages(app, inline):
    old = [app.tasks.echo(i) for i in range(3)]
    chatty = app.tasks.chatter(3)
    failed = app.tasks.fail("x")
    inline(app, "high").run()
    inline(app, "low").run()
    assert app.huey("high").get(old[0].id, peek=True) == 0
    assert app.storage("low").count(DEAD) == 1
    fresh = app.tasks.echo("new")
    inline(app, "high").run()
    assert app.output(chatty.id).last_seq == 3
    report = maintenance.run_retention(app, now=time.time() + 10 * 86400)
    assert report["jobs"] == 6 and report["results"] == 6   # incl. the Error
    assert report["dead_messages"] == 1 and report["outputs"] == 1
    assert app.output(chatty.id).last_seq == 0
    assert app.store.get(old[0].id) is None and app.store.get(failed.id) is None
    assert app.huey("high").get(old[0].id, peek=True) is None
    assert app.store.history(old[0].id) == []
    assert app.storage("low").count(DEAD) == 0
    assert app.store.get(fresh.id) is None  # also past the age at that time
    kept = maintenance.run_retention(app)
    assert kept == {"jobs": 0, "results": 0, "dead_messages": 0,
                    "outputs": 0}


def test_retention_keeps_the_newest_per_state(app, inline):
    handles = [app.tasks.echo(i) for i in range(6)]
    inline(app, "high").run()
    from dataclasses import replace
    app.profile = replace(app.profile, store=replace(app.profile.store,
                                                     retention_count=2))
    report = maintenance.run_retention(app)
    assert report["jobs"] == 4
    left = [h.id for h in handles if app.store.get(h.id) is not None]
    assert left == [h.id for h in handles[-2:]]


def test_checkpoint_under_load_and_the_wal_size_limit(app, backend_url, inline):
    if not backend_url.startswith("sqlite"):     # checkpoints by itself
        assert maintenance.run_checkpoint(app) == {"backend": False,
                                                   "store": True}
        return
    path = backend_url[len("sqlite://"):] + "-wal"
    limit = app.storage("high").conn.execute(
        "pragma journal_size_limit").fetchone()[0]
    assert limit == 4 << 20
    for i in range(50):
        app.tasks.echo(i)
    # Pending work does not stop it (it never waits for idle queues).
    assert maintenance.run_checkpoint(app) == {"backend": True, "store": True}
    assert os.path.getsize(path) == 0
    inline(app, "high").run()
    assert os.path.getsize(path) > 0
    assert maintenance.run_checkpoint(app)["backend"] is True
    assert os.path.getsize(path) == 0


def test_the_sweep_completes_records_a_killed_worker_never_wrote(app):
    from hueyq.runtime.supervisor import Supervisor
    handle = app.tasks.echo("x")
    storage = app.storage("high")
    lease = storage.lease("%s:4194311:Worker-1" % app.host_id)
    storage.ack(lease.handle)                    # done, but nothing recorded
    app.store.write([{"id": handle.id, "queue": "high", "state": "running",
                      "updated_at": time.time() - 1000}])
    supervisor = Supervisor(app, "apps.basic")
    assert supervisor.sweep() == 0               # too recent to sweep
    if hasattr(storage, "sql"):
        storage.sql("update hueyq_message set updated_at = updated_at - 600",
                    commit=True)
    else:
        storage.conn.zadd(storage.keys["done"], {lease.handle: time.time() - 600})
        import json
        info = json.loads(storage.conn.hget(storage.keys["info"], lease.handle))
        info["updated_at"] -= 600
        storage.conn.hset(storage.keys["info"], lease.handle, json.dumps(info))
    assert supervisor.sweep() == 1
    assert storage.find(handle.id) is None
    assert app.job(handle.id).state == "complete"


def test_the_sweep_repairs_records_that_disagree_with_the_backend(app):
    """After a power cut a row may say running (or retrying, or pending)
    for a job whose message is long gone: the sweep takes the backend's
    word, and waits a sweep for rows a retry may be writing just then."""
    from hueyq.backends import DEAD
    from hueyq.runtime.supervisor import Supervisor
    storage = app.storage("high")
    owner = "%s:4194311:Worker-1" % app.host_id
    handles = {name: app.tasks.echo(name) for name in (
        "gone", "done", "dead", "waiting", "leased", "pending-gone")}
    leases = {}
    for _ in handles:
        lease = storage.lease(owner)
        leases[lease.task_id] = lease
    ids = {name: h.id for name, h in handles.items()}
    for name in ("gone", "done", "pending-gone"):
        storage.ack(leases[ids[name]].handle)
    storage.forget([leases[ids["gone"]].handle,
                    leases[ids["pending-gone"]].handle])
    storage.ack(leases[ids["dead"]].handle, DEAD, "failed")
    storage.release([leases[ids["waiting"]].handle])
    recorded = {"gone": "running", "done": "retrying", "dead": "running",
                "waiting": "running", "leased": "running",
                "pending-gone": "pending"}
    then = time.time() - 50
    app.store.write([{"id": ids[name], "queue": "high", "state": state,
                      "task": "apps.basic.echo", "updated_at": then}
                     for name, state in recorded.items()])
    supervisor = Supervisor(app, "apps.basic")
    assert supervisor.repair() == 3
    states = {name: app.store.get(ids[name])["state"] for name in ids}
    assert states == {"gone": "complete", "done": "complete", "dead": "failed",
                      "waiting": "running", "leased": "running",
                      "pending-gone": "pending"}
    assert app.store.get(ids["dead"])["reason"] == "failed"
    gone = app.store.get(ids["gone"])
    assert gone["updated_at"] == then and gone["finished_at"] == then
    assert [e["event"] for e in app.store.history(ids["gone"])] == ["repaired"]
    assert supervisor.repair() == 1       # the same pending row, a sweep on
    assert app.store.get(ids["pending-gone"])["state"] == "complete"
    assert supervisor.repair() == 0


def test_a_repair_leaves_a_row_that_changed_since_it_was_read(app):
    app.store.write([{"id": "j", "queue": "high", "state": "running",
                      "updated_at": 10.0}])
    row = app.store.unsettled()[0]
    app.store.write([{"id": "j", "state": "running", "progress": 50.0,
                      "updated_at": 11.0}])
    assert app.store.repair(row, "complete", "its message is gone") is False
    assert app.store.get("j")["state"] == "running"
