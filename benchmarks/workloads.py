"""The workloads. Each returns rows: ``{"workload", "backend", "system",
...figures}``; a row with ``"error"`` says why a figure is missing.

Completion is counted the same way for every system: each task appends a
line to the trial's completions file (benchmarks.apps.common.record) and the
harness reads it. Times are wall-clock ``time.time()`` taken by the task
itself and by the harness or producer on the same machine.
"""

import logging
import os
import time

from benchmarks import harness
from benchmarks.harness import (BenchError, percentile, process_tree,
                                tree_cpu, tree_memory)
from benchmarks.scale import scale
from benchmarks.systems import (PEERS, Trial, cleanup, peer_available,
                                setup_builtin_profile, setup_huey,
                                setup_huey_defaults, setup_hueyq,
                                setup_nolease, setup_peer)

logger = logging.getLogger("benchmarks")

WORKERS = 4
QUEUES4 = ("high", "medium", "low", "gpu")
MB = 1024 * 1024


def _trial(bench, system: str, backend: str, tag: str, body) -> dict:
    """Run ``body(trial)`` and always stop the trial's processes."""
    trial = Trial(bench, system, backend, tag)
    row = add(bench, {"workload": tag, "backend": backend, "system": system})
    try:
        row.update(body(trial))
    except BenchError as exc:
        logger.error("%s %s on %s: %s\n%s", tag, system, backend, exc,
                     trial.log_tail())
        row["error"] = str(exc)
    finally:
        trial.stop(grace=bench.sizes["stop_grace"])
        cleanup(trial, bench.keep)
    logger.info("%s", _brief(row))
    return row


def add(bench, row: dict) -> dict:
    """Put ``row`` in the run's results now (an interrupted run keeps it)."""
    row["repeat"] = bench.repeat
    bench.rows.append(row)
    return row


def _brief(row: dict) -> str:
    figures = ", ".join("%s=%s" % (k, ("%.4g" % v) if isinstance(v, float)
                                   else v) for k, v in row.items()
                        if k not in ("workload", "backend", "system"))
    return "%s %s/%s: %s" % (row["workload"], row["system"], row["backend"],
                             figures)


def _deadline(count: int) -> float:
    # Bounded by the slowest system we expect (RQ: ~70 tasks/s).
    return 60.0 + count / 40.0


# ---------------------------------------------------------------- 1. drain

def drain(bench, backend: str) -> "list[dict]":
    """N no-ops enqueued, then the consumer started; tasks/s to the last."""
    n = bench.sizes["drain"]
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    four = {q: {"workers": WORKERS, "worker_type": "thread", "gpu": False}
            for q in QUEUES4}
    rows = [
        _trial(bench, "hueyq", backend, "drain", lambda t: _drain(
            t, n, ["high"], lambda: setup_hueyq(t, one, ["high"]))),
        _trial(bench, "huey", backend, "drain", lambda t: _drain(
            t, n, ["high"], lambda: setup_huey(t, {"high": WORKERS}))),
    ]
    if bench.quick:
        return rows
    rows += [
        _trial(bench, "hueyq-4q", backend, "drain", lambda t: _drain(
            t, n, list(QUEUES4), lambda: setup_hueyq(t, four, list(QUEUES4)))),
        _trial(bench, "hueyq-nolease", backend, "drain", lambda t: _drain(
            t, n, ["high"], lambda: setup_nolease(t, WORKERS))),
    ]
    return rows


def drain_peers(bench) -> "list[dict]":
    """The drain on Celery, RQ and Dramatiq (always on the private Redis)."""
    n = bench.sizes["drain"]
    rows = []
    for peer in bench.peers:
        reason = peer_available(peer)
        if reason:
            rows.append(add(bench, {"workload": "drain", "backend": "redis",
                                    "system": peer, "error": reason}))
            continue
        rows.append(_trial(bench, peer, "redis", "drain", lambda t: _drain(
            t, n, ["high"], lambda: setup_peer(t))))
    return rows


