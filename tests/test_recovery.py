"""Lease recovery's decisions, in one process, on each backend: the process
table (a pid's start ticks), the boot id and the monotonic clock are the
test's own, the leases and records real ones, so each case says exactly
which owner counts as gone and what becomes of its job."""

import pytest

from hueyq.backends import DEAD, PENDING, RUNNING
from hueyq.runtime.recovery import Recovery

BOOT = "boot-of-the-test"
#: The runtime under test: its supervisor's pid and start ticks.
RUNTIME = "100.1"


def owner(host: str, pid: int, start: int = 7, runtime: str = RUNTIME,
          group: "int | None" = None, boot: str = BOOT) -> str:
    """A lease owner as a worker writes it (see hueyq.owner)."""
    return "%s:%d:Worker-1|%s|%d|%s|%d" % (host, pid, boot, start, runtime,
                                           group or pid)


class Clock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend_url(chaos_backend_url):
    """Every backend: the decisions run in one process, so cheaply."""
    return chaos_backend_url


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def table():
    """The process table: pid -> start ticks of the live processes."""
    return {}


@pytest.fixture
def recovery(app, table, clock):
    return Recovery(app, app.host_id, RUNTIME, processes=table.get,
                    boot=BOOT, clock=clock)


def leased(app, who: str, queue: str = "high"):
    """Enqueue one job and lease it as ``who``; its lease info."""
    handle = app.tasks.echo(1)
    storage = app.storage(queue)
    lease = storage.lease(who)
    assert lease is not None and lease.task_id == handle.id
    return handle.id


def events(app, job_id: str) -> "list[str]":
    return [e["event"] for e in app.store.history(job_id)]


def test_a_lease_of_a_dead_pid_is_redelivered_and_charged(app, recovery):
    job_id = leased(app, owner(app.host_id, 4242))
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == PENDING and message.redeliveries == 1
    assert message.last_error.startswith("suspect: worker")
    assert "died running it" in message.last_error
    row = app.store.get(job_id)
    assert row["state"] == "pending" and row["redeliveries"] == 1
    assert events(app, job_id)[-1] == "redelivered"
    assert recovery.recover() == 0


def test_a_lease_of_a_live_pid_stays_leased(app, recovery, table):
    table[4242] = 7
    job_id = leased(app, owner(app.host_id, 4242, start=7))
    assert recovery.recover() == 0
    assert app.find_message(job_id).state == RUNNING
    # The same pid started at another tick is another process: the owner
    # died and the pid was reused.
    table[4242] = 8
    assert recovery.recover() == 1
    assert app.find_message(job_id).state == PENDING


def test_a_lease_of_an_earlier_boot_is_recovered_uncharged(app, recovery,
                                                           table):
    table[4242] = 7                    # the pid lives, in this boot
    job_id = leased(app, owner(app.host_id, 4242, boot="an-earlier-boot"))
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == PENDING and message.redeliveries == 0
    assert "after a reboot" in message.last_error
    assert events(app, job_id)[-1] == "recovered"


def test_a_worker_of_a_runtime_that_stopped_is_not_charged(app, recovery):
    job_id = leased(app, owner(app.host_id, 4242, runtime="99.9"))
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == PENDING and message.redeliveries == 0
    assert "of a runtime that stopped" in message.last_error


def tick(recovery, clock, seconds: float, step: float = 0.1) -> int:
    """Move the clock ``seconds`` in readings ``step`` of a timeout apart,
    as the supervisor's ticks do; returns how many leases were recovered."""
    timeout = recovery.profile.runtime.lease_timeout
    recovered, left = 0, seconds
    while left > 1e-9:
        move = min(left, step * timeout)
        clock.now += move
        left -= move
        recovered += recovery.recover()
    return recovered


def test_a_silent_host_is_dead_past_lease_timeout_on_this_clock(
        app, recovery, clock):
    timeout = app.profile.runtime.lease_timeout
    other = "another-host"
    beat = {"host": other, "hb": 1}
    app.any_storage.put_record("runtime:%s:1" % other, beat, ttl=600)
    job_id = leased(app, owner(other, 4242))
    assert recovery.recover() == 0              # first seen now
    tick(recovery, clock, timeout * 0.8)
    app.any_storage.put_record("runtime:%s:1" % other, dict(beat, hb=2),
                               ttl=600)
    assert recovery.recover() == 0              # it beat: the wait restarts
    tick(recovery, clock, timeout * 0.8)        # 1.6 timeouts since first
    assert app.find_message(job_id).state == RUNNING
    tick(recovery, clock, timeout * 0.15)       # 0.95 since its last beat
    assert app.find_message(job_id).state == RUNNING
    clock.now += timeout * 0.15                 # 1.1 since its last beat
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == PENDING and message.redeliveries == 0
    assert "host %s stopped beating" % other in message.last_error


