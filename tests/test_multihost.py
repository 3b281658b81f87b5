"""Many hosts on one backend, as the README's "Scaling out" tells a user.

Three hosts run a real ``hueyq run --profile server`` (Redis, with the job
store on PostgreSQL through ``HUEYQ_STORE``) or ``--profile server-pg``
(PostgreSQL alone), each with its own ``HUEYQ_HOST_ID``, against one
backend. Each host reaches the servers only through a TCP relay of its own;
where this process is root and ``ip netns`` works, each host also runs in a
network namespace of its own, joined to the root namespace by a veth pair,
and its relay listens on the root side's address, so the host can reach
nothing else (the ``netns`` variant; the ``host-ids`` variant runs the
hosts side by side). The tasks keep a ledger of every execution's start
and end, checked as Jepsen checks a history: lost (enqueued, never
completed), duplicated (run more than once) and unexpected (a token never
enqueued, an end without a start).

* A host's whole process tree is SIGKILLed under load: the other hosts
  recover its leases after ``runtime.lease_timeout``; nothing is lost and
  no job runs on two hosts at once.
* A host is partitioned from the backend (its veth link down, or its relay
  stops moving bytes, as a dropped link does: no reset) for longer than
  ``lease_timeout``, then healed: its in-flight jobs run again elsewhere;
  back, its acks of the leases it lost are refused (fenced: the ack names
  the lease's owner and epoch) and counted, its stale outcome is not the
  job's record, and the duplicates are exactly its in-flight jobs, each run
  at most twice (the rule in docs/ARCHITECTURE.md, "Delivery").
* ``hueyq status``, ``GET /api/workers`` and ``App.hosts()`` show every
  host, its heartbeat age and its consumers, the killed one as silent.
"""

import collections
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import HERE, wait_for

pytestmark = pytest.mark.slow

#: Short enough that each scenario stays well under 90 s.
LEASE_TIMEOUT = 3.0
SECRET = "multihost-test-secret-" + "x" * 24
HOSTS = ("host-a", "host-b", "host-c")
WORKERS = 3


# ---------------------------------------------------------------- the net

class Relay:
    """A TCP relay from ``(bind, port)`` to ``target``: every host reaches
    the servers through its own. :meth:`blackhole` stops moving bytes both
    ways (connections stay open, nothing arrives: a link that drops
    packets, not one that resets them); :meth:`heal` lets them flow."""

    def __init__(self, target: "tuple[str, int]", bind: str = "127.0.0.1"
                 ) -> None:
        self.target = target
        self.open = threading.Event()
        self.open.set()
        self.closed = False
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((bind, 0))
        self.listener.listen(256)
        self.address = self.listener.getsockname()
        self.sockets: "list[socket.socket]" = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self.closed:
                    client.close()
                    upstream.close()
                    return
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self.open.wait()
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this relay's."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = "%s%s:%d" % (auth + "@" if auth else "", *self.address)
        return urlunsplit(parts._replace(netloc=netloc))

    def blackhole(self) -> None:
        self.open.clear()

    def heal(self) -> None:
        self.open.set()

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.open.set()
        try:
            # Wakes the accepting thread (close alone would leave it
            # blocked on a listener that still takes connections).
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        with self._lock:
            for s in self.sockets:
                try:
                    s.close()
                except OSError:
                    pass


def _ip(*args: str) -> None:
    subprocess.run(("ip",) + args, check=True, capture_output=True,
                   timeout=10)


def netns_problem() -> "str | None":
    """Why network namespaces cannot be used here (None when they can)."""
    if os.geteuid() != 0:
        return "not root: network namespaces need CAP_NET_ADMIN"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    probe = "hqprobe%d" % os.getpid()
    try:
        _ip("netns", "add", probe)
        _ip("netns", "del", probe)
    except (subprocess.SubprocessError, OSError) as exc:
        return "ip netns does not work here: %s" % (
            getattr(exc, "stderr", b"") or exc)
    return None


