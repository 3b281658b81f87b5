"""Lease recovery: making the backend and the store agree after a crash.

:class:`Recovery` decides, from the leases the backend lists, whose owner
is gone: on this host a process that is no longer there (pid, start ticks
and boot id; no wall clock), or a lease from an earlier boot; on another
host, one whose heartbeat counter has not moved for ``runtime.lease_timeout``
(timed on this host's monotonic clock, over readings in a row: a host that
was itself cut off from the backend judges nobody by that gap). It sends
each back to its queue or to its end: a lease whose worker the supervisor killed on purpose carries
the reason (``killed: ...`` is retried uncounted, ``cancelled ...`` ends as
cancelled); only a worker of this runtime that died running that job alone
is charged with the crash (``max_redeliveries``, then ``poison``); the jobs
of a consumer that died running several are suspects, requeued uncounted,
and run alone next. It also sweeps finished messages a crashed worker never
forgot, repairs store rows a crash left disagreeing with the backend, and
at shutdown hands back the leases this runtime's dead processes still hold.

The process table (a pid's start ticks), this boot's id and the monotonic
clock are the kernel's unless a test injects its own, so every decision can
be tested in one process.
"""

import collections
import logging
import time
from typing import Callable

from hueyq import jobs
from hueyq.backends import DEAD, DONE, PENDING, SCHEDULED
from hueyq.exceptions import StoreUnavailable
from hueyq.owner import alive_here, boot_id, parse_owner, start_ticks
from hueyq.store import ENDED, REASON_STATE, RECOVERED, change_seq

# The supervisor's logger: its lines keep the name they always had.
logger = logging.getLogger("hueyq.supervisor")

#: Why a lease's owner is gone.
_DIED, _REBOOTED, _HOST = "died", "rebooted", "host"


