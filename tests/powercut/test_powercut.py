"""Power cuts under load (issue 18): nothing acknowledged is lost.

The queue file and the job store live on cutfs (cutfs.py), which keeps only
what was fsynced. Each boot is a fresh PID namespace (machine.py) running
``hueyq run`` and a producer, with its own boot id and the wall clock moved.
At a random moment the power goes: cutfs is killed, so nothing unsynced
survives, then every process of the boot. The test checks what the disk
kept and boots again; after the last cut it drains the queues with the
clock behind the last boot's, cuts once more, and checks every job the
producer was told was accepted (its ledger, off cutfs) against the
executions the tasks logged (also off cutfs).
"""

import collections
import dataclasses
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from conftest import missing
from powercut.cutfs import Mount, available
from powercut.machine import build_clockshift

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
#: Power cuts per run (POWERCUT_CUTS overrides; POWERCUT_SEED replays one).
CUTS = int(os.environ.get("POWERCUT_CUTS", "30"))
#: Each boot's wall clock, in seconds from the host's: behind, true and
#: ahead. Consecutive boots differ, so between boots the clock steps forward
#: and back; the last boot, which drains, runs behind the one before it.
OFFSETS = tuple(int(o) for o in
                os.environ.get("POWERCUT_OFFSETS", "-3600,0,3600").split(","))
MARATHONS = 2
FINISHED = ("complete", "failed", "cancelled", "expired", "dead")
#: What became of an accepted job that did not end complete.
LOST = ("no record", "not run", "poison", "lease never recovered")
#: A job that completed but whose store row says otherwise.
STUCK = ("stuck record", "stuck by the clock")
PROFILE = """\
app_name = "powercut"
[backend]
url = "sqlite://%(var)s/queue.db"
[store]
url = "sqlite://%(var)s/store.db"
flush_interval = "100ms"
progress_interval = "100ms"
[runtime]
grace_period = "2s"
poll_interval = "500ms"
restart_backoff_max = "1s"
max_redeliveries = 3
[memory]
interval = "250ms"
[queues.fast]
priority = 100
workers = 2
worker_type = "thread"
[queues.slow]
priority = 50
workers = 2
worker_type = "process"
[queues.marathon]
priority = 10
workers = 2
worker_type = "thread"
"""


