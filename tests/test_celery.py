"""hueyq.celery against Celery itself: the same task code, the same calls,
the same AsyncResult states and .info (Celery runs in-process on its memory
broker, hueyq under the real `hueyq run`), and what the layer refuses."""

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
                    broker_connection_retry_on_startup=True,
                    broker_transport_options={"polling_interval": 0.01})
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


# ---------------------------------------------------------------- the layer

@pytest.fixture
def capp(tmp_path, app_name):
    """A hueyq.celery app on a fresh SQLite profile (no runtime)."""
    from hueyq.celery import Celery
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    made = Celery("layer", profile=str(profile))
    yield made
    made.close()


def test_refusals_are_unsupported_and_name_the_hueyq_way(capp):
    from hueyq import celery as hc
    cases = [
        (lambda: hc.Celery("x", broker="redis://localhost"), "profile"),
        (lambda: capp.conf.update(task_acks_late=False), "always acks late"),
        (lambda: capp.conf.update(timezone="Europe/Paris"), "UTC"),
        (lambda: capp.conf.update(result_backend="redis://x"), "backend"),
        (lambda: capp.backend, "AsyncResult"),
        (lambda: capp.events, "history"),
        (lambda: capp.control.inspect(), "hueyq status"),
        (lambda: capp.control.broadcast("x"), "pause"),
        (lambda: capp.worker_main(), "hueyq run"),
        (lambda: hc.chain(), "pipelines"),
        (lambda: hc.chord(), "group"),
        (lambda: capp.conf.update(beat_schedule={"fast": {
            "task": "x", "schedule": 10}}), "whole minutes"),
        (lambda: hc.crontab(nowfun=None), "huey's"),
    ]
    for call, words in cases:
        with pytest.raises(hc.Unsupported, match=words):
            call()
    assert issubclass(hc.Unsupported, NotImplementedError)

    @capp.task
    def plain(x):
        return x
    for call, words in [
            (lambda: plain.apply_async((1,), link=plain.s()), "pipelines"),
            (lambda: plain.apply_async((1,), time_limit=3), "per queue"),
            (lambda: plain.apply_async((1,), exchange="x"), "queue="),
            (lambda: plain.s(1) | plain.s(), "pipelines"),
            (lambda: plain.apply(), "delay"),
            (lambda: capp.AsyncResult("x").then(plain), "pipelines"),
            (lambda: capp.AsyncResult("x").revoke(signal="SIGUSR1"),
             "killing")]:
        with pytest.raises(hc.Unsupported, match=words):
            call()
    with pytest.raises(hc.Unsupported, match="acks late"):
        capp.task(acks_late=False)(lambda: None)


def test_calling_a_task_runs_it_here_and_delay_enqueues_it(capp):
    from hueyq.celery import AsyncResult

    @capp.task(bind=True)
    def who(self, x):
        return (x, self.request.id, self.request.called_directly)
    assert who(1) == (1, None, True)
    assert who.s(2)() == (2, None, True)
    result = who.delay(3)
    assert isinstance(result, AsyncResult) and result.state == "PENDING"
    job = capp.job(result.id)
    assert (job.state, job.queue, job.task) == ("pending", "medium",
                                                 "test_celery.who")
    later = who.apply_async((4,), countdown=60, queue="high", priority=7,
                            task_id="chosen-id")
    job = capp.job("chosen-id")
    assert later.id == "chosen-id"
    assert (job.state, job.queue, job.priority) == ("scheduled", "high", 7)
    assert 55 < job.eta - time.time() < 65
    import datetime
    at = datetime.datetime.now(datetime.timezone.utc) + \
        datetime.timedelta(minutes=10)
    job = capp.job(who.apply_async((5,), eta=at).id)
    assert job.state == "scheduled" and abs(job.eta - at.timestamp()) < 1
    assert AsyncResult("chosen-id", app=capp) == later
    later.revoke()
    assert later.state == "REVOKED" and later.ready()
    assert capp.send_task("test_celery.who", (5,)).state == "PENDING"
    with pytest.raises(Exception, match="no task of that name"):
        capp.send_task("nope")


def test_routes_default_queue_and_a_tasks_own_queue(capp):
    capp.conf.update(task_routes=[{"ingest.*": {"queue": "low"}},
                                  ("chat.*", "high")],
                     task_default_queue="gpu")

    @capp.task(name="ingest.pdf")
    def pdf():
        pass

    @capp.task(name="chat.reply")
    def reply():
        pass

    @capp.task(queue="medium")
    def own():
        pass

    @capp.task
    def other():
        pass
    assert [t.queue for t in (pdf, reply, own, other)] == \
        ["low", "high", "medium", "gpu"]
    assert capp.job(other.delay().id).queue == "gpu"
    assert capp.job(own.apply_async(queue="low").id).queue == "low"


