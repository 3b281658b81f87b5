"""Tables, ratios and targets from the rows of a run.

Figures are medians over repeats. Ratios are computed inside each repeat
(both sides measured in the same run, minutes apart) and then the median of
the per-repeat ratios is printed, since absolute figures drift between runs.
"""

import json

from benchmarks.harness import median

#: Figures shown per workload, in order: (key, header, format).
COLUMNS = {
    "drain": [("rate", "tasks/s", "%.0f"), ("steady_rate", "steady/s", "%.0f"),
              ("startup_s", "startup s", "%.2f"),
              ("enqueue_rate", "enqueue/s", "%.0f"),
              ("cpu_ms_per_task", "CPU ms/task", "%.3f"),
              ("redis_ms_per_task", "Redis CPU ms/task", "%.3f"),
              ("tasks", "done", "%d")],
    "latency": [("p50_ms", "p50 ms", "%.2f"), ("p99_ms", "p99 ms", "%.2f"),
                ("max_ms", "max ms", "%.1f"),
                ("enqueue_p50_ms", "enqueue call p50 ms", "%.2f"),
                ("enqueue_p99_ms", "enqueue call p99 ms", "%.2f"),
                ("dispatch_p50_ms", "after-enqueue p50 ms", "%.2f"),
                ("dispatch_p99_ms", "after-enqueue p99 ms", "%.2f"),
                ("idle_cpu_pct", "idle CPU %", "%.2f"),
                ("redis_cpu_pct", "Redis CPU %", "%.2f"),
                ("samples", "samples", "%d")],
    "priority": [("p50_ms", "high p50 ms", "%.2f"),
                 ("p99_ms", "high p99 ms", "%.2f"),
                 ("max_ms", "high max ms", "%.1f"),
                 ("backlog_left", "low left", "%d")],
    "crash": [("tasks", "tasks", "%d"), ("done_at_kill", "done at kill", "%d"),
              ("killed_pids", "pids killed", "%d"), ("lost", "lost", "%d"),
              ("duplicated", "duplicated", "%d")],
    "memory": [("idle_pss_mb", "idle PSS MB", "%.1f"),
               ("after_pss_mb", "after PSS MB", "%.1f"),
               ("idle_rss_mb", "idle RSS MB", "%.1f"),
               ("processes", "processes", "%d")],
    "store": [("jobs", "jobs", "%d"), ("write_rate", "writes/s", "%.0f"),
              ("queue_stats_ms", "queue_stats ms", "%.1f"),
              ("jobs_failed_ms", "jobs(failed) ms", "%.1f"),
              ("api_queues_ms", "/api/queues ms", "%.1f")],
    "batch": [("texts", "texts", "%d"), ("rate", "texts/s", "%.1f"),
              ("gain", "gain", "%.2fx")],
    "calls": [("enqueue_calls", "enqueue cmds/job", "%.2f"),
              ("enqueue_script_calls", "in scripts/job", "%.2f"),
              ("drain_calls", "drain cmds/job", "%.2f"),
              ("script_calls", "in scripts/job", "%.2f"),
              ("idle_calls_per_s", "idle cmds/s", "%.1f"),
              ("top", "most sent per job", "%s"),
              ("script_top", "most run in scripts per job", "%s")],
    "enqueue": [("jobs", "jobs", "%d"), ("rate", "jobs/s", "%.0f"),
                ("cpu_us_per_job", "producer CPU us/job", "%.1f"),
                ("stored", "stored", "%d")],
    "async": [("tasks", "tasks", "%d"), ("seconds", "seconds", "%.2f"),
              ("enqueue_s", "of which enqueue s", "%.2f"),
              ("rate", "tasks/s", "%.0f"), ("in_flight", "most at once", "%d"),
              ("threads", "threads", "%d"),
              ("idle_pss_mb", "idle PSS MB", "%.1f"),
              ("peak_pss_mb", "peak PSS MB", "%.1f"),
              ("kb_per_in_flight", "KiB per in-flight task", "%.1f")],
    "stream": [("p50_ms", "emit-to-SSE p50 ms", "%.2f"),
               ("p99_ms", "emit-to-SSE p99 ms", "%.2f"),
               ("max_ms", "max ms", "%.1f"), ("chunks", "chunks", "%d"),
               ("dropped", "dropped", "%d")],
    "scale": [("depth", "pending", "%d"), ("fill_rate", "fill jobs/s", "%.0f"),
              ("one_rate", "enqueue/s", "%.0f"),
              ("one_rate_ratio", "vs first", "%.2f"),
              ("one_cpu_us", "CPU us/enqueue", "%.0f"),
              ("lease_p50_ms", "lease+ack p50 ms", "%.2f"),
              ("lease_p99_ms", "lease+ack p99 ms", "%.2f"),
              ("lease_p99_ms_ratio", "vs first", "%.2f"),
              ("lease_cpu_us", "CPU us/lease", "%.0f"),
              ("lease_redis_cpu_us", "Redis CPU us/lease", "%.0f"),
              ("drain_rate", "drain/s", "%.0f"),
              ("drain_rate_ratio", "vs first", "%.2f"),
              ("drain_startup_s", "first job s", "%.2f"),
              ("bytes_per_job", "bytes/job", "%.0f")],
    "scale_bytes": [("jobs", "jobs", "%d"), ("rate", "enqueue/s", "%.0f"),
                    ("bytes_per_job", "bytes/job", "%.0f")],
    "scale_store": [("jobs", "jobs", "%d"), ("fill_rate", "rows/s", "%.0f"),
                    ("bytes_per_row", "bytes/row", "%.0f"),
                    ("queue_stats_ms", "queue_stats ms", "%.1f"),
                    ("jobs_failed_ms", "jobs(failed) ms", "%.1f"),
                    ("search_ms", "search ms", "%.1f"),
                    ("search_id_ms", "by id ms", "%.1f"),
                    ("search_task_ms", "by task ms", "%.1f"),
                    ("api_queues_ms", "/api/queues ms", "%.1f")],
}
#: The async workload's target: its tasks done within this many seconds.
ASYNC_TARGET_S = 5.0
#: Bulk enqueue targets, jobs/s of one task.map call (issue 22).
BULK_TARGETS = {"sqlite": 50_000, "redis": 30_000}
#: Idle latency targets, p50 ms, per backend.
P50_TARGETS_MS = {"sqlite": 2.0, "redis": 1.5, "postgres": 2.0}


