"""The memory and time watchdog: samples in, actions out.

:meth:`Watchdog.check` is a pure decision step. Given what the supervisor
sampled (each consumer and process worker's memory, the system's available
memory, the leases running on this host and each queue's backlog) it returns
the actions to take:

* system pressure: below ``memory.min_available`` pause one more queue per
  check, lowest priority first and never the highest-priority queue; resume
  them one by one, highest first, once available memory is back over the
  resume threshold (hysteresis);
* ``memory_limit`` (a queue's whole process tree): over it, pause the queue
  and recycle its largest process; resume below 90% of the limit;
* ``worker_memory_hard``: kill the process now (its job is retried or
  failed with the reason); ``worker_memory_soft``: recycle it after its
  current task;
* ``time_limit`` (task or queue) and cancellation on process workers: kill;
* autoscale: one more consumer for a backlog that stays over
  ``scale_up_depth`` when the budgets allow, one fewer once it stays empty;
* the memory room (:mod:`hueyq.memory`): how much memory each budgeted
  queue has left for tasks that declare ``memory=``, which admission lets
  start only when they fit.

Memory is PSS where the kernel has it (RSS over-counts pages shared between
a consumer and its forked workers), RSS otherwise; the measuring is
:mod:`hueyq.runtime.sampler`'s.
"""

import dataclasses
import logging
from typing import Iterable

from hueyq import jobs
from hueyq.memory import memory_room
from hueyq.profile import Profile
from hueyq.units import format_duration, format_over, format_size

logger = logging.getLogger("hueyq.watchdog")

#: A queue paused over its memory_limit resumes below this share of it.
LIMIT_RESUME_SHARE = 0.9


@dataclasses.dataclass(frozen=True)
class Proc:
    """One sampled process: a consumer, or a process worker it forked."""
    pid: int
    queue: str
    kind: str
    memory: int
    rss: int = 0


@dataclasses.dataclass(frozen=True)
class LeaseSample:
    """A job running on this host, as the watchdog sees it."""
    handle: object
    queue: str
    job_id: str
    pid: int
    elapsed: float
    time_limit: "float | None" = None
    memory: int = 0
    cancel_requested: bool = False


@dataclasses.dataclass(frozen=True)
class Samples:
    """Everything one check looks at."""
    now: float
    available: "int | None" = None
    total: "int | None" = None
    processes: "tuple[Proc, ...]" = ()
    leases: "tuple[LeaseSample, ...]" = ()
    backlog: "dict[str, int]" = dataclasses.field(default_factory=dict)
    consumers: "dict[str, int]" = dataclasses.field(default_factory=dict)
    method: str = "pss"


@dataclasses.dataclass(frozen=True)
class Action:
    """Something the supervisor should do, and why."""
    kind: str
    queue: str
    pid: "int | None" = None
    reason: str = ""
    value: "int | None" = None
    limit: "int | None" = None
    by: str = "watchdog"
    handles: "tuple" = ()
    job_id: "str | None" = None