def test_crontab_rate_limit_backoff_and_progress_meta():
    import datetime

    from hueyq import celery as hc
    sunday_2am = datetime.datetime(2026, 3, 1, 2, 0)
    assert hc.crontab(minute=0, hour=2)(sunday_2am)
    assert hc.crontab(minute=0, hour=2, day_of_week="sunday")(sunday_2am)
    assert not hc.crontab(minute=0, hour=2, day_of_week="mon-fri")(sunday_2am)
    assert hc.crontab(minute=0, hour=2, day_of_week="7")(sunday_2am)
    assert hc._parse_rate("10/m") == (10, 60)
    assert hc._parse_rate("3/s") == (3, 1)
    assert hc._parse_rate(5) == (5, 1)
    with pytest.raises(ValueError):
        hc._parse_rate("ten a minute")
    assert hc.backoff_interval(1, 3, 600, False) == 8
    assert hc.backoff_interval(1, 20, 600, False) == 600
    assert 0 <= hc.backoff_interval(2, 2, 600, True) <= 8
    assert hc._progress_of({"progress": 50, "status": "half"}, None) == \
        (50.0, "half")
    assert hc._progress_of({"current": 1, "total": 4}, None) == (25.0, None)
    assert hc._progress_of({"note": "x"}, 30.0) == (30.0, None)
    assert hc._progress_of(None, None) == (0.0, None)


def test_shared_tasks_bind_to_the_app_made_last(tmp_path, app_name):
    from hueyq.celery import Celery, current_app, shared_task

    @shared_task(name="shared.double")
    def double(x):
        return 2 * x
    profile = write_profile(tmp_path / "p.toml",
                            "sqlite://%s" % (tmp_path / "q.db"),
                            "sqlite://%s" % (tmp_path / "s.db"), app_name)
    first = Celery("one", profile=str(profile))
    second = Celery("two", profile=str(profile))
    try:
        assert current_app() is second
        assert double(4) == 8
        assert double.app is second and "shared.double" in second.tasks
        assert capp_queue(second, double.delay(1).id) == "medium"
        # As in Celery, a shared task is declared on every app.
        assert "shared.double" in first.tasks
        assert "test_celery.shared.double" in first.registry._registry
    finally:
        first.close()
        second.close()


def capp_queue(app, job_id):
    return app.job(job_id).queue


def test_config_from_object_and_include(tmp_path, capp, monkeypatch):
    (tmp_path / "celeryconfig.py").write_text(
        "task_default_queue = 'low'\nCELERY_TASK_TIME_LIMIT = 30\n"
        "task_acks_late = True\n")
    (tmp_path / "later_tasks.py").write_text(
        "from hueyq.celery import shared_task\n"
        "@shared_task\ndef later():\n    return 'imported'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    capp.config_from_object("celeryconfig")
    assert capp.conf.task_default_queue == "low"
    assert capp.conf.task_acks_late is True
    assert "task_time_limit" not in capp.conf
    capp.config_from_object("celeryconfig", namespace="CELERY")
    assert capp.conf.task_time_limit == 30
    capp.autodiscover_tasks(["later_tasks"], related_name="")
    capp.include[-1] = "later_tasks"
    assert "later_tasks.later" not in capp.tasks
    for hook in capp.huey("medium")._startup.values():
        hook()
    assert "later_tasks.later" in capp.tasks


def test_rate_limit_ignore_result_and_limits_under_the_real_worker(
        capp, inline):
    from hueyq.celery import SoftTimeLimitExceeded
    import hueyq

    @capp.task(rate_limit="1/h")
    def limited(x):
        return x

    @capp.task(ignore_result=True)
    def quiet():
        return "not kept"

    @capp.task(bind=True, soft_time_limit=0.05)
    def slow(self):
        # Reports progress until the soft limit stops it (the limit is
        # checked at each report), for at most 5 s.
        import time
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                self.update_state(meta={"progress": 10})
            except SoftTimeLimitExceeded:
                return "cleaned up"
            time.sleep(0.01)
        return "no limit"

    @capp.task
    def waits(other_id):
        return capp.AsyncResult(other_id).get(timeout=1)

    @capp.task(bind=True, max_retries=5)
    def routed(self):
        if not self.request.retries:
            raise self.retry(exc=LookupError("gone"), max_retries=0)
        return "unreachable"

    @capp.task(bind=True)
    def where(self):
        return (self.request.delivery_info["routing_key"],
                self.request.retries, self.request.id == self.request.root_id)

    first, second = limited.delay(1), limited.delay(2)
    q, s, w = quiet.delay(), slow.delay(), None
    w = waits.delay(first.id)
    r, h = routed.delay(), where.apply_async(queue="high")
    expired = limited.apply_async((3,), expires=-1)
    worker = inline(capp, "medium")
    worker.run()
    inline(capp, "high").run()
    assert (r.state, type(r.info), r.info.args) == ("FAILURE", LookupError,
                                                    ("gone",))
    assert h.get(timeout=5) == ("high", 0, True)
    assert (expired.state, str(expired.info)) == ("REVOKED", "expired")
    assert (first.state, first.result) == ("SUCCESS", 1)
    assert second.state == "PENDING"
    assert capp.job(second.id).state == "retrying"  # waits for the window
    assert (q.state, q.result) == ("SUCCESS", None)
    assert (s.state, s.result) == ("SUCCESS", "cleaned up")
    assert "soft-time-limit" in [e["event"] for e in capp.job(s.id).history]
    assert w.state == "FAILURE"
    assert isinstance(w.info, RuntimeError)
    assert "within a task" in str(w.info)
    assert issubclass(SoftTimeLimitExceeded, hueyq.SoftTimeLimitExceeded)
