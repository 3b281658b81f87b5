"""The consumer pool: the child processes one runtime keeps running.

:class:`ConsumerPool` owns a :class:`Slot` per consumer process (one per
queue's ``min_consumers``, more under autoscale). It starts each as a fresh
interpreter in its own session (``main_command``, told its supervisor's pid
so it dies with it), notices one that exited and starts it again after an
exponential back-off (half a second doubling up to
``runtime.restart_backoff_max``, reset once it had run for twice that), at
once when it was recycled on purpose, never when autoscale retired it. It
adds and retires slots for autoscale, signals them to stop, and remembers
every pid it started or saw under a consumer (``known_pids``), so that
shutdown hands back only leases held by this runtime's processes.
:class:`WebServer` restarts the optional web server with the same back-off.
"""

import dataclasses
import logging
import os
import signal
import subprocess
import time

from hueyq import drivers
from hueyq.runtime import main_command

# The supervisor's logger: its lines keep the name they always had.
logger = logging.getLogger("hueyq.supervisor")


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


def backoff(failures: int, uptime: float, maximum: float
            ) -> "tuple[int, float]":
    """(failures, seconds to wait) after a child that ran ``uptime`` seconds
    exited: the count starts again once it had run for twice ``maximum``."""
    if uptime > maximum * 2:
        failures = 0
    failures += 1
    return failures, min(maximum, 0.5 * 2 ** (failures - 1))


class ConsumerPool:
    """Starts, restarts, scales and stops the consumers of one runtime."""

    def __init__(self, profile, app_spec: str, queues: "list[str]",
                 supervisor_pid: int, log_format: "str | None" = None
                 ) -> None:
        self.profile = profile
        self.spec = app_spec
        self.supervisor_pid = supervisor_pid
        self.log_format = log_format
        self.slots = [Slot(q, i) for q in queues
                      for i in range(profile.queues[q].min_consumers)]
        #: Every pid this runtime started or saw under a consumer.
        self.known_pids: "set[int]" = set()

    def _command(self, slot: Slot) -> "list[str]":
        cmd = main_command("hueyq.runtime.consumer", "--app", self.spec,
                           "--queue", slot.queue, "--index", str(slot.index))
        if self.log_format:
            cmd += ["--log-format", self.log_format]
        return cmd

    def start(self, slot: Slot) -> None:
        """Start ``slot``'s consumer process."""
        env = dict(os.environ, HUEYQ_SUPERVISOR_PID=str(self.supervisor_pid))
        env[drivers.ENV] = drivers.env_value(self.profile)
        slot.proc = subprocess.Popen(self._command(slot), env=env,
                                     start_new_session=True)
        slot.started = time.monotonic()
        slot.started_at = time.time()
        slot.stopping = slot.recycle = False
        self.known_pids.add(slot.proc.pid)
        logger.info("started consumer %s[%d] pid %d", slot.queue, slot.index,
                    slot.proc.pid)

    def start_all(self) -> None:
        """Start every slot (the runtime's start)."""
        for slot in self.slots:
            self.start(slot)

    def reap(self, now: float) -> None:
        """Notice consumers that exited: drop a retired slot, start a
        recycled one at once, any other after its back-off."""
        for slot in list(self.slots):
            if slot.proc is None or slot.proc.poll() is None:
                continue
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
            self._failed(slot, now)

    def _failed(self, slot: Slot, now: float) -> None:
        uptime = now - slot.started
        slot.failures, delay = backoff(
            slot.failures, uptime, self.profile.runtime.restart_backoff_max)
        logger.warning("consumer %s[%d] pid %d exited with %s after %.1fs; "
                       "restarting in %.1fs", slot.queue, slot.index,
                       slot.proc.pid, exit_text(slot.proc.returncode), uptime,
                       delay)
        slot.proc = None
        slot.restarts += 1
        slot.next_start = now + delay

    def start_due(self, now: float) -> None:
        """Start the slots whose back-off has passed."""
        for slot in self.slots:
            if slot.proc is None and slot.next_start <= now:
                self.start(slot)

    def scale_up(self, queue: str) -> None:
        """One more consumer for ``queue``."""
        index = max([s.index for s in self.slots
                     if s.queue == queue] + [-1]) + 1
        slot = Slot(queue, index)
        self.slots.append(slot)
        self.start(slot)

    def scale_down(self, queue: str) -> bool:
        """Stop ``queue``'s newest extra consumer gracefully (its slot goes
        once it exited); False when it has none."""
        extra = [s for s in self.slots if s.queue == queue
                 and s.index > 0 and s.alive and not s.stopping]
        if not extra:
            return False
        slot = max(extra, key=lambda s: s.index)
        slot.retire = slot.stopping = True
        send(slot.pid, signal.SIGINT)
        return True

    def recycle(self, pid: int) -> None:
        """Restart the consumer ``pid`` after its current tasks, or ask the
        process worker ``pid`` to leave after its current task."""
        for slot in self.slots:
            if slot.pid == pid:
                slot.recycle = slot.stopping = True
                send(slot.pid, signal.SIGINT)
                return
        send(pid, signal.SIGUSR1)

    def alive(self) -> "list[Slot]":
        """The slots whose process is running."""
        return [s for s in self.slots if s.alive]

    def stop(self) -> None:
        """Ask every consumer to stop gracefully (SIGINT)."""
        for slot in self.slots:
            slot.stopping = True
            if slot.alive:
                send(slot.pid, signal.SIGINT)

    def interrupt(self) -> None:
        """Ask every consumer to interrupt its running tasks now (SIGTERM)."""
        for slot in self.alive():
            send(slot.pid, signal.SIGTERM)

    def remember(self, sampler) -> None:
        """Note every process now under a live consumer."""
        for slot in self.alive():
            self.known_pids.update(p.pid for p in sampler.tree(slot.pid))

    def kill_left(self, sampler) -> None:
        """SIGKILL what is left of every consumer, workers first."""
        for slot in self.alive():
            logger.warning("consumer %s[%d] did not stop in time; killing "
                           "it", slot.queue, slot.index)
            for proc in reversed(sampler.tree(slot.pid)):
                send(proc.pid, signal.SIGKILL)
            slot.proc.wait()


