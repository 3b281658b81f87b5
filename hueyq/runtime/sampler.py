"""The sampler: what the supervisor measures each tick for the watchdog.

:class:`Sampler` reads processes and the system with psutil (PSS where the
kernel has it, RSS otherwise, cached so an idle runtime costs next to
nothing to watch). :class:`RuntimeSampler` builds on it the watchdog's
:class:`~hueyq.runtime.watchdog.Samples` of one runtime: each consumer's
process tree (a thread consumer as one process, a process consumer and each
worker it forked apart), this host's leases with how long each has run and
whether its job was revoked, each queue's backlog; and the torch readings
(GPU memory) that the workers of GPU lanes publish as records.
"""

import os
import time

import psutil

from hueyq.backends import PENDING
from hueyq.runtime import SCHEDULER_PROCESS_NAME
from hueyq.runtime.watchdog import LeaseSample, Proc, Samples


#: PSS is read again once RSS moved by this much, or the reading is this old.
PSS_RSS_DRIFT = 4 << 20
PSS_MAX_AGE = 10.0


class Sampler:
    """Measures processes and the system with psutil.

    Reading PSS makes the kernel walk a process's page tables, which costs
    a millisecond or more per process; reading RSS is cheap. So PSS is read
    again only when a process's RSS moved by ``PSS_RSS_DRIFT`` or the last
    reading is ``PSS_MAX_AGE`` old, and in between it is the last PSS plus
    the change in RSS. An idle runtime then costs next to nothing to watch,
    and a growing one is measured every interval.
    """

    def __init__(self) -> None:
        self._procs: "dict[int, psutil.Process]" = {}
        self._pss: "dict[int, tuple[int, int, float]]" = {}
        self.method = "pss"

    def system(self) -> "tuple[int, int]":
        """(available, total) bytes of system memory."""
        vm = psutil.virtual_memory()
        return vm.available, vm.total

    def tree(self, pid: int) -> "list[psutil.Process]":
        """A process and its live descendants."""
        proc = self._process(pid)
        if proc is None:
            return []
        return [proc] + self.descendants(pid)

    def children(self, pid: int) -> "list[psutil.Process]":
        """Direct children, from /proc/PID/task/*/children when the kernel
        has it (a tenth of the cost of psutil's scan of every process)."""
        try:
            pids = []
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as fh:
                    pids.extend(int(p) for p in fh.read().split())
        except FileNotFoundError:
            proc = self._process(pid)
            try:
                return proc.children() if proc is not None else []
            except psutil.Error:
                return []
        except OSError:
            return []
        return [p for p in map(self._process, pids) if p is not None]

    def descendants(self, pid: int) -> "list[psutil.Process]":
        """Every live descendant of ``pid``."""
        out = []
        stack = [pid]
        while stack:
            for child in self.children(stack.pop()):
                out.append(child)
                stack.append(child.pid)
        return out

    def _process(self, pid: int) -> "psutil.Process | None":
        proc = self._procs.get(pid)
        try:
            if proc is None or not proc.is_running():
                proc = psutil.Process(pid)
                self._procs[pid] = proc
                self._pss.pop(pid, None)
            return proc
        except psutil.Error:
            self._procs.pop(pid, None)
            self._pss.pop(pid, None)
            return None

    def forget_gone(self, live: "set[int]") -> None:
        """Drop what is cached of processes that are no longer sampled."""
        for pid in set(self._procs) - live:
            self._procs.pop(pid, None)
            self._pss.pop(pid, None)

    def memory(self, proc: psutil.Process) -> "tuple[int, int] | None":
        """(PSS or RSS, RSS) of a process, or None if it is gone."""
        try:
            rss = proc.memory_info().rss
            if self.method != "pss":
                return rss, rss
            now = time.monotonic()
            known = self._pss.get(proc.pid)
            if known is not None and abs(rss - known[1]) < PSS_RSS_DRIFT \
                    and now - known[2] < PSS_MAX_AGE:
                return max(0, known[0] + rss - known[1]), rss
            try:
                full = proc.memory_full_info()
            except (psutil.AccessDenied, AttributeError):
                self.method = "rss"
                return rss, rss
            self._pss[proc.pid] = (full.pss, full.rss, now)
            return full.pss, full.rss
        except psutil.Error:
            self._pss.pop(proc.pid, None)
            return None

    def own(self) -> "int | None":
        """Memory of the calling process."""
        found = self.memory(psutil.Process(os.getpid()))
        return found[0] if found else None


