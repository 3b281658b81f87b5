"""One boot of the power-cut test's machine: pid 1 of a fresh PID namespace.

``unshare --pid --fork --mount-proc --kill-child python machine.py ...``
runs this as the namespace's init, so every boot numbers its processes
from 1 again (the previous boot's pids come back, as after a reboot) and
killing it kills everything in the boot at once. It

* gives the boot a boot id of its own (a file bind-mounted over
  ``/proc/sys/kernel/random/boot_id``, inside this mount namespace only);
* starts ``--daemons`` idle processes first, like boot-time daemons that
  take the pids the last boot's workers had;
* starts ``hueyq run`` and, with ``--produce``, the producer, both with
  the wall clock moved by ``--offset`` seconds (``--clockshift``, the
  shim built from tests/clockshim.c, preloaded; monotonic clocks stay
  true);
* reaps orphans; passes SIGTERM on to the runtime and exits when it has.
"""

import argparse
import os
import signal
import subprocess
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))


def build_clockshift(directory: str) -> str:
    """Compile tests/clockshim.c into ``directory``; the shim's path."""
    out = os.path.join(directory, "clockshim.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", out,
                    os.path.join(os.path.dirname(HERE), "clockshim.c"),
                    "-ldl"], check=True)
    return out


def clock_env(offset: int, shim: str, directory: str, boot: int) -> dict:
    """Environment that moves CLOCK_REALTIME (and /proc/stat's btime, as a
    clock set after boot does) by ``offset`` seconds."""
    if not offset:
        return {}
    path = os.path.join(directory, "clock-%d.offset" % boot)
    with open(path, "w") as fh:
        fh.write("%d\n" % offset)
    return {"LD_PRELOAD": shim, "HUEYQ_CLOCK_OFFSET_FILE": path}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--boot", type=int, required=True)
    parser.add_argument("--dir", required=True, help="host-side files")
    parser.add_argument("--offset", type=int, default=0)
    parser.add_argument("--clockshift", help="the shim (build_clockshift)")
    parser.add_argument("--daemons", type=int, default=0)
    parser.add_argument("--produce", type=int, default=0)
    parser.add_argument("--marathons", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    boot_id = os.path.join(args.dir, "boot-%d.id" % args.boot)
    with open(boot_id, "w") as fh:
        fh.write(str(uuid.uuid4()) + "\n")
    subprocess.run(["mount", "--bind", boot_id,
                    "/proc/sys/kernel/random/boot_id"], check=True)
    for _ in range(args.daemons):
        subprocess.Popen(["sleep", "infinity"])
    env = dict(os.environ, POWERCUT_BOOT=str(args.boot),
               **clock_env(args.offset, args.clockshift, args.dir,
                            args.boot))
    with open(os.path.join(args.dir, "runtime-%d.log" % args.boot),
              "ab") as log:
        runtime = subprocess.Popen(
            [sys.executable, "-m", "hueyq", "run", "--app", "powercut.app"],
            env=env, stdout=log, stderr=subprocess.STDOUT)
        if args.produce or args.marathons:
            subprocess.Popen(
                [sys.executable, "-m", "powercut.producer", "--count",
                 str(args.produce), "--marathons", str(args.marathons),
                 "--seed",
                 str(args.seed), "--ledger",
                 os.path.join(args.dir, "ledger")],
                env=env, stdout=log, stderr=subprocess.STDOUT)
    signal.signal(signal.SIGTERM,
                  lambda *_: os.kill(runtime.pid, signal.SIGTERM))
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            return 0
        if pid == runtime.pid:
            return 0


if __name__ == "__main__":
    sys.exit(main())