def sync_dir(path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the machine

class Machine:
    """cutfs, the boots that run on it, and what they leave behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fs = Mount(root / "disk", root / "mnt")
        self.var = root / "mnt" / "var"
        self.profile = root / "profile.toml"
        self.profile.write_text(PROFILE % {"var": self.var})
        self.proc: "subprocess.Popen | None" = None
        self.clockshift = build_clockshift(str(root))
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.env = dict(env, PYTHONPATH=str(HERE.parent),
                        HUEYQ_PROFILE=str(self.profile),
                        POWERCUT_LOG=str(root / "executions.log"))

    def install(self) -> None:
        """The data directory exists and was synced, as an installer (or
        systemd's StateDirectory) leaves it."""
        self.fs.mount()
        os.mkdir(self.var)
        sync_dir(self.fs.mountpoint)

    def boot(self, number: int, offset: int, daemons: int, produce: int,
             marathons: int, seed: int) -> None:
        cmd = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
               sys.executable, str(HERE / "machine.py"), "--boot",
               str(number), "--dir", str(self.root), "--offset", str(offset),
               "--clockshift", self.clockshift, "--daemons", str(daemons),
               "--produce", str(produce), "--marathons", str(marathons),
               "--seed", str(seed)]
        with open(self.root / ("machine-%d.log" % number), "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env, cwd=self.root,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def runtime_log(self, number: int) -> str:
        path = self.root / ("runtime-%d.log" % number)
        return path.read_text(errors="replace") if path.exists() else ""

    def cut(self) -> None:
        """The power goes: nothing more reaches the disk, every process of
        the boot dies; then the disk is mounted again for the next boot."""
        self.fs.cut()
        self._kill_boot()
        self.fs.mount()

    def _kill_boot(self) -> None:
        if self.proc is None:
            return
        try:
            for init in psutil.Process(self.proc.pid).children():
                init.kill()  # pid 1 of the boot: the kernel kills the rest
        except psutil.NoSuchProcess:
            pass
        self.proc.kill()
        self.proc.wait(30)
        self.proc = None

    def close(self) -> None:
        self._kill_boot()
        self.fs.cut()

    def disk(self, name: str) -> "Disk":
        """A copy of what the disk holds now, opened as the next boot would
        (the copy runs SQLite's recovery, the disk stays as the cut left
        it)."""
        where = self.root / name
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir()
        for db in ("queue.db", "store.db"):
            for file in (db, db + "-wal", db + "-journal"):
                if (self.var / file).exists():
                    shutil.copyfile(self.var / file, where / file)
        return Disk(where)


@dataclasses.dataclass
class Row:
    state: str
    updated_at: float
    reason: "str | None"


class Disk:
    """The queue file's messages and the store's rows, after a cut."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.integrity = {}
        self.messages: "dict[str, list]" = collections.defaultdict(list)
        self.rows: "dict[str, Row]" = {}
        for task_id, state, reason, owner in self._read(
                "queue", "select task_id, state, reason, owner from"
                " hueyq_message"):
            self.messages[task_id].append((state, reason, owner))
        for job_id, state, updated_at, reason in self._read(
                "store", "select id, state, updated_at, reason from"
                " hueyq_job"):
            self.rows[job_id] = Row(state or "pending", updated_at, reason)
        self.repaired = len(self._read(
            "store", "select 1 from huey_event where signal = 'repaired'"))

    def _read(self, name: str, query: str) -> list:
        """Rows of ``query`` on one file (none before its tables exist),
        and its integrity check."""
        conn = sqlite3.connect(self.where / ("%s.db" % name))
        try:
            self.integrity[name] = conn.execute(
                "pragma integrity_check").fetchone()[0]
            try:
                return conn.execute(query).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                return []
        finally:
            conn.close()

    def states(self, job_id: str) -> "set[str]":
        return {m[0] for m in self.messages.get(job_id, ())}


# ---------------------------------------------------------------- the logs

@dataclasses.dataclass
class Run:
    """One execution of a job, from the tasks' log."""
    boot: int
    pid: int
    started: float
    outcome: "str | None" = None   # "E" (returned), "F" (failed on purpose)
    ended: "float | None" = None


def read_ledger(path: Path) -> "dict[str, str]":
    """Jobs whose enqueue returned to the producer: id -> kind."""
    if not path.exists():
        return {}
    return dict(line.split() for line in path.read_text().splitlines())


def read_runs(path: Path) -> "dict[str, list[Run]]":
    runs: "dict[str, list[Run]]" = collections.defaultdict(list)
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        kind, job_id, boot, pid, ts = line.split()
        if kind == "S":
            runs[job_id].append(Run(int(boot), int(pid), float(ts)))
            continue
        for run in reversed(runs[job_id]):
            if run.boot == int(boot) and run.pid == int(pid) and \
                    run.outcome is None:
                run.outcome, run.ended = kind, float(ts)
                break
    return runs


def duplicates(runs: "dict[str, list[Run]]") -> "collections.Counter":
    """Runs beyond the first, by what came before them: a run cut short by
    the power, a run that had returned but whose ack the cut undid, or one
    in the same boot (no cause: never allowed). The retry of a planned
    failure is not a duplicate; when a cut followed that failure, the next
    boot may run both the retry and the failed run's message, whose ack
    the cut undid."""
    found = collections.Counter()
    for job_runs in runs.values():
        credit = 0
        for before, run in zip(job_runs, job_runs[1:]):
            if before.outcome == "F":
                credit += before.boot != run.boot
            elif before.boot != run.boot:
                found["running at the cut" if before.outcome is None
                      else "finished, ack undone by the cut"] += 1
            elif credit:
                credit -= 1
                found["finished, ack undone by the cut"] += 1
            else:
                found["without a cut"] += 1
    return found


def frozen(row: Row, job_runs: "list[Run]") -> bool:
    """A row newer than the job's last run: written by a boot whose clock
    was ahead, so the store dropped the later boots' changes as older
    (issue 18 item 1: records ordered by wall-clock time)."""
    if not job_runs:
        return False
    last = job_runs[-1]
    return row.updated_at > (last.ended or last.started) + 1


def in_neither_place(ledger, disk: Disk, runs) -> "dict[str, list[str]]":
    """Accepted jobs the cut left with no message in the queue file and no
    finished record in the store: no record at all, or one stuck in a state
    it can never leave (split by whether the clock froze it, item 1)."""
    found = {"no record": [], "stuck record": [], "stuck by the clock": []}
    for job_id in ledger:
        if job_id in disk.messages:
            continue
        row = disk.rows.get(job_id)
        if row is None:
            found["no record"].append(job_id)
        elif row.state not in FINISHED:
            kind = "stuck by the clock" if frozen(row, runs.get(job_id, [])) \
                else "stuck record"
            found[kind].append(job_id)
    return found


# ---------------------------------------------------------------- the test

def need_machine() -> None:
    reason = available()
    if reason is None and shutil.which("unshare") is None:
        reason = "unshare is not installed (Debian package util-linux)"
    if reason is None and shutil.which("cc") is None:
        reason = "no C compiler for the clock shim (Debian package gcc)"
    if reason is None and os.geteuid() != 0:
        reason = "PID namespaces and mounts need root"
    if reason:
        missing(reason)


@pytest.fixture
def machine(tmp_path):
    need_machine()
    box = Machine(tmp_path)
    box.install()
    yield box
    box.close()


def test_power_cuts_lose_no_accepted_job(machine, capsys):
    seed = int(os.environ.get("POWERCUT_SEED") or random.randrange(1 << 30))
    rng = random.Random(seed)
    began = time.monotonic()
    failures: "list[str]" = []
    after_cuts = cut_many(machine, rng, failures)
    final = CUTS + 1
    machine.boot(final, min(OFFSETS), daemons=rng.randint(0, 4), produce=0,
                 marathons=0, seed=0)
    drain(machine, final)
    machine.cut()
    disk = machine.disk("after-drain")
    elapsed = time.monotonic() - began
    ledger = read_ledger(machine.root / "ledger")
    runs = read_runs(machine.root / "executions.log")
    outcome = judge(machine, disk, ledger, runs)
    dups = duplicates(runs)
    report = [
        "power cuts: %d cuts and a drain in %.0fs (seed %d; POWERCUT_SEED "
        "replays it), clock offsets %s" % (CUTS, elapsed, seed, OFFSETS),
        "accepted jobs: %d (%s), executions: %d" % (
            len(ledger), _figures(collections.Counter(ledger.values())),
            sum(map(len, runs.values()))),
        "lost: %d (%s); store rows left unfinished: %s" % (
            sum(len(outcome[k]) for k in LOST), _figures(
                {k: len(outcome[k]) for k in LOST}),
            _figures({k: len(outcome[k]) for k in STUCK})),
        "duplicated: %d jobs, %d extra runs (%s)" % (
            sum(1 for r in runs.values() if duplicates({0: r})),
            sum(dups.values()), _figures(dups) or "none"),
        "after the cuts, in neither place: %s; store rows repaired by the "
        "sweep: %d" % (_figures(after_cuts), disk.repaired),
    ]
    with capsys.disabled():
        print("\n" + "\n".join(report))
    failures += final_failures(disk, outcome, runs, dups)
    assert not failures, "\n".join(report + failures)


def cut_many(machine: Machine, rng: random.Random, failures: list
             ) -> "collections.Counter":
    """CUTS boots, each cut at a random moment and checked after it: what
    the disk kept is consistent, and holds every accepted job."""
    seen = collections.Counter()
    offset = OFFSETS[0]
    for boot in range(1, CUTS + 1):
        offset = max(OFFSETS) if boot == CUTS else rng.choice(
            [o for o in OFFSETS if o != offset])
        produce = 0 if rng.random() < 0.3 else rng.randint(20, 200)
        machine.boot(boot, offset, daemons=rng.randint(0, 4), produce=produce,
                     marathons=MARATHONS if boot == 1 else 0,
                     seed=rng.randrange(1 << 30))
        # The cut comes at a random moment: a quarter of them while the
        # runtime starts up and recovers, the rest while it works.
        time.sleep(rng.uniform(0.05, 1.0) if rng.random() < 0.25
                   else rng.uniform(1.0, 4.0))
        machine.cut()
        disk = machine.disk("after-cut")
        for name, result in disk.integrity.items():
            if result != "ok":
                failures.append("cut %d: integrity_check of the %s file: %s"
                                % (boot, name, result))
        lost = in_neither_place(read_ledger(machine.root / "ledger"), disk,
                                read_runs(machine.root / "executions.log"))
        for kind, ids in lost.items():
            seen[kind] += len(ids)
            if ids:
                failures.append("cut %d: %d accepted jobs in neither place "
                                "(%s), e.g. %s" % (boot, len(ids), kind,
                                                   ids[0]))
    return seen


def final_failures(disk: "Disk", outcome: dict, runs: dict,
                   dups: "collections.Counter") -> "list[str]":
    failures = ["after the drain: integrity_check of the %s file: %s"
                % (name, result) for name, result in disk.integrity.items()
                if result != "ok"]
    if dups["without a cut"]:
        twice = [j for j, r in runs.items()
                 if duplicates({j: r})["without a cut"]]
        failures.append("%d jobs ran twice in one boot, e.g. %s"
                        % (len(twice), twice[0]))
    for kind in ("no record", "not run", "stuck record"):
        if outcome.get(kind):
            failures.append("after the drain, %d accepted jobs: %s, e.g. %s"
                            % (len(outcome[kind]), kind, outcome[kind][0]))
    never = [j for j in outcome.get("complete", ())
             if not any(r.outcome == "E" for r in runs.get(j, ()))]
    if never:
        failures.append("%d jobs complete that never ran, e.g. %s"
                        % (len(never), never[0]))
    return failures


def _figures(counts) -> str:
    return ", ".join("%s %d" % kv for kv in sorted(dict(counts).items()))


def drain(machine: Machine, boot: int, timeout: float = 120.0) -> None:
    """Wait until the last boot has run everything it can: every accepted
    job recorded complete and no message left, or nothing left to run and
    nothing moving for 3 s (leases that are never recovered, item 8)."""
    deadline = time.monotonic() + timeout
    while "started consumer" not in machine.runtime_log(boot):
        assert time.monotonic() < deadline, machine.runtime_log(boot)
        time.sleep(0.05)
    ledger = set(read_ledger(machine.root / "ledger"))
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        counts, complete = live_counts(machine)
        runs = read_runs(machine.root / "executions.log")
        busy = any(r.boot == boot and r.outcome is None
                   for job_runs in runs.values() for r in job_runs)
        if not any(counts.values()) and ledger <= complete:
            return
        now = (counts, len(complete), sum(map(len, runs.values())))
        if now != last:
            last, since = now, time.monotonic()
        elif not counts["waiting"] and not busy and \
                time.monotonic() - since > 3:
            return
        time.sleep(0.2)
    raise AssertionError("the last boot did not drain in %.0fs:\n%s"
                         % (timeout, machine.runtime_log(boot)[-3000:]))


def live_counts(machine: Machine) -> "tuple[dict, set]":
    counts = {"waiting": 0, "running": 0}
    conn = sqlite3.connect(machine.var / "queue.db", timeout=10)
    try:
        for state, count in conn.execute(
                "select state, count(*) from hueyq_message where state in"
                " ('pending', 'scheduled', 'running') group by state"):
            counts["running" if state == "running" else "waiting"] += count
    finally:
        conn.close()
    conn = sqlite3.connect(machine.var / "store.db", timeout=10)
    try:
        complete = {r[0] for r in conn.execute(
            "select id from hueyq_job where state = 'complete'")}
    except sqlite3.OperationalError:
        complete = set()
    finally:
        conn.close()
    return counts, complete


def judge(machine: Machine, disk: Disk, ledger, runs) -> "dict[str, list]":
    """Every accepted job as a user sees it after the drain (``app.job``
    on a copy of the disk), sorted by what became of it."""
    import hueyq
    from hueyq.exceptions import JobNotFound
    profile = machine.root / "after-drain.toml"
    profile.write_text(PROFILE % {"var": disk.where})
    app = hueyq.App(str(profile))
    outcome: "dict[str, list]" = collections.defaultdict(list)
    for kind in ("complete",) + LOST + STUCK:
        outcome[kind] = []
    try:
        for job_id in ledger:
            try:
                job = app.job(job_id, history=False)
            except JobNotFound:
                outcome["no record"].append(job_id)
                continue
            outcome[_verdict(job, disk, runs.get(job_id, []))].append(job_id)
        for job_id, row in disk.rows.items():
            if job_id not in ledger and row.state not in FINISHED and \
                    "running" not in disk.states(job_id):
                kind = "stuck by the clock" if frozen(
                    row, runs.get(job_id, [])) else "stuck record"
                outcome[kind].append(job_id)
    finally:
        app.close()
    return outcome


def _verdict(job, disk: Disk, job_runs: "list[Run]") -> str:
    if job.state == "complete":
        row = disk.rows.get(job.id)
        if row is not None and row.state not in FINISHED and \
                not disk.states(job.id) - {"done"}:
            return "stuck by the clock" if frozen(row, job_runs) else \
                "stuck record"
        return "complete"
    if job.state == "dead" and job.reason == "poison":
        return "poison"
    if "running" in disk.states(job.id):
        return "lease never recovered"
    row = disk.rows.get(job.id)
    if row is not None and row.state not in FINISHED and frozen(row, job_runs):
        return "stuck by the clock"
    if not any(r.outcome == "E" for r in job_runs):
        return "not run"
    return "stuck record"
