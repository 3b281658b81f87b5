"""Enqueue once (issue 25, part 4): ``task(..., key="doc-42")`` makes one
job per key of a task. A second enqueue with the key, while the first job is
pending, scheduled or running or within ``backend.dedupe_window`` of its
enqueue, returns the first job's Result instead of making another; single
calls, ``app.enqueue_many`` and immediate mode alike, on each backend. The
backend's side (atomic under racing producers) is in
tests/test_backend_contract.py."""

import pytest
from huey import signals as S

from hueyq.backends import PENDING
from hueyq.exceptions import EnqueueError


@pytest.fixture
def run(inline):
    def drain(app):
        workers = {q: inline(app, q) for q in app.queues}
        while sum(worker.run() for worker in workers.values()):
            pass
    return drain


def test_a_key_makes_one_job_whose_result_both_callers_get(app, run):
    echo = app.tasks.echo
    first = echo("a", key="doc-42")
    second = echo("b", key="doc-42")
    assert second.id == first.id
    assert app.storage("high").count(PENDING) == 1
    other = echo("c", key="doc-43")
    assert other.id != first.id
    run(app)
    # Two handles on one job: huey's get() consumes the result unless
    # told to preserve it.
    assert first.get(preserve=True) == "a"
    assert (second.get(), other.get()) == ("a", "c")
    assert app.job(first.id).state == "complete"
    # Finished within the window: still the first job.
    assert echo("d", key="doc-42").id == first.id
    assert app.storage("high").count(PENDING) == 0


def test_keys_are_per_task(app):
    assert app.tasks.echo(1, key="k").id != app.tasks.add(1, 2, key="k").id


def test_past_the_window_a_finished_job_lets_its_key_go(
        profile_path, make_app, run, monkeypatch):
    monkeypatch.setenv("HUEYQ_BACKEND__DEDUPE_WINDOW", "0s")
    app = make_app(profile_path)
    assert app.profile.backend.dedupe_window == 0
    first = app.tasks.echo("a", key="k")
    assert app.tasks.echo("b", key="k").id == first.id
    run(app)
    again = app.tasks.echo("b", key="k")
    assert again.id != first.id
    run(app)
    assert again.get() == "b"


def test_enqueue_many_takes_keys_and_signals_only_new_jobs(app, run):
    enqueued = []
    app.signal(S.SIGNAL_ENQUEUED)(lambda signal, task: enqueued.append(
        task.id))
    echo = app.tasks.echo
    results = app.enqueue_many([echo.s(i, key="b%d" % (i % 3))
                                for i in range(6)] + [echo.s("free")])
    ids = [r.id for r in results]
    assert ids[:3] == ids[3:6] and len(set(ids)) == 4
    assert sorted(enqueued) == sorted(set(ids))
    assert echo("again", key="b1").id == ids[1]
    run(app)
    assert [r.get(preserve=True) for r in results] == [0, 1, 2, 0, 1, 2,
                                                      "free"]


def test_a_task_with_a_key_parameter_gets_it_as_before(app, run):
    @app.task(queue="high")
    def lookup(key):
        return key.upper()
    first, second = lookup(key="x"), lookup(key="x")
    assert first.id != second.id
    run(app)
    assert (first.get(), second.get()) == ("X", "X")


@pytest.mark.parametrize("key", ["", 42, "x" * 201])
def test_a_bad_key_is_refused_before_anything_is_written(app, key):
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        app.tasks.echo(1, key=key)
    assert app.storage("high").count(PENDING) == 0


def test_a_pipeline_cannot_take_a_key(app):
    echo = app.tasks.echo
    with pytest.raises(EnqueueError, match="pipeline"):
        app.enqueue(echo.s(1, key="p").then(echo))


def test_immediate_mode_runs_a_key_once(app):
    app.immediate = True
    first = app.tasks.echo("a", key="i")
    second = app.tasks.echo("b", key="i")
    assert second.id == first.id and second.get() == "a"
    assert app.tasks.echo("c", key="j").get() == "c"
