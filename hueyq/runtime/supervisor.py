"""The supervisor: ``hueyq run``'s main process and its tick loop.

It claims the app's runtime lock, starts the consumer pool
(:mod:`hueyq.runtime.pool`: one consumer process per queue, restarted with
back-off, scaled by the watchdog) and then, once per tick:

* reaps and restarts consumers (the pool), and the web server under ``--web``;
* stops (exit status 1) once a database file it works on was deleted or
  replaced;
* recovers leases whose owner is gone (:mod:`hueyq.runtime.recovery`), and
  sweeps, at start and every minute, finished messages a crashed worker
  never forgot and store rows a crash left disagreeing with the backend;
* samples memory and leases (:mod:`hueyq.runtime.sampler`), runs the
  watchdog (memory budgets, time limits, cancellation of process workers,
  autoscale) and applies its actions;
* publishes a status record into the backend, folds the SQLite WAL back
  into the database files every ``CHECKPOINT_INTERVAL``, and pings systemd.

Signal handlers only set a flag. On SIGTERM or SIGINT it asks every consumer
to stop gracefully (stop taking work, finish within the grace period, hand
back the rest), kills what is left after the grace period, hands back any
lease its processes still hold, and exits 0. A second signal stops at once.
"""

import logging
import os
import select
import signal
import time

import psutil

from hueyq import __version__, control
from hueyq import jobs
from hueyq.exceptions import (AlreadyRunning, BackendUnavailable,
                              ConfigurationError, StoreUnavailable)
from hueyq.memory import ROOM_FLAG
from hueyq.owner import runtime_id
from hueyq.urls import redact_url, sqlite_path
from hueyq.runtime import notify
from hueyq.runtime.pool import ConsumerPool, Slot, WebServer, send
from hueyq.runtime.recovery import Recovery
from hueyq.runtime.sampler import RuntimeSampler
from hueyq.runtime.watchdog import Action, Samples, Watchdog

logger = logging.getLogger("hueyq.supervisor")

