"""Watchdog.check() driven with injected samples and clock, rule by rule."""

import textwrap

import pytest

from hueyq.profile import load_profile
from hueyq.runtime.watchdog import LeaseSample, Proc, Samples, Watchdog

GIB = 1024 ** 3
MIB = 1024 ** 2


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "w.toml"
    path.write_text(textwrap.dedent('''
        extends = "dev"
        [memory]
        min_available = "1GiB"
        resume_available = "2GiB"
        [queues.high]
        memory_limit = "1GiB"
        [queues.medium]
        worker_type = "process"
        workers = 2
        memory_limit = "2GiB"
        worker_memory_soft = "768MiB"
        worker_memory_hard = "1GiB"
        time_limit = "60s"
        max_consumers = 3
        scale_up_depth = 100
        scale_up_after = "5s"
        scale_down_after = "30s"
        [queues.low]
        worker_memory_hard = "512MiB"
    '''))
    return load_profile(str(path), env={})


def kinds(actions):
    return [(a.kind, a.queue, a.by if a.kind in ("pause", "resume") else a.pid)
            for a in actions]


def test_system_pressure_pauses_lowest_first_never_the_top(profile):
    dog = Watchdog(profile)
    low = Samples(now=0, available=900 * MIB)
    assert kinds(dog.check(low)) == [("pause", "low", "memory")]
    assert kinds(dog.check(low)) == [("pause", "gpu", "memory")]
    assert kinds(dog.check(low)) == [("pause", "medium", "memory")]
    assert dog.check(low) == []                      # never high
    middle = Samples(now=1, available=int(1.5 * GIB))  # between floor and resume
    assert dog.check(middle) == []
    ok = Samples(now=2, available=2 * GIB)
    assert kinds(dog.check(ok)) == [("resume", "medium", "memory")]
    assert kinds(dog.check(ok)) == [("resume", "gpu", "memory")]
    assert kinds(dog.check(ok)) == [("resume", "low", "memory")]
    assert dog.check(ok) == []


def test_the_pause_reason_names_the_numbers(profile):
    action = Watchdog(profile).check(Samples(now=0, available=900 * MIB))[0]
    assert action.reason == "system memory low (900.0 MiB available < 1.0 GiB)"
    assert (action.value, action.limit) == (900 * MIB, GIB)


def test_pauses_left_by_an_earlier_supervisor_are_lifted(profile, tmp_path):
    dog = Watchdog(profile)
    dog.restore({"low": {"memory": {"since": 1}}, "medium": {"memory": {"since": 2}},
                 "high": {"user": {"since": 0}}})
    ok = Samples(now=0, available=4 * GIB)
    assert kinds(dog.check(ok)) == [("resume", "medium", "memory")]
    assert kinds(dog.check(ok)) == [("resume", "low", "memory")]
    assert dog.check(ok) == []
    off = load_profile(str(_write(tmp_path, 'extends = "dev"\n')), env={})
    dog = Watchdog(off)
    dog.restore({"low": {"memory": {"since": 1}}})
    assert kinds(dog.check(Samples(now=0, available=10 * MIB))) == \
        [("resume", "low", "memory")]


def _write(tmp_path, text):
    path = tmp_path / "other.toml"
    path.write_text(text)
    return path


def test_queue_limit_pauses_recycles_largest_and_resumes_with_hysteresis(profile):
    dog = Watchdog(profile)
    procs = (Proc(10, "medium", "consumer", 100 * MIB),
             Proc(11, "medium", "worker", 900 * MIB),
             Proc(12, "medium", "worker", 1000 * MIB + 300 * MIB))
    over = Samples(now=0, available=8 * GIB, processes=procs)
    actions = dog.check(over)
    assert ("pause", "medium", "memory_limit") in kinds(actions)
    assert ("recycle", "medium", 12) in kinds(actions)
    assert ("kill", "medium", 12) in kinds(actions)     # also over its hard limit
    again = [a for a in dog.check(over) if a.kind in ("pause", "recycle")]
    assert again == []
    near = Samples(now=1, available=8 * GIB,
                   processes=(Proc(10, "medium", "consumer", 1900 * MIB),))
    assert [a for a in dog.check(near) if a.kind == "resume"] == []
    under = Samples(now=2, available=8 * GIB,
                    processes=(Proc(10, "medium", "consumer", 1800 * MIB),))
    assert kinds([a for a in dog.check(under) if a.kind == "resume"]) == \
        [("resume", "medium", "memory_limit")]


def test_hard_limit_kills_once_with_the_reason_and_its_leases(profile):
    dog = Watchdog(profile)
    lease = LeaseSample(handle=7, queue="medium", job_id="j", pid=21, elapsed=1)
    s = Samples(now=0, available=8 * GIB, leases=(lease,),
                processes=(Proc(20, "medium", "consumer", 50 * MIB),
                           Proc(21, "medium", "worker", int(1.3 * GIB))))
    kills = [a for a in dog.check(s) if a.kind == "kill"]
    assert len(kills) == 1 and kills[0].pid == 21 and kills[0].handles == (7,)
    assert kills[0].reason == "killed: memory budget exceeded (1.3 GiB > 1.0 GiB)"
    assert [a for a in dog.check(s) if a.kind == "kill"] == []


