"""Processes, services and measurements shared by every workload.

:class:`Processes` starts every process of a run in its own session and
stops it, and everything under it, by pid (psutil, so a recycled pid is never
signalled). :class:`RedisServer` is a private ``redis-server`` on a free
port. :class:`Completions` reads the one file every benchmark task appends a
line to. Tree measurements (CPU time, PSS) sum a process and all its
descendants.
"""

import contextlib
import logging
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

import psutil

logger = logging.getLogger("benchmarks")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class BenchError(Exception):
    """A run that could not be measured (a process died, a deadline passed)."""


def wait_for(predicate, timeout: float, interval: float = 0.05,
             what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy, or raise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError("timed out after %.0fs waiting for %s"
                             % (timeout, what))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def import_path(workdir: str) -> str:
    """A directory holding only a link to this package, for PYTHONPATH: the
    processes find ``benchmarks`` without the repository root on their path,
    so they import the installed hueyq, never the source tree beside it."""
    path = os.path.join(workdir, "pythonpath")
    os.makedirs(path, exist_ok=True)
    link = os.path.join(path, "benchmarks")
    if not os.path.exists(link):
        os.symlink(os.path.join(ROOT, "benchmarks"), link)
    return path


_IMPORT_PATH: "list[str]" = []


def base_env(**extra: str) -> dict:
    """The environment of every process the suite starts."""
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("HUEYQ_", "BENCH_")) or key == "NOTIFY_SOCKET":
            del env[key]
    path = env.get("PYTHONPATH")
    first = _IMPORT_PATH[0] if _IMPORT_PATH else ROOT
    env["PYTHONPATH"] = first + (os.pathsep + path if path else "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def tool(name: str) -> str:
    """A console script installed beside this interpreter."""
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.exists(path) else (shutil.which(name) or name)


class Processes:
    """Every process a run started; :meth:`stop_all` ends them all."""

    def __init__(self) -> None:
        self.started: "list[subprocess.Popen]" = []
        #: Root pid -> every process seen under it (by pid).
        self.trees: "dict[int, dict[int, psutil.Process]]" = {}

    def start(self, cmd: "list[str]", env: dict, cwd: str,
              log: "str | None" = None) -> subprocess.Popen:
        """Start ``cmd`` in a new session, output to ``log``."""
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out,
                                    stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        finally:
            if log:
                out.close()
        self.started.append(proc)
        self.note(proc.pid)
        return proc

    def note(self, pid: int) -> "list[psutil.Process]":
        """Remember ``pid``'s current descendants (to stop them later)."""
        tree = process_tree(pid)
        seen = self.trees.setdefault(pid, {})
        for p in tree:
            seen.setdefault(p.pid, p)
        return tree

    def stop(self, proc: subprocess.Popen, sig: int = signal.SIGTERM,
             grace: float = 15.0) -> None:
        """Signal ``proc``; after ``grace`` seconds kill it and every process
        seen under it (each by pid, each checked to be the same process)."""
        self.note(proc.pid)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                logger.warning("pid %d did not stop within %.1fs of the "
                               "signal; killing it and its processes",
                               proc.pid, grace)
        seen = self.trees.pop(proc.pid, {})
        self.kill([p for pid, p in seen.items() if pid != proc.pid])
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc in self.started:
            self.started.remove(proc)

    def kill(self, procs: "list[psutil.Process]") -> None:
        """SIGKILL each process that is still the one we saw."""
        for p in procs:
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
        gone_by = time.monotonic() + 10
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.wait(max(0.0, gone_by - time.monotonic()))

    def kill_tree_now(self, proc: subprocess.Popen) -> "list[int]":
        """``kill -9`` a process and all its descendants at once (stopped
        first, so none can react to the others dying)."""
        tree = self.note(proc.pid)
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.suspend()
        for p in tree:
            with contextlib.suppress(psutil.Error):
                p.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        self.kill(list(self.trees.pop(proc.pid, {}).values()))
        if proc in self.started:
            self.started.remove(proc)
        return [p.pid for p in tree]

    def stop_all(self) -> None:
        """End everything still running (the harness's finally)."""
        for proc in list(self.started):
            self.stop(proc, signal.SIGTERM, grace=5.0)
        for seen in self.trees.values():
            self.kill(list(seen.values()))
        self.trees.clear()


def process_tree(pid: int) -> "list[psutil.Process]":
    """``pid`` and its descendants (empty if it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.Error:
        return []


def tree_cpu(pids: "list[psutil.Process]") -> float:
    """CPU seconds (user + system) used so far by these processes."""
    total = 0.0
    for p in pids:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def tree_memory(pids: "list[psutil.Process]") -> "tuple[int, int, int]":
    """(PSS, RSS, process count) summed over these processes."""
    pss = rss = count = 0
    for p in pids:
        with contextlib.suppress(psutil.Error):
            info = p.memory_full_info()
            pss += getattr(info, "pss", info.rss)
            rss += info.rss
            count += 1
    return pss, rss, count


class RedisServer:
    """A private redis-server on a free port, in ``directory``."""

    def __init__(self, processes: Processes, directory: str,
                 appendonly: bool = False, args: "tuple[str, ...]" = ()
                 ) -> None:
        self.processes = processes
        self.directory = directory
        self.appendonly = appendonly
        #: More settings on the command line (``--replicaof HOST PORT``).
        self.args = tuple(args)
        self.port = free_port()
        self.proc = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self) -> "RedisServer":
        if shutil.which("redis-server") is None:
            raise BenchError("redis-server is not installed")
        os.makedirs(self.directory, exist_ok=True)
        persistence = (["--appendonly", "yes", "--appendfsync", "everysec"]
                       if self.appendonly else ["--appendonly", "no"])
        self.proc = self.processes.start(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--dir", self.directory, "--maxmemory-policy",
             "noeviction", "--logfile", "redis.log"] + persistence +
            list(self.args),
            base_env(), self.directory)
        import redis
        client = redis.Redis(port=self.port)
        try:
            wait_for(lambda: _pings(client), 10, what="redis-server to start")
        finally:
            client.close()
        return self

    def flush(self) -> None:
        import redis
        client = redis.Redis(port=self.port)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            self.processes.stop(self.proc, signal.SIGTERM, grace=10)
            self.proc = None


def _pings(client) -> bool:
    import redis
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


#: The PostgreSQL server of a run (the store workload's database and the
#: postgres backend's), unless ``--pg`` or ``$HUEYQ_BENCH_PG`` name another.
PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def create_pg_database(server_url: str, suffix: str = "") -> str:
    """Create a database of this run's own on the PostgreSQL server of
    ``server_url`` and return its URL (BenchError when that cannot be)."""
    from urllib.parse import urlsplit, urlunsplit
    try:
        import psycopg
    except ImportError:
        raise BenchError("psycopg is not installed (pip install "
                         "'hueyq[postgres]')") from None
    name = "hueyq_bench_%d%s" % (os.getpid(), suffix)
    try:
        conn = psycopg.connect(server_url, connect_timeout=5, autocommit=True)
    except psycopg.Error as exc:
        raise BenchError("no PostgreSQL at %s: %s"
                         % (server_url.rsplit("@", 1)[-1],
                            str(exc).strip().splitlines()[0])) from None
    with conn:
        conn.execute("drop database if exists %s" % name)
        conn.execute("create database %s" % name)
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path="/" + name))


def drop_pg_database(server_url: str, url: str) -> None:
    """Drop the database ``create_pg_database`` made."""
    import psycopg
    name = url.rsplit("/", 1)[-1]
    with psycopg.connect(server_url, connect_timeout=5,
                         autocommit=True) as conn:
        conn.execute("drop database if exists %s with (force)" % name)


class Completions:
    """The file every task appends ``token t_enq t_start t_end pid`` to."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records: "list[tuple]" = []
        self._offset = 0
        self._partial = b""
        open(path, "ab").close()

    def read(self) -> int:
        """Read lines appended since the last call; returns the total."""
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            data = fh.read()
        self._offset += len(data)
        data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            token, t_enq, t_start, t_end, pid = line.split()
            self.records.append((token.decode(), float(t_enq), float(t_start),
                                 float(t_end), int(pid)))
        return len(self.records)

    def wait(self, count: int, timeout: float, interval: float = 0.02,
             alive=None) -> bool:
        """Wait until ``count`` lines are there; False on timeout. ``alive``
        (a callable) ends the wait early with BenchError when it is False."""
        deadline = time.monotonic() + timeout
        while self.read() < count:
            if time.monotonic() > deadline:
                return False
            if alive is not None and not alive():
                raise BenchError("the consumer exited with %d of %d tasks done"
                                 % (len(self.records), count))
            time.sleep(interval)
        return True

    def tokens(self) -> "dict[str, int]":
        """How many times each token was recorded."""
        out: "dict[str, int]" = {}
        for record in self.records:
            out[record[0]] = out.get(record[0], 0) + 1
        return out


def percentile(values: "list[float]", q: float) -> "float | None":
    """The ``q`` quantile (0..1), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]


def median(values: "list[float]") -> "float | None":
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None
