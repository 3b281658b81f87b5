"""hueyq.celery against Celery itself: the same task code, the same calls,
the same AsyncResult states and .info (Celery runs in-process on its memory
broker, hueyq under the real `hueyq run`), and what the layer refuses."""

import os
import time

import pytest

from conftest import wait_for, write_profile

celery = pytest.importorskip("celery")


def normal(info):
    """What a row of the table compares: exceptions by type and args, the
    STARTED info by its keys."""
    if isinstance(info, BaseException):
        return ("exception", type(info).__name__, tuple(info.args))
    if isinstance(info, dict) and set(info) == {"pid", "hostname"}:
        return ("worker", "pid", "hostname")
    return info


def until(result, state, timeout=20.0):
    wait_for(lambda: result.state == state, timeout,
             interval=0.005, message="state %s (last %s)" % (state,
                                                           result.state))
    return state, normal(result.info)


def scenarios(app, tasks, gates):
    """The table: each scenario's (state, info) as it goes."""
    table = {}
    unknown = app.AsyncResult("no-such-task-id")
    table["unknown id"] = [(unknown.state, normal(unknown.info))]

    r = tasks["add"].delay(2, 3)
    assert r.get(timeout=20) == 5
    table["success"] = [until(r, "SUCCESS"),
                        (r.ready(), r.successful(), r.failed())]

    r = tasks["boom"].delay()
    with pytest.raises(ValueError, match="boom"):
        r.get(timeout=20)
    table["failure"] = [until(r, "FAILURE"),
                        (r.ready(), r.successful(), r.failed()),
                        "ValueError: boom" in (r.traceback or ""),
                        normal(r.get(propagate=False))]

    r = tasks["prog"].delay(gates("prog"))
    row = [until(r, "PROGRESS"), r.ready()]
    open(gates("prog"), "w").close()
    row.append(until(r, "SUCCESS"))
    table["update_state"] = row

    r = tasks["hold"].delay(gates("hold"))
    row = [until(r, "STARTED")]
    open(gates("hold"), "w").close()
    assert r.get(timeout=20) == "held"
    row.append(until(r, "SUCCESS"))
    table["started"] = row

    r = tasks["flaky"].delay()
    table["self.retry"] = [until(r, "RETRY"), r.ready(),
                           (r.get(timeout=20), r.state)]

    r = tasks["never"].delay()
    with pytest.raises(KeyError):
        r.get(timeout=20)
    table["max_retries"] = [until(r, "FAILURE")]

    r = tasks["transient"].delay()
    table["autoretry_for"] = [(r.get(timeout=20), r.state)]

    r = tasks["add"].apply_async((1, 2), countdown=1)
    r.revoke()
    table["revoke"] = [until(r, "REVOKED"), r.ready()]
    with pytest.raises(Exception) as raised:
        r.get(timeout=20)
    table["revoke"].append(type(raised.value).__name__)
    return table


@pytest.fixture(scope="module")
def celery_table(tmp_path_factory):
    """The reference table, from Celery itself (once per module: Celery
    keeps task names process-wide)."""
    from celery.contrib.testing.worker import start_worker
    tmp_path = tmp_path_factory.mktemp("celery")

    from apps import celery_ref
    app = celery.Celery("ref", broker="memory://", backend="cache+memory://",
                        set_as_current=False)
    app.conf.update(task_track_started=True, task_acks_late=True,
                    broker_connection_retry_on_startup=True)
    tasks = celery_ref.define(app)
    with start_worker(app, pool="threads", concurrency=2,
                      perform_ping_check=False, loglevel="WARNING"):
        return scenarios(app, tasks, lambda n: str(tmp_path / ("c-" + n)))


@pytest.mark.slow
def test_async_result_states_and_info_match_celery(
        tmp_path, backend_url, app_name, runtime, celery_table):
    from hueyq.celery import Celery

    from apps import celery_ref
    profile = write_profile(tmp_path / "p.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    rt = runtime(profile, "apps.celery_ref")
    rt.wait_ready()
    app = Celery("ref", profile=str(profile))
    try:
        ours = scenarios(app, celery_ref.define(app),
                         lambda n: str(tmp_path / ("h-" + n)))
    finally:
        app.close()
    reference = celery_table
    for name in reference:
        print("%-14s celery %-60r hueyq %r" % (name, reference[name],
                                                ours[name]))
    assert ours == reference
    assert rt.terminate() == 0
