"""CPU cost of the supervisor's tick on an idle ``jetson`` runtime.

``python -m benchmarks.supervisor_cost [--interval 1s] [--seconds 60]``

Starts ``hueyq run --profile jetson --app hueyq.demo`` in a temporary data
directory with the tick set to ``--interval`` (``memory.interval`` and
``runtime.heartbeat_interval``: the watchdog samples every consumer's tree,
each process worker and the system once per tick, and recovery and the
status record run on the same tick), waits for it to settle, and prints the
CPU the supervisor and the whole runtime used over ``--seconds``, as a
percentage of one core. Run it at two intervals to separate the per-tick
cost from the rest. The runtime is stopped with SIGTERM (killed after 30 s)
and the directory removed.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil


def cpu_seconds(procs) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.supervisor_cost")
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--settle", type=float, default=8.0)
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="hueyq-supervisor-cost-")
    env = dict(os.environ, HUEYQ_DATA_DIR=work,
               HUEYQ_MEMORY__INTERVAL=args.interval,
               HUEYQ_RUNTIME__HEARTBEAT_INTERVAL=args.interval)
    log = open(os.path.join(work, "runtime.log"), "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "hueyq", "run", "--profile", "jetson",
         "--app", "hueyq.demo"], env=env, cwd=work, stdout=log, stderr=log)
    try:
        time.sleep(args.settle)
        if proc.poll() is not None:
            print("the runtime exited (%s); see %s" % (proc.returncode, log.name))
            return 1
        supervisor = psutil.Process(proc.pid)
        everything = [supervisor] + supervisor.children(recursive=True)
        sup0, all0, t0 = (cpu_seconds([supervisor]), cpu_seconds(everything),
                          time.monotonic())
        time.sleep(args.seconds)
        sup1, all1, t1 = (cpu_seconds([supervisor]), cpu_seconds(everything),
                          time.monotonic())
        span = t1 - t0
        print("tick %s over %.0f s, %d processes: supervisor %.3f%% of a "
              "core, whole runtime %.3f%%"
              % (args.interval, span, len(everything),
                 100 * (sup1 - sup0) / span, 100 * (all1 - all0) / span))
        return 0
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
