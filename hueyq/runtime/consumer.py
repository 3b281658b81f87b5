"""One queue's consumer process: huey's Consumer with hueyq's leasing worker.

``python -m hueyq.runtime.consumer --app MODULE[:ATTR] --queue Q`` is what
the supervisor starts for each queue. It runs huey's ``Consumer`` (workers,
scheduler, health checks, graceful signals) with two of its extension points
replaced: :class:`Worker`, which takes messages as leases and acks them only
when execution has ended, and :class:`Scheduler`, which enqueues each
periodic task once per minute even with several consumers or hosts.

A worker never loses a message: undecodable ones, unknown tasks and bad
signatures are dead-lettered with the original bytes; a task that ends in
failure or cancellation keeps its message so it can be retried; a task
interrupted by shutdown is handed back, and the worker takes nothing more.
The ack of a finished task rides in the worker's next lease transaction.
Once a task has run, a backend that refuses writes (gone, or out of memory)
cannot make it run again: the worker holds its outcome and retries the
writes (:meth:`Worker.hold`). On a thread consumer, a job recovered from a
crash that took several jobs down runs alone (:class:`Solo`), so a crash is
charged to the job that caused it.
"""

import argparse
import ctypes
import datetime
import gc
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any

from huey import consumer as huey_consumer
from huey import signals as S
from huey.utils import Error

from hueyq import context as job_context
from hueyq import jobs
from hueyq import logs
from hueyq.logs import Outage
from hueyq.backends import DEAD
from hueyq.envelope import peek_header
from hueyq.exceptions import (BackendUnavailable, ConfigurationError,
                              HueyqError)
from hueyq.jobs import ENDED, STARTED, change_seq
from hueyq.owner import owner_name, runtime_id
from hueyq.runtime import SCHEDULER_PROCESS_NAME, WORKER_PROCESS_NAME
from hueyq.runtime.gpu import GpuLane
from hueyq.store import JobRecorder
from hueyq.units import format_duration, format_size

logger = logging.getLogger("hueyq.worker")

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
_ERRORS = (S.SIGNAL_ERROR, S.SIGNAL_TIMEOUT, S.SIGNAL_LOCKED,
           S.SIGNAL_RATE_LIMITED)
_trail = threading.local()


def die_with_parent(sig: int) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_PDEATHSIG) is not available here")


def set_process_name(name: str) -> None:
    """Name this process in /proc (``ps -o comm``), so the supervisor can
    tell a consumer's forked workers from its scheduler."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("prctl(PR_SET_NAME) is not available here")


def collect_signal(signal_name: str, task, *args: Any) -> None:
    """huey signal receiver: note what happened to the running task."""
    trail = getattr(_trail, "signals", None)
    if trail is None or getattr(_trail, "task_id", None) != task.id:
        return
    exc = args[0] if args else sys.exc_info()[1]
    trail.append((signal_name, exc))


def outcome_of(trail: "list[tuple[str, Any]]") -> "tuple[str, Any, Any, Any]":
    """(job state, ack outcome, dead reason, exception) from huey's signals."""
    signals = [name for name, _ in trail]
    exc = next((e for name, e in trail if name in _ERRORS and e is not None),
               None)
    if S.SIGNAL_RETRYING in signals:
        return "retrying", None, None, exc
    if S.SIGNAL_COMPLETE in signals:
        return "complete", None, None, None
    if S.SIGNAL_INTERRUPTED in signals:
        return "pending", "release", None, None
    if S.SIGNAL_REVOKED in signals or S.SIGNAL_CANCELED in signals:
        return "cancelled", DEAD, "cancelled", None
    if S.SIGNAL_EXPIRED in signals:
        return "expired", DEAD, "expired", None
    if S.SIGNAL_SCHEDULED in signals:
        return "scheduled", None, None, None
    return "failed", DEAD, "failed", exc


def describe_error(exc: Any, signals: "list[str]") -> "tuple[str | None, str | None]":
    """(error, traceback) of a failed attempt."""
    if exc is None:
        if S.SIGNAL_TIMEOUT in signals:
            return "timeout", None
        if S.SIGNAL_LOCKED in signals:
            return "task lock held", None
        return None, None
    tb = "".join(traceback.format_exception(type(exc), exc,
                                            exc.__traceback__))
    return repr(exc), tb


@dataclass
class WorkerContext:
    """What every worker of one consumer shares."""
    app: Any
    queue: str
    recorder: JobRecorder
    host: str
    poll_interval: float
    progress_interval: float
    worker_type: str
    gpu: bool
    gpu_memory_fraction: float
    parent_pid: int
    args_preview: bool = False
    torch_threads: int = 0
    thread_gpu: Any = None
    #: The runtime this consumer belongs to (``hueyq.owner.runtime_id``).
    runtime: str = ""
    #: Thread consumers: runs suspects alone (:class:`Solo`).
    solo: "Solo | None" = None


