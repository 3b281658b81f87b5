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
charged to the job that caused it. An async queue's consumer runs
:class:`hueyq.runtime.aioworker.AsyncWorker` (one event loop) instead.
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
from dataclasses import dataclass
from typing import Any

from huey import consumer as huey_consumer

from hueyq import context as job_context
from hueyq import jobs
from hueyq import logs
from hueyq import output as job_output
from hueyq.logs import Outage
from hueyq.backends import DEAD
from hueyq.exceptions import (BackendUnavailable, ConfigurationError,
                              HueyqError)
from hueyq.jobs import ENDED, STARTED, change_seq
from hueyq.owner import owner_name, runtime_id
from hueyq.runtime import SCHEDULER_PROCESS_NAME, WORKER_PROCESS_NAME
from hueyq.runtime import joblog
from hueyq.runtime.batch import BatchExecution
from hueyq.runtime.gpu import GpuLane
from hueyq.runtime.joblog import (JobLog, collect_signal, describe_error,
                                  outcome_of, put_error, task_name)
from hueyq.store import JobRecorder
from hueyq.units import format_size

logger = logging.getLogger("hueyq.worker")

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
#: What this module offers; ``collect_signal`` (huey's signal receiver of
#: every consumer, see :mod:`hueyq.runtime.joblog`) is importable from here.
__all__ = ["Consumer", "Scheduler", "Worker", "WorkerContext", "Solo",
           "collect_signal", "hand_back", "main", "run_consumer"]


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


