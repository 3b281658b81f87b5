"""Run huey's own test suite against hueyq, in every configuration.

    python tests/compat/run.py [--source DIR] [--only CONFIG ...]

Downloads huey's source distribution of the installed version from the
package index (``pip download --no-deps --no-binary :all: huey==X``, into a
temporary directory; nothing of it is kept), starts a private redis-server,
and runs huey's tests with pytest once per configuration (see
``hueyq_compat.py``): ``baseline`` (huey's own storages), ``backend-sqlite``
and ``backend-redis`` (huey's Huey on hueyq's backend classes), ``app-sqlite``
and ``app-redis`` (the hueys an App builds, through hueyq's worker). Tests
hueyq differs from by design are skipped with their reason (``skips.py``).
Prints the time each configuration took; exits 1 if any failed.
"""

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = ("baseline", "backend-sqlite", "backend-redis", "app-sqlite",
           "app-redis")
#: A bound per configuration; the whole run takes a minute or two.
TIMEOUT = 300


def installed_huey() -> str:
    from importlib.metadata import version
    return version("huey")


def download(version: str, into: str) -> str:
    """huey's sdist of ``version``, unpacked under ``into``; its root."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--no-binary", ":all:", "huey==%s" % version, "-d", into],
                   check=True)
    archive, = glob.glob(os.path.join(into, "huey-*.tar.gz"))
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    root = os.path.join(into, "huey-%s" % version)
    if not os.path.isdir(os.path.join(root, "huey", "tests")):
        raise SystemExit("huey %s's sdist has no huey/tests" % version)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: str) -> "tuple[subprocess.Popen, int]":
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save",
         "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def run_config(config: str, root: str, port: int) -> "tuple[bool, float, str]":
    """Run huey's tests in one configuration: (passed, seconds, summary)."""
    env = dict(os.environ, HUEYQ_COMPAT=config,
               HUEYQ_COMPAT_REDIS_PORT=str(port),
               PYTHONPATH=os.pathsep.join([root, HERE]))
    env.pop("HUEYQ_PROFILE", None)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "huey/tests", "-q", "-p",
             "hueyq_compat", "-p", "no:cacheprovider", "-W", "ignore",
             "-o", "addopts=", "--rootdir", root, "-ra"],
            cwd=root, env=env, capture_output=True, text=True,
            timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return (False, time.monotonic() - started,
                "timed out after %ds" % TIMEOUT)
    seconds = time.monotonic() - started
    lines = proc.stdout.strip().splitlines()
    summary = lines[-1] if lines else proc.stderr.strip()[-500:]
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-20000:] + proc.stderr[-5000:])
    return proc.returncode == 0, seconds, summary


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", help="an unpacked huey sdist to use "
                        "instead of downloading one")
    parser.add_argument("--only", nargs="+", choices=CONFIGS,
                        help="run only these configurations")
    args = parser.parse_args(argv)
    work = tempfile.mkdtemp(prefix="huey-compat-")
    redis = None
    try:
        version = installed_huey()
        root = args.source or download(version, work)
        print("huey %s's own tests from %s" % (version, root), flush=True)
        redis, port = start_redis(work)
        results = []
        for config in args.only or CONFIGS:
            ok, seconds, summary = run_config(config, root, port)
            results.append(ok)
            print("%-15s %-4s %6.1fs  %s" % (config, "ok" if ok else "FAIL",
                                             seconds, summary), flush=True)
        return 0 if all(results) else 1
    finally:
        if redis is not None:
            redis.kill()
            redis.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
