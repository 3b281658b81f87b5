"""The job state machine (hueyq.jobs): the transitions it allows, the record
each transition builder writes into a real store, the reason protocol and
the pause-flag names."""

import uuid

import pytest
from huey.exceptions import HueyException
from huey.utils import Error

from hueyq import jobs
from hueyq.control import RETRYABLE
from hueyq.exceptions import BadSignature, PayloadTooLarge, Undecodable
from hueyq.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store("sqlite://%s" % (tmp_path / "store.db"),
              "app%s" % uuid.uuid4().hex[:8])
    yield s
    s.close()


def seq(n: int, step: int) -> int:
    return jobs.change_seq(n, step)


def start(job_id: str, at: float, n: int = 1, redeliveries: int = 0) -> dict:
    return jobs.started(job_id, task="t.work", queue="medium", at=at,
                        seq=seq(n, jobs.STARTED), redeliveries=redeliveries,
                        host="h", pid=7, worker="w1", enqueued_at=at - 1,
                        priority=5)


# ------------------------------------------------------------ transitions

def test_every_state_has_its_transitions_and_nothing_else():
    assert set(jobs.NEXT) == set(jobs.STATES)
    for targets in jobs.NEXT.values():
        assert targets <= set(jobs.STATES)


def test_the_happy_path_is_allowed_step_by_step():
    path = ["scheduled", "pending", "running", "retrying", "running",
            "complete"]
    assert all(jobs.allowed(a, b) for a, b in zip(path, path[1:]))


def test_complete_is_final_and_other_finished_states_only_go_back_to_pending():
    assert not any(jobs.allowed("complete", s) for s in jobs.STATES
                   if s != "complete")
    for state in ("failed", "cancelled", "expired", "dead"):
        assert [s for s in jobs.STATES if s != state and
                jobs.allowed(state, s)] == ["pending"]


def test_a_job_never_completes_without_running():
    for state in ("scheduled", "pending", "retrying"):
        assert not jobs.allowed(state, "complete")
        assert jobs.reachable(state, "complete")
    assert not jobs.reachable("complete", "running")
    assert jobs.reachable("failed", "complete")       # retried, then ran


def test_retry_accepts_exactly_the_finished_states_that_may_leave():
    assert set(RETRYABLE) == {s for s in jobs.FINISHED
                              if jobs.allowed(s, "pending")}
    assert set(RETRYABLE) == {"failed", "cancelled", "expired", "dead"}


# ------------------------------------------------------------ builders

def test_start_progress_and_completion_in_the_store(store):
    store.write([start("j1", 100.0)])
    store.write([jobs.progress("j1", 40.0, "reading", at=101.0,
                               seq=seq(1, jobs.STARTED))])
    row = store.get("j1")
    assert (row["state"], row["attempts"], row["progress"], row["message"],
            row["worker"], row["priority"]) == ("running", 1, 40.0,
                                                "reading", "w1", 5)
    store.write([jobs.completed("j1", at=103.0, seq=seq(1, jobs.ENDED),
                                started=100.0)])
    row = store.get("j1")
    assert (row["state"], row["progress"], row["duration"],
            row["finished_at"], row["message"]) == ("complete", 100.0, 3.0,
                                                   103.0, "reading")


def test_a_retry_counts_attempts_and_a_failure_keeps_its_traceback(store):
    store.write([start("j2", 10.0)])
    store.write([jobs.retrying("j2", "ValueError('x')", at=11.0,
                               seq=seq(1, jobs.ENDED), tb="tb1")])
    row = store.get("j2")
    assert (row["state"], row["error"], row["finished_at"]) == (
        "retrying", "ValueError('x')", None)
    store.write([start("j2", 20.0, n=2)])
    store.write([jobs.failed("j2", "ValueError('y')", at=21.5,
                             seq=seq(2, jobs.ENDED), tb="tb2", started=20.0)])
    row = store.get("j2")
    assert (row["state"], row["attempts"], row["reason"], row["traceback"],
            row["duration"]) == ("failed", 2, "failed", "tb2", 1.5)


def test_retried_clears_the_error_and_restored_puts_the_state_back(store):
    store.write([start("j3", 1.0), jobs.failed("j3", "boom", at=2.0,
                                               seq=seq(1, jobs.ENDED))])
    store.write([jobs.retried("j3", "medium", at=3.0,
                              seq=seq(2, jobs.CONTROL))])
    row = store.get("j3")
    assert (row["state"], row["error"], row["reason"]) == ("pending", "", "")
    store.write([jobs.restored("j3", "failed", at=4.0,
                               seq=seq(3, jobs.CONTROL))])
    assert store.get("j3")["state"] == "failed"