class Namespace:
    """A network namespace joined to the root namespace by a veth pair:
    ``outer`` (root side, ``10.a.b.1``) and the namespace's ``10.a.b.2``.
    Taking the outer link down cuts the host off; up again heals it."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = "hq" + tag
        self.outer, self.inner = "hq%so" % tag, "hq%si" % tag
        net = "10.%d.%d" % (random.randint(100, 199), random.randint(0, 255))
        self.address, self.peer = net + ".1", net + ".2"
        _ip("netns", "add", self.name)
        try:
            _ip("link", "add", self.outer, "type", "veth", "peer", "name",
                self.inner)
            _ip("link", "set", self.inner, "netns", self.name)
            _ip("addr", "add", self.address + "/30", "dev", self.outer)
            _ip("link", "set", self.outer, "up")
            for args in (("addr", "add", self.peer + "/30", "dev",
                          self.inner), ("link", "set", self.inner, "up"),
                         ("link", "set", "lo", "up")):
                _ip("netns", "exec", self.name, "ip", *args)
        except BaseException:
            self.delete()
            raise

    @property
    def prefix(self) -> "list[str]":
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        _ip("link", "set", self.outer, "down")

    def heal(self) -> None:
        _ip("link", "set", self.outer, "up")

    def delete(self) -> None:
        for args in (("link", "del", self.outer), ("netns", "del", self.name)):
            subprocess.run(("ip",) + args, capture_output=True, timeout=10)


# ---------------------------------------------------------------- the hosts

class Host:
    """One host: its id, its relays, its namespace (or none) and its
    ``hueyq run``."""

    def __init__(self, name: str, servers: dict, netns: "Namespace | None"
                 ) -> None:
        self.name = name
        self.netns = netns
        bind = netns.address if netns else "127.0.0.1"
        self.relays = {key: Relay(_address(url), bind)
                       for key, url in servers.items()}
        self.urls = {key: self.relays[key].url(url)
                     for key, url in servers.items()}
        self.runtime = None

    def partition(self) -> None:
        """Drop this host's traffic to the servers."""
        if self.netns is not None:
            self.netns.cut()
        else:
            for relay in self.relays.values():
                relay.blackhole()

    def heal(self) -> None:
        if self.netns is not None:
            self.netns.heal()
        else:
            for relay in self.relays.values():
                relay.heal()

    def close(self) -> None:
        for relay in self.relays.values():
            relay.close()
        if self.netns is not None:
            self.netns.delete()


def _address(url: str) -> "tuple[str, int]":
    parts = urlsplit(url)
    return parts.hostname, parts.port


