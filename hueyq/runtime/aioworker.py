"""The async worker: one event loop running up to ``concurrency`` tasks.

A queue with ``worker_type = "async"`` runs its consumer with one huey
worker thread whose loop is an asyncio event loop (:class:`AsyncWorker`).
It leases messages while fewer than ``concurrency`` tasks are in flight and
runs each task's coroutine as an asyncio task, so hundreds of tasks waiting
on remote calls cost one thread. What touches the backend or huey's
bookkeeping (a lease, decoding, huey's ``execute`` with its retries,
results and signals, the ack) runs on a few bookkeeping threads, so the
loop never waits on an fsync; only the task's body runs on the loop. huey's
``execute`` then sees the body's outcome replayed (:func:`_replay`), so
retries, results, signals and job records are the thread worker's.

A cancel is asyncio cancellation of that task: a watcher reads the revoke
keys of the running jobs every ``store.progress_interval`` and cancels the
ones revoked, which end ``cancelled`` (``JobCancelled``); a hard
``time_limit`` (or huey's ``timeout``) cancels the task too, which ends as
huey's ``TaskTimeout``. ``hueyq.progress()`` works as on a thread worker,
the soft time limit included.
"""

import asyncio
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from huey.exceptions import TaskTimeout

from hueyq import context as job_context
from hueyq import jobs
from hueyq.exceptions import JobCancelled
from hueyq.runtime.consumer import Worker, _backend_errors
from hueyq.runtime.joblog import task_name
from hueyq.units import format_duration

logger = logging.getLogger("hueyq.worker")

#: Threads that lease, record and ack for one event loop.
BOOKKEEPERS = 8
#: Leases taken at once (each a backend round trip on a bookkeeping thread).
LEASERS = 4
#: Revoke keys read in one backend call.
CHUNK = 500


@dataclass(eq=False)
class Run:
    """One leased task on the loop."""
    lease: Any
    task: Any = None
    name: str = ""
    started: float = 0.0
    job: Any = None
    runnable: bool = False
    #: Why the body was cancelled: "cancel" or "time limit" (None: not).
    stopped: "str | None" = None
    body: "asyncio.Task | None" = field(default=None, repr=False)


def _replay(value: Any, exc: "BaseException | None"):
    """A stand-in for a task's ``execute`` that gives huey the outcome its
    async body already had on the loop."""
    def execute():
        if exc is not None:
            raise exc
        return value
    return execute