def _drain(trial: Trial, n: int, queues: list, setup) -> dict:
    setup()
    produced = trial.produce("enqueue", kind="noop", count=n, queues=queues)
    redis_tree = process_tree(trial.bench.redis.proc.pid)
    redis_before = tree_cpu(redis_tree)
    started = trial.start()
    finished = trial.completions.wait(n, _deadline(n), alive=trial.alive)
    cpu = _runtime_cpu(trial)
    redis_cpu = tree_cpu(redis_tree) - redis_before
    records = trial.completions.records
    if not records:
        raise BenchError("no task completed")
    ends = sorted(r[3] for r in records)
    done = len(records)
    out = {"tasks": done, "complete": finished,
           "rate": done / (ends[-1] - started),
           "steady_rate": (done - 1) / (ends[-1] - ends[0])
           if done > 1 and ends[-1] > ends[0] else None,
           "startup_s": ends[0] - started,
           "enqueue_rate": produced["rate"],
           "cpu_ms_per_task": 1000.0 * cpu / done,
           "redis_ms_per_task": 1000.0 * redis_cpu / done}
    if not finished:
        out["error"] = "only %d of %d tasks done in time" % (done, n)
    return out


def _runtime_cpu(trial: Trial) -> float:
    """CPU seconds used so far by every running process of the trial's
    consumers (start-up included)."""
    total = 0.0
    for pid in trial.root_pids():
        trial.bench.processes.note(pid)
        total += tree_cpu(list(trial.bench.processes.trees.get(pid, {})
                               .values()))
    return total


# ---------------------------------------------------------------- 2. latency

def latency(bench, backend: str) -> "list[dict]":
    """Idle CPU over a window, then probes one at a time into the idle
    runtime: enqueue-to-start latency."""
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    return [
        _trial(bench, "hueyq", backend, "latency", lambda t: _latency(
            bench, t, lambda: setup_hueyq(t, one, ["high"]))),
        _trial(bench, "huey", backend, "latency", lambda t: _latency(
            bench, t, lambda: setup_huey(t, {"high": WORKERS}))),
    ]


def latency_peers(bench) -> "list[dict]":
    rows = []
    for peer in bench.peers:
        reason = peer_available(peer)
        if reason:
            rows.append(add(bench, {"workload": "latency", "backend": "redis",
                                    "system": peer, "error": reason}))
            continue
        rows.append(_trial(bench, peer, "redis", "latency", lambda t: _latency(
            bench, t, lambda: setup_peer(t))))
    return rows


def _latency(bench, trial: Trial, setup) -> dict:
    setup()
    trial.start()
    if not trial.produce("warm", timeout=120, queues=["high"])["ok"]:
        raise BenchError("the consumer did not run a warm-up task")
    time.sleep(bench.sizes["settle"])
    out = idle_cpu(bench, trial, bench.sizes["idle_cpu"])
    count = bench.sizes["latency"]
    result = trial.produce("latency", count=count, queue="high", gap=0.02,
                           wait=10.0, timeout=60.0 + count * 10.5)
    trial.completions.read()
    probes = [r for r in trial.completions.records if r[0].startswith("l-")]
    samples = [(r[2] - r[1]) * 1000 for r in probes]
    # The enqueue call itself (a commit on SQLite) is part of the latency;
    # what follows it is the dispatch (wake-up, lease, decode).
    calls = result["enqueue_s"]
    enqueue = [calls[r[0]] * 1000 for r in probes if r[0] in calls]
    dispatch = [(r[2] - r[1] - calls[r[0]]) * 1000 for r in probes
                if r[0] in calls]
    out.update(samples=len(samples), missed=result["missed"],
               p50_ms=percentile(samples, 0.5),
               p99_ms=percentile(samples, 0.99),
               max_ms=max(samples) if samples else None,
               enqueue_p50_ms=percentile(enqueue, 0.5),
               enqueue_p99_ms=percentile(enqueue, 0.99),
               dispatch_p50_ms=percentile(dispatch, 0.5),
               dispatch_p99_ms=percentile(dispatch, 0.99))
    return out


