"""The scale workload: does hueyq slow down as its queue and store grow?

Three parts, each a trial of its own:

* ``scale`` (system ``hueyq@N``, one per pending depth N of
  ``sizes["scale_depths"]``): one queue (``high``, 4 thread workers) is
  filled to N no-ops with ``task.map`` in chunks of 50,000, then, with those
  N pending: (a) ``scale_one`` no-ops enqueued one at a time (jobs/s), (b)
  ``scale_lease`` ``lease`` + ``ack`` pairs through the queue's backend
  object in the producer process, switched to the consumer side as a
  consumer is (``consumer_side()``; ms each, p50/p99: the consumer's
  per-job backend cost), (c) ``hueyq run`` started on the queue and the first
  ``scale_drain`` jobs it completes timed (steady tasks/s, first to last
  completion), and (d) bytes per pending job: the growth of the SQLite
  queue file (its WAL checkpointed first) or of Redis ``used_memory`` over
  the fill,
  divided by N.
* ``scale_bytes`` (plain huey and the peers): ``sizes["scale_peer"]`` no-ops
  enqueued one at a time, bytes per pending job measured the same way.
* ``scale_store``: one job store filled in turn to each size of
  ``sizes["scale_store"]`` (SQLite, and PostgreSQL in a database of the
  run's own) by one ``INSERT ... SELECT`` per million rows generated inside
  the database: the rows benchmarks.storebench writes, without their
  huey_event history (none of these reads touch it), spread evenly over the
  7-day retention; secondary indexes rebuilt after each load (PostgreSQL:
  then ``VACUUM ANALYZE``, as its autovacuum does). Then
  ``queue_stats()``, ``jobs(state="failed")``, the searches of ``hueyq
  jobs`` and ``GET /api/queues`` are timed (median of 5, ms).

The measuring code runs in a child (``python -m benchmarks.scale ACTION
JSON``, ``RESULT {json}`` last) so the harness never imports hueyq.
"""

import json
import logging
import os
import sys
import time

from benchmarks import harness
from benchmarks.harness import BenchError, percentile
from benchmarks.systems import peer_available, run_child, setup_huey, \
    setup_huey_defaults, setup_hueyq, setup_peer

logger = logging.getLogger("benchmarks")

WORKERS = 4
CHUNK = 50_000
#: Targets: per-job figures within 20 % of the 1,000-job ones; store reads.
DRIFT = 0.20
STORE_MS = {"sqlite": 50.0, "postgresql": 100.0}


# ------------------------------------------------------------ harness side

def scale(bench, backend: str) -> "list[dict]":
    from benchmarks.workloads import _trial
    rows = []
    one = {"high": {"workers": WORKERS, "worker_type": "thread"}}
    # BENCH_SCALE_PARTS=depth,bytes,store (default): the parts to run.
    parts = os.environ.get("BENCH_SCALE_PARTS", "depth,bytes,store").split(",")
    depths = bench.sizes["scale_depths"] if "depth" in parts else ()
    for depth in depths:
        rows.append(_trial(bench, "hueyq@%d" % depth, backend, "scale",
                           lambda t: _depth(bench, t, depth, one)))
    base = rows[0] if rows and not rows[0].get("error") else None
    for row in rows:
        if base is None or row.get("error"):
            continue
        for key in ("one_rate", "lease_p50_ms", "lease_p99_ms",
                    "drain_rate"):
            if row.get(key) and base.get(key):
                row[key + "_ratio"] = row[key] / base[key]
    if "bytes" in parts:
        rows += _peer_bytes(bench, backend)
    if backend == "sqlite" and "store" in parts:
        rows += _store(bench)
    return rows


def _child(trial, action: str, timeout: float = 1800.0, **args) -> dict:
    """Run ``python -m benchmarks.scale ACTION`` in the trial's
    environment and return its RESULT."""
    return run_child(trial, "scale-%s" % action, [
        "benchmarks.scale", action, json.dumps(args)], "scale %s" % action,
        timeout)