def test_recovered_dead_and_drained_records(store):
    store.write([start("j4", 1.0)])
    store.write([jobs.recovered("j4", jobs.suspect("worker w1 died"), at=2.0,
                                seq=seq(1, jobs.RECOVERED), redeliveries=1)])
    row = store.get("j4")
    assert (row["state"], row["redeliveries"], row["error"]) == (
        "pending", 1, "suspect: worker w1 died")
    detail = jobs.poison(4, "worker w1 died")
    store.write([jobs.dead("j4", "poison", detail, at=3.0,
                           seq=seq(4, jobs.RECOVERED), payload=b"msg")])
    row = store.get("j4")
    assert (row["state"], row["reason"], row["finished_at"]) == (
        "dead", "poison", 3.0)
    assert store.payload("j4") == b"msg"
    store.write([jobs.cancelled("j5", at=5.0, seq=seq(5, jobs.CONTROL),
                                reason="drained", task="t.work",
                                queue="low")])
    row = store.get("j5")
    assert (row["state"], row["reason"], row["queue"], row["duration"]) == (
        "cancelled", "drained", "low", None)


def test_a_builder_leaves_out_what_it_does_not_know():
    change = jobs.recovered("j", "why", at=1.0, seq=None, task=None)
    assert change == {"id": "j", "state": "pending", "error": "why",
                      "updated_at": 1.0, "seq": None}


@pytest.mark.parametrize("state", ["complete", "failed", "retrying",
                                   "cancelled", "expired", "pending",
                                   "scheduled"])
def test_ended_writes_the_state_huey_decided(state):
    change = jobs.ended("j", state, started=1.0, at=3.0, seq=9,
                        error="e" if state != "complete" else None, tb="t")
    assert change["state"] == state
    finished = state in ("complete", "failed", "cancelled", "expired")
    assert ("finished_at" in change, change.get("duration")) == (
        finished, 2.0 if finished else None)
    if state == "complete":
        assert (change["error"], change["progress"]) == ("", 100.0)
    else:
        assert (change["error"], change["traceback"]) == ("e", "t")


def test_event_and_error_result():
    row = jobs.event("app.high", "j", "t.work", "killed", "why", at=5.0)
    assert row == {"ts": 5.0, "queue": "app.high", "task_id": "j",
                   "task": "t.work", "signal": "killed", "duration": None,
                   "error": "why", "args": None}
    result = jobs.error_result("j", "cancelled")
    assert isinstance(result, Error)
    assert result.metadata["error"] == "cancelled"
    assert result.metadata["task_id"] == "j"


# ------------------------------------------------------------ reasons

def test_the_last_error_protocol_round_trips():
    assert jobs.killed("time limit exceeded (1m00s)") == \
        "killed: time limit exceeded (1m00s)"
    assert jobs.is_killed(jobs.killed("x"))
    assert jobs.is_cancel(jobs.cancelled_by("user"))
    assert jobs.cancelled_by("user") == "cancelled: by user"
    assert jobs.is_suspect(jobs.suspect("worker w died running it"))
    assert jobs.time_limit("exceeded (2s)") == \
        "killed: time limit exceeded (2s)"
    assert jobs.is_time_limit(jobs.time_limit("exceeded (2s)"))
    assert jobs.is_killed(jobs.time_limit("exceeded (2s)"))
    assert not jobs.is_time_limit(jobs.killed("memory budget"))
    assert jobs.is_poison(jobs.poison(3, "SIGKILL"))
    assert not jobs.is_poison(jobs.killed("poison"))
    for text in (None, "", "ValueError('killed: no')"):
        assert not (jobs.is_killed(text) or jobs.is_cancel(text)
                    or jobs.is_suspect(text))
    assert jobs.poison(4, "d") == "poison: killed its worker 4 times (d)"


@pytest.mark.parametrize("exc,reason", [
    (BadSignature("bad"), "bad_signature"),
    (PayloadTooLarge("big"), "too_large"),
    (HueyException("x not found in TaskRegistry"), "unknown_task"),
    (Undecodable("junk"), "undecodable"),
    (ValueError("anything else"), "undecodable"),
])
def test_dead_reason(exc, reason):
    assert jobs.dead_reason(exc) == reason
    assert reason in jobs.DEAD_REASONS


def test_pause_flags_name_who_paused():
    flags = {jobs.pause_flag("user"): {"by": "user"},
             jobs.pause_flag("memory_limit"): {"by": "memory_limit"},
             "admission": 5}
    assert jobs.pauses(flags) == {"user": {"by": "user"},
                                  "memory_limit": {"by": "memory_limit"}}


def test_a_paused_queue_reads_back_through_its_backend(app):
    from hueyq import control
    assert control.pause(app, "medium", by="memory", reason="low")
    by = jobs.pauses(app.storage("medium").flags())
    assert list(by) == ["memory"] and by["memory"]["reason"] == "low"
    assert control.resume(app, "medium", by="memory")
    assert jobs.pauses(app.storage("medium").flags()) == {}