class Watchdog:
    """Decides watchdog actions for one profile; keeps only what it did."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.pressure_paused: "list[str]" = []
        self.limit_paused: "set[str]" = set()
        self.recycling: "set[int]" = set()
        self.killed: "set[int]" = set()
        self._deep_since: "dict[str, float]" = {}
        self._empty_since: "dict[str, float]" = {}

    def restore(self, pauses: "dict[str, dict[str, dict]]") -> None:
        """Take over the pauses an earlier supervisor left in the backend
        (``{queue: {by: flag}}``), so they are lifted when conditions allow."""
        pressure = [(flag.get("since", 0), queue) for queue, flags in
                    pauses.items() for by, flag in flags.items()
                    if by == "memory"]
        self.pressure_paused = [q for _, q in sorted(pressure)]
        self.limit_paused = {queue for queue, flags in pauses.items()
                             if "memory_limit" in flags}

    @property
    def queues(self):
        return [self.profile.queues[q] for q in self.profile.queue_names]

    def check(self, samples: Samples) -> "list[Action]":
        """The actions to take for these samples."""
        self._forget_gone(samples)
        actions = self._system(samples)
        for queue in self.queues:
            actions += self._queue_limit(queue, samples)
        actions += self._workers(samples)
        actions += self._leases(samples)
        actions += self._scale(samples)
        return actions

    def _forget_gone(self, samples: Samples) -> None:
        live = {p.pid for p in samples.processes}
        self.recycling &= live
        self.killed &= live

    # ------------------------------------------------------------ rules

    def _system(self, s: Samples) -> "list[Action]":
        floor = self.profile.memory.min_available
        if s.available is None:
            return []
        if floor and s.available < floor:
            order = sorted(self.queues, key=lambda q: q.priority)[:-1]
            for queue in order:
                if queue.name not in self.pressure_paused:
                    self.pressure_paused.append(queue.name)
                    return [Action("pause", queue.name, by="memory",
                                   value=s.available, limit=floor,
                                   reason="system memory low (%s available "
                                   "< %s)" % (format_size(s.available),
                                              format_size(floor)))]
            return []
        resume_at = self.profile.memory.resume_threshold
        if self.pressure_paused and (not floor or s.available >= resume_at):
            name = self.pressure_paused.pop()
            return [Action("resume", name, by="memory", value=s.available,
                           limit=resume_at,
                           reason="system memory recovered (%s available >= "
                           "%s)" % (format_size(s.available),
                                    format_size(resume_at)))]
        return []

    def _queue_limit(self, queue, s: Samples) -> "list[Action]":
        limit = queue.memory_limit
        if not limit:
            if queue.name in self.limit_paused:
                self.limit_paused.discard(queue.name)
                return [Action("resume", queue.name, by="memory_limit",
                               reason="the queue no longer has a limit")]
            return []
        procs = [p for p in s.processes if p.queue == queue.name]
        total = sum(p.memory for p in procs)
        if total > limit and queue.name not in self.limit_paused:
            self.limit_paused.add(queue.name)
            reason = "queue memory over its limit (%s)" % format_over(total,
                                                                       limit)
            actions = [Action("pause", queue.name, by="memory_limit",
                              value=total, limit=limit, reason=reason)]
            candidates = [p for p in procs if p.pid not in self.recycling
                          and p.pid not in self.killed
                          and (p.kind == "worker"
                               or queue.worker_type != "process")]
            if candidates:
                largest = max(candidates, key=lambda p: p.memory)
                self.recycling.add(largest.pid)
                actions.append(Action("recycle", queue.name, pid=largest.pid,
                                      value=largest.memory, limit=limit,
                                      reason=reason))
            return actions
        if queue.name in self.limit_paused and total < limit * LIMIT_RESUME_SHARE:
            self.limit_paused.discard(queue.name)
            return [Action("resume", queue.name, by="memory_limit",
                           value=total, limit=limit,
                           reason="queue memory back under its limit (%s)"
                           % format_size(total))]
        return []

    def _workers(self, s: Samples) -> "list[Action]":
        actions = []
        for p in s.processes:
            queue = self.profile.queues.get(p.queue)
            if queue is None or p.pid in self.killed:
                continue
            runs_tasks = p.kind == "worker" or queue.worker_type != "process"
            if not runs_tasks:
                continue
            hard, soft = queue.worker_memory_hard, queue.worker_memory_soft
            if hard and p.memory > hard:
                self.killed.add(p.pid)
                actions.append(Action(
                    "kill", p.queue, pid=p.pid, value=p.memory, limit=hard,
                    handles=_handles(s.leases, p.pid),
                    reason=jobs.killed("memory budget exceeded (%s)"
                                       % format_over(p.memory, hard))))
            elif soft and p.memory > soft and p.pid not in self.recycling:
                self.recycling.add(p.pid)
                actions.append(Action(
                    "recycle", p.queue, pid=p.pid, value=p.memory, limit=soft,
                    reason="worker memory over its soft limit (%s)"
                    % format_over(p.memory, soft)))
        return actions

    def _leases(self, s: Samples) -> "list[Action]":
        actions = []
        kinds = {p.pid: p.kind for p in s.processes}
        for lease in s.leases:
            queue = self.profile.queues.get(lease.queue)
            if queue is None or queue.worker_type != "process" \
                    or kinds.get(lease.pid) != "worker" \
                    or lease.pid in self.killed:
                continue
            limit = lease.time_limit or queue.time_limit
            if lease.cancel_requested:
                reason = jobs.cancelled_by("user")
            elif limit and lease.elapsed > limit:
                reason = jobs.time_limit("exceeded (%s)"
                                         % format_duration(limit))
            else:
                continue
            self.killed.add(lease.pid)
            actions.append(Action("kill", lease.queue, pid=lease.pid,
                                  reason=reason, job_id=lease.job_id,
                                  handles=(lease.handle,)))
        return actions

    def _scale(self, s: Samples) -> "list[Action]":
        actions = []
        for queue in self.queues:
            if queue.max_consumers <= queue.min_consumers:
                continue
            running = s.consumers.get(queue.name, 0)
            backlog = s.backlog.get(queue.name, 0)
            if backlog > queue.scale_up_depth:
                self._empty_since.pop(queue.name, None)
                since = self._deep_since.setdefault(queue.name, s.now)
                if (s.now - since >= queue.scale_up_after
                        and running < queue.max_consumers
                        and self._room_for_one(queue, s)):
                    self._deep_since[queue.name] = s.now
                    actions.append(Action(
                        "scale_up", queue.name, value=backlog,
                        limit=queue.scale_up_depth,
                        reason="backlog %d over %d" % (backlog,
                                                       queue.scale_up_depth)))
            elif backlog == 0:
                self._deep_since.pop(queue.name, None)
                since = self._empty_since.setdefault(queue.name, s.now)
                if s.now - since >= queue.scale_down_after \
                        and running > queue.min_consumers:
                    self._empty_since[queue.name] = s.now
                    actions.append(Action("scale_down", queue.name,
                                          reason="queue empty"))
            else:
                self._deep_since.pop(queue.name, None)
                self._empty_since.pop(queue.name, None)
        return actions

    def _room_for_one(self, queue, s: Samples) -> bool:
        procs = [p for p in s.processes if p.queue == queue.name]
        running = max(1, s.consumers.get(queue.name, 1))
        used = sum(p.memory for p in procs)
        per_consumer = used / running
        if queue.memory_limit and \
                memory_room(queue.memory_limit, used) < per_consumer:
            return False
        floor = self.profile.memory.min_available
        if s.available is not None and floor and \
                s.available - per_consumer < self.profile.memory.resume_threshold:
            return False
        return queue.name not in self.pressure_paused

    def memory_rooms(self, s: Samples) -> "dict[str, int]":
        """The memory room of each budgeted queue before what its running
        tasks declared: its limit less what its processes use. The backend
        takes off what running tasks declared when it leases (atomically,
        so two workers cannot both take the last of the room between two
        samples)."""
        out = {}
        for queue in self.queues:
            if not queue.memory_limit:
                continue
            used = sum(p.memory for p in s.processes if p.queue == queue.name)
            out[queue.name] = memory_room(queue.memory_limit, used)
        return out


def _handles(leases: Iterable[LeaseSample], pid: int) -> tuple:
    return tuple(l.handle for l in leases if l.pid == pid)