class Recovery:
    """Recovers the leases of one app whose owner is gone, as seen from
    the runtime ``runtime`` on host ``host``."""

    def __init__(self, app, host: str, runtime: str,
                 processes: "Callable[[int], int | None]" = start_ticks,
                 boot: "str | None" = None,
                 clock: "Callable[[], float]" = time.monotonic) -> None:
        self.app = app
        self.profile = app.profile
        self.host = host
        #: This runtime's id in its workers' lease owners.
        self.runtime = runtime
        self.processes = processes
        self.boot = boot_id() if boot is None else boot
        self.clock = clock
        #: host -> (its heartbeat counters, seconds it was seen silent).
        self._hosts: "dict[str, tuple]" = {}
        #: The clock at the last reading of the heartbeats.
        self._observed: "float | None" = None
        self._suspects: "dict[str, tuple]" = {}

    # ------------------------------------------------------------ leases

    def recover(self) -> int:
        """Recover leases whose owner is gone. Returns how many."""
        now = self._observe_hosts()
        gone = []
        for queue in self.app.queues:
            storage = self.app.storage(queue)
            for lease in storage.leases():
                why = self.gone(lease, now)
                if why is not None:
                    gone.append((storage, queue, lease, why))
        # How many jobs each consumer of this runtime was running when it
        # died: a crash is charged only to a job that was running alone.
        crowds = collections.Counter(
            parse_owner(l.owner).group for _, _, l, why in gone
            if why == _DIED)
        for storage, queue, lease, why in gone:
            self._recover(storage, queue, lease, why, crowds)
        return len(gone)

    def gone(self, lease, now: float) -> "str | None":
        """Why a lease's owner is gone (``died``, ``rebooted``, ``host``),
        or None while it lives. No wall clock is read: a process is known by
        its pid and start ticks, a boot by its id, another host by whether
        its heartbeat counter moved on this host's monotonic clock."""
        owner = parse_owner(lease.owner)
        if owner.host != self.host:
            return _HOST if self._host_dead(owner.host, now) else None
        if owner.boot is not None and owner.boot != self.boot:
            return _REBOOTED
        return None if self._alive(owner) else _DIED

    def _alive(self, owner) -> bool:
        return alive_here(owner, self.processes, self.boot)

    def _observe_hosts(self) -> float:
        """Read every runtime's heartbeat counter and add to each host's
        silence the time since the last reading (its counter stood still)
        or start it again (it moved). Returns the clock after the reading.

        One reading adds at most half of ``lease_timeout``: an observer that
        could not look (cut off from the backend itself, or a tick that hung
        on it) saw no silence, and a reply that was held up may be stale, so
        a host is judged silent only over several readings in a row."""
        records = self.app.queue_backend.records("runtime:")
        now = self.clock()
        gap = 0.0 if self._observed is None else max(0.0, min(
            now - self._observed, self.profile.runtime.lease_timeout / 2))
        self._observed = now
        beats: "dict[str, set]" = {}
        for key, record in records.items():
            beats.setdefault(record.get("host"), set()).add(
                (key, record.get("hb")))
        for host, (beat, silent) in list(self._hosts.items()):
            if host not in beats:
                self._hosts[host] = (beat, silent + gap)
        for host, beat in beats.items():
            known = self._hosts.get(host)
            self._hosts[host] = (beat, 0.0) if known is None or \
                known[0] != beat else (beat, known[1] + gap)
        return now

    def _host_dead(self, host: "str | None", now: float) -> bool:
        # A host first seen through its leases is silent from now on.
        known = self._hosts.setdefault(host, (None, 0.0))
        return known[1] > self.profile.runtime.lease_timeout

    def _charged(self, lease, why: str, crowds) -> "tuple[bool, str]":
        """Whether a lost delivery counts toward ``max_redeliveries``, and
        the last error it leaves (``suspect: ...``: it runs alone next)."""
        owner = parse_owner(lease.owner)
        if why == _REBOOTED:
            return False, "recovered after a reboot (worker %s)" % owner.name
        if why == _HOST:
            return False, ("recovered: host %s stopped beating (worker %s)"
                           % (owner.host, owner.name))
        if owner.runtime != self.runtime:
            return False, ("recovered: worker %s of a runtime that stopped"
                           % owner.name)
        crowd = crowds.get(owner.group, 1)
        if crowd > 1 and not jobs.is_suspect(lease.last_error):
            return False, jobs.suspect("worker %s died running %d jobs; it "
                                       "runs alone next" % (owner.name, crowd))
        return True, jobs.suspect("worker %s died running it" % owner.name)

    def _recover(self, storage, queue: str, lease, why: str = _DIED,
                 crowds=None) -> None:
        error = lease.last_error or ""
        now = time.time()
        known = {"task": lease.name, "queue": queue, "at": now,
                 "seq": change_seq(lease.lease_seq, RECOVERED)}
        if jobs.is_cancel(error):
            if not storage.ack(lease.handle, DEAD, "cancelled",
                               fence=lease.fence):
                return
            job = jobs.cancelled(lease.task_id, **known)
            event, detail = "cancelled", error
            self._put_error(queue, lease.task_id, "cancelled")
        elif jobs.is_killed(error):
            if storage.requeue(lease.handle, error, count=False,
                               fence=lease.fence) is None:
                return
            job = jobs.recovered(lease.task_id, error, **known)
            event, detail = "killed", error
        else:
            count, detail = self._charged(lease, why, crowds or {})
            # Fenced: another host's supervisor may have recovered it
            # first and a worker leased it again; that lease is not ours.
            state = storage.requeue(lease.handle, detail, count=count,
                                    max_redeliveries=self.profile.runtime
                                    .max_redeliveries, fence=lease.fence)
            if state is None:
                return
            if state == DEAD:
                detail = jobs.poison(lease.redeliveries + 1, detail)
                job = jobs.dead(lease.task_id, "poison", detail,
                                payload=storage.message_data(lease.handle),
                                **known)
                event = "dead"
                self._put_error(queue, lease.task_id, detail)
            else:
                job = jobs.recovered(lease.task_id, detail, redeliveries=lease
                                     .redeliveries + int(count), **known)
                event = "redelivered" if count else "recovered"
        logger.warning("job %s (%s): %s: %s", lease.task_id, lease.name,
                       event, detail, extra={"queue": queue,
                                             "job_id": lease.task_id})
        if lease.task_id:
            self._record([job], [self._event(queue, lease, event, detail)])

    def _event(self, queue: str, lease, signal_name: str, detail: str) -> dict:
        return jobs.event("%s.%s" % (self.app.name, queue), lease.task_id,
                          lease.name, signal_name, detail, at=time.time())

    def _record(self, jobs: list, events: list, durable: bool = False
                ) -> None:
        try:
            self.app.store.write(jobs, events, durable=durable)
        except StoreUnavailable as exc:
            logger.warning("%s", exc)

    def _put_error(self, queue: str, job_id: str, error: str) -> None:
        if not job_id:
            return
        jobs.put_error(self.app.huey(queue), job_id, error)

    def hand_back(self, known_pids: "set[int]") -> int:
        """Hand back, uncounted, the leases that processes of this runtime
        (``known_pids``) held when they stopped. Returns how many."""
        handed = 0
        for queue in self.app.queues:
            storage = self.app.storage(queue)
            mine = [l.handle for l in storage.leases()
                    if l.host == self.host and l.pid in known_pids
                    and not self._alive(parse_owner(l.owner))]
            handed += storage.release(mine)
        return handed

    # ------------------------------------------------------------ the store

    def sweep(self) -> int:
        """Finished messages a crashed worker never forgot: make sure the
        store knows they completed (its buffered record may have died with
        it; written durably, since the message goes next), then drop them.
        Then :meth:`repair` the store. Returns how many messages went."""
        before = time.time() - 300
        dropped = 0
        for queue in self.app.queues:
            storage = self.app.storage(queue)
            stale = [m for m in storage.list_messages(DONE, limit=None)
                     if (m.updated_at or 0) < before]
            if not stale:
                continue
            self._record([jobs.completed(
                m.task_id, at=m.updated_at, seq=change_seq(m.lease_seq, ENDED),
                task=m.name, queue=queue, enqueued_at=m.enqueued_at)
                for m in stale if m.task_id], [], durable=True)
            dropped += storage.forget([m.handle for m in stale])
        self.repair()
        return dropped

    def repair(self) -> int:
        """Store rows that disagree with the backend after a crash or power
        cut: a job recorded as not finished (running, retrying, pending,
        scheduled) whose message is gone, done or dead, because its final
        record was lost. Each row takes the backend's word
        (:meth:`Store.repair`, only if unchanged since read). A row recorded
        pending or scheduled is repaired only when the next sweep finds it
        the same: ``retry`` writes that record just before its message is
        back. Returns how many rows were repaired."""
        repaired = 0
        suspects, self._suspects = self._suspects, {}
        for row in self.app.store.unsettled():
            if row["queue"] not in self.app.queues:
                continue
            message = self.app.storage(row["queue"]).find(row["id"])
            verdict = _settled(message)
            if verdict is None:
                continue
            key = (row["state"], row["updated_at"])
            if row["state"] in (PENDING, SCHEDULED) and \
                    suspects.get(row["id"]) != key:
                self._suspects[row["id"]] = key
                continue
            state, reason, detail = verdict
            if self.app.store.repair(
                    row, state, detail, reason=reason,
                    finished_at=message.updated_at if message else None):
                repaired += 1
                logger.warning("job %s: recorded %s, %s; now %s", row["id"],
                               row["state"], detail, state,
                               extra={"queue": row["queue"],
                                      "job_id": row["id"]})
        return repaired


def _settled(message) -> "tuple[str, str | None, str] | None":
    """(state, reason, why) of a job recorded as not finished whose newest
    message says it is; None while the message is live."""
    if message is None:
        return "complete", None, "its message is gone (forgotten once done)"
    if message.state == DONE:
        return "complete", None, "its message is done"
    if message.state == DEAD:
        return (REASON_STATE.get(message.reason, "dead"), message.reason,
                "its message is dead (%s)" % message.reason)
    return None
