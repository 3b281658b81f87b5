"""The systems under test and how a trial starts them.

A :class:`Trial` is one system measured once: a fresh directory (SQLite
files, the completions file, logs), the environment its processes share, its
consumer processes and its producer runs. ``setup_<family>`` functions write
each system's configuration and return the consumer command lines.

Configurations (kept identical where the systems allow it):

* ``hueyq``: ``hueyq run`` with a profile that ``extends = "dev"`` and sets
  the backend (SQLite file, the private Redis or a PostgreSQL database of
  the trial's own), a SQLite job store and the
  queues' workers; everything else is dev's defaults (leases, job store,
  watchdog, status records all on).
* ``hueyq-nolease``: the same App and backend class under huey's stock
  Consumer (``benchmarks.apps.nolease``): at-most-once ``dequeue()``, no
  leases, no job store.
* ``huey-defaults``: ``SqliteHuey`` / ``RedisHuey`` with no options, as a
  user gets them (the enqueue workload's producer only).
* ``huey``: ``huey_consumer`` on ``SqliteHuey`` (WAL, synchronous=FULL for
  producer and consumer alike: huey has one setting; hueyq's consumers commit
  NORMAL, its producers FULL), ``PriorityRedisHuey`` or ``PostgresHuey``
  (LISTEN/NOTIFY), with the consumer options hueyq passes to huey's
  Consumer (``-d 0.1 -b 1.5 -m 5 -c 1``) and the same workers.
* ``celery``: prefork ``-c 2``, prefetch 32, early ack, no results, no
  gossip/mingle/heartbeat; log level WARNING (Celery's default).
* ``rq``: ``rq worker-pool -n 2 -w rq.worker.SimpleWorker``.
* ``dramatiq``: ``dramatiq -p 2 -t 8`` with the Redis broker.

Celery, RQ and Dramatiq always use the private Redis as broker.
"""

import itertools
import json
import os
import shutil
import signal
import sys
import time

from benchmarks.harness import (BenchError, Completions, base_env,
                                create_pg_database, drop_pg_database, tool)

PEERS = ("celery", "rq", "dramatiq")
PY = sys.executable
_counter = itertools.count()


def peer_available(name: str) -> "str | None":
    """None if the peer can run here, else why not."""
    import importlib.util
    module = {"celery": "celery", "rq": "rq", "dramatiq": "dramatiq"}[name]
    if importlib.util.find_spec(module) is None:
        return "%s is not installed (pip install -e '.[bench]')" % module
    return None


class Trial:
    """One system, measured once, in its own directory."""

    def __init__(self, bench, system: str, backend: str, tag: str) -> None:
        self.bench = bench
        self.system = system
        self.backend = backend
        self.dir = os.path.join(bench.workdir, "%03d-%s-%s-%s" % (
            next(_counter), tag, system.replace(":", "_"), backend))
        os.makedirs(self.dir)
        self.completions = Completions(os.path.join(self.dir,
                                                    "completions.log"))
        self.env = base_env(BENCH_COMPLETIONS=self.completions.path,
                            BENCH_REDIS_URL=bench.redis.url)
        self.commands: "list[list[str]]" = []
        self.procs: list = []
        bench.redis.flush()
        #: On PostgreSQL, a database of the trial's own (dropped by cleanup).
        self.pg_url = None
        if backend == "postgres":
            self.pg_url = create_pg_database(
                bench.pg_server, "_%s" % os.path.basename(self.dir)[:3])
            self.env["BENCH_PG_URL"] = self.pg_url

    # ------------------------------------------------------------ processes

    def start(self) -> float:
        """Start every consumer command; returns the time just before."""
        started = time.time()
        for i, cmd in enumerate(self.commands):
            self.procs.append(self.bench.processes.start(
                cmd, self.env, self.dir,
                log=os.path.join(self.dir, "consumer-%d.log" % i)))
        return started

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def stop(self, grace: float = 15.0) -> None:
        """Stop the consumers gracefully (SIGTERM; SIGINT for huey, whose
        graceful signal it is), then kill whatever is left."""
        sig = signal.SIGINT if self.system == "huey" or \
            self.system == "hueyq-nolease" else signal.SIGTERM
        for proc in self.procs:
            self.bench.processes.stop(proc, sig, grace)
        self.procs = []

    def kill(self) -> "list[int]":
        """kill -9 every process of every consumer, at once."""
        pids = []
        for proc in self.procs:
            pids += self.bench.processes.kill_tree_now(proc)
        self.procs = []
        return pids

    def root_pids(self) -> "list[int]":
        return [p.pid for p in self.procs]

    def produce(self, action: str, timeout: float = 600.0, **args) -> dict:
        """Run the producer for ``action`` and return its RESULT."""
        return run_child(self, "producer-%s" % action, [
            "benchmarks.producer", self.system.split(":")[0], action,
            json.dumps(args)], "producer %s of %s" % (action, self.system),
            timeout)

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for i in range(len(self.commands)):
            path = os.path.join(self.dir, "consumer-%d.log" % i)
            if os.path.exists(path):
                with open(path, errors="replace") as fh:
                    out += fh.read().splitlines()[-lines:]
        return "\n".join(out)


# ---------------------------------------------------------------- hueyq