def test_exactly_at_the_limit_is_not_over(profile):
    dog = Watchdog(profile)
    s = Samples(now=0, available=8 * GIB,
                processes=(Proc(21, "medium", "worker", GIB),))
    assert [a for a in dog.check(s) if a.kind == "kill"] == []


def test_soft_limit_recycles_once_and_ignores_a_process_consumer(profile):
    dog = Watchdog(profile)
    s = Samples(now=0, available=8 * GIB,
                processes=(Proc(20, "medium", "consumer", 800 * MIB),
                           Proc(21, "medium", "worker", 800 * MIB)))
    assert kinds(dog.check(s)) == [("recycle", "medium", 21)]
    assert dog.check(s) == []
    gone = Samples(now=1, available=8 * GIB,
                   processes=(Proc(22, "medium", "worker", 800 * MIB),))
    assert kinds(dog.check(gone)) == [("recycle", "medium", 22)]


def test_a_thread_consumer_over_its_hard_limit_is_killed_whole(profile):
    dog = Watchdog(profile)
    s = Samples(now=0, available=8 * GIB,
                processes=(Proc(30, "low", "consumer", 600 * MIB),))
    assert kinds(dog.check(s)) == [("kill", "low", 30)]


def test_time_limits_and_cancellation_kill_process_workers_only(profile):
    dog = Watchdog(profile)
    procs = (Proc(21, "medium", "worker", 10 * MIB), Proc(22, "medium", "worker", 10 * MIB),
             Proc(23, "medium", "worker", 10 * MIB), Proc(30, "low", "consumer", 10 * MIB))
    leases = (LeaseSample(1, "medium", "a", 21, elapsed=59.0),
              LeaseSample(2, "medium", "b", 22, elapsed=61.0),
              LeaseSample(3, "medium", "c", 23, elapsed=5.0, time_limit=2.0),
              LeaseSample(4, "low", "d", 30, elapsed=9999.0))
    actions = dog.check(Samples(now=0, available=8 * GIB, processes=procs,
                                leases=leases))
    assert sorted((a.pid, a.reason) for a in actions) == [
        (22, "killed: time limit exceeded (1m00s)"),
        (23, "killed: time limit exceeded (2s)")]
    cancel = LeaseSample(5, "medium", "e", 21, elapsed=1.0, cancel_requested=True)
    actions = dog.check(Samples(now=1, available=8 * GIB, processes=procs,
                                leases=(cancel,)))
    assert [(a.pid, a.reason, a.job_id) for a in actions] == \
        [(21, "cancelled: by user", "e")]


def test_autoscale_up_on_sustained_backlog_within_budget_and_down_when_idle(profile):
    dog = Watchdog(profile)
    procs = (Proc(20, "medium", "consumer", 100 * MIB),)

    def at(now, backlog, consumers, available=8 * GIB, processes=procs):
        return Samples(now=now, available=available, processes=processes,
                       backlog={"medium": backlog}, consumers={"medium": consumers})
    assert dog.check(at(0, 500, 1)) == []
    assert dog.check(at(4, 500, 1)) == []
    assert kinds(dog.check(at(5, 500, 1))) == [("scale_up", "medium", None)]
    assert dog.check(at(6, 500, 2)) == []
    assert kinds(dog.check(at(10, 500, 2))) == [("scale_up", "medium", None)]
    assert dog.check(at(20, 500, 3)) == []                  # max_consumers
    full = (Proc(20, "medium", "consumer", int(1.9 * GIB)),)
    assert dog.check(at(40, 500, 1, processes=full)) == []   # no room in budget
    assert dog.check(at(50, 0, 3)) == []
    assert dog.check(at(79, 0, 3)) == []
    assert kinds(dog.check(at(80, 0, 3))) == [("scale_down", "medium", None)]
    assert dog.check(at(85, 0, 2)) == []
    assert kinds(dog.check(at(110, 0, 2))) == [("scale_down", "medium", None)]
    assert dog.check(at(200, 0, 1)) == []                    # min_consumers


def test_memory_room_is_budget_minus_use(profile):
    # What running tasks declared is taken off by the backend at lease time
    # (test_backends), once: not here too.
    dog = Watchdog(profile)
    s = Samples(now=0, available=8 * GIB,
                processes=(Proc(20, "medium", "consumer", 200 * MIB),
                           Proc(21, "medium", "worker", 300 * MIB)),
                leases=(LeaseSample(1, "medium", "a", 21, 1.0, memory=GIB),))
    rooms = dog.memory_rooms(s)
    assert rooms["medium"] == 2 * GIB - 500 * MIB
    assert rooms["high"] == GIB and "low" not in rooms