def idle_cpu(bench, trial: Trial, window: float) -> dict:
    """CPU of the whole process tree (and of Redis) over ``window`` s, as %
    of one core."""
    trees = []
    for pid in trial.root_pids():
        trees += process_tree(pid)
    redis_tree = process_tree(bench.redis.proc.pid)
    before, redis_before = tree_cpu(trees), tree_cpu(redis_tree)
    start = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - start
    after = []
    for pid in trial.root_pids():
        after += process_tree(pid)
    known = {p.pid for p in trees}
    # Processes that appeared in the window count from zero.
    used = tree_cpu(trees) + tree_cpu([p for p in after
                                       if p.pid not in known]) - before
    return {"idle_cpu_pct": 100.0 * used / elapsed,
            "redis_cpu_pct": 100.0 * (tree_cpu(redis_tree) - redis_before)
            / elapsed, "processes": len(after)}


# ---------------------------------------------------------------- 3. priority

def priority(bench, backend: str) -> "list[dict]":
    """high probes at a fixed rate while a low backlog drains."""
    queues = {"high": {"workers": 2, "worker_type": "thread"},
              "low": {"workers": 1, "worker_type": "thread"}}
    return [
        _trial(bench, "hueyq", backend, "priority", lambda t: _priority(
            bench, t, lambda: setup_hueyq(t, queues, ["high", "low"]))),
        _trial(bench, "huey", backend, "priority", lambda t: _priority(
            bench, t, lambda: setup_huey(t, {"high": 2, "low": 1}))),
    ]


def _priority(bench, trial: Trial, setup) -> dict:
    setup()
    trial.start()
    if not trial.produce("warm", timeout=120, queues=["high", "low"])["ok"]:
        raise BenchError("the consumers did not run warm-up tasks")
    time.sleep(bench.sizes["settle"])
    low, high = bench.sizes["low"], bench.sizes["high"]
    sent = trial.produce("priority", low_count=low, low_seconds=0.005,
                         high_count=high, interval=0.1)
    highs = lambda: [r for r in trial.completions.records  # noqa: E731
                     if r[0].startswith("h-")]
    deadline = time.monotonic() + 30
    while len(highs()) < high and time.monotonic() < deadline:
        trial.completions.read()
        time.sleep(0.05)
    samples = [(r[2] - r[1]) * 1000 for r in highs()]
    last_high_start = max((r[2] for r in highs()), default=time.time())
    low_done = sum(1 for r in trial.completions.records
                   if r[0].startswith("b-") and r[3] <= last_high_start)
    out = {"high_done": len(samples), "p50_ms": percentile(samples, 0.5),
           "p99_ms": percentile(samples, 0.99),
           "max_ms": max(samples) if samples else None,
           "backlog_left": low - low_done,
           "low_enqueue_s": sent["low_enqueue_s"]}
    if len(samples) < high:
        out["error"] = "only %d of %d high tasks ran" % (len(samples), high)
    elif low_done >= low:
        out["error"] = "the low backlog was gone before the last high task"
    return out


# ---------------------------------------------------------------- 4. crash

def crash(bench, backend: str) -> "list[dict]":
    """kill -9 the whole runtime mid-run, restart, count lost/duplicated."""
    rows = [
        _trial(bench, "hueyq", backend, "crash", lambda t: _crash(
            bench, t, lambda: setup_hueyq(
                t, {"high": {"workers": WORKERS, "worker_type": "thread"}},
                ["high"]))),
        _trial(bench, "huey", backend, "crash", lambda t: _crash(
            bench, t, lambda: setup_huey(t, {"high": WORKERS}))),
    ]
    if not bench.quick:
        rows.append(_trial(bench, "hueyq-process", backend, "crash",
                           lambda t: _crash(bench, t, lambda: setup_hueyq(
                               t, {"high": {"workers": 2,
                                            "worker_type": "process"}},
                               ["high"]))))
    return rows


def _crash(bench, trial: Trial, setup) -> dict:
    setup()
    n = bench.sizes["crash"]
    trial.produce("enqueue", kind="sleep", count=n, queues=["high"],
                  prefix="c", seconds=0.02)
    trial.start()
    cut = int(n * 0.4)
    if not trial.completions.wait(cut, 120, interval=0.005, alive=trial.alive):
        raise BenchError("fewer than %d tasks ran before the kill" % cut)
    killed = trial.kill()
    at_kill = trial.completions.read()
    trial.start()
    quiet = bench.sizes["crash_quiet"]
    last, changed = at_kill, time.monotonic()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        count = trial.completions.read()
        if count != last:
            last, changed = count, time.monotonic()
        if set(trial.completions.tokens()) >= {"c-%d" % i for i in range(n)} \
                and time.monotonic() - changed > 1.0:
            break
        if time.monotonic() - changed > quiet:
            break
        time.sleep(0.05)
    tokens = trial.completions.tokens()
    expected = {"c-%d" % i for i in range(n)}
    lost = len(expected - set(tokens))
    dups = sum(c - 1 for t, c in tokens.items() if t in expected and c > 1)
    return {"tasks": n, "done_at_kill": at_kill, "killed_pids": len(killed),
            "lost": lost, "duplicated": dups}