def _depth(bench, trial, depth: int, queues: dict) -> dict:
    setup_hueyq(trial, queues, ["high"])
    sizes = bench.sizes
    out = _child(trial, "depth", count=depth, one=sizes["scale_one"],
                 lease=sizes["scale_lease"], files=_files(trial, "queue.db"),
                 redis=trial.backend == "redis" and bench.redis.url)
    out["depth"] = depth
    # The first few thousand of what is left (a 1,000-job queue: all).
    n = min(sizes["scale_drain"], depth + sizes["scale_one"] -
            sizes["scale_lease"])
    started = trial.start()
    finished = trial.completions.wait(n, 120 + n / 20.0, alive=trial.alive)
    ends = sorted(r[3] for r in trial.completions.records)
    if len(ends) > 1 and ends[-1] > ends[0]:
        out["drain_rate"] = (len(ends) - 1) / (ends[-1] - ends[0])
        out["drain_startup_s"] = ends[0] - started
    out["drained"] = len(ends)
    if not finished:
        out["error"] = "only %d of %d jobs drained in time" % (len(ends), n)
    return out


def _files(trial, name: str) -> "list[str]":
    base = os.path.join(trial.dir, name)
    return [base, base + "-wal"]


def _peer_bytes(bench, backend: str) -> "list[dict]":
    """Bytes per pending no-op of plain huey (and, on Redis, the peers),
    enqueued one at a time."""
    from benchmarks.workloads import _trial, add
    n = bench.sizes["scale_peer"]
    rows = []
    systems = [("huey-defaults", setup_huey_defaults)]
    if backend == "redis":
        systems.append(("huey", lambda t: setup_huey(t, {"high": WORKERS})))
        for peer in bench.peers:
            reason = peer_available(peer)
            if reason:
                rows.append(add(bench, {"workload": "scale_bytes",
                                        "backend": backend, "system": peer,
                                        "error": reason}))
            else:
                systems.append((peer, setup_peer))
    for system, setup in systems:
        def body(trial, setup=setup):
            setup(trial)
            return _child(trial, "peer_bytes", system=trial.system, count=n,
                          files=_files(trial, "huey.db"),
                          redis=trial.backend == "redis" and bench.redis.url)
        rows.append(_trial(bench, system, backend, "scale_bytes", body))
    return rows


def _store(bench) -> "list[dict]":
    """The four reads over a big store, SQLite and (when a server is given)
    PostgreSQL."""
    from benchmarks.workloads import _trial, add
    levels = bench.sizes["scale_store"]

    def body(trial, url=None):
        setup_hueyq(trial, {"high": {"workers": WORKERS}}, ["high"])
        if url:
            trial.env["HUEYQ_STORE"] = url
        return _child(trial, "store", timeout=3600, levels=levels,
                      path=None if url else os.path.join(trial.dir,
                                                         "store.db"))
    rows = [_trial(bench, "hueyq:sqlite", "sqlite", "scale_store", body)]
    if not bench.pg_server:
        return rows
    try:
        url = harness.create_pg_database(bench.pg_server)
    except BenchError as exc:
        rows.append(add(bench, {"workload": "scale_store", "backend": "sqlite",
                                "system": "hueyq:postgresql",
                                "skipped": str(exc)}))
        return rows
    try:
        rows.append(_trial(bench, "hueyq:postgresql", "sqlite", "scale_store",
                           lambda trial: body(trial, url)))
    finally:
        harness.drop_pg_database(bench.pg_server, url)
    return rows


# ------------------------------------------------------------ child side

def _disk(files: "list[str]") -> int:
    return sum(os.path.getsize(f) for f in files if os.path.exists(f))


def _redis_memory(url: str) -> int:
    import redis
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("memory")["used_memory"])
    finally:
        client.close()


def _redis_cpu(url: "str | bool") -> float:
    """CPU seconds the Redis server has used (0 without Redis)."""
    if not url:
        return 0.0
    import redis
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    finally:
        client.close()


def _footprint(files, redis_url) -> int:
    """Redis used_memory, or the SQLite file once its WAL is folded in
    (the WAL file keeps its size after a checkpoint: not counted)."""
    if redis_url:
        return _redis_memory(redis_url)
    import sqlite3
    if os.path.exists(files[0]):
        conn = sqlite3.connect(files[0])
        try:
            conn.execute("pragma wal_checkpoint(truncate)")
        finally:
            conn.close()
    return _disk(files[:1])