class Cluster:
    """Three hosts on one backend, a producer App, the ledger."""

    def __init__(self, kind: str, variant: str, tmp_path, runtime,
                 redis_url: "str | None", pg_url: str, monkeypatch) -> None:
        self.kind = kind
        self.variant = variant
        self.tmp = tmp_path
        self.ledger = tmp_path / "ledger.txt"
        self.app_name = "mh%s" % uuid.uuid4().hex[:10]
        self.profile = "server" if kind == "redis" else "server-pg"
        servers = {"pg": pg_url}
        if redis_url:
            servers["redis"] = redis_url
        self.hosts: "dict[str, Host]" = {}
        try:
            for name in HOSTS:
                netns = Namespace() if variant == "netns" else None
                self.hosts[name] = Host(name, servers, netns)
        except BaseException:
            self.close()
            raise
        common = self.settings()
        for key, value in dict(common, HUEYQ_HOST_ID="producer",
                               **self.server_env(servers)).items():
            monkeypatch.setenv(key, value)
        import importlib
        self.app = importlib.import_module("apps.ledger").make_app(
            self.profile)
        for host in self.hosts.values():
            data = tmp_path / host.name
            data.mkdir()
            env = dict(common, HUEYQ_HOST_ID=host.name,
                       HUEYQ_DATA_DIR=str(data), **self.server_env(host.urls))
            host.runtime = runtime(self.profile, "apps.ledger", env=env,
                                   queues="high", prefix=host.netns.prefix
                                   if host.netns else None)

    def settings(self) -> dict:
        return {"HUEYQ_SECRET": SECRET, "HUEYQ_APP_NAME": self.app_name,
                "HUEYQ_DATA_DIR": str(self.tmp),
                "HUEYQ_RUNTIME__LEASE_TIMEOUT": "%gs" % LEASE_TIMEOUT,
                "HUEYQ_RUNTIME__GRACE_PERIOD": "2s",
                "HUEYQ_RUNTIME__POLL_INTERVAL": "500ms",
                "HUEYQ_MEMORY__MIN_AVAILABLE": "64MiB",
                "HUEYQ_STORE__FLUSH_INTERVAL": "100ms",
                "HUEYQ_QUEUES__HIGH__WORKERS": str(WORKERS)}

    def server_env(self, urls: dict) -> dict:
        if self.kind == "redis":
            return {"HUEYQ_REDIS_URL": urls["redis"],
                    "HUEYQ_STORE": urls["pg"]}
        return {"HUEYQ_PG_URL": urls["pg"]}

    def close(self) -> None:
        for host in self.hosts.values():
            host.close()
        if getattr(self, "app", None) is not None:
            self.app.close()

    # ------------------------------------------------------------ reading

    def start(self) -> None:
        for host in self.hosts.values():
            host.runtime.wait_ready(30)
        wait_for(lambda: {h["host"] for h in self.app.hosts()
                          if h["alive"]} >= set(HOSTS), 20,
                 message="every host's heartbeat")

    def enqueue(self, count: int, seconds: float) -> dict:
        """``count`` jobs; returns {token: job id}."""
        out = {}
        for i in range(count):
            token = "t%03d" % i
            out[token] = self.app.step(str(self.ledger), token, seconds).id
        return out

    def leases_of(self, host: str) -> list:
        return [lease for lease in self.app.storage("high").leases()
                if lease.host == host]

    def history(self) -> "dict[str, list]":
        """Each token's executions, in order: [host, pid, start, end]."""
        runs: "dict[str, list]" = collections.defaultdict(list)
        unexpected = []
        if not self.ledger.exists():
            return runs, unexpected
        for line in self.ledger.read_text().splitlines():
            what, token, host, pid, t = line.split()
            if what == "start":
                runs[token].append([host, int(pid), float(t), None])
                continue
            mine = [r for r in runs[token] if r[:2] == [host, int(pid)]
                    and r[3] is None]
            if mine:
                mine[0][3] = float(t)
            else:
                unexpected.append(line)
        return runs, unexpected

    def states(self, jobs: dict) -> dict:
        return {token: self.app.job(job_id) for token, job_id in jobs.items()}

    def wait_all_complete(self, jobs: dict, timeout: float) -> dict:
        def done():
            found = self.states(jobs)
            return found if all(j is not None and j.state == "complete"
                                for j in found.values()) else None
        return wait_for(done, timeout, interval=0.2,
                        message="every job to complete")

    def stop(self) -> None:
        for host in self.hosts.values():
            if host.runtime.proc.poll() is None:
                host.runtime.terminate(20)


def check_history(jobs: dict, runs: dict, unexpected: list, states: dict
                  ) -> dict:
    """The Jepsen-style verdict over the ledger and the job store."""
    return {
        "lost": sorted(t for t in jobs if states[t] is None
                       or states[t].state != "complete"
                       or not any(r[3] is not None for r in runs.get(t, ()))),
        "duplicated": sorted(t for t in jobs if len(runs.get(t, ())) > 1),
        "unexpected": sorted(set(runs) - set(jobs)) + unexpected,
    }


@pytest.fixture(params=["netns", "host-ids"])
def variant(request):
    if request.param == "netns":
        problem = netns_problem()
        if problem is not None:
            pytest.skip("network namespaces: %s (the host-ids variant runs "
                        "the same checks)" % problem)
    return request.param