# ---------------------------------------------------------------- 5. memory

#: Optional packages a plain ``pip install hueyq`` does not bring.
HIDDEN = ("redis", "psycopg2", "psycopg", "cryptography")

#: label -> (built-in profile, backend, optional packages hidden).
PROFILES = {"dev": ("dev", "sqlite", ()),
            "jetson": ("jetson", "sqlite", ()),
            "jetson-core": ("jetson", "sqlite", HIDDEN),
            "server": ("server", "redis", ())}


def memory(bench, backend: str) -> "list[dict]":
    """PSS of the whole runtime, idle and after N no-ops, per profile.

    ``jetson-core`` hides the optional packages this venv has but a plain
    ``pip install hueyq`` on a Jetson would not (redis-py, psycopg2,
    cryptography): huey imports redis-py and peewee imports psycopg2
    whenever they are installed, in every process.
    """
    rows = []
    for label, (profile, kind, hidden) in PROFILES.items():
        if kind != backend or (bench.quick and label in ("dev", "jetson")):
            continue
        rows.append(_trial(bench, "hueyq:" + label, backend, "memory",
                           lambda t: _memory(bench, t, profile, hidden)))
    return rows


def _memory(bench, trial: Trial, profile: str, hidden: tuple) -> dict:
    setup_builtin_profile(trial, profile)
    if hidden:
        trial.env["PYTHONPATH"] = hide_packages(trial.dir, hidden) + \
            os.pathsep + trial.env["PYTHONPATH"]
    queues = _profile_queues(bench, profile)
    trial.start()
    if not trial.produce("warm", timeout=120, queues=queues)["ok"]:
        raise BenchError("the runtime did not run warm-up tasks")
    time.sleep(bench.sizes["mem_settle"])
    idle = _tree_memory(trial)
    breakdown = _breakdown(trial)
    n = bench.sizes["memory_tasks"]
    trial.produce("enqueue", kind="noop", count=n, queues=queues, prefix="m")
    if not trial.completions.wait(n + len(queues), _deadline(n),
                                  alive=trial.alive):
        raise BenchError("the runtime did not finish %d no-ops" % n)
    time.sleep(bench.sizes["mem_settle"])
    after = _tree_memory(trial)
    return {"idle_pss_mb": idle[0] / MB, "idle_rss_mb": idle[1] / MB,
            "processes": idle[2], "after_pss_mb": after[0] / MB,
            "after_rss_mb": after[1] / MB, "after_processes": after[2],
            "queues": ",".join(queues), "breakdown": breakdown}


def hide_packages(directory: str, names: tuple) -> str:
    """A directory of stub packages that raise ImportError, to put first on
    PYTHONPATH: the processes behave as if ``names`` were not installed."""
    path = os.path.join(directory, "hidden")
    for name in names:
        os.makedirs(os.path.join(path, name), exist_ok=True)
        with open(os.path.join(path, name, "__init__.py"), "w") as fh:
            fh.write("raise ImportError('%s is hidden by the benchmark')\n"
                     % name)
    return path


def _breakdown(trial: Trial) -> str:
    """Idle PSS per process: supervisor, each consumer, each forked worker."""
    import psutil
    parts = []
    for pid in trial.root_pids():
        for p in trial.bench.processes.note(pid):
            try:
                cmd = p.cmdline()
                pss = p.memory_full_info().pss / MB
                parent = p.ppid()
            except psutil.Error:
                continue
            if "--queue" in cmd:
                name = cmd[cmd.index("--queue") + 1]
            elif p.pid == pid:
                name = "supervisor"
            else:
                try:
                    name = "%s worker" % psutil.Process(parent).cmdline()[
                        psutil.Process(parent).cmdline().index("--queue") + 1]
                except (psutil.Error, ValueError, IndexError):
                    name = "pid %d" % p.pid
            parts.append("%s %.1f" % (name, pss))
    return ", ".join(parts)


