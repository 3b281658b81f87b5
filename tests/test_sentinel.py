"""Redis high availability: a ``redis+sentinel://`` backend follows a
failover (real primary, replica and three ``redis-server --sentinel`` on
loopback, the primary killed under load, a ledger of what ran), and
``backend.min_replicas`` makes every enqueue wait for a replica."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import HERE, _need_redis, wait_for, write_profile
from apps import sentinel_ledger as ledger

from hueyq import backends, urls
from hueyq.exceptions import ConfigurationError, NotReplicated
from hueyq.profile import load_profile

ONLY_HIGH = {"queues.medium": {"enabled": False},
             "queues.gpu": {"enabled": False},
             "queues.low": {"enabled": False}}


def _profile(tmp_path, url, app_name, min_replicas=0, **backend):
    extra = dict(ONLY_HIGH, backend={"min_replicas": min_replicas,
                                     **backend},
                 sentinel={"retry_timeout": "20s"})
    return write_profile(tmp_path / "profile.toml", url,
                         "sqlite://%s" % (tmp_path / "store.db"), app_name,
                         extra=extra)


# ------------------------------------------------------------ no server

def test_sentinel_url_parts_and_checks():
    parts = urls.sentinel_parts(
        "redis+sentinel://:pw@10.0.0.1:26380,10.0.0.2,[::1]:5/mymaster/3")
    assert parts == {"sentinels": [("10.0.0.1", 26380), ("10.0.0.2", 26379),
                                   ("::1", 5)],
                     "service": "mymaster", "db": 3, "username": None,
                     "password": "pw"}
    assert urls.redact_url("redis+sentinel://:pw@a:1,b:2/m/0") == \
        "redis+sentinel://:***@a:1,b:2/m/0"
    # Consumers of a sentinel URL keep redis-py (HUEYQ_UNUSED_DRIVERS).
    from hueyq import drivers
    assert drivers.unused("redis+sentinel://a:1/m/0", "sqlite:///s.db") == (
        "psycopg2", "psycopg")
    for bad, why in (("redis+sentinel://a:1,,b:2/m", "needs sentinels"),
                     ("redis+sentinel://a:99999/m", "bad port"),
                     ("redis+sentinel://a:1/m/x", "must be a number")):
        with pytest.raises(ValueError, match=why):
            backends.check_url(bad)


def test_profile_min_replicas_and_the_sentinel_section(tmp_path):
    url = "redis+sentinel://127.0.0.1:1,127.0.0.1:2"
    path = write_profile(tmp_path / "p.toml", url, "sqlite://%s" % (
        tmp_path / "s.db"), "a", extra={
            "backend": {"min_replicas": 1, "min_replicas_timeout": "250ms"},
            "sentinel": {"service_name": "queues", "password": "hush"}})
    profile = load_profile(str(path))
    assert profile.backend.min_replicas == 1
    assert profile.backend.min_replicas_timeout == 0.25
    assert profile.sentinel.service_name == "queues"
    shown = profile.as_dict()
    assert shown["sentinel"]["password"] == "***"
    assert shown["backend"]["min_replicas"] == 1
    env = {"HUEYQ_SENTINEL__PASSWORD": "other", "HUEYQ_BACKEND__MIN_REPLICAS":
           "2"}
    profile = load_profile(str(path), env=env)
    assert profile.sentinel.password == "other"
    assert profile.backend.min_replicas == 2
    # A URL without a service name needs sentinel.service_name.
    path.write_text(path.read_text().replace('service_name = "queues"\n', ""))
    with pytest.raises(ConfigurationError, match="service name"):
        load_profile(str(path))
    # SQLite has no replicas to wait for.
    sqlite = write_profile(tmp_path / "q.toml", "sqlite://%s" % (
        tmp_path / "q.db"), "sqlite://%s" % (tmp_path / "s.db"), "a",
        extra={"backend": {"min_replicas": 1}})
    with pytest.raises(ConfigurationError, match="backend.min_replicas"):
        load_profile(str(sqlite))


def test_no_sentinel_answering_is_one_line_at_once(tmp_path, app_name):
    """A wrong host or port in the URL is not a failover to wait out."""
    _need_redis()
    from conftest import free_port
    url = "redis+sentinel://127.0.0.1:%d,127.0.0.1:%d/mymaster/0" % (
        free_port(), free_port())
    profile = _profile(tmp_path, url, app_name)
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "hueyq", "status"],
                         env=dict(_env(), HUEYQ_PROFILE=str(profile)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "hueyq: cannot reach any sentinel of Redis service mymaster "
        "(sentinels %s) db 0 (is redis-sentinel running there? check "
        "backend.url or HUEYQ_BACKEND)" % url.split("//")[1].split("/")[0]]
    assert time.monotonic() - started < 15  # sentinel.retry_timeout is 20s


# ------------------------------------------------------------ one server

def test_min_replicas_refuses_an_enqueue_no_replica_acknowledged(
        redis_server, make_app, tmp_path, app_name):
    """A primary without replicas: the enqueue is on the primary, but the
    caller is told it is not replicated (it may still run)."""
    profile = _profile(tmp_path, redis_server.url, app_name, min_replicas=1,
                       min_replicas_timeout="100ms")
    app = make_app(profile, "apps.sentinel_ledger")
    started = time.monotonic()
    with pytest.raises(NotReplicated, match="0 of backend.min_replicas=1"):
        app.step(str(tmp_path / "ledger"), 1)
    assert time.monotonic() - started >= 0.1
    assert app.storage("high").count("pending") == 1
    with pytest.raises(NotReplicated):
        app.enqueue_many([app.step.s(str(tmp_path / "ledger"), 2)])
    report = subprocess.run(
        [sys.executable, "-m", "hueyq", "doctor", "--json"],
        env=dict(_env(), HUEYQ_PROFILE=str(profile)), capture_output=True,
        text=True, timeout=60)
    checks = {c["check"]: c for c in json.loads(report.stdout)["checks"]}
    assert checks["redis.min_replicas"]["level"] == "error"
    assert "0 replica(s) connected" in checks["redis.min_replicas"]["message"]


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=str(HERE))


# ------------------------------------------------------------ sentinels

@pytest.mark.slow
def test_every_part_opens_a_sentinel_url_and_doctor_shows_its_view(
        sentinel_cluster, make_app, tmp_path, app_name):
    """A producer, the CLI, the web UI and doctor on one redis+sentinel
    URL: they all find the primary through the sentinels."""
    profile = _profile(tmp_path, sentinel_cluster.url, app_name,
                       min_replicas=1)
    app = make_app(profile, "apps.sentinel_ledger")
    app.step(str(tmp_path / "ledger"), 1)
    status = subprocess.run([sys.executable, "-m", "hueyq", "status",
                             "--json"], env=dict(_env(), HUEYQ_PROFILE=str(
                                 profile)), capture_output=True, text=True,
                            timeout=60)
    assert status.returncode == 0, status.stderr
    assert '"pending": 1' in status.stdout
    from hueyq.webui import create_app
    web = create_app(app, config={"TESTING": True}).test_client()
    queues = web.get("/api/queues").get_json()
    assert queues["queues"]["high"]["pending"] == 1
    # A service the sentinels do not know: one line, after retry_timeout.
    wrong = subprocess.run(
        [sys.executable, "-m", "hueyq", "status"], env=dict(
            _env(), HUEYQ_PROFILE=str(profile),
            HUEYQ_BACKEND=sentinel_cluster.url.replace("mymaster", "other"),
            HUEYQ_SENTINEL__RETRY_TIMEOUT="500ms"),
        capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines() == [
        "hueyq: 3 of 3 sentinels of Redis service other (sentinels %s) db 0 "
        "answer but know no primary (a failover under way, or a wrong "
        "service name in backend.url)" % ",".join(
            "127.0.0.1:%d" % p for p in sentinel_cluster.sentinel_ports)]
    out = subprocess.run([sys.executable, "-m", "hueyq", "doctor"],
                         env=dict(_env(), HUEYQ_PROFILE=str(profile)),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = {tuple(l.split()[:2]): l for l in out.stdout.splitlines()}
    sentinel = lines[("ok", "redis.sentinel")]
    assert "primary 127.0.0.1:%d" % sentinel_cluster.primary.port in sentinel
    assert "replicas 127.0.0.1:%d" % sentinel_cluster.replica.port in sentinel
    assert "3 of 3 sentinels answer" in sentinel
    assert "min_replicas=1" in lines[("ok", "redis.min_replicas")]
    assert "1 replica(s) connected" in lines[("ok", "redis.min_replicas")]
    assert "Redis service mymaster (sentinels" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("min_replicas", [1, 0])
def test_a_switchover_loses_no_acknowledged_enqueue_with_min_replicas(
        sentinel_cluster, make_app, tmp_path, app_name, min_replicas):
    """SENTINEL FAILOVER: the sentinels name the replica primary at once,
    but clients connected to the old primary write there until the
    sentinels demote it (and close its connections): those writes are
    lost. With min_replicas = 1 they are not acknowledged (the old primary
    has no replica left), and every enqueue that was is on the new primary;
    the producer follows without an error other than NotReplicated."""
    import redis
    cluster = sentinel_cluster
    app = make_app(_profile(tmp_path, cluster.url, app_name,
                            min_replicas=min_replicas,
                            min_replicas_timeout="200ms"), "apps.sentinel_ledger")
    storage = app.storage("high")
    path = str(tmp_path / "ledger")
    acked = [app.step(path, n).id for n in range(20)]
    assert storage.failovers() == 0
    sentinel = redis.Redis(port=cluster.sentinel_ports[0])
    try:
        sentinel.execute_command("SENTINEL", "FAILOVER", cluster.SERVICE)
    finally:
        sentinel.close()
    refused, after = 0, 0
    deadline = time.monotonic() + 30
    while not storage.failovers() or after < 50:
        assert time.monotonic() < deadline, "the producer did not follow"
        try:
            acked.append(app.step(path, len(acked)).id)
        except NotReplicated:
            refused += 1
        else:
            after += bool(storage.failovers())
    assert storage.conn.info("replication")["role"] == "master"
    assert cluster.primary_port() == cluster.replica.port
    missing = [n for n, i in enumerate(acked) if storage.find(i) is None]
    print("\nswitchover:", json.dumps({
        "min_replicas": min_replicas, "acknowledged": len(acked),
        "refused": refused, "lost": len(missing)}))
    if min_replicas:
        assert missing == [], (len(missing), len(acked), refused)
    else:
        # Lost, if any: only what was acknowledged after the switchover
        # began (the first 20 were before it).
        assert all(n >= 20 for n in missing)


def _lag(cluster) -> None:
    """Hold the replica back for 0.4 s (under the sentinels' 1 s
    down-after, so it stays eligible for promotion): stop it, drop its
    link (the primary discards what it had not sent), and let producers
    go on against the primary meanwhile."""
    import redis
    os.kill(cluster.replica.proc.pid, signal.SIGSTOP)
    client = redis.Redis(port=cluster.primary.port)
    try:
        client.client_kill_filter(_type="replica")
    finally:
        client.close()
    time.sleep(0.4)  # the fault's length, not a wait for a condition


class Producers:
    """Threads enqueueing ``step(ledger, n)`` at a steady pace, noting when
    each enqueue was acknowledged and which ones raised."""

    def __init__(self, app, path: str, threads: int = 4,
                 pace: float = 0.005) -> None:
        self.app, self.path, self.pace = app, path, pace
        self.acked: "dict[int, float]" = {}
        self.failed: "dict[int, str]" = {}
        self.stop = threading.Event()
        self._next = iter(range(1, 10 ** 9))
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(threads)]

    def start(self) -> "Producers":
        for thread in self.threads:
            thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                n = next(self._next)
            try:
                self.app.step(self.path, n)
            except Exception as exc:
                self.failed[n] = type(exc).__name__
            else:
                self.acked[n] = time.monotonic()
            time.sleep(self.pace)

    def acked_after(self, moment: float) -> int:
        return sum(1 for t in list(self.acked.values()) if t > moment)

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
            assert not thread.is_alive(), "a producer hangs"


@pytest.mark.slow
@pytest.mark.parametrize("min_replicas, lagging", [(1, True), (0, True),
                                                   (0, False)],
                         ids=["min_replicas=1-lagging", "min_replicas=0-"
                              "lagging", "min_replicas=0"])
def test_failover_under_load_counted_with_a_ledger(
        sentinel_cluster, runtime, make_app, tmp_path, app_name,
        min_replicas, lagging):
    """kill -9 the primary while producers enqueue and a runtime works;
    the sentinels promote the replica, the killed primary comes back as a
    replica. Producers and consumers follow without a restart; the ledger
    says what was lost, duplicated or ran unexpectedly.

    ``lagging``: for the last 0.4 s before the kill the replica is behind,
    as over a slow or congested link: it is stopped (SIGSTOP) and its link
    dropped, so what the primary acknowledges then reaches no replica (on
    loopback a replica is otherwise microseconds behind)."""
    cluster = sentinel_cluster
    began = time.monotonic()
    profile = _profile(tmp_path, cluster.url, app_name,
                       min_replicas=min_replicas,
                       min_replicas_timeout="500ms")
    path = str(tmp_path / "ledger")
    rt = runtime(profile, "apps.sentinel_ledger")
    rt.wait_ready()
    consumers = sorted(p.pid for p in rt.consumers())
    app = make_app(profile, "apps.sentinel_ledger")
    producers = Producers(app, path).start()
    try:
        wait_for(lambda: len(producers.acked) >= 300, 20,
                 message="300 acknowledged enqueues")
        old = cluster.primary.port
        if lagging:
            _lag(cluster)
        killed = time.monotonic()
        cluster.primary.stop()  # SIGKILL
        if lagging:
            os.kill(cluster.replica.proc.pid, signal.SIGCONT)
        wait_for(lambda: cluster.primary_port() not in (old, None), 20, 0.05,
                 "the sentinels to promote the replica")
        promoted = time.monotonic()
        # The operator brings the old primary back as a replica of the new
        # one (min_replicas=1 needs one to write; the sentinels would
        # convert it too, at their next look, up to 10 s later).
        cluster.primary.args = ("--replicaof", "127.0.0.1",
                                str(cluster.primary_port()))
        cluster.primary.start()
        wait_for(lambda: producers.acked_after(time.monotonic() - 0.5) > 20
                 and producers.acked_after(promoted) >= 200, 40, 0.05,
                 "enqueues acknowledged again after the failover")
    finally:
        producers.join()
    storage = app.storage("high")

    def settled():
        # Nothing pending, and the ledger has stopped growing.
        size = os.path.getsize(path) if storage.count("pending") == 0 \
            else -1
        settled.sizes = (settled.sizes + [size])[-15:]
        return len(settled.sizes) == 15 and len(set(settled.sizes)) == 1 \
            and size >= 0
    settled.sizes = []
    wait_for(settled, 30, 0.1, "the queue to drain")
    assert rt.proc.poll() is None, rt.log()[-4000:]
    assert sorted(p.pid for p in rt.consumers()) == consumers, \
        "a consumer was restarted:\n" + rt.log()[-4000:]
    left_running = storage.count("running")
    assert rt.terminate() == 0, rt.log()[-4000:]

    ran = ledger.read(path)
    done, acked = ran["done"], producers.acked
    lost = sorted(set(acked) - set(done))
    duplicated = sorted(n for n, c in done.items() if c > 1)
    unexpected = sorted(set(done) - set(acked))
    figures = {"min_replicas": min_replicas, "acknowledged": len(acked),
               "failed": len(producers.failed), "completed": len(done),
               "lost": len(lost), "duplicated": len(duplicated),
               "unexpected": len(unexpected), "left_running": left_running,
               "lagging": lagging,
               "failover_s": round(promoted - killed, 2),
               "test_s": round(time.monotonic() - began, 1)}
    print("\nfailover ledger:", json.dumps(figures))
    # Every job that ran was enqueued (acknowledged, or an enqueue that
    # raised after reaching the primary: NotReplicated, a lost reply).
    assert set(unexpected) <= set(producers.failed), figures
    # No lease is left behind: a worker hands back leases in its name that
    # the new primary kept after the old one took their acks with it.
    assert left_running == 0, figures
    # Producers and the runtime followed the failover.
    assert producers.acked_after(promoted) >= 200
    assert all(n in done for n, t in acked.items() if t > promoted + 1), \
        figures
    if min_replicas:
        assert lost == [], figures
    else:
        # The documented rule: only enqueues acknowledged in the last
        # moment before the primary died can be lost.
        late = [n for n in lost if not killed - 1.0 < acked[n] <= killed]
        assert late == [], (figures, late)