class Worker(BatchExecution, huey_consumer.Worker):
    """huey's Worker, taking messages as leases and recording each job
    (:class:`~hueyq.runtime.joblog.JobLog`); batch tasks run in
    :class:`~hueyq.runtime.batch.BatchExecution`."""

    def __init__(self, huey, stop_flag, default_delay, max_delay, backoff,
                 max_tasks=None, context: "WorkerContext | None" = None):
        super().__init__(huey, stop_flag, default_delay, max_delay, backoff,
                         max_tasks)
        self.ctx = context
        self.log = JobLog(context.recorder, context.queue, context.host,
                          context.args_preview)
        self.storage = huey.storage
        self.owner = None
        self.name = None
        self._ack = None
        self._requeue = None
        self._recycle = False
        self._interrupted = False
        self._gpu = None
        self._failures = 0
        #: The backend's failovers() when this worker last looked.
        self._failovers = 0
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
            job.on_soft_limit = lambda j: self.log.soft_limit(j, name)
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
            self.log.soft_limit(job, name)
            os.kill(os.getpid(), signal.SIGUSR2)

    def _recover_own_leases(self) -> None:
        # A worker thread that died left leases under the owner name its
        # replacement now takes; they go back to the queue. A thread dies
        # of hueyq's own bookkeeping failing (a task's exceptions are huey's
        # to catch), so this is not charged to the job.
        try:
            for lease in self.storage.leases():
                if lease.owner == self.owner:
                    self.storage.requeue(lease.handle, "worker thread died",
                                         count=False, fence=lease.fence)
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
                handle, error, fence = self._requeue
                self.storage.requeue(handle, error, count=False, fence=fence)
                self._requeue = None
            failovers = self.storage.failovers()
            if self._failures or failovers != self._failovers:
                # After a failover the new primary may hold leases in this
                # worker's name whose acks the old one took with it.
                self._failovers = failovers
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

    def fence(self, lease) -> tuple:
        """What this worker's ack of ``lease`` names (its owner and the
        delivery's epoch), so the backend refuses it once the lease was
        recovered and taken by another (see ``Backend.ack``)."""
        return self.owner, lease.seq

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
        name = task_name(task)
        self.log.started(task, lease, name, self.name, started)
        job = self.job_context(task, lease)
        timer = self._soft_limit_timer(job, name)
        try:
            self.run_job(task, lease, job, name, started, now,
                         lambda: self.restart_expiry(task, lease))
        finally:
            if timer is not None:
                timer.cancel()

    def job_context(self, task, lease, cancelled=None
                    ) -> "job_context.JobContext":
        """What ``task`` sees of its job (``hueyq.progress()``), with its
        time limits; ``cancelled`` answers whether it was cancelled (by
        default the revoke key, read at every progress())."""
        seq = change_seq(lease.seq, STARTED)
        job = job_context.JobContext(
            id=task.id, task=task, queue=self.ctx.queue,
            attempt=lease.redeliveries + 1,
            report=lambda jid, pct, msg: self.log.progress(jid, pct, msg,
                                                               seq),
            cancelled=cancelled or (lambda: self._cancelled(task)),
            interval=self.ctx.progress_interval, hold=self.hold,
            output=lambda jid, data: self.output(jid, data, lease.seq))
        job.soft_time_limit, job.time_limit = self._time_limits(task)
        return job

    def run_job(self, task, lease, job, name: str, started: float,
                now=None, before=None) -> None:
        """huey's execute() of ``task`` on this thread (``before`` first),
        then its record and ack."""
        _mark_when_run(task, job)
        job_context.set_current(job)
        job_context.set_leased(task.id, lease.revoked)
        joblog.follow(task.id)
        broken = None
        try:
            if before is not None:
                before()
            self.huey.execute(task, now)
        except Exception as exc:
            # Not the task failing (huey records that) but huey's own
            # bookkeeping (a result, a revoke key) failing: the backend went
            # away mid-task. Redeliver rather than guess at the outcome.
            broken = exc
        finally:
            trail = joblog.unfollow()
            job_context.set_current(None)
            job_context.set_leased(None)
            job.flush()
        if broken is not None:
            self._redeliver(task, lease, name, started, broken, job.ran)
            return
        self._end(task, lease, name, started, job, trail)

    def _end(self, task, lease, name: str, started: float, job, trail
             ) -> None:
        """Ack and record an execution as huey's signals (``trail``) say it
        ended."""
        state, outcome, reason, exc = outcome_of(trail)
        if reason == "cancelled" and job_context.revoke_cleared():
            # Cancelled from inside the task: huey clears its revoke key
            # after running it; the ack only does so for tasks that ended.
            self.storage.delete_data(task.revoke_id)
        self._ack = (lease.handle, outcome, reason, self.fence(lease))
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
        notes when (``promoted`` in its meta, which the lease carries; a
        lease without it is looked up), so the clock restarts here.
        """
        if not task.expires or task.eta is None or \
                isinstance(task.expires, datetime.datetime):
            return
        meta = lease.meta
        if meta is None:
            info = self.storage.find(task.id)
            meta = info.meta if info is not None and \
                info.handle == lease.handle else {}
        promoted = meta.get("promoted")
        if promoted:
            since = time.time() - float(promoted)
            task.resolve_expires(self.huey.utc)
            task.expires_resolved -= datetime.timedelta(seconds=since)

    def output(self, job_id: str, data, run: "int | None" = None) -> int:
        """Append to a job's output stream (``hueyq.emit``) for its run
        ``run`` (the lease's sequence number)."""
        return job_output.append(self.storage, self.ctx.app.profile, job_id,
                                 data, run)

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
            self._ack = (lease.handle, DEAD, "failed", self.fence(lease))
            put_error(self.huey, task.id, error)
            self.ctx.recorder.job(jobs.failed(task.id, error, at=now,
                                              seq=seq))
            self.ctx.recorder.event(task.id, name, "failed", error,
                                    duration=now - started)
            return
        error = "backend error before the task ran: %r" % (exc,)
        self._logger.warning("%s: %s; it will be redelivered", task.id, error)
        self._requeue = (lease.handle, error, self.fence(lease))
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
        self.storage.ack(lease.handle, DEAD, reason, self.fence(lease))
        self.log.dead(job_id, lease, reason, detail)
        if not own:
            put_error(self.huey, job_id, "%s: %s" % (reason, detail))
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
            self._ack = (lease.handle, None, None, self.fence(lease))
            state = "retrying"
            change = jobs.retrying(task.id, error, at=now, seq=seq)
        else:
            put_error(self.huey, task.id, error)
            self._ack = (lease.handle, DEAD, "failed", self.fence(lease))
            state = "failed"
            change = jobs.failed(task.id, error, at=now, seq=seq)
        self.ctx.recorder.job(change)
        if state == "retrying":
            self.ctx.recorder.done(lease.handle)
        self.ctx.recorder.event(task.id, task_name(task), state, error)
        logger.warning("%s %s after its worker was %s", task_name(task),
                       state, error, extra={"queue": self.ctx.queue,
                                            "job_id": task.id})

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
            job.ran, job.ran_at = True, job.ran_at or time.time()
    task.execute = execute


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
            name = task_name(task)
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
        worker_class = self.worker_class
        if self.context.worker_type == "async":
            from hueyq.runtime.aioworker import AsyncWorker
            worker_class = AsyncWorker
        return worker_class(
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
    if config.worker_type != "process":
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
        huey, context, workers=config.workers,
        worker_type=_huey_worker_type(config.worker_type),
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


def _huey_worker_type(worker_type: str) -> str:
    # An async queue is one huey worker thread running an event loop.
    return "process" if worker_type == "process" else "thread"


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