def run_child(trial: Trial, name: str, module_args: "list[str]", what: str,
              timeout: float) -> dict:
    """Run ``python -m MODULE ARGS`` in the trial's environment (output in
    ``<name>.log``) and return the JSON of its last ``RESULT`` line."""
    log = os.path.join(trial.dir, "%s.log" % name)
    proc = trial.bench.processes.start([PY, "-m", *module_args], trial.env,
                                       trial.dir, log=log)
    try:
        proc.wait(timeout)
    except Exception:
        raise BenchError("%s timed out after %.0fs" % (what, timeout))
    finally:
        trial.bench.processes.stop(proc, signal.SIGKILL, grace=1)
    with open(log, errors="replace") as fh:
        lines = fh.read().splitlines()
    for line in reversed(lines):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise BenchError("%s failed:\n%s" % (what, "\n".join(lines[-15:])))


def hueyq_profile(trial: Trial, queues: dict, extra: "dict | None" = None
                  ) -> str:
    """Write a profile extending dev with this trial's URLs and queues.

    ``queues`` maps a queue name to overrides (workers, worker_type...).
    """
    backend = {"sqlite": "sqlite://%s" % os.path.join(trial.dir, "queue.db"),
               "redis": trial.bench.redis.url,
               "postgres": trial.pg_url}[trial.backend]
    sections = {"backend": {"url": backend},
                "store": {"url": "sqlite://%s" % os.path.join(trial.dir,
                                                             "store.db")}}
    for name, values in queues.items():
        sections["queues.%s" % name] = values
    for name, values in (extra or {}).items():
        sections.setdefault(name, {}).update(values)
    lines = ['extends = "dev"', 'app_name = "bench"']
    for name, values in sections.items():
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (k, json.dumps(v) if not isinstance(v, bool)
                               else ("true" if v else "false"))
                  for k, v in values.items()]
    path = os.path.join(trial.dir, "profile.toml")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    trial.env["HUEYQ_PROFILE"] = path
    return path


def setup_hueyq(trial: Trial, queues: dict, run: "list[str]",
                extra: "dict | None" = None) -> None:
    """``hueyq run`` on the queues ``run`` of a dev-based profile."""
    hueyq_profile(trial, queues, extra)
    trial.commands = [[PY, "-m", "hueyq", "run", "--app",
                       "benchmarks.apps.hueyq_app", "--queues", ",".join(run)]]


def setup_builtin_profile(trial: Trial, profile: str) -> None:
    """``hueyq run`` on a built-in profile, all its queues, data in the
    trial directory (dev: ./.hueyq; jetson, server: HUEYQ_DATA_DIR)."""
    trial.env["HUEYQ_PROFILE"] = profile
    trial.env["HUEYQ_DATA_DIR"] = trial.dir
    if profile == "server":
        trial.env["HUEYQ_REDIS_URL"] = trial.bench.redis.url
        trial.env["HUEYQ_SECRET"] = "benchmark-secret-not-for-production"
    trial.commands = [[PY, "-m", "hueyq", "run", "--app",
                       "benchmarks.apps.hueyq_app"]]


def setup_nolease(trial: Trial, workers: int) -> None:
    """huey's stock consumer on hueyq's backend, queue high."""
    hueyq_profile(trial, {"high": {"workers": workers,
                                   "worker_type": "thread"}})
    trial.commands = [[PY, "-m", "benchmarks.apps.nolease", "high",
                       str(workers)]]


# ---------------------------------------------------------------- huey

def setup_huey(trial: Trial, workers: "dict[str, int]") -> None:
    """One huey_consumer per queue in ``workers`` (high, low)."""
    trial.env["BENCH_HUEY_KIND"] = trial.backend
    trial.env["BENCH_HUEY_FILE"] = os.path.join(trial.dir, "huey.db")
    trial.commands = [
        [PY, "-m", "huey.bin.huey_consumer", "benchmarks.apps.huey_app.%s" % q,
         "-w", str(n), "-k", "thread", "-d", "0.1", "-b", "1.5", "-m", "5.0",
         "-c", "1"] for q, n in workers.items()]


def setup_huey_defaults(trial: Trial) -> None:
    """Plain huey as a user gets it (``SqliteHuey`` or ``RedisHuey`` with no
    options: SQLite in WAL without fsync, Redis lists), producer only."""
    trial.env["BENCH_HUEY_KIND"] = trial.backend
    trial.env["BENCH_HUEY_FILE"] = os.path.join(trial.dir, "huey.db")
    trial.env["BENCH_HUEY_DEFAULTS"] = "1"
    trial.commands = []


# ---------------------------------------------------------------- peers

def setup_peer(trial: Trial) -> None:
    """The best 2-core configuration of Celery, RQ or Dramatiq."""
    url = trial.bench.redis.url
    if trial.system == "celery":
        trial.commands = [[PY, "-m", "celery", "-A",
                           "benchmarks.apps.celery_app", "worker", "-c", "2",
                           "-P", "prefork", "-Q", "high", "--without-gossip",
                           "--without-mingle", "--without-heartbeat", "-l",
                           "WARNING"]]
    elif trial.system == "rq":
        trial.commands = [[tool("rq"), "worker-pool", "-n", "2", "-w",
                           "rq.worker.SimpleWorker", "-u", url, "high"]]
    elif trial.system == "dramatiq":
        trial.commands = [[tool("dramatiq"), "benchmarks.apps.dramatiq_app",
                           "-p", "2", "-t", "8"]]
    else:
        raise ValueError(trial.system)


def cleanup(trial: Trial, keep: bool) -> None:
    if trial.pg_url:
        drop_pg_database(trial.bench.pg_server, trial.pg_url)
    if not keep:
        shutil.rmtree(trial.dir, ignore_errors=True)