def _tree_memory(trial: Trial) -> tuple:
    procs = []
    for pid in trial.root_pids():
        procs += trial.bench.processes.note(pid)
    return tree_memory(procs)


def _profile_queues(bench, profile: str) -> "list[str]":
    """The profile's queues that run no GPU lane (a no-op there would load
    torch, which is not what this measures)."""
    return list(bench.info["profiles"][profile])


# ---------------------------------------------------------------- 6. store

def store(bench, backend: str) -> "list[dict]":
    """queue_stats(), jobs(state='failed') and /api/queues over N jobs, on
    the default SQLite store and (not with --quick) on PostgreSQL."""
    def body(trial, url=None):
        setup_hueyq(trial, {"high": {"workers": WORKERS}}, ["high"])
        if url:
            trial.env["HUEYQ_STORE"] = url
        return trial.produce("store", timeout=900, count=bench.sizes["store"],
                             repeat=5)
    rows = [_trial(bench, "hueyq", backend, "store", body)]
    if bench.quick:
        return rows
    if not bench.pg_server:
        rows.append(add(bench, {"workload": "store", "backend": backend,
                                "system": "hueyq:postgresql",
                                "skipped": "--pg none"}))
        return rows
    try:
        url = harness.create_pg_database(bench.pg_server)
    except BenchError as exc:
        rows.append(add(bench, {"workload": "store", "backend": backend,
                                "system": "hueyq:postgresql",
                                "skipped": str(exc)}))
        return rows
    try:
        rows.append(_trial(bench, "hueyq:postgresql", backend, "store",
                           lambda trial: body(trial, url)))
    finally:
        harness.drop_pg_database(bench.pg_server, url)
    return rows


# ---------------------------------------------------------------- 7. batch

def batch(bench, backend: str) -> "list[dict]":
    """@app.batch_task against one task per item: a torch embedding."""
    reason = batch_unavailable(bench)
    if reason:
        return [add(bench, {"workload": "batch", "backend": backend,
                            "system": "hueyq", "skipped": reason})]
    rows = [_trial(bench, "hueyq:" + kind, backend, "batch",
                   lambda t: _batch(bench, t, kind))
            for kind in ("embed_one", "embed_many")]
    one, many = (r.get("rate") for r in rows)
    if one and many:
        rows[1]["gain"] = many / one
    return rows


def batch_unavailable(bench) -> "str | None":
    if not bench.info["batch_task"]:
        return "hueyq.App.batch_task is missing"
    if not bench.info["torch"]:
        return "torch is not installed (pip install torch)"
    return None


def _batch(bench, trial: Trial, kind: str) -> dict:
    setup_hueyq(trial, {"high": {"workers": 1, "worker_type": "thread"}},
                ["high"])
    trial.env["BENCH_BATCH"] = "1"
    n = bench.sizes["batch"]
    trial.start()
    result = trial.produce("batch", timeout=300, count=n, kind=kind)
    if not result.get("ok"):
        raise BenchError("the model did not warm up")
    if not trial.completions.wait(n + 16, _deadline(n), alive=trial.alive):
        raise BenchError("only %d of %d embeddings done"
                         % (len(trial.completions.records) - 16, n))
    ends = [r[3] for r in trial.completions.records if r[0].startswith("e-")]
    return {"texts": len(ends), "rate": len(ends) / (max(ends) -
                                                     result["resumed"])}


# ---------------------------------------------------------------- 8. enqueue