class AsyncWorker(Worker):
    """hueyq's worker, running async task bodies on one event loop."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._local = threading.local()
        super().__init__(*args, **kwargs)
        self.concurrency = self.ctx.app.profile.queues[
            self.ctx.queue].concurrency
        self._acks: list = []
        self._acks_lock = threading.Lock()
        self._runs: "dict[str, Run]" = {}
        self._tasks: "set[asyncio.Future]" = set()
        self._loop: "asyncio.AbstractEventLoop | None" = None
        self._pool: "concurrent.futures.ThreadPoolExecutor | None" = None

    # A bookkeeping thread's ack of the task it just ended (the thread
    # worker's single ``_ack``), collected into ``_acks`` after each run.
    @property
    def _ack(self):
        return getattr(self._local, "ack", None)

    @_ack.setter
    def _ack(self, value) -> None:
        self._local.ack = value

    @property
    def _requeue(self):
        return getattr(self._local, "requeue", None)

    @_requeue.setter
    def _requeue(self, value) -> None:
        self._local.requeue = value

    def _time_limits(self, task) -> "tuple[float | None, float | None]":
        config = self.ctx.app.profile.queues[self.ctx.queue]
        cls = type(task)
        soft = getattr(cls, "soft_time_limit", None) or config.soft_time_limit
        hard = getattr(cls, "time_limit", None) or config.time_limit
        return soft, hard

    # ------------------------------------------------------------ the loop

    def loop(self, now=None) -> None:
        if self.stop_flag.is_set():
            return
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            BOOKKEEPERS, thread_name_prefix="%s-bookkeeping" % self.name)
        self._slots = asyncio.Semaphore(self.concurrency)
        self._open = asyncio.Event()
        self._open.set()
        watcher = asyncio.ensure_future(self._watch())
        try:
            await asyncio.gather(*[self._pump() for _ in range(LEASERS)])
            if self._tasks:
                await asyncio.wait(list(self._tasks))
        finally:
            watcher.cancel()
            await self._call(self._flush_acks)
            self._pool.shutdown(wait=True)

    async def _pump(self) -> None:
        """Lease while a slot is free, starting each task on the loop; a
        suspect runs alone (:meth:`_alone`)."""
        while not self.stop_flag.is_set():
            await self._slots.acquire()
            await self._open.wait()
            lease = await self._call(self._take)
            if lease is not None and not self._open.is_set():
                # A suspect took the process while this lease was taken.
                await self._call(self.storage.release, [lease.handle])
                lease = None
            if lease is None:
                self._slots.release()
                await self._call(self._idle)
                continue
            self.task_count += 1
            if jobs.is_suspect(lease.last_error):
                await self._alone(lease)
                self._slots.release()
                continue
            self._start(Run(lease))

    def _start(self, run: Run) -> "asyncio.Future":
        future = asyncio.ensure_future(self._run(run))
        self._tasks.add(future)
        future.add_done_callback(self._ended)
        return future

    def _ended(self, future: "asyncio.Future") -> None:
        self._tasks.discard(future)
        self._slots.release()

    def _call(self, func, *args):
        return self._loop.run_in_executor(self._pool, func, *args)

    def _take(self):
        with self._acks_lock:
            self._local.ack = self._acks.pop() if self._acks else None
        lease = self.take()
        if self._local.ack is not None:
            # The lease failed: its ack rides in the next one instead.
            self._keep_ack(self._local.ack)
            self._local.ack = None
        return lease

    def _keep_ack(self, ack) -> None:
        with self._acks_lock:
            self._acks.append(ack)

    def _idle(self) -> None:
        self._flush_acks()
        if not self._failures and not self.stop_flag.is_set():
            self._wait()

    def _flush_acks(self) -> None:
        with self._acks_lock:
            acks, self._acks[:] = list(self._acks), []
        if not acks:
            return
        try:
            self.storage.ack_many(acks)
        except Exception:
            with self._acks_lock:
                self._acks.extend(acks)
            self._logger.exception("acking %d finished tasks failed; "
                                   "retrying", len(acks))

    async def _alone(self, lease) -> None:
        # A suspect (a job recovered from a crash that took several down)
        # runs with nothing else in flight, so a crash it causes again is
        # charged to it alone.
        self._open.clear()
        try:
            while self._tasks:
                await asyncio.wait(list(self._tasks))
            await self._run(Run(lease))
        finally:
            self._open.set()

    # ------------------------------------------------------------ one task

    async def _run(self, run: Run) -> None:
        try:
            if not await self._call(self._prepare, run):
                return
            self._runs[run.task.id] = run
            outcome = None
            if run.runnable:
                run.body = asyncio.ensure_future(self._body(run))
                outcome = await run.body
            await self._call(self._finish, run, outcome)
        except Exception:
            # hueyq's own bookkeeping failed (huey's execute() and the
            # backend's errors are handled inside): hand the message back
            # rather than hold its lease until this process dies.
            self._logger.exception("running leased message %s failed",
                                   run.lease.handle)
            await self._call(self._give_back, run.lease)
        finally:
            if run.task is not None:
                self._runs.pop(run.task.id, None)

    def _give_back(self, lease) -> None:
        try:
            self.storage.requeue(lease.handle, "async worker error",
                                 count=False)
        except Exception:
            self._logger.exception("could not hand back %s; the supervisor "
                                   "recovers it", lease.handle)

    def _prepare(self, run: Run) -> bool:
        """Decode the lease and decide whether huey would run it now (not
        revoked, expired or early); False when it was ended here."""
        try:
            ready = self._decide(run)
        except Exception as exc:
            if run.task is None:
                raise
            self._redeliver(run.task, run.lease, run.name, time.time(), exc,
                            False)
            ready = False
        if not ready:
            self._collect()
            return False
        run.started = time.time()
        self.log.started(run.task, run.lease, run.name, self.name,
                         run.started)
        run.job = self.job_context(run.task, run.lease,
                                   cancelled=lambda: run.stopped == "cancel")
        if run.job.soft_time_limit:
            run.job.on_soft_limit = lambda j: self.log.soft_limit(j, run.name)
        return True

    def _decide(self, run: Run) -> bool:
        task = self._decode(run.lease)
        if task is None:
            return False
        run.task, run.name = task, task_name(task)
        self.restart_expiry(task, run.lease)
        now = self.huey._get_timestamp()
        revoked = run.lease.revoked is not False and \
            self.huey.is_revoked(task, now, True)
        expired = task.expires_resolved and task.expires_resolved < now
        run.runnable = self.huey.ready_to_run(task, now) and not revoked \
            and not expired
        return True

    async def _body(self, run: Run) -> "tuple[Any, BaseException | None]":
        """Await the task's coroutine on this loop: (value, exception)."""
        job_context.set_current(run.job)
        task = run.task
        args, kwargs = task.data
        if task.context:
            kwargs = dict(kwargs, task=task)
        limit = min([x for x in (run.job.time_limit, task.timeout) if x],
                    default=None)
        timer = self._loop.call_later(limit, self._stop, run, "time limit") \
            if limit else None
        try:
            return await type(task).async_func(*args, **kwargs), None
        except asyncio.CancelledError:
            if run.stopped is None:
                raise
            _uncancel()
            if run.stopped == "cancel":
                return None, JobCancelled("cancelled while running")
            return None, TaskTimeout("time limit exceeded (%s)"
                                     % format_duration(limit))
        except Exception as exc:
            return None, exc
        finally:
            if timer is not None:
                timer.cancel()
            run.job.ran, run.job.ran_at = True, time.time()

    def _stop(self, run: Run, why: str) -> None:
        if run.stopped is None and run.body is not None \
                and not run.body.done():
            run.stopped = why
            run.body.cancel()

    def _finish(self, run: Run, outcome) -> None:
        """huey's execute() with the body's outcome, then record and ack."""
        task = run.task
        if outcome is not None:
            task.execute = _replay(*outcome)
        self.run_job(task, run.lease, run.job, run.name, run.started)
        self._collect()

    def _collect(self) -> None:
        """Take this thread's ack of the task it ended into ``_acks``."""
        if self._requeue is not None:
            self.storage.requeue(*self._requeue, count=False)
            self._requeue = None
        if self._ack is not None:
            self._keep_ack(self._ack)
            self._ack = None

    # ------------------------------------------------------------ cancels

    async def _watch(self) -> None:
        """Cancel the running tasks whose jobs were cancelled."""
        interval = max(self.ctx.progress_interval, 0.1)
        while True:
            await asyncio.sleep(interval)
            runs = [r for r in self._runs.values() if r.body is not None
                    and r.stopped is None]
            if not runs:
                continue
            try:
                revoked = await self._call(self._revoked, runs)
            except Exception:
                self._logger.exception("checking for cancels failed")
                continue
            for run in revoked:
                self._stop(run, "cancel")

    def _revoked(self, runs: "list[Run]") -> "list[Run]":
        # One read per CHUNK running jobs (not one each), as the sampler
        # reads process workers' revoke keys; a backend that is away is
        # asked again next time.
        found = set()
        try:
            for i in range(0, len(runs), CHUNK):
                found.update(self.storage.peek_many(
                    [run.task.revoke_id for run in runs[i:i + CHUNK]]))
        except _backend_errors() as exc:
            self._asked.failed(exc)
            return []
        self._asked.ok()
        return [run for run in runs if run.task.revoke_id in found]


def _uncancel() -> None:
    # Python 3.11+ counts cancel requests; the one handled here is done.
    task = asyncio.current_task()
    if hasattr(task, "uncancel"):
        task.uncancel()
