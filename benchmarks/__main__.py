"""``python -m benchmarks run --backend sqlite,redis,postgres|all --workload
NAME|all [--repeat N] [--quick] [--peers celery,rq,dramatiq|none] [--pg URL]
[--json PATH]``

Starts a private redis-server (``--save '' --appendonly no``) in a temporary
directory, runs the chosen workloads ``--repeat`` times (hueyq and plain huey
on each chosen backend, PostgreSQL in a database per trial on ``--pg``'s
server; the peers once per repeat, on that Redis), prints
markdown tables, ratios and targets, and stops every process it started,
whatever happens (try/finally; SIGINT and SIGTERM end the run cleanly).
"""

import argparse
import datetime
import logging
import os
import platform
import shutil
import signal
import sys
import tempfile
import time

from benchmarks import profiling, report
from benchmarks import harness
from benchmarks.harness import BenchError, Processes, RedisServer
from benchmarks.workloads import (PEER_WORKLOADS, PEERS, PG_WORKLOADS,
                                  WORKLOADS)

#: The backends a run can measure hueyq on (``all``: each of them).
BACKENDS = ("sqlite", "redis", "postgres")

logger = logging.getLogger("benchmarks")

#: Sizes of a full run (the issue's figures).
FULL = {"drain": 10_000, "latency": 300, "idle_cpu": 30.0, "low": 2_000,
        "high": 40, "crash": 500, "crash_quiet": 10.0, "memory_tasks": 10_000,
        "store": 100_000, "batch": 1_000, "settle": 1.0, "mem_settle": 3.0,
        "stop_grace": 15.0, "enqueue_one": 10_000, "enqueue_bulk": 100_000,
        "calls": 2_000,
        "async_tasks": 1_000, "async_wait": 0.5, "async_threads": 100,
        "stream": 500,
        "scale_depths": (1_000, 100_000, 1_000_000),
        "scale_one": 2_000, "scale_lease": 1_000, "scale_drain": 2_000,
        "scale_peer": 20_000, "scale_store": (100_000, 1_000_000, 10_000_000)}
#: Sizes of ``--quick``: every workload, small, for a smoke run.
QUICK = {"drain": 300, "latency": 20, "idle_cpu": 2.0, "low": 300,
         "high": 8, "crash": 60, "crash_quiet": 3.0, "memory_tasks": 200,
         "store": 5_000, "batch": 64, "settle": 0.3, "mem_settle": 0.5,
         "stop_grace": 1.5, "enqueue_one": 300, "enqueue_bulk": 2_000,
         "calls": 200,
         "async_tasks": 200, "async_wait": 0.5, "async_threads": 20,
         "stream": 30,
         "scale_depths": (1_000, 20_000), "scale_one": 300,
         "scale_lease": 300, "scale_drain": 300, "scale_peer": 1_000,
         "scale_store": (5_000, 50_000)}


