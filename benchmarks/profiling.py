"""``python -m benchmarks profile``: one workload under py-spy.

Runs hueyq (or plain huey) for one workload with ``py-spy record
--subprocesses`` wrapped around the runtime (py-spy launches it, so no ptrace
attach is needed), stops it gracefully so py-spy writes its samples, and
prints where the CPU went: self time by function and inclusive time by
function, over every process of the runtime. The raw collapsed stacks stay in
``--out`` (``flamegraph.pl`` or speedscope read them).

Workloads: ``drain`` (N no-ops enqueued first), ``latency`` (probes one at a
time), ``idle`` (nothing to do, for the idle CPU).
"""

import argparse
import collections
import os
import re
import shutil
import signal
import sys
import tempfile
import time

from benchmarks import harness
from benchmarks.harness import BenchError, Processes, RedisServer, tool
from benchmarks.systems import Trial, setup_huey, setup_hueyq

WORKERS = 4


class _Bench:
    def __init__(self, out: str) -> None:
        self.processes = Processes()
        self.workdir = tempfile.mkdtemp(prefix="trials-", dir=out)
        self.keep = True
        self.redis = RedisServer(self.processes, os.path.join(out, "redis"))
        self.pg_server = os.environ.get("HUEYQ_BENCH_PG", harness.PG_SERVER)


def summarize(path: str, top: int = 25) -> str:
    """Self and inclusive time per function from py-spy's raw output."""
    own, incl = collections.Counter(), collections.Counter()
    total = 0
    with open(path) as fh:
        text = fh.read()
    # A stack ends with its count; a process's name in it may hold newlines
    # (a child started with ``python -c`` and a script of several lines).
    for stack, count in re.findall(r"(.+?) (\d+)$", text, re.M | re.S):
        n = int(count)
        total += n
        frames = [f for f in stack.strip().split(";") if f]
        if frames:
            own[_short(frames[-1])] += n
        for name in {_short(f) for f in frames}:
            incl[name] += n
    lines = ["%d samples" % total, "", "self time:"]
    lines += ["  %5.1f%%  %s" % (100.0 * n / total, f)
              for f, n in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += ["  %5.1f%%  %s" % (100.0 * n / total, f)
              for f, n in incl.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)" so lines merge.
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return "%s (%s)" % (name, short) if where else name


def run(args: argparse.Namespace) -> int:
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    bench = _Bench(out)
    harness._IMPORT_PATH[:] = [harness.import_path(out)]
    raw = os.path.join(out, "%s-%s-%s%s.txt" % (
        args.system, args.workload, args.backend, "-idle" if args.idle
        else ""))
    trial = None
    try:
        bench.redis.start()
        trial = Trial(bench, args.system, args.backend, "profile")
        if args.system == "hueyq":
            setup_hueyq(trial, {"high": {"workers": WORKERS,
                                         "worker_type": "thread"}}, ["high"])
        else:
            setup_huey(trial, {"high": WORKERS})
        trial.commands = [[tool("py-spy"), "record", "--subprocesses", "-r",
                           str(args.rate), "-f", "raw", "-o", raw]
                          + (["--idle"] if args.idle else []) + ["--"]
                          + trial.commands[0]]
        _workload(args, trial)
        _stop_profiled(trial)
    except BenchError as exc:
        print("profile failed: %s" % exc, file=sys.stderr)
        return 1
    finally:
        bench.processes.stop_all()
        if trial is not None and trial.pg_url:
            harness.drop_pg_database(bench.pg_server, trial.pg_url)
        shutil.rmtree(os.path.join(out, "redis"), ignore_errors=True)
    if not os.path.exists(raw):
        print("py-spy wrote nothing; see %s" % bench.workdir, file=sys.stderr)
        return 1
    print(summarize(raw, args.top))
    print("\nraw stacks: %s" % raw)
    return 0


def _workload(args, trial: Trial) -> None:
    if args.workload == "drain":
        trial.produce("enqueue", kind="noop", count=args.count,
                      queues=["high"])
        trial.start()
        if not trial.completions.wait(args.count, 300, alive=trial.alive):
            raise BenchError("drain did not finish")
        return
    trial.start()
    if not trial.produce("warm", timeout=120, queues=["high"])["ok"]:
        raise BenchError("no warm-up")
    if args.workload == "latency":
        trial.produce("latency", count=args.count, queue="high", gap=0.02,
                      wait=10.0, timeout=60.0 + args.count * 10.5)
    else:
        time.sleep(args.seconds)


def _stop_profiled(trial: Trial) -> None:
    # Stop the runtime under py-spy gracefully; py-spy then writes and exits.
    import psutil
    for proc in trial.procs:
        try:
            child = psutil.Process(proc.pid).children()[0]
            child.send_signal(signal.SIGINT if trial.system == "huey"
                              else signal.SIGTERM)
        except (psutil.Error, IndexError):
            pass
        try:
            proc.wait(60)
        except Exception:
            pass
    trial.stop(grace=5)


def add_parser(sub) -> None:
    cmd = sub.add_parser("profile", help="run one workload under py-spy")
    cmd.add_argument("--backend", choices=["sqlite", "redis", "postgres"],
                     default="sqlite")
    cmd.add_argument("--workload", choices=["drain", "latency", "idle"],
                     default="drain")
    cmd.add_argument("--system", choices=["hueyq", "huey"], default="hueyq")
    cmd.add_argument("--count", type=int, default=10_000,
                     help="tasks (drain) or probes (latency)")
    cmd.add_argument("--seconds", type=float, default=30.0,
                     help="length of the idle window")
    cmd.add_argument("--rate", type=int, default=200,
                     help="py-spy samples per second")
    cmd.add_argument("--idle", action="store_true",
                     help="wall-clock profile: include waiting threads")
    cmd.add_argument("--top", type=int, default=25)
    cmd.add_argument("--out", default="bench-profile",
                     help="directory for the raw stacks and the trial files")