@pytest.fixture(params=["redis", "postgres"])
def cluster(request, variant, tmp_path, runtime, postgres_url, monkeypatch):
    redis_url = None
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_session").url
    made = Cluster(request.param, variant, tmp_path, runtime, redis_url,
                   postgres_url, monkeypatch)
    try:
        made.start()
        yield made
    finally:
        for host in made.hosts.values():
            if host.runtime is not None:
                host.runtime.cleanup()
        made.close()


def figure(name: str, value: float, **labels) -> None:
    """A measured figure, printed (run pytest with -s to see it)."""
    print("FIGURE %s %.2f %s" % (name, value, json.dumps(labels)))


def cli_status(cluster) -> str:
    env = dict(os.environ, PYTHONPATH=str(HERE))
    done = subprocess.run([sys.executable, "-m", "hueyq", "status",
                           "--profile", cluster.profile, "--app",
                           "apps.ledger"], env=env,
                          capture_output=True, text=True, timeout=60,
                          cwd=cluster.tmp)
    assert done.returncode == 0, done.stderr
    return done.stdout


def api_hosts(cluster) -> list:
    from hueyq.webui import create_app
    client = create_app(cluster.app).test_client()
    response = client.get("/api/workers")
    assert response.status_code == 200
    return response.get_json()["hosts"]


# ---------------------------------------------------------------- scenarios

def test_a_killed_host_s_leases_are_recovered_by_the_others(cluster):
    victim = cluster.hosts["host-b"]
    jobs = cluster.enqueue(45, 0.5)
    started = time.monotonic()
    wait_for(lambda: len(cluster.leases_of(victim.name)) >= 2, 30,
             message="the victim to hold leases")
    victim.runtime.kill_all()
    killed = time.monotonic()

    # Every host is listed, the killed one silent, with its consumers and
    # heartbeat age, by the CLI, the JSON API and the App alike.
    wait_for(lambda: not {h["host"]: h for h in cluster.app.hosts()}[
        victim.name]["alive"], 15, message="the victim to fall silent")
    hosts = {h["host"]: h for h in api_hosts(cluster)}
    assert set(hosts) >= set(HOSTS)
    for name in HOSTS:
        assert hosts[name]["alive"] == (name != victim.name)
        assert hosts[name]["age"] is not None
        assert [c["queue"] for c in hosts[name]["consumers"]] == ["high"]
    assert hosts[victim.name]["age"] > 3
    status = cli_status(cluster)
    for name in HOSTS:
        line = [l for l in status.splitlines() if l.startswith(name + " ")]
        assert line, status
        assert ("silent" if name == victim.name else "alive") in line[0]
        assert "s ago" in line[0]
        if name != victim.name:
            assert "high:1" in line[0], status

    states = cluster.wait_all_complete(jobs, 60)
    finished = time.monotonic()
    runs, unexpected = cluster.history()
    verdict = check_history(jobs, runs, unexpected, states)
    assert verdict["lost"] == [] and verdict["unexpected"] == [], verdict
    # A job runs again only when the killed host held it, once, after the
    # kill: never on two hosts at once. (Its run was cut short, or, in the
    # instant between a task's end and its ack, it had ended.)
    for token in verdict["duplicated"]:
        assert len(runs[token]) == 2, runs[token]
        first, second = runs[token]
        assert first[0] == victim.name, runs[token]
        assert first[3] is None or first[3] < killed, runs[token]
        assert second[0] != victim.name and second[2] > killed, runs[token]
    recovered = [runs[t][1][2] - killed for t in verdict["duplicated"]]
    assert recovered, "the killed host's jobs were not recovered"
    assert min(recovered) >= LEASE_TIMEOUT - 1.5
    assert not any(states[t].worker.startswith(victim.name + ":")
                   for t in verdict["duplicated"])
    figure("kill_recovered_after_s", max(recovered), backend=cluster.kind,
           variant=cluster.variant)
    figure("kill_run_s", finished - started, backend=cluster.kind,
           variant=cluster.variant,
           jobs=len(jobs), duplicated=len(verdict["duplicated"]))
    cluster.stop()