def depth(count: int, one: int, lease: int, files: list,
          redis: "str | bool") -> dict:
    """Fill ``high`` to ``count``, then time enqueues and leases there."""
    from benchmarks.apps.hueyq_app import app, tasks
    task = tasks["noop_high"]
    storage = app.storage("high")
    before = _footprint(files, redis)
    start = time.perf_counter()
    for first in range(0, count, CHUNK):
        task.map([("f-%d" % i,) for i in range(first,
                                                min(count, first + CHUNK))])
    fill_s = time.perf_counter() - start
    after = _footprint(files, redis)
    # The fill leaves the disk busy writing back: the fsyncs of the
    # one-at-a-time enqueues below would wait behind it.
    os.sync()
    out = {"fill_rate": count / fill_s, "bytes_per_job": (after - before)
           / count, "pending": app.huey("high").pending_count()}
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(one):
        task("o-%d" % i)
    elapsed = time.perf_counter() - start
    out.update(one_rate=one / elapsed,
               one_cpu_us=1e6 * (time.process_time() - cpu) / one)
    times = []
    owner = "scale-bench-%d" % os.getpid()
    # As a consumer process does before it takes work (SQLite: its commits
    # skip the fsync a producer's pay).
    storage.consumer_side()
    cpu, server = time.process_time(), _redis_cpu(redis)
    for _ in range(lease):
        start = time.perf_counter()
        taken = storage.lease(owner)
        if taken is None:
            raise RuntimeError("lease returned nothing with jobs pending")
        storage.ack(taken.handle)
        times.append((time.perf_counter() - start) * 1000)
    out.update(lease_p50_ms=percentile(times, 0.5),
               lease_p99_ms=percentile(times, 0.99),
               lease_rate=lease / (sum(times) / 1000),
               lease_cpu_us=1e6 * (time.process_time() - cpu) / lease)
    if redis:
        out["lease_redis_cpu_us"] = 1e6 * (_redis_cpu(redis) - server) / lease
    app.close()
    return out


def peer_bytes(system: str, count: int, files: list,
               redis: "str | bool") -> dict:
    """``count`` no-ops one at a time on ``system``; bytes per job."""
    from benchmarks.producer import Sender
    sender = Sender(system)
    try:
        sender.send("noop", "high", "warm-0")
        before = _footprint(files, redis)
        start = time.perf_counter()
        for i in range(count):
            sender.send("noop", "high", "p-%d" % i)
        elapsed = time.perf_counter() - start
        after = _footprint(files, redis)
    finally:
        sender.close()
    return {"jobs": count, "rate": count / elapsed,
            "bytes_per_job": (after - before) / count}


#: The span the store's jobs are spread over: the store's default
#: retention age (hueyq.defaults.RETENTION_AGE, 7 days).
SPAN = 7 * 86400.0
#: Every prefix of i -> (i * GOLDEN) mod 1 is spread evenly over [0, 1):
#: the store has the same shape at every size it is read at.
GOLDEN = 0.6180339887498949


def _fill_sql(app, first: int, last: int, now: float, sqlite: bool) -> str:
    """One INSERT ... SELECT of jobs first..last-1: the rows
    benchmarks.storebench writes (ids uuid(int=i).hex, states 90/5/3/2 %,
    spread over the queues), enqueued over the last :data:`SPAN`."""
    mod = (lambda n: "(i %% %d)" % n) if sqlite else \
        (lambda n: "mod(i, %d)" % n)
    queues = list(app.queues)
    queue = "case %s %s end" % (mod(len(queues)), " ".join(
        "when %d then '%s'" % (k, q) for k, q in enumerate(queues)))
    state = ("case when {m} < 90 then 'complete' when {m} < 95 then 'failed' "
             "when {m} < 98 then 'cancelled' else 'dead' end"
             .format(m=mod(100)))
    if sqlite:
        head = ("with recursive s(i) as (select %d union all select i + 1 "
                "from s where i < %d) " % (first, last - 1))
        ident, source = "printf('%032x', i)", "from s"
        frac = "(i * %r - cast(i * %r as integer))" % (GOLDEN, GOLDEN)
    else:
        head = ""
        ident = "lpad(to_hex(i), 32, '0')"
        source = "from generate_series(%d, %d) as i" % (first, last - 1)
        frac = "(i * %r::float8 - floor(i * %r::float8))" % (GOLDEN,
                                                                 GOLDEN)
    enq = "(%r - %r * %s)" % (now, SPAN, frac)
    fin = "(%s + 0.05 + %s * 0.01)" % (enq, mod(17))
    columns = [ident, "'%s'" % app.name,
               "'benchmarks.apps.common.noop_' || (%s)" % queue, queue, state,
               "1", enq, enq + " + 0.01", fin, fin, fin + " - " + enq,
               "case when {m} < 90 then 100.0 end".format(m=mod(100)),
               "case when {m} >= 90 and {m} < 95 then "
               "'ValueError(''benchmark'')' end".format(m=mod(100)),
               "case when {m} >= 90 then {s} end".format(m=mod(100), s=state)]
    return (head + "insert into hueyq_job (id, app, task, queue, state, "
            "attempts, enqueued_at, started_at, finished_at, updated_at, "
            "duration, progress, error, reason) select " + ", ".join(columns)
            + " " + source)