#: Seconds between two checkpoints of the SQLite WAL files.
CHECKPOINT_INTERVAL = 30.0


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
        self.host = app.host_id
        self.pid = os.getpid()
        #: This runtime's id in its workers' lease owners.
        self.runtime = runtime_id(self.pid)
        self.watchdog = Watchdog(self.profile)
        self.sampler = RuntimeSampler(app, self.queues, self.host, self.pid)
        self.pool = ConsumerPool(self.profile, app_spec, self.queues,
                                 self.pid, log_format)
        self.recovery = Recovery(app, self.host, self.runtime)
        self.interval = min(self.profile.runtime.heartbeat_interval,
                            self.profile.memory.interval)
        self.started_at = time.time()
        self.web = WebServer(web_command, self.profile) if web_command \
            else None
        self._signals: "list[int]" = []
        self._wake = _Wakeup()
        self._beat = 0
        self._samples: "Samples | None" = None
        self._errors: "dict[str, int]" = {}
        self._watchdog_ping = notify.watchdog_interval()
        self._next_sweep = 0.0
        self._next_checkpoint = 0.0
        self._rooms: "dict[str, int]" = {}
        self._notifying = bool(os.environ.get("NOTIFY_SOCKET"))
        self._next_status = 0.0
        self._files: "dict[str, tuple]" = {}
        #: Exit status of run(): 1 when the runtime stopped on a fault.
        self.exit_status = 0
        self._fault: "str | None" = None

    @property
    def slots(self) -> "list[Slot]":
        """The consumer processes this supervisor keeps running."""
        return self.pool.slots

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
                    self.app.queue_backend.describe(),
                    redact_url(self.profile.store.url))
        logger.info("queues: %s", ", ".join(
            _workers_words(q, self.profile.queues[q]) for q in self.queues))
        if recovered:
            logger.warning("recovered %d leases left by dead workers",
                           recovered)
        self._guard("sweep", self.sweep)
        self._next_sweep = time.monotonic() + 60
        self.pool.start_all()
        if self.web is not None:
            self.web.start()
        notify.notify("READY=1", "STATUS=running %d consumers"
                      % len(self.slots))
        self._loop()
        self.shutdown()
        return self.exit_status

    def _loop(self) -> None:
        next_tick = time.monotonic()
        while not self._signals:
            self.tick()
            next_tick += self.interval
            delay = next_tick - time.monotonic()
            if delay < 0:
                next_tick = time.monotonic()
                delay = 0
            self._wake.wait(delay)

    def _install_signals(self) -> None:
        # The handler only appends: it runs in the main thread between two
        # bytecodes, so taking a lock there (threading.Event.set) deadlocks
        # when the signal lands while that thread holds the same lock.
        def handler(signum, frame):
            self._signals.append(signum)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
        self._wake.install()

    def preflight(self) -> None:
        """Refuse to start on a backend that would lose tasks, or beside
        another runtime of this app on the same backend."""
        self.app.check_worker_types(self.queues)
        storage = self.app.queue_backend.home
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
        found = {self.app.queue_backend.describe():
                 self.app.queue_backend.identity()}
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
        self.pool.reap(now)
        self.pool.start_due(now)
        self._guard("files", self._check_files)
        if self.web is not None:
            self.web.watch(now)
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

    # ------------------------------------------------------------ recovery

    def recover(self) -> int:
        """Recover leases whose owner is gone (:meth:`Recovery.recover`).
        Returns how many."""
        return self.recovery.recover()

    def sweep(self) -> int:
        """Forget finished messages a crashed worker never forgot, then
        repair the store (:meth:`Recovery.sweep`). Returns how many
        messages went."""
        return self.recovery.sweep()

    def repair(self) -> int:
        """Store rows a crash left disagreeing with the backend
        (:meth:`Recovery.repair`). Returns how many were repaired."""
        return self.recovery.repair()

    def checkpoint(self) -> None:
        """Fold the SQLite WAL files back into their databases, under load
        too (the WAL then stays near ``journal_size_limit``)."""
        from hueyq import maintenance
        maintenance.run_checkpoint(self.app)

    # ------------------------------------------------------------ watchdog

    def sample(self, now: float) -> Samples:
        """Measure consumers, their workers and the system; list leases."""
        samples = self.sampler.sample(self.slots, now)
        self.pool.known_pids.update(p.pid for p in samples.processes)
        return samples

    def _pauses(self) -> "dict[str, dict[str, dict]]":
        out = {}
        for queue in self.queues:
            flags = self.app.queue_backend.flags(queue)
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
            self.app.queue_backend.set_flag(queue, ROOM_FLAG, room)
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
            self.pool.recycle(action.pid)
        elif action.kind == "scale_up":
            self.pool.scale_up(action.queue)
        elif action.kind == "scale_down" and \
                not self.pool.scale_down(action.queue):
            return
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
        send(pid, signal.SIGSTOP)
        storage = self.app.storage(action.queue)
        handles = set(action.handles)
        handles.update(l.handle for l in storage.leases() if l.pid == pid
                       and l.host == self.host)
        for handle in handles:
            storage.annotate(handle, action.reason)
        for proc in reversed(self.sampler.tree(pid)):
            send(proc.pid, signal.SIGKILL)
        send(pid, signal.SIGCONT)

    # ------------------------------------------------------------ status

    def status(self) -> dict:
        """The status record this supervisor publishes."""
        self._beat += 1
        samples = self._samples
        gpu = self.sampler.gpu()
        workers = []
        for p in (samples.processes if samples else ()):
            config = self.profile.queues[p.queue]
            runs_tasks = p.kind == "worker" or config.worker_type != "process"
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
                "gpu": gpu.get(p.pid)})
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
        self.app.queue_backend.put_record(self._record_key, self.status(),
                                          ttl=ttl)

    @property
    def _record_key(self) -> str:
        return "runtime:%s:%d" % (self.host, self.pid)

    def _notify_status(self) -> None:
        samples = self._samples
        pending = sum(samples.backlog.values()) if samples else 0
        running = len(samples.leases) if samples else 0
        alive = sum(1 for s in self.slots if s.alive)
        notify.notify("STATUS=%d/%d consumers up, %d pending, %d running"
                      % (alive, len(self.slots), pending, running))

    # ------------------------------------------------------------ shutdown

    def shutdown(self) -> None:
        """Stop consumers gracefully, hand back what is left, clean up."""
        grace = self.profile.runtime.grace_period
        name = self._fault or signal.Signals(self._signals[0]).name
        logger.info("%s: stopping; running tasks get up to %s to finish",
                    name, "%gs" % grace)
        notify.notify("STOPPING=1")
        self._signals = self._signals[1:]
        self.pool.stop()
        if self.web is not None:
            self.web.stop()
        self._wait_stopped(time.monotonic() + grace + 5)
        self.pool.kill_left(self.sampler)
        if self.web is not None:
            self.web.wait()
        handed = self.recovery.hand_back(self.pool.known_pids)
        if handed:
            logger.warning("handed %d unfinished tasks back to their queues",
                           handed)
        try:
            self.app.queue_backend.delete_record(self._record_key)
        except Exception:
            logger.exception("could not remove this runtime's status record")
        logger.info("stopped")

    def _wait_stopped(self, deadline: float) -> None:
        """Until every consumer exited or ``deadline``; a second signal
        interrupts the running tasks."""
        escalated = False
        while self.pool.alive() and time.monotonic() < deadline:
            if self._signals and not escalated:
                logger.warning("second signal: interrupting running tasks now")
                escalated = True
                self.pool.interrupt()
            self.pool.remember(self.sampler)
            self._wake.wait(0.1)


class _Wakeup:
    """The supervisor's sleep, cut short by a stop signal: the interpreter
    writes every signal's number to a pipe (signal.set_wakeup_fd) and the
    sleep is a select() on it, with no lock a signal handler could need."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def install(self) -> None:
        signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def wait(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds or until a signal arrived."""
        readable, _, _ = select.select([self._read], [], [], max(timeout, 0))
        if readable:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass


def _workers_words(queue: str, config) -> str:
    """``high (2 thread)``, ``io (async, 200 at once)``: a queue's workers
    in the supervisor's start-up line."""
    if config.worker_type == "async":
        return "%s (async, %d at once)" % (queue, config.concurrency)
    return "%s (%d %s)" % (queue, config.workers, config.worker_type)