class RuntimeSampler(Sampler):
    """The samples of one runtime's consumers, leases and backlog."""

    def __init__(self, app, queues: "list[str]", host: str, pid: int) -> None:
        super().__init__()
        self.app = app
        self.profile = app.profile
        self.queues = queues
        self.host = host
        #: The supervisor's own pid (its cached readings are kept).
        self.pid = pid
        self._seen: "dict[tuple, float]" = {}

    def sample(self, slots, now: float) -> Samples:
        """Measure consumers, their workers and the system; list leases."""
        procs = []
        consumers: "dict[str, int]" = {}
        for slot in slots:
            if not slot.alive:
                continue
            consumers[slot.queue] = consumers.get(slot.queue, 0) + 1
            procs.extend(self._sample_tree(slot))
        self.forget_gone({p.pid for p in procs} | {self.pid})
        available, total = self.system()
        leases = self._leases(now)
        backlog = {q: self.app.storage(q).count(PENDING) for q in self.queues}
        return Samples(now=now, available=available, total=total,
                       processes=tuple(procs), leases=tuple(leases),
                       backlog=backlog, consumers=consumers,
                       method=self.method)

    def _leases(self, now: float) -> "list[LeaseSample]":
        leases = []
        live = set()
        for queue in self.queues:
            storage = self.app.storage(queue)
            mine = [l for l in storage.leases() if l.host == self.host]
            revoked = self._revoked(queue, mine)
            for lease in mine:
                key = (queue, lease.handle)
                live.add(key)
                first = self._seen.setdefault(key, now)
                leases.append(LeaseSample(
                    handle=lease.handle, queue=queue, job_id=lease.task_id,
                    pid=lease.pid or 0, elapsed=now - first,
                    time_limit=lease.meta.get("time_limit"),
                    memory=lease.meta.get("memory") or 0,
                    cancel_requested=lease.task_id in revoked))
        for key in set(self._seen) - live:
            del self._seen[key]
        return leases

    def _sample_tree(self, slot) -> "list[Proc]":
        root = self.tree(slot.pid)[:1]
        if not root:
            return []
        config = self.profile.queues[slot.queue]
        if config.worker_type != "process":
            memory, rss = self._measure(root + self.descendants(slot.pid))
            return [Proc(slot.pid, slot.queue, "consumer", memory, rss)]
        out = [Proc(slot.pid, slot.queue, "consumer",
                    *self._measure(root))]
        for child in self.children(slot.pid):
            memory, rss = self._measure([child] +
                                        self.descendants(child.pid))
            if memory:
                out.append(Proc(child.pid, slot.queue, _kind(child), memory,
                                rss))
        return out

    def _measure(self, procs: list) -> "tuple[int, int]":
        """Summed (PSS or RSS, RSS) of processes still alive."""
        memory = rss = 0
        for proc in procs:
            found = self.memory(proc)
            if found is not None:
                memory += found[0]
                rss += found[1]
        return memory, rss

    def _revoked(self, queue: str, leases: list) -> "set[str]":
        if self.profile.queues[queue].worker_type != "process" or not leases:
            return set()
        huey = self.app.huey(queue)
        keys = ["r:%s" % l.task_id for l in leases if l.task_id]
        found = huey.storage.peek_many(keys) if keys else {}
        return {k[2:] for k in found}

    def gpu(self) -> "dict[int, dict]":
        """The torch readings (allocated, reserved and peak GPU memory) that
        workers of GPU lanes on this host publish after each task, by pid."""
        found = self.app.queue_backend.records("gpu:%s:" % self.host)
        out = {}
        for key, record in found.items():
            tail = key[len("gpu:%s:" % self.host):]
            if tail.isdigit():
                out[int(tail)] = record
        return out


def _kind(proc: psutil.Process) -> str:
    """``worker`` or ``scheduler``: what a process consumer forked."""
    try:
        if proc.name() == SCHEDULER_PROCESS_NAME[:15]:
            return "scheduler"
    except psutil.Error:
        pass
    return "worker"