def test_a_partitioned_host_cannot_ack_the_leases_it_lost(cluster):
    island = cluster.hosts["host-a"]
    others = [h for h in HOSTS if h != island.name]
    fenced = cluster.app.storage("high").fenced()
    jobs = cluster.enqueue(18, 2.0)
    wait_for(lambda: len(cluster.leases_of(island.name)) >= WORKERS, 30,
             message="the island to hold a lease per worker")
    # Its workers are busy for 2 s: these are the leases it is cut off with.
    held = {lease.task_id for lease in cluster.leases_of(island.name)}
    island.partition()
    cut = time.monotonic()
    in_flight = {t for t, job_id in jobs.items() if job_id in held}
    assert len(in_flight) == WORKERS
    # On PostgreSQL a host cut off inside a lease's transaction holds its
    # rows' locks until the server ends the session (IDLE_IN_TRANSACTION
    # seconds), and the others' recovery of those rows waits for that.
    from hueyq.backends.postgres import IDLE_IN_TRANSACTION
    locks = IDLE_IN_TRANSACTION if cluster.kind == "postgres" else 0
    try:
        # While it is cut off, the others run its jobs again.
        wait_for(lambda: all(any(r[0] in others and r[3] is not None
                                 for r in cluster.history()[0][t])
                             for t in in_flight),
                 LEASE_TIMEOUT + locks + 25, interval=0.2,
                 message="the island's jobs to run elsewhere")
        again = time.monotonic()
    finally:
        island.heal()
    healed = time.monotonic()
    assert healed - cut > LEASE_TIMEOUT
    states = cluster.wait_all_complete(jobs, 60)
    # The island ran its jobs (a worker whose lease's next step waited on
    # the backend starts the body once healed), or, where that step failed,
    # handed them back, which the fence refused too.
    def island_runs():
        runs = cluster.history()[0]
        return {t: [r for r in runs[t] if r[0] == island.name]
                for t in in_flight}
    wait_for(lambda: all(r[3] is not None for rs in island_runs().values()
                         for r in rs), 20, message="the island's runs to end")
    ran = {t for t, rs in island_runs().items() if rs}
    # Back, its acks of the leases it lost are refused and counted.
    wait_for(lambda: cluster.app.storage("high").fenced() - fenced
             >= len(ran), 30, message="the stale acks to be fenced")
    refused = cluster.app.storage("high").fenced() - fenced
    runs, unexpected = cluster.history()
    verdict = check_history(jobs, runs, unexpected, states)
    assert verdict["lost"] == [] and verdict["unexpected"] == [], verdict
    # The rule: a job runs twice only when its holder lost its lease, at
    # most once per loss: here exactly the island's in-flight jobs it ran.
    assert set(verdict["duplicated"]) == ran, (verdict, in_flight, ran)
    restarted = []
    for token in in_flight:
        mine = [r for r in runs[token] if r[0] == island.name]
        theirs = [r for r in runs[token] if r[0] in others]
        assert len(mine) <= 1 and len(theirs) == 1, (token, runs[token])
        assert theirs[0][2] - cut >= LEASE_TIMEOUT - 1.5, runs[token]
        restarted.append(theirs[0][2] - cut)
        # The job's record is the current holder's, not the stale one's.
        assert states[token].worker.split(":")[0] in others
    assert len(ran) <= refused <= 2 * len(in_flight) + WORKERS
    if ran:
        # (The backend counts a refusal before the worker logs it.)
        wait_for(lambda: "refused the ack of message" in
                 island.runtime.log(), 10,
                 message="the island to log its fenced acks")
    figure("partition_restarted_after_s", max(restarted),
           backend=cluster.kind, variant=cluster.variant)
    figure("partition_rerun_done_after_s", again - cut, backend=cluster.kind,
           variant=cluster.variant)
    figure("partition_s", healed - cut, backend=cluster.kind,
           variant=cluster.variant,
           jobs=len(jobs), in_flight=len(in_flight),
           duplicated=len(verdict["duplicated"]), fenced=refused)
    cluster.stop()