class WebServer:
    """The web server (``hueyq web``) a runtime started with ``--web``
    runs, restarted with the consumers' back-off when it dies."""

    def __init__(self, command: "list[str]", profile) -> None:
        self.command = command
        self.profile = profile
        self.proc: "subprocess.Popen | None" = None
        self._started = 0.0
        self._failures = 0
        self._next = 0.0

    def start(self) -> None:
        """Start the web server."""
        env = dict(os.environ)
        env[drivers.ENV] = drivers.env_value(self.profile)
        self.proc = subprocess.Popen(self.command, env=env,
                                     start_new_session=True)
        self._started = time.monotonic()
        logger.info("started the web server, pid %d", self.proc.pid)

    def watch(self, now: float) -> None:
        """Restart a web server that died, after its back-off."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if self.proc is not None:
            self._failures, delay = backoff(
                self._failures, now - self._started,
                self.profile.runtime.restart_backoff_max)
            logger.warning("web server pid %d exited with %s; restarting in "
                           "%.1fs", self.proc.pid,
                           exit_text(self.proc.returncode), delay)
            self.proc = None
            self._next = now + delay
        if now >= self._next:
            self.start()

    def stop(self) -> None:
        """Ask a running web server to stop (SIGTERM)."""
        if self.proc is not None and self.proc.poll() is None:
            send(self.proc.pid, signal.SIGTERM)

    def wait(self) -> None:
        """Wait up to 5 s for it to exit, then kill it."""
        if self.proc is None:
            return
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def send(pid: "int | None", sig: int) -> None:
    """Send ``sig`` to ``pid`` unless it is gone (or none)."""
    if not pid:
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def exit_text(code: int) -> str:
    """How a child ended, for people: ``status 1``, ``signal SIGKILL``."""
    if code is not None and code < 0:
        try:
            return "signal %s" % signal.Signals(-code).name
        except ValueError:
            return "signal %d" % -code
    return "status %s" % code
