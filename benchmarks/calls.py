"""The ``calls`` workload: Redis commands per job, counted, not timed.

The drain's Redis figures are CPU times, which move with whatever else the
machine is doing. This workload counts instead: ``redis-cli monitor`` (a
second connection that sees every command the server runs) records a
producer's enqueue of N no-ops, the drain of them, and a few idle seconds
after, and the figures are

* ``enqueue_calls`` and ``drain_calls``: commands a client sent per job
  (a pipeline's commands count one each; what a Lua script runs inside the
  server, shown as ``lua`` by MONITOR, is counted apart as ``script_calls``);
* ``idle_calls_per_s``: commands per second of the idle runtime (its polls,
  heartbeats and wake-ups);
* ``top`` and ``script_top``: the commands sent, and run in scripts, most
  per job, by name.

The same counts come back on a loaded machine, so this is where to look
first when the Redis drain is slower than plain huey's: every client command
is a round trip the worker waits for. MONITOR slows the server, so no rate
is reported here. Redis only.
"""

import collections
import os
import re
import signal
import time

from benchmarks.harness import BenchError, tool, wait_for

#: ``1733200000.123456 [0 127.0.0.1:51234] "evalsha" ...`` (or ``[0 lua]``).
_LINE = re.compile(r'^\d+\.\d+ \[\d+ (\S+)\] "([^"]*)"')
IDLE_SECONDS = 3.0


class Monitor:
    """``redis-cli monitor`` into a file, for one stretch of a trial."""

    def __init__(self, trial, name: str) -> None:
        self.trial = trial
        self.path = os.path.join(trial.dir, "monitor-%s.log" % name)
        self.proc = None

    def __enter__(self) -> "Monitor":
        redis = self.trial.bench.redis
        self.proc = self.trial.bench.processes.start(
            [tool("redis-cli"), "-p", str(redis.port), "monitor"],
            dict(os.environ), self.trial.dir, log=self.path)
        wait_for(lambda: os.path.getsize(self.path) > 0, 10,
                 what="redis-cli monitor to answer OK")
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)         # MONITOR's last lines reach the file
        self.trial.bench.processes.stop(self.proc, signal.SIGTERM, grace=2)

    def counts(self) -> "tuple[collections.Counter, collections.Counter]":
        """(client commands by name, commands scripts ran by name)."""
        sent, scripts = collections.Counter(), collections.Counter()
        with open(self.path, errors="replace") as fh:
            for line in fh:
                match = _LINE.match(line)
                if match is None:
                    continue
                client, command = match.groups()
                if client == "lua":
                    scripts[command.lower()] += 1
                elif command.lower() != "monitor":
                    sent[command.lower()] += 1
        return sent, scripts


def measure(trial, n: int, queues: list, setup, deadline: float) -> dict:
    """Enqueue, drain and idle of one system under MONITOR."""
    setup()
    with Monitor(trial, "enqueue") as enqueue:
        trial.produce("enqueue", kind="noop", count=n, queues=queues)
    with Monitor(trial, "drain") as drain:
        trial.start()
        if not trial.completions.wait(n, deadline, alive=trial.alive):
            raise BenchError("only %d of %d tasks done in time"
                             % (len(trial.completions.records), n))
    time.sleep(1.0)             # the runtime settles after the backlog
    with Monitor(trial, "idle") as idle:
        time.sleep(IDLE_SECONDS)
    sent_enqueue, enqueue_scripts = enqueue.counts()
    sent_drain, scripts = drain.counts()
    sent_idle, _ = idle.counts()
    return {"jobs": n,
            "enqueue_calls": sum(sent_enqueue.values()) / n,
            "enqueue_script_calls": sum(enqueue_scripts.values()) / n,
            "drain_calls": sum(sent_drain.values()) / n,
            "script_calls": sum(scripts.values()) / n,
            "idle_calls_per_s": sum(sent_idle.values()) / IDLE_SECONDS,
            "top": _top(sent_drain, n), "script_top": _top(scripts, n)}


def _top(counts: collections.Counter, n: int, most: int = 6) -> str:
    return ", ".join("%s %.2f" % (name, count / n)
                     for name, count in counts.most_common(most))