def _fmt(value, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt % value
    except TypeError:
        return str(value)


def _note(row: dict) -> str:
    text = row.get("error") or row.get("skipped") or \
        row.get("api_queues_skipped") or ""
    text = text.strip().splitlines()[0] if text.strip() else ""
    return text if len(text) <= 100 else text[:99] + "\u2026"


def _groups(rows: "list[dict]") -> dict:
    out: dict = {}
    for row in rows:
        key = (row["workload"], row["system"], row["backend"])
        out.setdefault(key, []).append(row)
    return out


def _med(rows: "list[dict]", key: str):
    values = [r.get(key) for r in rows if isinstance(r.get(key), (int, float))
              and not isinstance(r.get(key), bool)]
    if not values:
        # A text figure (the commands a job sends most): the first repeat's.
        texts = [r[key] for r in rows if isinstance(r.get(key), str)]
        return texts[0] if texts else None
    return median(values)


def tables(rows: "list[dict]") -> str:
    """One markdown table per workload."""
    lines = []
    groups = _groups(rows)
    for workload, columns in COLUMNS.items():
        keys = [k for k in groups if k[0] == workload]
        if not keys:
            continue
        lines.append("\n### %s\n" % workload)
        lines.append("| system | backend | " + " | ".join(
            c[1] for c in columns) + " | note |")
        lines.append("|---|---|" + "---|" * (len(columns) + 1))
        for key in keys:
            group = groups[key]
            notes = sorted({_note(r) for r in group} - {""})
            cells = [_fmt(_med(group, c[0]), c[2]) for c in columns]
            lines.append("| %s | %s | %s | %s |" % (
                key[1], key[2], " | ".join(cells), "; ".join(notes)))
    return "\n".join(lines)


def _by_repeat(rows, workload, system, backend, key):
    return {r["repeat"]: r.get(key) for r in rows
            if r["workload"] == workload and r["system"] == system
            and r["backend"] == backend and not r.get("error")
            and r.get(key) is not None}


def _ratio(a: dict, b: dict):
    values = [a[r] / b[r] for r in a if r in b and b[r]]
    return median(values) if values else None


def _best_peer(rows, workload, key, best=max) -> dict:
    out = {}
    for r in rows:
        if r["workload"] == workload and r["system"] in ("celery", "rq",
                                                         "dramatiq") \
                and not r.get("error") and r.get(key) is not None:
            rep = r["repeat"]
            out[rep] = best(out[rep], r[key]) if rep in out else r[key]
    return out


def ratios(rows: "list[dict]", backends: "list[str]") -> "list[tuple]":
    """(name, backend, median ratio) for every ratio this run can give."""
    out = []
    for b in backends:
        rate = lambda s: _by_repeat(rows, "drain", s, b, "rate")  # noqa
        steady = lambda s: _by_repeat(rows, "drain", s, b,  # noqa
                                      "steady_rate")
        out += [
            ("drain hueyq / huey (tasks/s from start)", b,
             _ratio(rate("hueyq"), rate("huey"))),
            ("drain hueyq / huey (steady tasks/s)", b,
             _ratio(steady("hueyq"), steady("huey"))),
            ("drain hueyq / hueyq without leases (lease cost)", b,
             _ratio(rate("hueyq"), rate("hueyq-nolease"))),
            ("drain hueyq 4 queues / huey", b,
             _ratio(rate("hueyq-4q"), rate("huey"))),
            ("drain hueyq / best peer", b,
             _ratio(rate("hueyq"), _best_peer(rows, "drain", "rate"))),
            ("drain hueyq 4 queues / best peer (tasks/s from start)", b,
             _ratio(rate("hueyq-4q"), _best_peer(rows, "drain", "rate"))),
            ("drain hueyq 4 queues / best peer (steady tasks/s)", b,
             _ratio(steady("hueyq-4q"),
                    _best_peer(rows, "drain", "steady_rate"))),
            ("drain enqueue hueyq / huey", b,
             _ratio(_by_repeat(rows, "drain", "hueyq", b, "enqueue_rate"),
                    _by_repeat(rows, "drain", "huey", b, "enqueue_rate"))),
            ("idle latency p50 hueyq / huey", b,
             _ratio(_by_repeat(rows, "latency", "hueyq", b, "p50_ms"),
                    _by_repeat(rows, "latency", "huey", b, "p50_ms"))),
            ("idle latency p50 hueyq / best peer", b,
             _ratio(_by_repeat(rows, "latency", "hueyq", b, "p50_ms"),
                    _best_peer(rows, "latency", "p50_ms", min))),
            ("priority high p99 hueyq / huey", b,
             _ratio(_by_repeat(rows, "priority", "hueyq", b, "p99_ms"),
                    _by_repeat(rows, "priority", "huey", b, "p99_ms"))),
        ] + _enqueue_ratios(rows, b)
        if b == "postgres":
            out.append(("drain hueyq on PostgreSQL / hueyq on Redis", b,
                        _ratio(rate("hueyq"), _by_repeat(
                            rows, "drain", "hueyq", "redis", "rate"))))
    return [r for r in out if r[2] is not None]


def _enqueue_ratios(rows: "list[dict]", b: str) -> "list[tuple]":
    rate = lambda s: _by_repeat(rows, "enqueue", s, b, "rate")  # noqa
    return [
        ("enqueue one at a time hueyq / huey with its defaults", b,
         _ratio(rate("hueyq"), rate("huey-defaults"))),
        ("enqueue one at a time hueyq / huey as the drain configures it", b,
         _ratio(rate("hueyq"), rate("huey"))),
        ("enqueue bulk (task.map) / one at a time, hueyq", b,
         _ratio(rate("hueyq-bulk"), rate("hueyq"))),
    ]


def targets(rows: "list[dict]", backends: "list[str]") -> "list[tuple]":
    """(target, backend, value, met) for each target the run measured."""
    out = []
    groups = _groups(rows)

    def med(workload, system, backend, key):
        return _med(groups.get((workload, system, backend), []), key)

    def check(name, backend, value, ok, fmt="%.2f"):
        if value is not None:
            out.append((name, backend, fmt % value, "met" if ok(value)
                        else "MISSED"))
    for b in backends:
        tasks = med("async", "hueyq-async", b, "tasks") or 0
        check("{:,} async tasks awaiting 0.5 s each, done in < {:g} s on "
              "one process".format(int(tasks), ASYNC_TARGET_S), b,
              med("async", "hueyq-async", b, "seconds"),
              lambda v: v < ASYNC_TARGET_S, "%.2f s")
        check("enqueue one at a time >= 0.9x huey with its defaults", b,
              _ratio(_by_repeat(rows, "enqueue", "hueyq", b, "rate"),
                     _by_repeat(rows, "enqueue", "huey-defaults", b, "rate")),
              lambda v: v >= 0.9, "%.2fx")
        jobs = med("enqueue", "hueyq-bulk", b, "jobs") or 0
        if b in BULK_TARGETS:
            check("bulk enqueue of {:,} jobs >= {:,} jobs/s".format(
                int(jobs), BULK_TARGETS[b]), b,
                med("enqueue", "hueyq-bulk", b, "rate"),
                lambda v: v >= BULK_TARGETS[b], "%.0f")
        if b == "postgres":
            check("drain hueyq >= 0.8x hueyq on Redis (4 thread workers)",
                  b, _ratio(_by_repeat(rows, "drain", "hueyq", b, "rate"),
                            _by_repeat(rows, "drain", "hueyq", "redis",
                                       "rate")),
                  lambda v: v >= 0.8, "%.2fx")
        huey_ratio = _ratio(_by_repeat(rows, "drain", "hueyq", b, "rate"),
                            _by_repeat(rows, "drain", "huey", b, "rate"))
        check("drain hueyq >= 0.9x plain huey", b, huey_ratio,
              lambda v: v >= 0.9, "%.2fx")
        for key, label in (("rate", "from start"), ("steady_rate", "steady")):
            check("drain hueyq 4 queues > best peer (%s)" % label, b,
                  _ratio(_by_repeat(rows, "drain", "hueyq-4q", b, key),
                         _best_peer(rows, "drain", key)),
                  lambda v: v > 1.0, "%.2fx")
        p50 = med("latency", "hueyq", b, "p50_ms")
        bound = P50_TARGETS_MS[b]
        check("idle latency p50 <= %g ms" % bound, b, p50,
              lambda v: v <= bound)
        if b == "sqlite":
            check("idle latency p99 <= 10 ms", b,
                  med("latency", "hueyq", b, "p99_ms"), lambda v: v <= 10)
        check("idle runtime CPU < 1% of a core", b,
              med("latency", "hueyq", b, "idle_cpu_pct"), lambda v: v < 1.0)
        check("priority high p99 <= 10 ms", b,
              med("priority", "hueyq", b, "p99_ms"), lambda v: v <= 10)
        check("stream emit-to-SSE p50 < 5 ms", b,
              med("stream", "hueyq", b, "p50_ms"), lambda v: v < 5)
        check("stream emit-to-SSE p99 < 20 ms", b,
              med("stream", "hueyq", b, "p99_ms"), lambda v: v < 20)
        for system in ("hueyq", "hueyq-process"):
            check("crash: 0 lost (%s)" % system, b,
                  med("crash", system, b, "lost"), lambda v: v == 0, "%d")
        for label, what in (("jetson-core", "plain install"),
                            ("jetson", "redis, postgres, crypto extras "
                             "installed")):
            check("idle jetson runtime < 140 MB PSS (%s, hueyq:%s)"
                  % (what, label), b,
                  med("memory", "hueyq:" + label, b, "idle_pss_mb"),
                  lambda v: v < 140, "%.1f MB")
        for key, label in (("queue_stats_ms", "queue_stats()"),
                           ("jobs_failed_ms", "jobs(state='failed')"),
                           ("api_queues_ms", "/api/queues")):
            for system, store in (("hueyq", "SQLite"),
                                  ("hueyq:postgresql", "PostgreSQL")):
                check("store at scale (%s store): %s < 50 ms" % (store, label),
                      b, med("store", system, b, key), lambda v: v < 50,
                      "%.1f ms")
    from benchmarks import scale
    return out + scale.targets(rows, backends)


def render(rows: "list[dict]", backends: "list[str]", command: str,
           where: str = "") -> str:
    """The whole report as markdown."""
    lines = ["## Results", "", "Command: `%s`" % command, "", where]
    lines.append(tables(rows))
    details = {}
    for r in rows:
        if r.get("breakdown"):
            details.setdefault(r["system"], r["breakdown"])
    if details:
        lines += ["", "Idle PSS by process, MB (first repeat; a queue's "
                  "consumer, then its forked children: huey's scheduler "
                  "process and the process workers):", ""]
        lines += ["- %s: %s" % d for d in sorted(details.items())]
    found = ratios(rows, backends)
    if found:
        lines += ["", "### Ratios (median of per-repeat ratios)", "",
                  "| ratio | backend | value |", "|---|---|---|"]
        lines += ["| %s | %s | %.2f |" % r for r in found]
    checked = targets(rows, backends)
    if checked:
        lines += ["", "### Targets", "", "| target | backend | value | |",
                  "|---|---|---|---|"]
        lines += ["| %s | %s | %s | %s |" % t for t in checked]
    return "\n".join(lines) + "\n"


def save(path: str, rows: "list[dict]", meta: dict) -> None:
    with open(path, "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=1, default=str)