def test_a_host_that_never_beat_is_dead_after_lease_timeout(app, recovery,
                                                            clock):
    job_id = leased(app, owner("a-host-without-a-record", 4242))
    assert recovery.recover() == 0
    tick(recovery, clock, app.profile.runtime.lease_timeout * 0.9)
    assert app.find_message(job_id).state == RUNNING
    clock.now += app.profile.runtime.lease_timeout * 0.2
    assert recovery.recover() == 1
    assert app.find_message(job_id).state == PENDING


def test_an_observer_that_could_not_look_judges_nobody_by_that_gap(
        app, recovery, clock):
    # This host was cut off from the backend (or its tick hung on it) for
    # many lease timeouts, and the reading it gets back is stale: the other
    # host seems not to have beaten. It is not judged dead for that gap;
    # only silence over readings in a row counts.
    timeout = app.profile.runtime.lease_timeout
    other = "a-live-host"
    app.any_storage.put_record("runtime:%s:1" % other,
                               {"host": other, "hb": 7}, ttl=600)
    job_id = leased(app, owner(other, 4242))
    assert recovery.recover() == 0
    clock.now += timeout * 5
    assert recovery.recover() == 0
    assert app.find_message(job_id).state == RUNNING
    app.any_storage.put_record("runtime:%s:1" % other,
                               {"host": other, "hb": 8}, ttl=600)
    tick(recovery, clock, timeout * 0.9)        # it beats: alive
    assert app.find_message(job_id).state == RUNNING
    tick(recovery, clock, timeout * 1.2)        # silent while we look
    assert app.find_message(job_id).state == PENDING


def test_a_worker_killed_on_purpose_is_retried_with_its_reason(app,
                                                               recovery):
    job_id = leased(app, owner(app.host_id, 4242))
    storage = app.storage("high")
    reason = "killed: memory 2.1 GiB over worker_memory_hard 2.0 GiB"
    storage.annotate(storage.leases()[0].handle, reason)
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == PENDING and message.redeliveries == 0
    assert message.last_error == reason
    row = app.store.get(job_id)
    assert row["state"] == "pending" and row["error"] == reason
    assert events(app, job_id)[-1] == "killed"


def test_a_worker_killed_for_a_cancel_ends_its_job_cancelled(app, recovery):
    job_id = leased(app, owner(app.host_id, 4242))
    storage = app.storage("high")
    storage.annotate(storage.leases()[0].handle, "cancelled: by the test")
    assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == DEAD and message.reason == "cancelled"
    row = app.store.get(job_id)
    assert row["state"] == "cancelled" and row["reason"] == "cancelled"
    assert events(app, job_id)[-1] == "cancelled"
    assert app.store.get(job_id)["finished_at"] is not None


def test_jobs_of_a_consumer_that_died_running_several_are_suspects(
        app, recovery):
    # Two workers of one consumer process (group 4000) died with it.
    first = leased(app, owner(app.host_id, 4001, group=4000))
    second = leased(app, owner(app.host_id, 4002, group=4000))
    assert recovery.recover() == 2
    for job_id in (first, second):
        message = app.find_message(job_id)
        assert message.redeliveries == 0
        assert "died running 2 jobs; it runs alone next" in \
            message.last_error
    # Both run again (a suspect runs alone); a second crash under both is
    # charged, since they are suspects already.
    leased_again = [app.storage("high").lease(owner(app.host_id, 4003,
                                                    group=4000))
                    for _ in range(2)]
    assert all(l is not None for l in leased_again)
    assert recovery.recover() == 2
    assert [app.find_message(j).redeliveries for j in (first, second)] \
        == [1, 1]


def test_a_job_that_keeps_killing_its_worker_is_poison(app, recovery):
    limit = app.profile.runtime.max_redeliveries
    job_id = leased(app, owner(app.host_id, 5000))
    assert recovery.recover() == 1
    for pid in range(5001, 5001 + limit):
        assert app.storage("high").lease(owner(app.host_id, pid)) is not None
        assert recovery.recover() == 1
    message = app.find_message(job_id)
    assert message.state == DEAD and message.reason == "poison"
    row = app.store.get(job_id)
    assert row["state"] == "dead" and row["reason"] == "poison"
    assert "killed its worker %d times" % (limit + 1) in row["error"]
    assert events(app, job_id)[-1] == "dead"


def test_hand_back_releases_only_dead_processes_of_this_runtime(
        app, recovery, table):
    mine = leased(app, owner(app.host_id, 4242))
    stranger = leased(app, owner(app.host_id, 4343))
    table[4444] = 7
    running = leased(app, owner(app.host_id, 4444))
    assert recovery.hand_back({4242, 4444}) == 1
    found = {j: app.find_message(j) for j in (mine, stranger, running)}
    assert found[mine].state == PENDING and found[mine].redeliveries == 0
    assert found[stranger].state == RUNNING
    assert found[running].state == RUNNING
