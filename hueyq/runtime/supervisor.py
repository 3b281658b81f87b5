"""The supervisor: ``hueyq run``'s main process.

It starts one consumer process per queue (a fresh interpreter, in its own
session, told to die with its parent), and then, once per tick:

* restarts consumers that died, with exponential back-off;
* recovers leases whose owner is gone: on this host a process that is no
  longer there (pid, start ticks and boot id; no wall clock), or a lease from
  an earlier boot; on another host, one whose heartbeat counter has not moved
  for ``runtime.lease_timeout`` (timed on this host's monotonic clock). Only
  a worker of this runtime that died running that job alone is charged with
  the crash (``max_redeliveries``); the jobs of a consumer that died running
  several are suspects, requeued uncounted, and run alone next;
* sweeps, at start and every minute: finished messages a crashed worker
  never forgot, and store rows a crash left disagreeing with the backend
  (a job recorded running whose message is gone or done);
* runs the watchdog (memory budgets, time limits, cancellation of process
  workers, autoscale) and applies its actions;
* publishes a status record into the backend, folds the SQLite WAL back
  into the database files every ``CHECKPOINT_INTERVAL``, and pings systemd.

Signal handlers only set a flag. On SIGTERM or SIGINT it asks every consumer
to stop gracefully (stop taking work, finish within the grace period, hand
back the rest), kills what is left after the grace period, hands back any
lease its processes still hold, and exits 0. A second signal stops at once.
"""

import collections
import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time

import psutil

from hueyq import __version__, control
from hueyq import jobs
from hueyq.backends import DEAD, DONE, PENDING, SCHEDULED
from hueyq.exceptions import (AlreadyRunning, BackendUnavailable,
                              ConfigurationError, StoreUnavailable)
from hueyq.memory import ROOM_FLAG
from hueyq.owner import alive_here, boot_id, parse_owner, runtime_id
from hueyq.profile import redact_url, sqlite_path
from hueyq.runtime import SCHEDULER_PROCESS_NAME, main_command, notify
from hueyq.runtime.watchdog import (Action, LeaseSample, Proc, Samples,
                                    Sampler, Watchdog)
from hueyq.store import ENDED, REASON_STATE, RECOVERED, change_seq

logger = logging.getLogger("hueyq.supervisor")

#: Seconds between two checkpoints of the SQLite WAL files.
CHECKPOINT_INTERVAL = 30.0
#: Why a lease's owner is gone.
_DIED, _REBOOTED, _HOST = "died", "rebooted", "host"