class Solo:
    """Runs suspects alone among the workers of one thread consumer.

    A job recovered from a crash is a suspect (its last error starts with
    ``suspect:``). It starts only once no other worker of the process runs
    a task, and no worker takes new work until it ends; a worker that took a
    job meanwhile hands it back. Should the suspect crash the process, it
    was running alone, and the crash is charged to it, never to a job that
    merely shared the process.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running = 0
        self._suspect = False

    def may_take(self, timeout: float) -> bool:
        """False (after waiting up to ``timeout``) while a suspect has the
        process to itself."""
        with self._cond:
            if self._suspect:
                self._cond.wait(timeout)
            return not self._suspect

    def begin(self, suspect: bool, stop) -> bool:
        """Start a task; False when it must be handed back instead."""
        with self._cond:
            if self._suspect:
                return False
            if not suspect:
                self._running += 1
                return True
            self._suspect = True
            while self._running and not stop.is_set():
                self._cond.wait(0.25)
            if self._running:
                self._suspect = False
                self._cond.notify_all()
                return False
            self._running = 1
            return True

    def end(self, suspect: bool) -> None:
        """A task started with :meth:`begin` ended."""
        with self._cond:
            self._running -= 1
            if suspect:
                self._suspect = False
            self._cond.notify_all()


class Worker(huey_consumer.Worker):
    """huey's Worker, taking messages as leases and recording each job."""

    def __init__(self, huey, stop_flag, default_delay, max_delay, backoff,
                 max_tasks=None, context: "WorkerContext | None" = None):
        super().__init__(huey, stop_flag, default_delay, max_delay, backoff,
                         max_tasks)
        self.ctx = context
        self.storage = huey.storage
        self.owner = None
        self.name = None
        self._ack = None
        self._requeue = None
        self._recycle = False
        self._interrupted = False
        self._gpu = None
        self._failures = 0
        self._outage = Outage(logger, "taking from the backend")
        self._held = Outage(logger, "storing a finished task's outcome",
                            every=30.0)
        self._asked = Outage(logger, "checking for a cancel of the "
                             "running job")

    # ------------------------------------------------------------ lifecycle

    def initialize(self) -> None:
        if self.ctx.worker_type == "process":
            self.name = multiprocessing.current_process().name
            set_process_name(WORKER_PROCESS_NAME)
            die_with_parent(signal.SIGKILL)
            if os.getppid() != self.ctx.parent_pid:
                os._exit(0)
            # Threads are started after the fork, never before it: a thread
            # holding a lock at fork time leaves the child deadlocked.
            self.ctx.recorder.connect()
            signal.signal(signal.SIGUSR1, self._request_recycle)
            signal.signal(signal.SIGUSR2, self._soft_limit_signal)
            if self.ctx.gpu:
                self._gpu = GpuLane(self.ctx.gpu_memory_fraction,
                                    self.ctx.torch_threads)
        else:
            self.name = threading.current_thread().name
            self._gpu = self.ctx.thread_gpu
        self.owner = owner_name(self.ctx.host, self.name, self.ctx.runtime,
                                self.ctx.parent_pid)
        self._recover_own_leases()
        super().initialize()

    def _reclaim(self) -> None:
        # A lease call that failed may still have taken a message whose
        # reply never arrived (the connection dropped after the server ran
        # it). This worker holds nothing now, so any lease in its name is
        # such a message: hand it back.
        if self._ack is not None:
            self.storage.ack(*self._ack)
            self._ack = None
        orphans = [l.handle for l in self.storage.leases()
                   if l.owner == self.owner]
        if orphans:
            self.storage.release(orphans)
            self._logger.warning("handed back %d message(s) taken while the "
                                 "backend connection failed", len(orphans))

    def _request_recycle(self, signum, frame) -> None:
        self._recycle = True

    # ------------------------------------------------------------ soft limits

    def _soft_limit_signal(self, signum, frame) -> None:
        # Raised only in the task's body (huey keeps it in _tasks_in_flight
        # just while the function runs), never in the worker's bookkeeping.
        job = job_context.current_job()
        if job is not None and job.soft_limit_due() and \
                job.task in self.huey._tasks_in_flight:
            job.raise_soft_limit()

    def _time_limits(self, task) -> "tuple[float | None, float | None]":
        """(soft limit, cooperative hard limit) of a task on this worker:
        the task's own, else its queue's; thread workers cannot be killed,
        so their hard limit is raised at the next hueyq.progress()."""
        config = self.ctx.app.profile.queues[self.ctx.queue]
        cls = type(task)
        soft = getattr(cls, "soft_time_limit", None) or config.soft_time_limit
        hard = getattr(cls, "time_limit", None) or config.time_limit
        return soft, hard if self.ctx.worker_type == "thread" else None

    def _soft_limit_timer(self, job, name: str) -> "threading.Timer | None":
        """Arm the soft limit of ``job``: on a thread worker it is raised at
        the next progress() call and recorded there; on a process worker a
        timer records it and signals this process, whose main thread runs
        the task and is interrupted wherever it is (even in time.sleep)."""
        if not job.soft_time_limit:
            return None
        if self.ctx.worker_type != "process":
            job.on_soft_limit = lambda j: self._record_soft_limit(j, name)
            return None
        timer = threading.Timer(job.soft_time_limit, self._soft_limit_fire,
                                (job, name))
        timer.daemon = True
        timer.start()
        return timer

    def _soft_limit_fire(self, job, name: str) -> None:
        # The timer's thread records (a signal handler must not take the
        # recorder's lock, which the task's thread may hold).
        if job.task in self.huey._tasks_in_flight:
            self._record_soft_limit(job, name)
            os.kill(os.getpid(), signal.SIGUSR2)

    def _record_soft_limit(self, job, name: str) -> None:
        detail = "soft time limit exceeded (%s)" % format_duration(
            job.soft_time_limit)
        self.ctx.recorder.event(job.id, name, "soft-time-limit", detail)
        logger.warning("%s: %s", name, detail,
                       extra={"queue": self.ctx.queue, "job_id": job.id})

    def _recover_own_leases(self) -> None:
        # A worker thread that died left leases under the owner name its
        # replacement now takes; they go back to the queue. A thread dies
        # of hueyq's own bookkeeping failing (a task's exceptions are huey's
        # to catch), so this is not charged to the job.
        try:
            for lease in self.storage.leases():
                if lease.owner == self.owner:
                    self.storage.requeue(lease.handle, "worker thread died",
                                         count=False)
        except _backend_errors() as exc:
            logger.warning("could not recover this worker's leases: %s", exc)
        except Exception:
            self._logger.exception("could not recover this worker's leases")

    def shutdown(self) -> None:
        if self._ack is not None:
            try:
                self.storage.ack(*self._ack)
                self._ack = None
            except Exception:
                self._logger.exception("final ack failed; the lease will be "
                                       "recovered")
        super().shutdown()

    # ------------------------------------------------------------ the loop

    def loop(self, now=None) -> None:
        if self._interrupted:
            # Shutdown interrupted this worker's task: it was handed back
            # (the ack in shutdown()), and the worker takes nothing more.
            raise KeyboardInterrupt
        if self._recycle:
            self._logger.info("recycling worker %s (memory)", self.owner)
            raise huey_consumer.WorkerRecycle()
        solo = self.ctx.solo
        if solo is not None and not solo.may_take(self.ctx.poll_interval):
            self._flush_ack()
            return
        lease = self.take()
        if lease is None:
            if not self._failures and not self.stop_flag.is_set():
                self._wait()
            return
        self.task_count += 1
        self.process(lease, now)
        if self.max_tasks and self.task_count >= self.max_tasks:
            self._logger.info("worker %s reached max_tasks (%d), recycling",
                              self.owner, self.max_tasks)
            raise huey_consumer.WorkerRecycle()

    def _wait(self) -> None:
        try:
            self.storage.wait(self.ctx.poll_interval)
        except Exception as exc:
            self._logger.debug("waiting for work failed: %s", exc)
            self.sleep()

    def take(self):
        """Lease the next message (acking the last one); None when there is
        none, the worker is stopping (then only the ack is written) or the
        backend cannot be reached (then back off)."""
        try:
            if self._requeue is not None:
                self.storage.requeue(*self._requeue, count=False)
                self._requeue = None
            if self._failures:
                self._reclaim()
            if self.stop_flag.is_set():
                self._flush_ack()
                return None
            lease = self.storage.lease(self.owner, self._ack)
        except Exception as exc:
            self._failures += 1
            self._outage.failed(exc)
            if not isinstance(exc, _backend_errors()):
                self._logger.exception("taking a message failed")
            self.sleep()
            return None
        self._failures = 0
        self._outage.ok()
        self._ack = None
        self.delay = self.default_delay
        return lease

    def _flush_ack(self) -> None:
        if self._ack is not None:
            self.storage.ack(*self._ack)
            self._ack = None

    def hold(self, write):
        """Run ``write``, a backend write of a finished task's outcome, until
        it succeeds: the task has run, so a backend that is gone or out of
        memory must not make it run again. Logged a few times, not per try."""
        delay = 0.05
        while True:
            try:
                result = write()
            except _backend_errors() as exc:
                self._held.failed(exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._held.ok()
            return result

    def process(self, lease, now=None) -> None:
        """Decode and run one leased message (a suspect alone)."""
        suspect = jobs.is_suspect(lease.last_error)
        solo = self.ctx.solo
        if solo is not None and not solo.begin(suspect, self.stop_flag):
            self.storage.release([lease.handle])
            return
        try:
            if self._gpu is not None:
                self._gpu.ensure_started()
            task = self._decode(lease)
            if task is None:
                return
            if getattr(type(task), "batch_func", None) is not None:
                self.execute_batch(task, lease, alone=suspect)
                return
            self.execute(task, lease, now)
        finally:
            if solo is not None:
                solo.end(suspect)

    def _decode(self, lease):
        """The lease's task, or None when it was ended here instead: dead-
        lettered, or retried/failed after its last worker was killed."""
        if lease.oversized:
            self.dead_letter(lease, "too_large", "message is %s; the limit is "
                             "%s" % (format_size(lease.size), format_size(
                                 self.huey.serializer.max_size)))
            return None
        try:
            message = self.huey.serializer.deserialize(lease.data)
        except Exception as exc:
            self.dead_letter(lease, jobs.dead_reason(exc), str(exc))
            return None
        try:
            task = self.huey._registry.create_task(message)
        except Exception as exc:
            # Verified (or no secret to verify with): the message's own id.
            job_id = getattr(message, "id", None)
            self.dead_letter(lease, jobs.dead_reason(exc), str(exc),
                             job_id if isinstance(job_id, str) and job_id
                             else None)
            return None
        if jobs.is_killed(lease.last_error):
            self.after_kill(task, lease)
            return None
        return task

    def execute(self, task, lease, now=None) -> None:
        """Run a task under huey's execute(), then record and ack it."""
        started = time.time()
        name = _task_name(task)
        self.ctx.recorder.job(self._start_change(task, lease, name, started))
        seq = change_seq(lease.seq, STARTED)
        job = job_context.JobContext(
            id=task.id, task=task, queue=self.ctx.queue,
            attempt=lease.redeliveries + 1,
            report=lambda jid, pct, msg: self._report_progress(jid, pct, msg,
                                                               seq),
            cancelled=lambda: self._cancelled(task),
            interval=self.ctx.progress_interval, hold=self.hold)
        _mark_when_run(task, job)
        job.soft_time_limit, job.time_limit = self._time_limits(task)
        timer = self._soft_limit_timer(job, name)
        job_context.set_current(job)
        job_context.set_leased(task.id, lease.revoked)
        _trail.signals, _trail.task_id = [], task.id
        broken = None
        try:
            self.restart_expiry(task, lease)
            self.huey.execute(task, now)
        except Exception as exc:
            # Not the task failing (huey records that) but huey's own
            # bookkeeping (a result, a revoke key) failing: the backend went
            # away mid-task. Redeliver rather than guess at the outcome.
            broken = exc
        finally:
            if timer is not None:
                timer.cancel()
            trail, _trail.signals = _trail.signals, None
            job_context.set_current(None)
            job_context.set_leased(None)
            job.flush()
        if broken is not None:
            self._redeliver(task, lease, name, started, broken, job.ran)
            return
        state, outcome, reason, exc = outcome_of(trail)
        if reason == "cancelled" and job_context.revoke_cleared():
            # Cancelled from inside the task: huey clears its revoke key
            # after running it; the ack only does so for tasks that ended.
            self.storage.delete_data(task.revoke_id)
        self._ack = (lease.handle, outcome, reason)
        if outcome == "release":
            self._interrupted = True
        # When the task ended, not when its outcome was stored (a backend
        # that was away may have held it).
        finished = job.ran_at or time.time()
        error, tb = describe_error(exc, [n for n, _ in trail])
        self.ctx.recorder.job(jobs.ended(task.id, state, started=started,
                                         at=finished, error=error, tb=tb,
                                         seq=change_seq(lease.seq, ENDED)))
        if outcome is None:
            # After the record that ends the job: any flush that forgets
            # the message has written that record first.
            self.ctx.recorder.done(lease.handle)
        logger.info("%s %s after %.3fs%s", name,
                    "handed back (shutdown)" if outcome == "release" else state,
                    finished - started, " (%s)" % error if error else "",
                    extra={"queue": self.ctx.queue, "job_id": task.id,
                           "task": name, "attempt": job.attempt})
        if self._gpu is not None:
            self._gpu_report()

    def restart_expiry(self, task, lease) -> None:
        """Count a promoted task's ``expires`` from its promotion.

        huey's scheduler re-enqueues a due task, and its enqueue resolves
        ``expires`` anew; hueyq's backend moves the message in place and
        notes when (``promoted`` in its meta), so the clock restarts here.
        """
        if not task.expires or task.eta is None or \
                isinstance(task.expires, datetime.datetime):
            return
        info = self.storage.find(task.id)
        promoted = (info.meta.get("promoted") if info is not None and
                    info.handle == lease.handle else None)
        if promoted:
            since = time.time() - float(promoted)
            task.resolve_expires(self.huey.utc)
            task.expires_resolved -= datetime.timedelta(seconds=since)

    def _start_change(self, task, lease, name, started) -> dict:
        change = jobs.started(
            task.id, task=name, queue=self.ctx.queue, at=started,
            seq=change_seq(lease.seq, STARTED),
            redeliveries=lease.redeliveries, host=self.ctx.host,
            pid=os.getpid(), worker=self.name,
            enqueued_at=lease.enqueued_at, priority=task.priority or 0)
        if self.ctx.args_preview or lease.enqueued_at is None:
            header = peek_header(lease.data) or {}
            change["args"] = header.get("args")
            change["enqueued_at"] = lease.enqueued_at or header.get("t")
        if self.ctx.args_preview and change.get("args") is None:
            # Encrypted messages carry no preview in their plaintext header.
            from hueyq.app import args_preview
            change["args"] = args_preview(task.args, task.kwargs)
        return change

    def _report_progress(self, job_id: str, percent: float,
                         message: "str | None", seq: "int | None") -> None:
        self.ctx.recorder.job(jobs.progress(job_id, percent, message,
                                            at=time.time(), seq=seq))

    def _cancelled(self, task) -> bool:
        # Asked at every hueyq.progress(): a backend that is away must not
        # raise into the task; the question is asked again at the next call.
        try:
            answer = self.storage.has_data_for_key(task.revoke_id)
        except _backend_errors() as exc:
            self._asked.failed(exc)
            return False
        self._asked.ok()
        return answer

    def _gpu_report(self) -> None:
        stats = self._gpu.after_task()
        if stats is None:
            return
        try:
            self.storage.put_record("gpu:%s:%d" % (self.ctx.host, os.getpid()),
                                    stats, ttl=120)
        except _backend_errors() as exc:
            logger.warning("could not publish GPU memory figures: %s", exc)
        except Exception:
            self._logger.exception("could not publish GPU memory figures")

    # ------------------------------------------------------------ batches

    def execute_batch(self, first, first_lease, alone: bool = False) -> None:
        """Gather up to batch_size pending items of this task (waiting at most
        batch_wait; none for a suspect, which runs ``alone``), call the batch
        function once, and end each item on its own: result, retry or
        failure, record and ack."""
        cls = type(first)
        name = _task_name(first)
        batch = [(first, first_lease)] if alone else \
            self._gather(cls, name, [(first, first_lease)])
        now = self.huey._get_timestamp()
        runnable, acks = [], []
        for task, lease in batch:
            self.restart_expiry(task, lease)
            if self.huey.is_revoked(task, now, False):
                self.huey._emit(S.SIGNAL_REVOKED, task)
                acks.append((lease.handle, DEAD, "cancelled"))
                self.ctx.recorder.job(jobs.cancelled(
                    task.id, at=time.time(), seq=change_seq(lease.seq, ENDED)))
            elif task.expires_resolved and task.expires_resolved < now:
                self.huey._emit(S.SIGNAL_EXPIRED, task)
                acks.append((lease.handle, DEAD, "expired"))
                self.ctx.recorder.job(jobs.expired(
                    task.id, at=time.time(), seq=change_seq(lease.seq, ENDED)))
            else:
                runnable.append((task, lease))
        if runnable:
            acks += self._run_batch(cls, name, runnable)
        self.hold(lambda: self.storage.ack_many(acks))

    def _gather(self, cls, name: str, batch: list) -> list:
        deadline = time.monotonic() + (cls.batch_wait or 0)
        while len(batch) < cls.batch_size:
            for lease in self.storage.lease_batch(self.owner, name,
                                                  cls.batch_size - len(batch)):
                task = self._decode(lease)
                if self._ack is not None:
                    self.storage.ack(*self._ack)
                    self._ack = None
                if task is not None:
                    batch.append((task, lease))
            left = deadline - time.monotonic()
            if len(batch) >= cls.batch_size or left <= 0:
                break
            self.storage.wait(min(left, 0.05))
        return batch

    def _run_batch(self, cls, name: str, batch: list) -> list:
        started = time.time()
        for task, lease in batch:
            self.huey._emit(S.SIGNAL_EXECUTING, task)
            self.ctx.recorder.job(self._start_change(task, lease, name,
                                                     started))
        seqs = {task.id: change_seq(lease.seq, STARTED)
                for task, lease in batch}

        def report(job_id, percent, message):
            for each, seq in seqs.items():
                self._report_progress(each, percent, message, seq)
        job_context.set_current(job_context.JobContext(
            id=batch[0][0].id, task=batch[0][0], queue=self.ctx.queue,
            attempt=1, report=report, cancelled=lambda: False,
            interval=self.ctx.progress_interval, hold=self.hold))
        failure = None
        try:
            from hueyq.app import batch_results
            values = batch_results(cls.batch_func([t.args[0] for t, _ in batch]),
                                   len(batch))
        except Exception as exc:
            failure, values = exc, [None] * len(batch)
        job = job_context.current_job()
        job.ran = True
        try:
            acks = self._end_items(batch, values, failure, started)
        finally:
            job.flush()
            job_context.set_current(None)
        return acks

    def _end_items(self, batch: list, values: list, failure, started: float
                   ) -> list:
        name = _task_name(batch[0][0])
        finished = time.time()
        acks = []
        for (task, lease), value in zip(batch, values):
            error = failure or (value if isinstance(value, BaseException)
                                else None)
            acks.append(self._end_item(task, lease, value, error, started,
                                       finished))
        logger.info("%s batch of %d after %.3fs%s", name, len(batch),
                    finished - started, " (%r)" % failure if failure else "",
                    extra={"queue": self.ctx.queue, "task": name})
        return acks

    def _end_item(self, task, lease, value, error, started, finished) -> tuple:
        seq = change_seq(lease.seq, ENDED)
        if error is None:
            if value is not None:
                self.huey.put_result(task.id, value)
            self.huey._emit(S.SIGNAL_COMPLETE, task)
            self.ctx.recorder.job(jobs.completed(task.id, at=finished,
                                                 seq=seq, started=started))
            self.ctx.recorder.done(lease.handle)
            return (lease.handle, None, None)
        text, tb = describe_error(error, [S.SIGNAL_ERROR])
        self.huey._emit(S.SIGNAL_ERROR, task, error)
        if task.retries:
            self.huey._emit(S.SIGNAL_RETRYING, task)
            self.huey._requeue_task(task, self.huey._get_timestamp())
            self.ctx.recorder.job(jobs.retrying(task.id, text, at=finished,
                                                seq=seq, tb=tb))
            self.ctx.recorder.done(lease.handle)
            return (lease.handle, None, None)
        self.huey.put_result(task.id, Error(self.huey.build_error_result(
            task, error)))
        self.ctx.recorder.job(jobs.failed(task.id, text, at=finished, seq=seq,
                                          tb=tb, started=started))
        return (lease.handle, DEAD, "failed")

    # ------------------------------------------------------------ endings

    def _redeliver(self, task, lease, name, started, exc, ran: bool) -> None:
        """huey's own bookkeeping around the task failed. Before the task
        ran (a backend error while checking its revoke keys): hand it back,
        uncounted. After (hold() retries backend errors, so this is huey
        failing to store the outcome, e.g. a result that cannot be
        serialized): the job failed."""
        now = time.time()
        seq = change_seq(lease.seq, ENDED)
        if ran:
            error = "could not store the outcome of the task: %r" % (exc,)
            self._logger.warning("%s: %s", task.id, error)
            self._ack = (lease.handle, DEAD, "failed")
            self._put_error(task.id, error)
            self.ctx.recorder.job(jobs.failed(task.id, error, at=now,
                                              seq=seq))
            self.ctx.recorder.event(task.id, name, "failed", error,
                                    duration=now - started)
            return
        error = "backend error before the task ran: %r" % (exc,)
        self._logger.warning("%s: %s; it will be redelivered", task.id, error)
        self._requeue = (lease.handle, error)
        self.ctx.recorder.job(jobs.recovered(task.id, error, at=now, seq=seq))
        self.ctx.recorder.event(task.id, name, "redelivered", error,
                                duration=now - started)

    def dead_letter(self, lease, reason: str, detail: str,
                    job_id: "str | None" = None) -> None:
        """Keep a message that cannot run, with the reason, and record it.

        ``job_id`` is the id of a message that was verified (or that there
        was no secret to verify); one that failed verification claims an id
        nobody vouches for, so it is filed under an id of its own and never
        touches another job's record or result.
        """
        own = job_id is None
        if own:
            job_id = "%s-%s-%s" % (reason, self.ctx.queue, lease.handle)
        if job_id != lease.task_id:
            self.storage.relabel(lease.handle, job_id)
        header = peek_header(lease.data) or {}
        name = (header.get("name") or "")[:255]
        self.storage.ack(lease.handle, DEAD, reason)
        now = time.time()
        self.ctx.recorder.job(jobs.dead(
            job_id, reason, detail, at=now, seq=change_seq(lease.seq, ENDED),
            task=name, queue=self.ctx.queue,
            enqueued_at=header.get("t") or now,
            payload=bytes(lease.data or b""),
            redeliveries=lease.redeliveries))
        self.ctx.recorder.event(job_id, name, "dead", "%s: %s" % (reason,
                                                                   detail))
        if not own:
            self._put_error(job_id, "%s: %s" % (reason, detail))
        logger.warning("dead-lettered message %s: %s: %s", lease.handle,
                       reason, detail,
                       extra={"queue": self.ctx.queue, "job_id": job_id})

    def after_kill(self, task, lease) -> None:
        """The previous delivery's worker was killed on purpose (memory,
        time limit): retry if the task has retries left, else fail."""
        error = lease.last_error
        now = time.time()
        seq = change_seq(lease.seq, ENDED)
        if task.retries:
            self.huey._requeue_task(task, self.huey._get_timestamp())
            self._ack = (lease.handle, None, None)
            state = "retrying"
            change = jobs.retrying(task.id, error, at=now, seq=seq)
        else:
            self._put_error(task.id, error)
            self._ack = (lease.handle, DEAD, "failed")
            state = "failed"
            change = jobs.failed(task.id, error, at=now, seq=seq)
        self.ctx.recorder.job(change)
        if state == "retrying":
            self.ctx.recorder.done(lease.handle)
        self.ctx.recorder.event(task.id, _task_name(task), state, error)
        logger.warning("%s %s after its worker was %s", _task_name(task),
                       state, error, extra={"queue": self.ctx.queue,
                                            "job_id": task.id})

    def _put_error(self, job_id: str, error: str) -> None:
        try:
            jobs.put_error(self.huey, job_id, error)
        except HueyqError:
            self._logger.exception("could not store the error of %s", job_id)


def _backend_errors() -> tuple:
    from hueyq.app import backend_errors
    return backend_errors() + (BackendUnavailable,)


def _mark_when_run(task, job) -> None:
    """Note on ``job`` when the task's body has returned or raised, so the
    bookkeeping writes after it are held (``JobContext.ran``)."""
    body = task.execute

    def execute():
        try:
            return body()
        finally:
            job.ran, job.ran_at = True, time.time()
    task.execute = execute


def _task_name(task) -> str:
    cls = type(task)
    return "%s.%s" % (cls.__module__, cls.__name__)


class Scheduler(huey_consumer.Scheduler):
    """huey's Scheduler, enqueueing each periodic task once per minute no
    matter how many consumers or hosts run the queue."""

    def initialize(self) -> None:
        if multiprocessing.current_process().name == "Scheduler":
            set_process_name(SCHEDULER_PROCESS_NAME)
        super().initialize()

    def enqueue_periodic_tasks(self, now) -> None:
        ts = now or self.huey._get_timestamp()
        stamp = ts.strftime("%Y%m%d%H%M")
        storage = self.huey.storage
        for task in self.huey.read_periodic(ts):
            name = _task_name(task)
            try:
                first = storage.put_if_empty("periodic:%s:%s" % (name, stamp),
                                             b"1")
            except _backend_errors() as exc:
                self._logger.warning("cannot enqueue periodic task %s: %s",
                                     name, exc)
                continue
            if not first:
                continue
            for minutes in (2, 3):
                old = ts - datetime.timedelta(minutes=minutes)
                storage.delete_data("periodic:%s:%s"
                                    % (name, old.strftime("%Y%m%d%H%M")))
            self._logger.info("enqueueing periodic task %s", name)
            try:
                self.huey.enqueue(task)
            except Exception:
                self._logger.exception("error enqueueing periodic task %s",
                                       name)


class Consumer(huey_consumer.Consumer):
    """huey's Consumer with hueyq's worker and scheduler."""

    worker_class = Worker
    scheduler_class = Scheduler

    def __init__(self, huey, context: WorkerContext, **options: Any) -> None:
        self.context = context
        super().__init__(huey, **options)
        # huey's main loop wakes ten times a second to see whether a signal
        # asked it to stop (the wait resumes after a signal); four is plenty.
        self._stop_flag_timeout = 0.25

    def start(self) -> None:
        if self.environment.forks:
            # Objects made so far stay out of the collector's reach, so the
            # forked workers share their pages instead of copying them.
            gc.freeze()
        super().start()
        # A stop asked for while this process was still starting up.
        if _early_signal:
            self._handle_signal(_early_signal[0], None)

    def stop(self, graceful: bool = False) -> None:
        self.stop_flag.set()
        self._wake_workers()
        super().stop(graceful)

    def _wake_workers(self) -> None:
        # Idle workers sleep until a wake-up or their poll interval; wake
        # them so they see the stop flag now rather than seconds later.
        for _ in range(self.workers):
            try:
                self.huey.storage.notify()
            except Exception:
                self._logger.debug("could not wake idle workers",
                                   exc_info=True)

    def _join_workers(self) -> bool:
        # huey's join, waking idle workers again while it waits: one that
        # went back to sleep just after the first wake-up is not missed. A
        # SIGTERM meanwhile (the supervisor's second signal) means now:
        # KeyboardInterrupt is how huey's stop() is told so.
        deadline = None if self.shutdown_timeout is None else \
            time.monotonic() + self.shutdown_timeout
        procs = [p for _, p in self.worker_threads] + [self.scheduler]
        while any(self.environment.is_alive(p) for p in procs):
            if self._signum == self._interrupt_sig:
                raise KeyboardInterrupt
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wake_workers()
            for proc in procs:
                proc.join(0.1)
        return True

    def _create_worker(self):
        return self.worker_class(
            huey=self.huey, stop_flag=self.stop_flag,
            default_delay=self.default_delay, max_delay=self.max_delay,
            backoff=self.backoff, max_tasks=self.max_tasks,
            context=self.context)


def run_consumer(app, queue: str, index: int = 0) -> int:
    """Run one consumer of ``queue`` in this process until it is stopped."""
    config = app.profile.queue(queue)
    huey = app.huey(queue)
    huey.storage.admission = bool(config.memory_limit)
    huey.hands_back = True
    huey.storage.consumer_side()
    recorder = JobRecorder(huey, app.store,
                           flush_interval=app.profile.store.flush_interval)
    if config.worker_type == "thread":
        recorder.connect()
    huey.signal()(collect_signal)
    context = WorkerContext(
        app=app, queue=queue, recorder=recorder, host=app.host_id,
        poll_interval=app.profile.runtime.poll_interval,
        progress_interval=app.profile.store.progress_interval,
        worker_type=config.worker_type, gpu=config.gpu,
        gpu_memory_fraction=config.gpu_memory_fraction,
        parent_pid=os.getpid(), args_preview=app.profile.store.args_preview,
        torch_threads=config.torch_threads,
        runtime=runtime_id(int(os.environ.get("HUEYQ_SUPERVISOR_PID") or 0)),
        solo=Solo() if config.worker_type == "thread" else None)
    if config.gpu and config.worker_type == "thread":
        context.thread_gpu = GpuLane(config.gpu_memory_fraction,
                                     config.torch_threads)
    consumer = Consumer(
        huey, context, workers=config.workers, worker_type=config.worker_type,
        periodic=index == 0, initial_delay=0.1, backoff=1.5, max_delay=5.0,
        scheduler_interval=1, check_worker_health=True,
        health_check_interval=1, max_tasks=config.max_tasks or None,
        shutdown_timeout=app.profile.runtime.grace_period)
    consumer.run()
    from hueyq.app import backend_errors
    try:
        handed = hand_back(app, queue, os.getpid())
    except backend_errors() as exc:
        logger.error("could not hand back this consumer's tasks (the "
                     "supervisor recovers them): %s", app.explain(exc))
    else:
        if handed:
            logger.warning("handed %d unfinished tasks back to %s", handed,
                           queue)
    recorder.close()
    return 0


def hand_back(app, queue: str, pid: int) -> int:
    """Return this process's leases to the queue (shutdown, not a crash)."""
    storage = app.storage(queue)
    prefix = "%s:%d:" % (app.host_id, pid)
    handles = [lease.handle for lease in storage.leases()
               if lease.owner and lease.owner.startswith(prefix)]
    return storage.release(handles)


_early_signal: "list[int]" = []


def _remember_signal(signum, frame) -> None:
    _early_signal.append(signum)


def main(argv: "list[str] | None" = None,
         early_signals: "list[int] | None" = None) -> int:
    """Entry point of a consumer process (started by the supervisor);
    ``early_signals`` are stop signals that arrived before this ran."""
    _early_signal.extend(early_signals or ())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _remember_signal)
    parser = argparse.ArgumentParser(prog="python -m hueyq.runtime.consumer")
    parser.add_argument("--app", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--log-format", default=None)
    args = parser.parse_args(argv)
    supervisor = int(os.environ.get("HUEYQ_SUPERVISOR_PID") or 0)
    if supervisor:
        die_with_parent(signal.SIGINT)
        if os.getppid() != supervisor:
            return 0
    logs.setup(logs.choose_format(args.log_format), queue=args.queue)
    try:
        from hueyq.app import load_app
        app = load_app(args.app)
        app.profile.queue(args.queue)
    except (ConfigurationError, HueyqError) as exc:
        logger.error("%s", exc)
        return 2
    return run_consumer(app, args.queue, args.index)


if __name__ == "__main__":
    sys.exit(main())