class Bench:
    """What every workload of one run shares."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.processes = Processes()
        self.workdir = tempfile.mkdtemp(prefix="hueyq-bench-")
        harness._IMPORT_PATH[:] = [harness.import_path(self.workdir)]
        self.rows: "list[dict]" = []
        self.repeat = 0
        self.sizes = dict(QUICK if args.quick else FULL)
        #: --quick: the main comparison of each workload only.
        self.quick = args.quick
        self.keep = args.keep
        #: The PostgreSQL server for the store workload's PostgreSQL store
        #: and the postgres backend (a database per trial); None: none.
        self.pg_server = None if args.pg in (None, "", "none") else args.pg
        self.peers = [] if args.peers == "none" else [
            p for p in args.peers.split(",") if p in PEERS]
        self.redis = RedisServer(self.processes,
                                 os.path.join(self.workdir, "redis"))


def info(bench: Bench) -> dict:
    """What the installed hueyq offers (asked in a child process, so this
    one never imports hueyq)."""
    from benchmarks.systems import Trial
    trial = Trial(bench, "hueyq", "sqlite", "info")
    try:
        return trial.produce("info", timeout=120)
    finally:
        if not bench.keep:
            shutil.rmtree(trial.dir, ignore_errors=True)


def _reachable(bench: Bench, backends: "list[str]",
               workloads: "list[str]") -> "list[str]":
    """``backends`` less postgres when there is no PostgreSQL server to
    make databases on (its rows then say why)."""
    if "postgres" not in backends:
        return backends
    reason = "--pg none" if bench.pg_server is None else None
    if reason is None:
        try:
            harness.drop_pg_database(bench.pg_server, harness.create_pg_database(
                bench.pg_server, "_probe"))
        except BenchError as exc:
            reason = str(exc)
    if reason is None:
        return backends
    logger.warning("not benchmarking the postgres backend: %s", reason)
    for workload in workloads:
        if workload in PG_WORKLOADS:
            bench.rows.append({"workload": workload, "backend": "postgres",
                               "system": "hueyq", "skipped": reason,
                               "repeat": 0})
    return [b for b in backends if b != "postgres"]


def _stop_on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def run(args: argparse.Namespace) -> int:
    if args.backend is None:
        args.backend = "sqlite" if args.quick else "all"
    backends = list(BACKENDS) if args.backend == "all" else \
        args.backend.split(",")
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        sys.exit("unknown backend %s (choose from %s, all)"
                 % (", ".join(unknown), ", ".join(BACKENDS)))
    workloads = list(WORKLOADS) if args.workload == "all" else \
        args.workload.split(",")
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        sys.exit("unknown workload %s (choose from %s, all)"
                 % (", ".join(unknown), ", ".join(WORKLOADS)))
    if args.peers is None:
        args.peers = "dramatiq" if args.quick else ",".join(PEERS)
    bench = Bench(args)
    signal.signal(signal.SIGTERM, _stop_on_signal)
    command = "python -m benchmarks " + " ".join(sys.argv[1:])
    rows = bench.rows
    started = time.monotonic()
    logger.info("work directory %s", bench.workdir)
    try:
        bench.redis.start()
        bench.info = info(bench)
        backends = _reachable(bench, backends, workloads)
        for repeat in range(args.repeat):
            bench.repeat = repeat
            for workload in workloads:
                for backend in backends:
                    if backend != "postgres" or workload in PG_WORKLOADS:
                        WORKLOADS[workload](bench, backend)
                if workload in PEER_WORKLOADS and bench.peers:
                    PEER_WORKLOADS[workload](bench)
    except KeyboardInterrupt:
        logger.warning("interrupted: stopping every process and reporting "
                       "what was measured")
    finally:
        bench.processes.stop_all()
        if not bench.keep:
            shutil.rmtree(bench.workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    found = getattr(bench, "info", None) or {}
    text = report.render(rows, backends, command, "hueyq %s (%s), Python %s, "
                         "%s CPUs" % (found.get("version", "?"),
                                      found.get("file", "?"),
                                      sys.version.split()[0], os.cpu_count()))
    sys.stdout.write(text)
    sys.stdout.write("\n(%d rows in %.0f s)\n" % (len(rows), elapsed))
    path = args.json or os.path.join(tempfile.gettempdir(), "hueyq-bench-%s"
                                     ".json" % datetime.datetime.now()
                                     .strftime("%Y%m%d-%H%M%S"))
    report.save(path, rows, {"command": command, "elapsed_s": elapsed,
                             "quick": args.quick, "repeat": args.repeat,
                             "python": sys.version.split()[0],
                             "machine": platform.platform(),
                             "hueyq": found,
                             "cpus": os.cpu_count()})
    sys.stdout.write("raw rows: %s\n" % path)
    return 1 if any(r.get("error") for r in rows) else 0


def rerender(files: "list[str]") -> int:
    """Print the report of rows saved by earlier runs (their repeats are
    renumbered so several files merge as repeats of one run)."""
    import json
    rows, commands, where = [], [], ""
    for index, path in enumerate(files):
        with open(path) as fh:
            saved = json.load(fh)
        offset = 1000 * index
        rows += [dict(r, repeat=r.get("repeat", 0) + offset)
                 for r in saved["rows"]]
        commands.append(saved["meta"].get("command", "?"))
        found = saved["meta"].get("hueyq") or {}
        where = "hueyq %s (%s)" % (found.get("version", "?"),
                                   found.get("file", "?"))
    backends = [b for b in BACKENDS if any(r["backend"] == b for r in rows)]
    sys.stdout.write(report.render(rows, backends, " + ".join(
        dict.fromkeys(commands)), where))
    return 0


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    cmd = sub.add_parser("run", help="run workloads and print the results")
    cmd.add_argument("--backend",
                     help="sqlite, redis, postgres, a comma-separated list, "
                     "or all (default: all; --quick: sqlite)")
    cmd.add_argument("--workload", default="all",
                     help="%s, a comma-separated list, or all"
                     % ", ".join(WORKLOADS))
    cmd.add_argument("--repeat", type=int, default=1,
                     help="repeat the whole set; medians are reported")
    cmd.add_argument("--quick", action="store_true",
                     help="tiny sizes, main comparisons only: a smoke run of "
                     "every workload in under a minute")
    cmd.add_argument("--peers",
                     help="peers to compare with: a comma-separated subset of "
                     "celery,rq,dramatiq, or none (default: all three; "
                     "--quick: dramatiq)")
    cmd.add_argument("--pg", "--pg-store", dest="pg", metavar="URL",
                     default=os.environ.get("HUEYQ_BENCH_PG",
                                            harness.PG_SERVER),
                     help="a PostgreSQL server on which the postgres backend "
                     "(a database per trial) and the store workload's "
                     "PostgreSQL store create and drop databases of their "
                     "own; 'none' to skip both (default: $HUEYQ_BENCH_PG or "
                     "the local server)")
    cmd.add_argument("--json", help="write the raw rows here")
    cmd.add_argument("--keep", action="store_true",
                     help="keep the work directory (logs, databases)")
    cmd.add_argument("-v", "--verbose", action="store_true")
    again = sub.add_parser("report", help="print the report of saved rows "
                           "(--json files of earlier runs, merged)")
    again.add_argument("files", nargs="+")
    profiling.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False)
                        else logging.INFO,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    if args.command == "profile":
        return profiling.run(args)
    if args.command == "report":
        return rerender(args.files)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