def _indexes(db, sqlite: bool) -> "list[tuple[str, str]]":
    """(name, DDL) of hueyq_job's secondary indexes."""
    sql = ("select name, sql from sqlite_master where type = 'index' and "
           "tbl_name = 'hueyq_job' and sql is not null" if sqlite else
           "select indexname, indexdef from pg_indexes where tablename = "
           "'hueyq_job' and indexname not like '%%pkey'")
    return [tuple(r) for r in db.execute_sql(sql).fetchall()]


def store(levels: list, path: "str | None", repeat: int = 5) -> dict:
    """Fill the store up to each of ``levels`` jobs in the database
    (secondary indexes dropped during the load and built again after it, as
    a bulk load is done; PostgreSQL: then VACUUM ANALYZE, what its
    autovacuum does after a load), then time the reads at that size:
    ``LEVEL_NAME_ms`` keys, and the last level's as plain ``NAME_ms``."""
    from benchmarks.apps.hueyq_app import app
    import peewee
    db = app.store.db
    sqlite = isinstance(db, peewee.SqliteDatabase)
    now = time.time()
    indexes = _indexes(db, sqlite)
    if not sqlite:
        # Index builds sort in memory, not in temporary files.
        db.execute_sql("set maintenance_work_mem = '512MB'")
    out = {"levels": levels}
    done = 0
    for level in levels:
        start = time.perf_counter()
        for name, _ in indexes:
            db.execute_sql("drop index if exists %s" % name)
        step = 1_000_000
        for first in range(done, level, step):
            with db.atomic():
                db.cursor().execute(_fill_sql(app, first, min(level, first +
                                                              step), now,
                                              sqlite))
        for _, ddl in indexes:
            db.execute_sql(ddl)
        if not sqlite:
            # What autovacuum does after a load. Not on SQLite: hueyq never
            # runs ANALYZE there, and with its statistics SQLite's planner
            # reads queue_stats' window off the wrong index (see README).
            db.execute_sql("vacuum analyze hueyq_job")
        fill = time.perf_counter() - start
        sys.stderr.write("%d rows in %.0f s\n" % (level, fill))
        figures = {"jobs": level, "fill_s": fill,
                   "fill_rate": (level - done) / fill}
        if path:
            figures["bytes_per_row"] = _disk([path, path + "-wal"]) / level
        figures.update(_reads(app, now, level, repeat))
        out.update({"%d_%s" % (level, k): v for k, v in figures.items()})
        out.update(figures)
        done = level
    app.close()
    return out