def enqueue(bench, backend: str) -> "list[dict]":
    """The producer alone (no consumer running): N no-ops one at a time
    (hueyq, plain huey with its defaults and, not with --quick, huey as the
    drain configures it), and M no-ops in one ``task.map`` call (hueyq)."""
    n, bulk = bench.sizes["enqueue_one"], bench.sizes["enqueue_bulk"]
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    rows = [
        _trial(bench, "hueyq", backend, "enqueue", lambda t: _enqueue_one(
            t, n, lambda: setup_hueyq(t, one, ["high"]))),
        _trial(bench, "huey-defaults", backend, "enqueue",
               lambda t: _enqueue_one(t, n, lambda: setup_huey_defaults(t))),
        _trial(bench, "hueyq-bulk", backend, "enqueue", lambda t: _enqueue_bulk(
            t, bulk, lambda: setup_hueyq(t, one, ["high"]))),
    ]
    if not bench.quick:
        rows.append(_trial(bench, "huey", backend, "enqueue",
                           lambda t: _enqueue_one(t, n, lambda: setup_huey(
                               t, {"high": WORKERS}))))
    return rows


def _enqueue_one(trial: Trial, n: int, setup) -> dict:
    setup()
    produced = trial.produce("enqueue", kind="noop", count=n, queues=["high"])
    return {"jobs": n, "rate": produced["rate"],
            "cpu_us_per_job": 1e6 * produced["cpu_seconds"] / n}


def _enqueue_bulk(trial: Trial, n: int, setup) -> dict:
    setup()
    produced = trial.produce("bulk", kind="noop", count=n, queue="high")
    out = {"jobs": n, "rate": produced["rate"], "stored": produced["stored"],
           "cpu_us_per_job": 1e6 * produced["cpu_seconds"] / n}
    if produced["stored"] != n:
        out["error"] = "%d of %d jobs stored" % (produced["stored"], n)
    return out


# ---------------------------------------------------------------- calls

def calls(bench, backend: str) -> "list[dict]":
    """Redis commands per job of an enqueue and a drain, and per second of
    an idle runtime, counted under MONITOR (benchmarks/calls.py)."""
    if backend != "redis":
        return []
    from benchmarks import calls as counted
    n = bench.sizes["calls"]
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    four = {q: {"workers": WORKERS, "worker_type": "thread", "gpu": False}
            for q in QUEUES4}
    return [
        _trial(bench, "hueyq", backend, "calls", lambda t: counted.measure(
            t, n, ["high"], lambda: setup_hueyq(t, one, ["high"]),
            _deadline(n))),
        _trial(bench, "hueyq-4q", backend, "calls", lambda t: counted.measure(
            t, n, list(QUEUES4), lambda: setup_hueyq(t, four, list(QUEUES4)),
            _deadline(n))),
        _trial(bench, "huey", backend, "calls", lambda t: counted.measure(
            t, n, ["high"], lambda: setup_huey(t, {"high": WORKERS}),
            _deadline(n))),
    ]
# ---------------------------------------------------------------- 9. async

def async_io(bench, backend: str) -> "list[dict]":
    """N tasks that each wait ``async_wait`` seconds (a stand-in for a
    remote call): ``await asyncio.sleep`` on one async consumer process
    (``concurrency`` = N, and not with --quick 200), against ``time.sleep``
    on one thread consumer with ``async_threads`` workers; the time from
    the start of the enqueue (one ``task.map`` call) to the last
    completion, the most tasks in flight at once, the runtime's threads and
    its memory (PSS) idle and at its peak."""
    n, threads = bench.sizes["async_tasks"], bench.sizes["async_threads"]
    rows = [_trial(bench, "hueyq-async", backend, "async", lambda t: _io(
        bench, t, {"worker_type": "async", "concurrency": n}, "asleep"))]
    if not bench.quick:
        rows.append(_trial(bench, "hueyq-async-200", backend, "async",
                           lambda t: _io(bench, t, {"worker_type": "async",
                                                    "concurrency": 200},
                                         "asleep")))
    rows.append(_trial(bench, "hueyq-threads-%d" % threads, backend, "async",
                       lambda t: _io(bench, t, {"worker_type": "thread",
                                                "workers": threads},
                                     "sleep")))
    return rows