@dataclasses.dataclass
class Slot:
    """One consumer process the supervisor keeps running."""
    queue: str
    index: int
    proc: "subprocess.Popen | None" = None
    started: float = 0.0
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0
    next_start: float = 0.0
    stopping: bool = False
    recycle: bool = False
    retire: bool = False

    @property
    def pid(self) -> "int | None":
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Supervisor:
    """Runs and watches the consumers of one app on this host."""

    def __init__(self, app, app_spec: str, queues: "list[str] | None" = None,
                 log_format: "str | None" = None,
                 web_command: "list[str] | None" = None) -> None:
        self.app = app
        self.spec = app_spec
        self.profile = app.profile
        self.queues = list(queues or app.queues)
        for q in self.queues:
            app.huey(q)
        self.log_format = log_format
        self.host = app.host_id
        self.pid = os.getpid()
        #: This runtime's id in its workers' lease owners.
        self.runtime = runtime_id(self.pid)
        self.watchdog = Watchdog(self.profile)
        self.sampler = Sampler()
        self.slots = [Slot(q, i) for q in self.queues
                      for i in range(self.profile.queues[q].min_consumers)]
        self.interval = min(self.profile.runtime.heartbeat_interval,
                            self.profile.memory.interval)
        self.started_at = time.time()
        self.web_command = web_command
        self.web: "subprocess.Popen | None" = None
        self._signals: "list[int]" = []
        self._wake = threading.Event()
        self._beat = 0
        self._hosts: "dict[str, tuple]" = {}
        self._seen: "dict[tuple, float]" = {}
        self._known_pids: "set[int]" = set()
        self._samples: "Samples | None" = None
        self._errors: "dict[str, int]" = {}
        self._watchdog_ping = notify.watchdog_interval()
        self._next_sweep = 0.0
        self._next_checkpoint = 0.0
        self._suspects: "dict[str, tuple]" = {}
        self._rooms: "dict[str, int]" = {}
        self._notifying = bool(os.environ.get("NOTIFY_SOCKET"))
        self._next_status = 0.0
        self._files: "dict[str, tuple]" = {}
        self._web_failures = 0
        self._web_next = 0.0
        #: Exit status of run(): 1 when the runtime stopped on a fault.
        self.exit_status = 0
        self._fault: "str | None" = None

    # ------------------------------------------------------------ main loop

    def run(self) -> int:
        """Start the consumers and supervise them until stopped."""
        self._install_signals()
        self.preflight()
        self.watchdog.restore(self._pauses())
        recovered = self.recover()
        logger.info("hueyq %s: app %s, profile %s (%s)", __version__,
                    self.app.name, self.profile.name, self.profile.source)
        logger.info("backend: %s; store: %s",
                    self.app.any_storage.describe(),
                    redact_url(self.profile.store.url))
        logger.info("queues: %s", ", ".join(
            "%s (%d %s)" % (q, self.profile.queues[q].workers,
                            self.profile.queues[q].worker_type)
            for q in self.queues))
        if recovered:
            logger.warning("recovered %d leases left by dead workers",
                           recovered)
        self._guard("sweep", self.sweep)
        self._next_sweep = time.monotonic() + 60
        for slot in self.slots:
            self._start(slot)
        if self.web_command:
            self._start_web()
        notify.notify("READY=1", "STATUS=running %d consumers"
                      % len(self.slots))
        next_tick = time.monotonic()
        while not self._signals:
            self.tick()
            next_tick += self.interval
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0
            self._wake.wait(delay)
            self._wake.clear()
        self.shutdown()
        return self.exit_status

    def _install_signals(self) -> None:
        def handler(signum, frame):
            self._signals.append(signum)
            self._wake.set()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)

    def preflight(self) -> None:
        """Refuse to start on a backend that would lose tasks, or beside
        another runtime of this app on the same backend."""
        storage = self.app.any_storage
        storage.ping()
        self._claim(storage)
        if hasattr(storage, "eviction_policy"):
            policy = storage.eviction_policy()
            if policy != "noeviction":
                message = ("Redis maxmemory-policy is %s, which can silently "
                           "delete queued tasks; set maxmemory-policy "
                           "noeviction" % policy)
                if self.profile.runtime.require_noeviction:
                    raise ConfigurationError(message)
                logger.warning("%s", message)
            if not storage.aof_enabled():
                message = ("Redis runs without AOF (appendonly no): a Redis "
                           "restart or crash loses the jobs queued since its "
                           "last snapshot; set appendonly yes")
                if self.profile.runtime.require_aof:
                    raise ConfigurationError(message + " (the profile sets "
                                             "runtime.require_aof)")
                logger.warning("%s", message)
        try:
            self.app.store.ping()
        except StoreUnavailable as exc:
            logger.warning("%s; job records are buffered until it answers",
                           exc)
        self._files = self._identities()

    def _claim(self, storage) -> None:
        holder = storage.claim("pid %d on host %s" % (self.pid, self.host))
        if holder is not None:
            raise AlreadyRunning(
                "another runtime of app %s already works on %s: %s; stop it "
                "first (hueyq status shows it)" % (self.app.name,
                                                   storage.describe(), holder))
        for record in self.app.runtimes():
            pid = record.get("pid")
            if record.get("host") == self.host and pid != self.pid and \
                    record["alive"] and psutil.pid_exists(pid or 0):
                raise AlreadyRunning(
                    "another runtime of app %s already runs as host %s (pid "
                    "%s) on %s: stop it, or give this one a host id of its "
                    "own (HUEYQ_HOST_ID) to run a second host"
                    % (self.app.name, self.host, pid, storage.describe()))

    def _identities(self) -> "dict[str, tuple | None]":
        """The files this runtime works on, by (device, inode)."""
        found = {self.app.any_storage.describe():
                 self.app.any_storage.identity()}
        url = self.profile.store.url
        if url.startswith("sqlite:"):
            path = sqlite_path(url)
            try:
                st = os.stat(path)
                found["job store %s" % path] = (st.st_dev, st.st_ino)
            except FileNotFoundError:
                found["job store %s" % path] = None
        return {k: v for k, v in found.items() if v is not None}

    def _check_files(self) -> None:
        """Stop (exit status 1) once a file this runtime works on was
        deleted or replaced: producers can no longer see the old one, and a
        service manager restarts the runtime on the new file."""
        now = self._identities()
        for what, identity in self._files.items():
            if now.get(what) != identity:
                logger.error("%s was %s under the running runtime; stopping "
                             "(exit status 1) so that a restart opens the new "
                             "file", what, "replaced" if what in now
                             else "deleted")
                self.exit_status = 1
                self._fault = "%s %s" % (what, "replaced" if what in now
                                         else "deleted")
                self._signals.append(signal.SIGTERM)
                return

    def tick(self) -> None:
        """One round of supervision."""
        now = time.monotonic()
        self._reap(now)
        self._start_due(now)
        self._guard("files", self._check_files)
        if self.web_command:
            self._watch_web(now)
        self._guard("recovery", self.recover)
        self._guard("watchdog", lambda: self.watch(now))
        self._guard("status", self.publish)
        if now >= self._next_sweep:
            self._next_sweep = now + 60
            self._guard("sweep", self.sweep)
        if now >= self._next_checkpoint:
            self._next_checkpoint = now + CHECKPOINT_INTERVAL
            self._guard("checkpoint", self.checkpoint)
        if self._watchdog_ping:
            notify.notify("WATCHDOG=1")
        if self._notifying and now >= self._next_status:
            self._next_status = now + 5
            self._guard("notify", self._notify_status)

    def _guard(self, what: str, step) -> None:
        from hueyq.app import backend_errors
        try:
            step()
        except Exception as exc:
            count = self._errors.get(what, 0) + 1
            self._errors[what] = count
            if count != 1 and count % 60:
                return
            if isinstance(exc, backend_errors() + (BackendUnavailable,
                                                   StoreUnavailable)):
                # An outage, not a bug: one line, no traceback.
                logger.warning("%s failed (%d times in a row): %s", what,
                               count, exc)
            else:
                logger.exception("%s failed (%d times in a row): %s", what,
                                 count, exc)
        else:
            if self._errors.pop(what, 0):
                logger.info("%s works again", what)

    # ------------------------------------------------------------ consumers

    def _command(self, slot: Slot) -> "list[str]":
        cmd = main_command("hueyq.runtime.consumer", "--app", self.spec,
                           "--queue", slot.queue, "--index", str(slot.index))
        if self.log_format:
            cmd += ["--log-format", self.log_format]
        return cmd

    def _start(self, slot: Slot) -> None:
        env = dict(os.environ, HUEYQ_SUPERVISOR_PID=str(self.pid))
        slot.proc = subprocess.Popen(self._command(slot), env=env,
                                     start_new_session=True)
        slot.started = time.monotonic()
        slot.started_at = time.time()
        slot.stopping = slot.recycle = False
        self._known_pids.add(slot.proc.pid)
        logger.info("started consumer %s[%d] pid %d", slot.queue, slot.index,
                    slot.proc.pid)

    def _start_web(self) -> None:
        self.web = subprocess.Popen(self.web_command, start_new_session=True)
        self._web_started = time.monotonic()
        logger.info("started the web server, pid %d", self.web.pid)

    def _watch_web(self, now: float) -> None:
        """Restart a web server that died, with the consumers' back-off."""
        if self.web is not None and self.web.poll() is None:
            return
        if self.web is not None:
            if now - self._web_started > self.profile.runtime \
                    .restart_backoff_max * 2:
                self._web_failures = 0
            self._web_failures += 1
            delay = min(self.profile.runtime.restart_backoff_max,
                        0.5 * 2 ** (self._web_failures - 1))
            logger.warning("web server pid %d exited with %s; restarting in "
                           "%.1fs", self.web.pid,
                           _exit_text(self.web.returncode), delay)
            self.web = None
            self._web_next = now + delay
        if now >= self._web_next:
            self._start_web()

    def _reap(self, now: float) -> None:
        for slot in list(self.slots):
            if slot.proc is None or slot.proc.poll() is None:
                continue
            code = slot.proc.returncode
            if slot.retire:
                self.slots.remove(slot)
                logger.info("consumer %s[%d] stopped (scaled down)",
                            slot.queue, slot.index)
                continue
            if slot.recycle:
                logger.info("consumer %s[%d] recycled", slot.queue, slot.index)
                slot.proc = None
                slot.next_start = now
                slot.restarts += 1
                continue
            uptime = now - slot.started
            if uptime > self.profile.runtime.restart_backoff_max * 2:
                slot.failures = 0
            slot.failures += 1
            delay = min(self.profile.runtime.restart_backoff_max,
                        0.5 * 2 ** (slot.failures - 1))
            logger.warning("consumer %s[%d] pid %d exited with %s after %.1fs; "
                           "restarting in %.1fs", slot.queue, slot.index,
                           slot.proc.pid, _exit_text(code), uptime, delay)
            slot.proc = None
            slot.restarts += 1
            slot.next_start = now + delay

    def _start_due(self, now: float) -> None:
        for slot in self.slots:
            if slot.proc is None and slot.next_start <= now:
                self._start(slot)

    # ------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Recover leases whose owner is gone. Returns how many."""
        now = time.monotonic()
        self._observe_hosts(now)
        gone = []
        for queue in self.app.queues:
            storage = self.app.storage(queue)
            for lease in storage.leases():
                why = self._gone(lease, now)
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

    def _gone(self, lease, now: float) -> "str | None":
        """Why a lease's owner is gone (``_DIED``, ``_REBOOTED``, ``_HOST``),
        or None while it lives. No wall clock is read: a process is known by
        its pid and start ticks, a boot by its id, another host by whether
        its heartbeat counter moved on this host's monotonic clock."""
        owner = parse_owner(lease.owner)
        if owner.host != self.host:
            return _HOST if self._host_dead(owner.host, now) else None
        if owner.boot is not None and owner.boot != boot_id():
            return _REBOOTED
        return None if alive_here(owner) else _DIED

    def _observe_hosts(self, now: float) -> None:
        beats: "dict[str, set]" = {}
        for key, record in self.app.any_storage.records("runtime:").items():
            beats.setdefault(record.get("host"), set()).add(
                (key, record.get("hb")))
        for host, beat in beats.items():
            known = self._hosts.get(host)
            if known is None or known[0] != beat:
                self._hosts[host] = (beat, now)

    def _host_dead(self, host: "str | None", now: float) -> bool:
        known = self._hosts.setdefault(host, (None, now))
        return now - known[1] > self.profile.runtime.lease_timeout

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
            storage.ack(lease.handle, DEAD, "cancelled")
            job = jobs.cancelled(lease.task_id, **known)
            event, detail = "cancelled", error
            self._put_error(queue, lease.task_id, "cancelled")
        elif jobs.is_killed(error):
            storage.requeue(lease.handle, error, count=False)
            job = jobs.recovered(lease.task_id, error, **known)
            event, detail = "killed", error
        else:
            count, detail = self._charged(lease, why, crowds or {})
            state = storage.requeue(lease.handle, detail, count=count,
                                    max_redeliveries=self.profile.runtime
                                    .max_redeliveries)
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

    def _notify_status(self) -> None:
        samples = self._samples
        pending = sum(samples.backlog.values()) if samples else 0
        running = len(samples.leases) if samples else 0
        alive = sum(1 for s in self.slots if s.alive)
        notify.notify("STATUS=%d/%d consumers up, %d pending, %d running"
                      % (alive, len(self.slots), pending, running))

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

    def checkpoint(self) -> None:
        """Fold the SQLite WAL files back into their databases, under load
        too (the WAL then stays near ``journal_size_limit``)."""
        from hueyq import maintenance
        maintenance.run_checkpoint(self.app)

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

    # ------------------------------------------------------------ watchdog

    def sample(self, now: float) -> Samples:
        """Measure consumers, their workers and the system; list leases."""
        procs = []
        consumers: "dict[str, int]" = {}
        for slot in self.slots:
            if not slot.alive:
                continue
            consumers[slot.queue] = consumers.get(slot.queue, 0) + 1
            procs.extend(self._sample_tree(slot))
        self._known_pids.update(p.pid for p in procs)
        self.sampler.forget_gone({p.pid for p in procs} | {self.pid})
        available, total = self.sampler.system()
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
        backlog = {q: self.app.storage(q).count(PENDING) for q in self.queues}
        return Samples(now=now, available=available, total=total,
                       processes=tuple(procs), leases=tuple(leases),
                       backlog=backlog, consumers=consumers,
                       method=self.sampler.method)

    def _sample_tree(self, slot: Slot) -> "list[Proc]":
        root = self.sampler.tree(slot.pid)[:1]
        if not root:
            return []
        config = self.profile.queues[slot.queue]
        sampler = self.sampler
        if config.worker_type == "thread":
            memory, rss = self._measure(root + sampler.descendants(slot.pid))
            return [Proc(slot.pid, slot.queue, "consumer", memory, rss)]
        out = [Proc(slot.pid, slot.queue, "consumer",
                    *self._measure(root))]
        for child in sampler.children(slot.pid):
            memory, rss = self._measure([child] +
                                        sampler.descendants(child.pid))
            if memory:
                out.append(Proc(child.pid, slot.queue, _kind(child), memory,
                                rss))
        return out

    def _measure(self, procs: list) -> "tuple[int, int]":
        """Summed (PSS or RSS, RSS) of processes still alive."""
        memory = rss = 0
        for proc in procs:
            found = self.sampler.memory(proc)
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

    def _pauses(self) -> "dict[str, dict[str, dict]]":
        out = {}
        for queue in self.queues:
            flags = self.app.storage(queue).flags()
            out[queue] = jobs.pauses(flags)
        return out

    def watch(self, now: float) -> None:
        """Sample, decide, act."""
        samples = self.sample(now)
        self._samples = samples
        for action in self.watchdog.check(samples):
            self._guard("watchdog action", lambda a=action: self.apply(a))
        self._publish_memory_rooms(self.watchdog.memory_rooms(samples))

    def _publish_memory_rooms(self, rooms: "dict[str, int]") -> None:
        # Written when it moved by over 1% (or 16 MiB), not every tick.
        for queue, room in rooms.items():
            last = self._rooms.get(queue)
            if last is not None and abs(room - last) <= max(last // 100,
                                                            16 << 20):
                continue
            self.app.storage(queue).set_flag(ROOM_FLAG, room)
            self._rooms[queue] = room

    def apply(self, action: Action) -> None:
        """Carry out one watchdog action and record it."""
        if action.kind == "pause":
            control.pause(self.app, action.queue, by=action.by,
                          reason=action.reason, record=False)
        elif action.kind == "resume":
            control.resume(self.app, action.queue, by=action.by, record=False)
        elif action.kind == "kill":
            self._kill(action)
        elif action.kind == "recycle":
            self._recycle(action)
        elif action.kind == "scale_up":
            index = max([s.index for s in self.slots
                         if s.queue == action.queue] + [-1]) + 1
            slot = Slot(action.queue, index)
            self.slots.append(slot)
            self._start(slot)
        elif action.kind == "scale_down":
            extra = [s for s in self.slots if s.queue == action.queue
                     and s.index > 0 and s.alive and not s.stopping]
            if not extra:
                return
            slot = max(extra, key=lambda s: s.index)
            slot.retire = slot.stopping = True
            _signal(slot.pid, signal.SIGINT)
        log = logger.warning if action.kind in ("kill", "pause") else \
            logger.info
        log("watchdog: %s %s%s: %s", action.kind, action.queue,
            " pid %d" % action.pid if action.pid else "", action.reason)
        try:
            self.app.store.watchdog_event(
                host=self.host, queue=action.queue, pid=action.pid,
                action=action.kind, value=action.value, limit=action.limit,
                reason=action.reason, job_id=action.job_id)
        except StoreUnavailable as exc:
            logger.warning("%s", exc)

    def _kill(self, action: Action) -> None:
        pid = action.pid
        _signal(pid, signal.SIGSTOP)
        storage = self.app.storage(action.queue)
        handles = set(action.handles)
        handles.update(l.handle for l in storage.leases() if l.pid == pid
                       and l.host == self.host)
        for handle in handles:
            storage.annotate(handle, action.reason)
        for proc in reversed(self.sampler.tree(pid)):
            _signal(proc.pid, signal.SIGKILL)
        _signal(pid, signal.SIGCONT)

    def _recycle(self, action: Action) -> None:
        for slot in self.slots:
            if slot.pid == action.pid:
                slot.recycle = slot.stopping = True
                _signal(slot.pid, signal.SIGINT)
                return
        _signal(action.pid, signal.SIGUSR1)

    # ------------------------------------------------------------ status

    def status(self) -> dict:
        """The status record this supervisor publishes."""
        self._beat += 1
        samples = self._samples
        gpu = self.app.any_storage.records("gpu:%s:" % self.host)
        workers = []
        for p in (samples.processes if samples else ()):
            config = self.profile.queues[p.queue]
            runs_tasks = p.kind == "worker" or config.worker_type == "thread"
            workers.append({
                "queue": p.queue, "pid": p.pid, "kind": p.kind,
                "worker_type": config.worker_type,
                "threads": config.workers if config.worker_type == "thread"
                else 1, "memory": p.memory, "rss": p.rss,
                "memory_kind": samples.method,
                "worker_memory_soft": config.worker_memory_soft
                if runs_tasks else None,
                "worker_memory_hard": config.worker_memory_hard
                if runs_tasks else None,
                "gpu": gpu.get("gpu:%s:%d" % (self.host, p.pid))})
        return {
            "host": self.host, "pid": self.pid, "app": self.app.name,
            "profile": self.profile.name, "version": __version__,
            "started_at": self.started_at, "heartbeat": time.time(),
            "hb": self._beat, "interval": self.interval,
            "queues": self.queues,
            "consumers": [{"queue": s.queue, "index": s.index, "pid": s.pid,
                           "alive": s.alive, "restarts": s.restarts,
                           "started_at": s.started_at} for s in self.slots],
            "workers": workers,
            "memory": {"available": samples.available if samples else None,
                       "total": samples.total if samples else None,
                       "method": samples.method if samples else None,
                       "supervisor": self.sampler.own()},
            "watchdog": {"pressure_paused": list(self.watchdog.pressure_paused),
                         "limit_paused": sorted(self.watchdog.limit_paused)}}

    def publish(self) -> None:
        """Write the status record (the heartbeat other hosts watch)."""
        ttl = max(60.0, 10 * self.profile.runtime.lease_timeout)
        self.app.any_storage.put_record(self._record_key, self.status(),
                                        ttl=ttl)

    @property
    def _record_key(self) -> str:
        return "runtime:%s:%d" % (self.host, self.pid)

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop consumers gracefully, hand back what is left, clean up."""
        grace = self.profile.runtime.grace_period
        name = self._fault or signal.Signals(self._signals[0]).name
        logger.info("%s: stopping; running tasks get up to %s to finish",
                    name, "%gs" % grace)
        notify.notify("STOPPING=1")
        self._signals = self._signals[1:]
        for slot in self.slots:
            slot.stopping = True
            if slot.alive:
                _signal(slot.pid, signal.SIGINT)
        if self.web is not None and self.web.poll() is None:
            _signal(self.web.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace + 5
        escalated = False
        while any(s.alive for s in self.slots) and time.monotonic() < deadline:
            if self._signals and not escalated:
                logger.warning("second signal: interrupting running tasks now")
                escalated = True
                for slot in self.slots:
                    if slot.alive:
                        _signal(slot.pid, signal.SIGTERM)
            self._sample_known()
            self._wake.wait(0.1)
            self._wake.clear()
        for slot in self.slots:
            if slot.alive:
                logger.warning("consumer %s[%d] did not stop in time; killing "
                               "it", slot.queue, slot.index)
                for proc in reversed(self.sampler.tree(slot.pid)):
                    _signal(proc.pid, signal.SIGKILL)
                slot.proc.wait()
        if self.web is not None:
            try:
                self.web.wait(5)
            except subprocess.TimeoutExpired:
                self.web.kill()
        handed = self._hand_back()
        if handed:
            logger.warning("handed %d unfinished tasks back to their queues",
                           handed)
        try:
            self.app.any_storage.delete_record(self._record_key)
        except Exception:
            logger.exception("could not remove this runtime's status record")
        logger.info("stopped")

    def _sample_known(self) -> None:
        for slot in self.slots:
            if slot.alive:
                self._known_pids.update(p.pid for p in
                                        self.sampler.tree(slot.pid))

    def _hand_back(self) -> int:
        handed = 0
        for queue in self.app.queues:
            storage = self.app.storage(queue)
            mine = [l.handle for l in storage.leases()
                    if l.host == self.host and l.pid in self._known_pids
                    and not alive_here(parse_owner(l.owner))]
            handed += storage.release(mine)
        return handed


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


def _kind(proc: psutil.Process) -> str:
    """``worker`` or ``scheduler``: what a process consumer forked."""
    try:
        if proc.name() == SCHEDULER_PROCESS_NAME[:15]:
            return "scheduler"
    except psutil.Error:
        pass
    return "worker"


def _signal(pid: "int | None", sig: int) -> None:
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _exit_text(code: int) -> str:
    if code is not None and code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "status %s" % code
