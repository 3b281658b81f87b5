"""Batch execution: the part of a consumer's worker that runs batch tasks.

A batch task (``@app.batch_task``) is enqueued one item at a time, each its
own job; a worker that leases one item gathers up to ``batch_size`` more of
the same task (waiting at most ``batch_wait``), calls the batch function
once, and ends each item on its own: its result, a retry or a failure, its
record and its ack, the acks all in one transaction. :class:`BatchExecution`
is mixed into :class:`hueyq.runtime.consumer.Worker`, whose leases, decoding
and records it uses.
"""

import logging
import time

from huey import signals as S
from huey.utils import Error

from hueyq import context as job_context
from hueyq import jobs
from hueyq.backends import DEAD
from hueyq.jobs import ENDED, STARTED, change_seq
from hueyq.runtime.joblog import describe_error, task_name

logger = logging.getLogger("hueyq.worker")


class BatchExecution:
    """Worker methods that run a batch task's items together."""

    def execute_batch(self, first, first_lease, alone: bool = False) -> None:
        """Gather up to batch_size pending items of this task (waiting at most
        batch_wait; none for a suspect, which runs ``alone``), call the batch
        function once, and end each item on its own: result, retry or
        failure, record and ack."""
        cls = type(first)
        name = task_name(first)
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
        # Each ack names its delivery, so one a fence refuses ends nothing.
        fences = {lease.handle: self.fence(lease) for _, lease in batch}
        acks = [tuple(ack[:3]) + (fences.get(ack[0]),) for ack in acks]
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
            self.log.started(task, lease, name, self.name, started)
        seqs = {task.id: change_seq(lease.seq, STARTED)
                for task, lease in batch}

        def report(job_id, percent, message):
            for each, seq in seqs.items():
                self.log.progress(each, percent, message, seq)
        runs = {task.id: lease.seq for task, lease in batch}

        def emit(job_id, data):
            return [self.output(each, data, run)
                    for each, run in runs.items()][-1]
        job = job_context.JobContext(
            id=batch[0][0].id, task=batch[0][0], queue=self.ctx.queue,
            attempt=1, report=report, cancelled=lambda: False,
            interval=self.ctx.progress_interval, hold=self.hold,
            output=emit)
        if self.ctx.worker_type == "thread":
            # Nothing kills a thread: its limits are raised at the batch
            # function's next hueyq.progress(), as for any task.
            job.soft_time_limit, job.time_limit = self._time_limits(
                batch[0][0])
            self._soft_limit_timer(job, name)
        job_context.set_current(job)
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
        name = task_name(batch[0][0])
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