def _reads(app, now: float, count: int, repeat: int) -> dict:
    """The reads over the store, timed (storebench's ``_time``: first run
    and median, ms)."""
    from benchmarks.storebench import _time, time_api_queues
    out: dict = {}
    queue = app.queues[0]
    failed = app.jobs(state="failed")
    assert len(failed) == 50, len(failed)
    _time(out, "queue_stats", app.queue_stats, repeat)
    _time(out, "jobs_failed", lambda: app.jobs(state="failed"), repeat)
    # The search a user runs first when something went wrong: one task's
    # failures with that error text in the last hour (hueyq jobs --task noop_q
    # --state failed --error benchmark --since 1h), then one job by its id.
    _time(out, "search", lambda: app.jobs(
        task="noop_" + queue, state="failed", error="benchmark",
        since=now - 3600), repeat)
    _time(out, "search_id", lambda: app.jobs(id_prefix="%032x" % (
        count // 2)), repeat)
    _time(out, "search_task", lambda: app.jobs(task="noop_" + queue), repeat)
    time_api_queues(out, app, repeat)
    return out


# ------------------------------------------------------------ plots

def plot(path: str, folder: str) -> "list[str]":
    """PNGs of a saved run's scale rows (``python -m benchmarks.scale plot
    RUN.json FOLDER``): each figure against pending depth, with the
    +-20 % band around the first depth's figure; bytes per pending job beside
    the peers'; the store reads against their limits."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from benchmarks.report import _groups, _med
    with open(path) as fh:
        saved = json.load(fh)
    import textwrap
    rows = saved["rows"]
    command = "\n".join(textwrap.wrap(saved["meta"].get("command", ""), 90))
    groups = _groups(rows)
    os.makedirs(folder, exist_ok=True)
    written = []
    colors = {"sqlite": "tab:blue", "redis": "tab:red"}
    panels = [("one_rate", "enqueue one at a time (jobs/s)"),
              ("lease_p50_ms", "lease + ack p50 (ms)"),
              ("lease_p99_ms", "lease + ack p99 (ms)"),
              ("drain_rate", "drain by hueyq run, 4 threads (jobs/s)"),
              ("one_cpu_us", "producer CPU per enqueue (us)"),
              ("bytes_per_job", "bytes per pending job")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    if not any(r["workload"] == "scale" for r in rows):
        axes = []
    for ax, (key, title) in zip(getattr(axes, "flat", []), panels):
        for backend, color in colors.items():
            points = sorted((_med(g, "depth"), _med(g, key))
                            for (w, _, b), g in groups.items()
                            if w == "scale" and b == backend
                            and _med(g, key) is not None)
            if not points:
                continue
            xs, ys = zip(*points)
            ax.plot(xs, ys, "o-", color=color, label=backend)
            ax.axhspan(ys[0] * (1 - DRIFT), ys[0] * (1 + DRIFT), color=color,
                       alpha=0.12)
            for x, y in points:
                ax.annotate("%.3g" % y, (x, y), textcoords="offset points",
                            xytext=(0, 6), ha="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_ylim(bottom=0)
        ax.set_xlabel("jobs pending on the queue")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("hueyq at pending depth (band: +-20 %% of the first depth)"
                 "\n%s" % command, fontsize=10)
    fig.tight_layout()
    if len(axes):
        written.append(os.path.join(folder, "scale_depth.png"))
        fig.savefig(written[-1], dpi=90)
    plt.close(fig)

    bars = []
    for backend in ("sqlite", "redis"):
        deepest = [(g[0]["depth"], _med(g, "bytes_per_job"))
                   for (w, _, b), g in groups.items()
                   if w == "scale" and b == backend and g[0].get("depth")
                   and _med(g, "bytes_per_job")]
        if deepest:
            d, value = max(deepest)
            bars.append(("hueyq %s\n(%s pending)" % (backend, "{:,}".format(
                d)), value, colors[backend]))
    for (w, system, b), g in groups.items():
        if w == "scale_bytes" and _med(g, "bytes_per_job"):
            bars.append(("%s %s\n(%s pending)" % (system, b, "{:,}".format(
                int(_med(g, "jobs")))), _med(g, "bytes_per_job"), "tab:gray"))
    if bars:
        fig, ax = plt.subplots(figsize=(max(7, 1.5 * len(bars)), 5))
        labels, values, shades = zip(*bars)
        ax.bar(range(len(bars)), values, color=shades)
        ax.set_xticks(range(len(bars)), labels, fontsize=8)
        for i, v in enumerate(values):
            ax.annotate("%.0f" % v, (i, v), textcoords="offset points",
                        xytext=(0, 3), ha="center", fontsize=9)
        ax.set_ylabel("bytes per pending no-op (SQLite file / Redis "
                      "used_memory)")
        ax.set_title("Footprint of a pending no-op job", fontsize=10)
        fig.tight_layout()
        written.append(os.path.join(folder, "scale_bytes.png"))
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)

    reads = [("queue_stats_ms", "queue_stats()"),
             ("jobs_failed_ms", "jobs(state='failed')"),
             ("search_ms", "search: task, failed, error, since 1h"),
             ("search_id_ms", "by id"), ("search_task_ms", "by task"),
             ("api_queues_ms", "GET /api/queues")]
    stores = [(s, k) for s, k in (("hueyq:sqlite", "sqlite"),
                                  ("hueyq:postgresql", "postgresql"))
              if any(r.get("levels") for r in
                     groups.get(("scale_store", s, "sqlite"), []))]
    if stores:
        fig, axes = plt.subplots(1, len(stores), figsize=(7 * len(stores),
                                                          5.5), squeeze=False)
        for ax, (system, kind) in zip(axes[0], stores):
            g = groups[("scale_store", system, "sqlite")]
            levels = next(r["levels"] for r in g if r.get("levels"))
            for key, label in reads:
                points = [(n, _med(g, "%d_%s" % (n, key))) for n in levels]
                points = [(n, v) for n, v in points if v is not None]
                if not points:
                    continue
                xs, ys = zip(*points)
                ax.plot(xs, ys, "o-", label=label)
                ax.annotate("%.3g" % ys[-1], (xs[-1], ys[-1]),
                            textcoords="offset points", xytext=(4, 0),
                            fontsize=8)
            ax.axhline(STORE_MS[kind], color="black", linestyle="--",
                       linewidth=1, label="limit %.0f ms" % STORE_MS[kind])
            ax.set_xscale("log")
            ax.set_ylim(bottom=0)
            ax.set_xlabel("jobs in the store (spread over 7 days)")
            ax.set_ylabel("ms, median of 5")
            ax.set_title("%s store" % kind, fontsize=10)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.suptitle("Store reads against store size\n%s" % command,
                     fontsize=10)
        fig.tight_layout()
        written.append(os.path.join(folder, "scale_store.png"))
        fig.savefig(written[-1], dpi=90)
        plt.close(fig)
    return written


def main(argv: "list[str]") -> int:
    if argv[0] == "plot":
        for name in plot(argv[1], argv[2]):
            sys.stdout.write(name + "\n")
        return 0
    result = globals()[argv[0]](**json.loads(argv[1]))
    sys.stdout.write("RESULT %s\n" % json.dumps(result))
    sys.stdout.flush()
    return 0


# ------------------------------------------------------------ report side

def targets(rows: "list[dict]", backends: "list[str]") -> "list[tuple]":
    """(target, backend, value, met) of the scale workload."""
    from benchmarks.report import _groups, _med
    out = []
    groups = _groups(rows)
    for b in backends:
        depths = sorted({r["depth"] for r in rows if r["workload"] == "scale"
                         and r["backend"] == b and r.get("depth")})
        for d in depths[1:]:
            group = groups.get(("scale", "hueyq@%d" % d, b), [])
            for key, label, worse in (
                    ("one_rate", "enqueue one at a time", "lower"),
                    ("lease_p50_ms", "lease+ack p50", "higher"),
                    ("lease_p99_ms", "lease+ack p99", "higher"),
                    ("drain_rate", "drain (steady)", "higher rate")):
                ratio = _med(group, key + "_ratio")
                if ratio is None:
                    continue
                ok = ratio >= 1 - DRIFT if key.endswith("rate") else \
                    ratio <= 1 + DRIFT
                out.append(("scale: %s at %s pending within 20%% of %s"
                            % (label, "{:,}".format(d),
                               "{:,}".format(depths[0])), b,
                            "%.2fx" % ratio, "met" if ok else "MISSED"))
    for system, kind in (("hueyq:sqlite", "sqlite"),
                         ("hueyq:postgresql", "postgresql")):
        group = groups.get(("scale_store", system, "sqlite"), [])
        jobs = _med(group, "jobs")
        limit = STORE_MS[kind]
        for key, label in (("queue_stats_ms", "queue_stats()"),
                           ("jobs_failed_ms", "jobs(state='failed')"),
                           ("search_ms", "search (task, failed, error, "
                            "since)"), ("search_id_ms", "search by id"),
                           ("api_queues_ms", "/api/queues")):
            value = _med(group, key)
            if value is not None:
                out.append(("scale store of {:,} jobs ({}): {} < {:.0f} ms"
                            .format(int(jobs), kind, label, limit), "-",
                            "%.1f ms" % value,
                            "met" if value < limit else "MISSED"))
    return out


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
