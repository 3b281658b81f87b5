"""A hypothesis state machine over enqueue, pause, resume, drain, cancel,
retry, run and kill-worker, on every backend. After every step: no job id is
ever lost, each job's state follows the last one seen along the transitions
hueyq.jobs allows, a paused queue starts nothing new, and a job cancelled
before it started never starts."""

import itertools
import os
import uuid

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant,
                                 precondition, rule)

from hueyq import jobs
from hueyq.exceptions import InvalidState
from hueyq.runtime.supervisor import Supervisor

from conftest import InlineWorker, write_profile

QUEUES = ("high", "low")
DEAD_PID = 2 ** 22 + 7  # beyond pid_max on Linux: never a live process


def run_machine(profile, tmp_path):
    from apps import basic
    counter = itertools.count()

    class Lifecycle(RuleBasedStateMachine):
        @initialize()
        def setup(self):
            self.app = basic.make_app(str(profile), name="p%s" % uuid.uuid4().hex[:8])
            self.log = str(tmp_path / ("ran-%s" % self.app.name))
            self.workers = {q: InlineWorker(self.app, q) for q in QUEUES}
            self.jobs = {}              # id -> queue
            self.never_start = set()    # cancelled before start, not retried
            self.paused = set()
            self.states = {}            # id -> the state last seen

        def teardown(self):
            for worker in self.workers.values():
                worker.close()
            self.app.close()

        def executions(self):
            if not os.path.exists(self.log):
                return {}
            with open(self.log) as fh:
                tokens = [line.split()[0] for line in fh]
            return {t: tokens.count(t) for t in tokens}

        @rule(queue=st.sampled_from(QUEUES), fail=st.booleans())
        def enqueue(self, queue, fail):
            token = "j%d" % next(counter)
            if queue == "high":
                handle = self.app.tasks.touch(self.log, token)
            elif fail:
                handle = self.app.tasks.flaky(self.log, token, 99)
            else:
                handle = self.app.tasks.chore(self.log, token)
            self.jobs[handle.id] = (queue, token)

        @rule(queue=st.sampled_from(QUEUES))
        def pause(self, queue):
            self.app.pause(queue)
            self.paused.add(queue)

        @rule(queue=st.sampled_from(QUEUES))
        def resume(self, queue):
            self.app.resume(queue)
            self.paused.discard(queue)

        @rule(queue=st.sampled_from(QUEUES))
        def drain(self, queue):
            pending = [j for j, (q, _) in self.jobs.items() if q == queue
                       and self.app.job(j, history=False).state in
                       ("pending", "scheduled", "retrying")]
            count = self.app.drain(queue)
            assert count >= len([j for j in pending
                                 if self.app.job(j, history=False).state
                                 == "cancelled"])
            self.never_start.update(
                j for j in pending if self.executions().get(self.jobs[j][1], 0) == 0)

        @precondition(lambda self: self.jobs)
        @rule(data=st.data())
        def cancel(self, data):
            job_id = data.draw(st.sampled_from(sorted(self.jobs)))
            before = self.app.job(job_id, history=False).state
            try:
                answer = self.app.cancel(job_id)
            except InvalidState:
                assert before in ("complete", "failed", "cancelled", "dead",
                                  "expired", "running")
                return
            if answer.state == "cancelled" and \
                    self.executions().get(self.jobs[job_id][1], 0) == 0:
                self.never_start.add(job_id)

        @precondition(lambda self: self.jobs)
        @rule(data=st.data())
        def retry(self, data):
            job_id = data.draw(st.sampled_from(sorted(self.jobs)))
            try:
                self.app.retry(job_id)
            except InvalidState:
                return
            self.never_start.discard(job_id)

        @rule(queue=st.sampled_from(QUEUES), count=st.integers(1, 4))
        def run(self, queue, count):
            worker = self.workers[queue]
            ran = worker.run(limit=count)
            if queue in self.paused:
                assert ran == 0, "a paused queue started a job"

        @rule(queue=st.sampled_from(QUEUES))
        def kill_worker(self, queue):
            storage = self.app.storage(queue)
            lease = storage.lease("%s:%d:Worker-9" % (self.app.host_id, DEAD_PID))
            if lease is not None:
                Supervisor(self.app, "apps.basic").recover()
                assert storage.find(lease.task_id).state in ("pending", "dead")

        @invariant()
        def nothing_is_lost(self):
            if not hasattr(self, "app"):
                return
            for job_id in self.jobs:
                state = self.app.job(job_id, history=False).state  # or raises
                before = self.states.get(job_id, "pending")
                assert jobs.reachable(before, state), \
                    "job %s went from %s to %s" % (job_id, before, state)
                self.states[job_id] = state

        @invariant()
        def cancelled_before_start_never_starts(self):
            if not hasattr(self, "app"):
                return
            ran = self.executions()
            for job_id in self.never_start:
                assert ran.get(self.jobs[job_id][1], 0) == 0

    Lifecycle.TestCase.settings = settings(
        max_examples=int(os.environ.get("HUEYQ_PROPERTY_EXAMPLES", "12")),
        stateful_step_count=25, deadline=None,
        suppress_health_check=[HealthCheck.too_slow])
    Lifecycle.TestCase("runTest").runTest()


def test_lifecycle_invariants(tmp_path, chaos_backend_url):
    profile = write_profile(tmp_path / "p.toml", chaos_backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), "unused")
    run_machine(profile, tmp_path)