def _io(bench, trial: Trial, queue: dict, kind: str) -> dict:
    n, wait = bench.sizes["async_tasks"], bench.sizes["async_wait"]
    setup_hueyq(trial, {"io": dict(queue, priority=60, workers=queue.get(
        "workers", 1))}, ["io"])
    trial.start()
    trial.produce("enqueue", kind=kind, count=1, queues=["io"], prefix="w",
                  seconds=0.0)
    if not trial.completions.wait(1, 60, alive=trial.alive):
        raise BenchError("the runtime did not run the warm-up task")
    time.sleep(bench.sizes["mem_settle"])
    idle = _tree_memory(trial)
    peak = _PeakMemory(trial)
    started = time.time()
    # One task.map call: the producer's fsyncs stay out of the figure.
    produced = trial.produce("bulk", kind=kind, count=n, queue="io",
                             prefix="a", seconds=wait)
    finished = trial.completions.wait(n + 1, _deadline(n), alive=trial.alive)
    peak.stop()
    records = [r for r in trial.completions.records if r[0].startswith("a-")]
    if not records:
        raise BenchError("no task completed")
    seconds = max(r[3] for r in records) - started
    in_flight = _most_at_once([(r[2], r[3]) for r in records])
    grown = max(peak.pss - idle[0], 0)
    return {"tasks": len(records), "complete": finished, "seconds": seconds,
            "enqueue_s": produced["seconds"],
            "rate": len(records) / seconds, "in_flight": in_flight,
            "threads": peak.threads, "idle_pss_mb": idle[0] / MB,
            "peak_pss_mb": peak.pss / MB,
            "kb_per_in_flight": grown / 1024 / max(in_flight, 1)}


def _most_at_once(spans: "list[tuple[float, float]]") -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans],
                   key=lambda edge: (edge[0], edge[1]))
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


class _PeakMemory:
    """Samples a trial's process tree (PSS, threads) every 50 ms on a
    thread until stopped; keeps the peaks."""

    def __init__(self, trial: Trial) -> None:
        import threading
        self.trial, self.pss, self.threads = trial, 0, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            procs = []
            for pid in self.trial.root_pids():
                procs += process_tree(pid)
            self.pss = max(self.pss, tree_memory(procs)[0])
            self.threads = max(self.threads, _threads(procs))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


def _threads(procs: list) -> int:
    import psutil
    total = 0
    for proc in procs:
        try:
            total += proc.num_threads()
        except psutil.Error:
            pass
    return total
# ---------------------------------------------------------------- 9. stream

def stream(bench, backend: str) -> "list[dict]":
    """One job emitting chunks into an idle runtime (``hueyq run --web``),
    read over SSE: emit-to-client latency."""
    return [_trial(bench, "hueyq", backend, "stream",
                   lambda t: _stream(bench, t))]


def _stream(bench, trial: Trial) -> dict:
    port = harness.free_port()
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    setup_hueyq(trial, one, ["high"],
                extra={"web": {"bind": "127.0.0.1:%d" % port}})
    trial.commands[0].append("--web")
    trial.start()
    if not trial.produce("warm", timeout=120, queues=["high"])["ok"]:
        raise BenchError("the consumer did not run a warm-up task")
    time.sleep(bench.sizes["settle"])
    count = bench.sizes["stream"]
    result = trial.produce("stream", count=count, gap=0.02,
                           url="http://127.0.0.1:%d" % port,
                           timeout=120.0 + count * 0.05)
    if result.get("error"):
        raise BenchError(result["error"])
    samples = result["samples"]
    out = {"chunks": len(samples), "dropped": result["dropped"],
           "p50_ms": percentile(samples, 0.5),
           "p99_ms": percentile(samples, 0.99),
           "max_ms": max(samples) if samples else None}
    if len(samples) != count or result["state"] != "complete":
        out["error"] = "%d of %d chunks read, job %s" % (
            len(samples), count, result["state"])
    return out


WORKLOADS = {"drain": drain, "latency": latency, "priority": priority,
             "crash": crash, "memory": memory, "store": store, "batch": batch,
             "enqueue": enqueue, "calls": calls, "async": async_io,
             "stream": stream, "scale": scale}
PEER_WORKLOADS = {"drain": drain_peers, "latency": latency_peers}
#: The workloads that also run on the postgres backend (memory, store and
#: batch measure the profiles, the job store and torch, not the queue).
PG_WORKLOADS = ("drain", "latency", "priority", "crash", "enqueue")
__all__ = ["WORKLOADS", "PEER_WORKLOADS", "PEERS", "PG_WORKLOADS"]
