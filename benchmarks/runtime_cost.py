"""Idle memory per process and start-up time of ``hueyq run``.

``python -m benchmarks.runtime_cost [--profile jetson] [--web]
[--settle 5] [--startup-repeat 5] [--hide-extras]``

Memory: starts ``hueyq run --profile PROFILE --app benchmarks.apps.hueyq_app``
in a temporary data directory, runs one no-op on every queue that is not a
GPU lane (a task there would import torch), waits ``--settle`` seconds and
prints the PSS (psutil ``memory_full_info().pss``) of every process of the
runtime (supervisor, each consumer, its forked workers and scheduler, the
web server under ``--web``) and their total.

Start-up: a one-queue profile (``dev`` with only ``high``, 2 thread
workers) with one no-op already enqueued; the time from launching
``hueyq run`` to the task's completion line, median of
``--startup-repeat`` launches, next to ``huey_consumer`` on a SqliteHuey
(``benchmarks.apps.huey_app``) measured the same way.

``--unused-drivers redis,psycopg2,psycopg`` sets ``HUEYQ_UNUSED_DRIVERS``
for the supervisor too, as the units of ``hueyq systemd`` do (without it
only the consumers get it, from the supervisor). ``--hide-extras`` hides redis-py, psycopg2, psycopg and cryptography
(stub packages first on PYTHONPATH), as the memory workload's
``jetson-core`` does. Every process is stopped by pid at the end and the
directory removed.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from benchmarks.workloads import HIDDEN, hide_packages

MB = 1024 * 1024
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ONE_QUEUE = """extends = "dev"
[backend]
url = "sqlite:///%(dir)s/queue.db"
[store]
url = "sqlite:///%(dir)s/store.db"
[queues.high]
workers = 2
worker_type = "thread"
[queues.medium]
enabled = false
[queues.low]
enabled = false
[queues.gpu]
enabled = false
"""


def _env(work: str, hide: bool, **extra) -> dict:
    path = [ROOT]
    if hide:
        path.insert(0, hide_packages(work, HIDDEN))
    env = dict(os.environ, HUEYQ_DATA_DIR=work,
               BENCH_COMPLETIONS=os.path.join(work, "completions"),
               PYTHONPATH=os.pathsep.join(path), **extra)
    env.pop("HUEYQ_SECRET", None)
    # An installed hueyq has its bytecode compiled; without this every
    # launch would compile hueyq's sources again (~50 ms a process).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _lines(work: str) -> int:
    try:
        with open(os.path.join(work, "completions")) as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def _wait_lines(work: str, n: int, timeout: float, proc) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _lines(work) >= n:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return False


def _stop(proc) -> None:
    """SIGTERM the runtime, SIGKILL what is left after 30 s."""
    try:
        tree = [proc.pid] + [p.pid for p in
                             psutil.Process(proc.pid).children(True)]
    except psutil.Error:
        tree = [proc.pid]
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    proc.wait()


def _produce(env: dict, queues: "list[str]", prefix: str) -> None:
    code = ("import sys; from benchmarks.apps import hueyq_app as a\n"
            "for q in sys.argv[2:]: a.tasks['noop_' + q](sys.argv[1] + q)\n")
    subprocess.run([sys.executable, "-c", code, prefix] + queues, env=env,
                   check=True)


def _name(proc, root: int) -> str:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return "gone"
    if proc.pid == root:
        return "supervisor"
    try:
        forked = proc.parent().cmdline() == cmd
    except (psutil.Error, AttributeError):
        forked = False
    if "--queue" in cmd:
        queue = cmd[cmd.index("--queue") + 1]
        return ("%s child (forked)" if forked else "consumer %s") % queue
    if "web" in cmd:
        return "web"
    try:
        parent = proc.parent().cmdline()
        return "%s child (%s)" % (parent[parent.index("--queue") + 1],
                                  proc.name())
    except (psutil.Error, ValueError, IndexError, AttributeError):
        return "pid %d" % proc.pid


def memory(args) -> int:
    work = tempfile.mkdtemp(prefix="hueyq-runtime-cost-")
    env = _env(work, args.hide_extras, HUEYQ_PROFILE=args.profile)
    code = ("from benchmarks.apps import hueyq_app as a\n"
            "print(' '.join(q for q in a.app.queues"
            " if not a.app.profile.queue(q).gpu))")
    queues = subprocess.run([sys.executable, "-c", code], env=env, cwd=work,
                            check=True, capture_output=True,
                            text=True).stdout.split()
    cmd = [sys.executable, "-m", "hueyq", "run", "--profile", args.profile,
           "--app", "benchmarks.apps.hueyq_app"] + (["--web"] if args.web
                                                   else [])
    log = open(os.path.join(work, "runtime.log"), "w")
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        _produce(env, queues, "warm-")
        if not _wait_lines(work, len(queues), 60, proc):
            print("the runtime did not run the warm-up tasks; see",
                  log.name)
            return 1
        time.sleep(args.settle)
        root = psutil.Process(proc.pid)
        total = 0.0
        rows = []
        for p in [root] + root.children(recursive=True):
            try:
                pss = p.memory_full_info().pss / MB
            except psutil.Error:
                continue
            total += pss
            rows.append((_name(p, proc.pid), pss))
        print("idle %s%s, %d processes, PSS MiB:" % (
            args.profile, " --web" if args.web else "", len(rows)))
        for name, pss in rows:
            print("  %-28s %6.1f" % (name, pss))
        print("  %-28s %6.1f" % ("total", total))
        return 0
    finally:
        _stop(proc)
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _startup_once(cmd_of, env_of) -> float:
    work = tempfile.mkdtemp(prefix="hueyq-startup-")
    try:
        env = env_of(work)
        _produce(env, ["high"], "s-") if "HUEYQ_PROFILE" in env else \
            subprocess.run([sys.executable, "-c",
                            "from benchmarks.apps import huey_app as h;"
                            "h.tasks['high'].noop('s')"], env=env, check=True)
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd_of(work), env=env, cwd=work,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            ok = _wait_lines(work, 1, 30, proc)
            return time.monotonic() - t0 if ok else float("nan")
        finally:
            _stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def startup(args) -> None:
    def hueyq_env(work):
        path = os.path.join(work, "one.toml")
        with open(path, "w") as fh:
            fh.write(ONE_QUEUE % {"dir": work})
        return _env(work, args.hide_extras, HUEYQ_PROFILE=path)

    def huey_env(work):
        return _env(work, args.hide_extras, BENCH_HUEY_KIND="sqlite",
                    BENCH_HUEY_FILE=os.path.join(work, "huey.db"))

    systems = {
        "hueyq run (one queue)": (
            lambda w: [sys.executable, "-m", "hueyq", "run", "--app",
                       "benchmarks.apps.hueyq_app"], hueyq_env),
        "huey_consumer": (
            lambda w: [sys.executable, "-m", "huey.bin.huey_consumer",
                       "benchmarks.apps.huey_app.high", "-w", "2", "-k",
                       "thread", "-d", "0.1"], huey_env)}
    for label, (cmd_of, env_of) in systems.items():
        times = [_startup_once(cmd_of, env_of)
                 for _ in range(args.startup_repeat)]
        print("start-up to first task, %s: median %.3f s (%s)" % (
            label, statistics.median(times),
            ", ".join("%.3f" % t for t in times)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.runtime_cost")
    parser.add_argument("--profile", default="jetson")
    parser.add_argument("--web", action="store_true")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--startup-repeat", type=int, default=5)
    parser.add_argument("--hide-extras", action="store_true")
    parser.add_argument("--skip", choices=("memory", "startup"))
    parser.add_argument("--unused-drivers", metavar="NAMES",
                        help="HUEYQ_UNUSED_DRIVERS for every process, the "
                        "supervisor too (as the systemd units set it)")
    args = parser.parse_args(argv)
    if args.unused_drivers is not None:
        os.environ["HUEYQ_UNUSED_DRIVERS"] = args.unused_drivers
    status = 0
    if args.skip != "memory":
        status = memory(args)
    if args.skip != "startup":
        startup(args)
    return status


if __name__ == "__main__":
    sys.exit(main())
