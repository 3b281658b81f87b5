"""`hueyq web` as a real gunicorn process, and `hueyq run --web`."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from conftest import HERE, free_port, wait_for, write_profile

pytestmark = pytest.mark.slow

TOKEN = "t0ken-for-gunicorn"


def request(url, method="GET", token=None, data=None, timeout=10):
    req = urllib.request.Request(url, method=method, data=data)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def up(url):
    try:
        return request(url)[0] in (200, 401, 503)
    except OSError:
        return False


@pytest.fixture
def web_profile(tmp_path, backend_url, app_name):
    port = free_port()
    profile = write_profile(tmp_path / "web.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"web": {"bind": "127.0.0.1:%d" % port,
                                     "workers": 2}})
    return profile, "http://127.0.0.1:%d" % port


def start_web(profile, tmp_path, *args, env=None):
    full = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile),
                **(env or {}))
    log = open(tmp_path / "web.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "hueyq", "web", *args],
                            env=full, cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def test_gunicorn_serves_the_api_with_a_token(web_profile, tmp_path, make_app):
    profile, base = web_profile
    app = make_app(profile)
    job = app.tasks.echo("over http")
    proc, log = start_web(profile, tmp_path, "--app", "apps.basic",
                          env={"HUEYQ_WEB_TOKEN": TOKEN})
    try:
        wait_for(lambda: up(base + "/api/queues"), 20, message="gunicorn")
        status, headers, _ = request(base + "/api/queues")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, headers, body = request(base + "/api/queues", token=TOKEN)
        assert status == 200 and headers["Cache-Control"] == "no-store"
        assert list(json.loads(body)["queues"]) == ["high", "medium", "gpu", "low"]
        status, _, body = request(base + "/api/jobs/%s" % job.id, token=TOKEN)
        assert status == 200 and json.loads(body)["state"] == "pending"
        status, _, body = request(base + "/api/queues/low/pause", "POST",
                                  token=TOKEN)
        assert status == 200 and json.loads(body)["paused"] is True
        assert app.queue_stats()["low"]["paused_by"] == ["user"]
        status, _, body = request(base + "/metrics", token=TOKEN)
        assert status == 200 and b'hueyq_queue_paused{queue="low"} 1.0' in body
        status, _, _ = request(base + "/api/health", token=TOKEN)
        assert status == 503                 # no runtime alive
        req = urllib.request.Request(base + "/api/stream?topics=queues")
        req.add_header("Authorization", "Bearer " + TOKEN)
        with urllib.request.urlopen(req, timeout=10) as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            lines = [stream.readline() for _ in range(4)]
        assert b"event: queues\n" in lines
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert time.monotonic() - started < 10
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_gunicorn_takes_submissions_from_a_submit_token(
        tmp_path, backend_url, app_name, make_app):
    submit_token = "submit-t0ken-for-gunicorn"
    port = free_port()
    profile = write_profile(tmp_path / "web.toml", backend_url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name,
                            {"web": {"bind": "127.0.0.1:%d" % port,
                                     "workers": 2, "token": TOKEN,
                                     "submit_tokens": [submit_token],
                                     "submit_tasks": ["apps.basic.add"]}})
    base = "http://127.0.0.1:%d" % port
    app = make_app(profile)
    proc, log = start_web(profile, tmp_path, "--app", "apps.basic")
    try:
        wait_for(lambda: up(base + "/api/queues"), 20, message="gunicorn")
        ids = []
        for _ in range(2):  # two requests, maybe two workers: one job
            req = urllib.request.Request(
                base + "/api/tasks/apps.basic.add", method="POST",
                data=json.dumps({"args": [1, 2]}).encode(), headers={
                    "Authorization": "Bearer " + submit_token,
                    "Content-Type": "application/json",
                    "Idempotency-Key": "order-7"})
            with urllib.request.urlopen(req, timeout=10) as response:
                assert response.status == 202
                ids.append(json.loads(response.read())["id"])
        assert ids[0] == ids[1]
        assert app.job(ids[0]).state == "pending"
        assert app.queue_stats()["medium"]["pending"] == 1
        status, _, _ = request(base + "/api/queues/medium/drain", "POST",
                               token=submit_token)
        assert status == 403
        status, _, body = request(base + "/api/jobs/%s" % ids[0], "DELETE",
                                  token=submit_token)
        assert status == 200 and json.loads(body)["state"] == "cancelled"
        assert app.job(ids[0]).state == "cancelled"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(15)
        log.close()


def test_a_public_bind_without_a_token_is_refused(tmp_path, profile_path):
    proc, log = start_web(profile_path, tmp_path, "--bind", "0.0.0.0:%d" % free_port())
    assert proc.wait(30) == 2
    log.close()
    text = (tmp_path / "web.log").read_text()
    assert "refusing to serve the web UI on 0.0.0.0" in text
    assert "Traceback" not in text


def test_run_with_web_serves_the_ui_beside_the_runtime(web_profile, runtime,
                                                       make_app):
    profile, base = web_profile
    app = make_app(profile)
    rt = runtime(profile, extra_args=["--web"])
    rt.wait_ready()
    wait_for(lambda: up(base + "/api/health"), 30, message="the web UI")
    wait_for(lambda: request(base + "/api/health")[0] == 200, 30,
             message="a healthy runtime")
    assert app.tasks.echo("seen")(blocking=True, timeout=20) == "seen"
    status, _, body = request(base + "/api/workers")
    assert status == 200
    assert {w["queue"] for w in json.loads(body)["workers"]} == \
        {"high", "medium", "gpu", "low"}
    assert rt.terminate() == 0
    wait_for(lambda: not up(base + "/api/queues"), 20, message="the web UI to stop")


def open_streams(base, count, topics=""):
    """``count`` real server-sent event connections, each past its headers
    and first event."""
    import socket
    host, port = base.split("//")[1].split(":")
    query = "?topics=" + topics if topics else ""
    socks = []
    for _ in range(count):
        sock = socket.create_connection((host, int(port)), timeout=20)
        sock.sendall(("GET /api/stream%s HTTP/1.1\r\nHost: %s:%s\r\n"
                      "Accept: text/event-stream\r\n\r\n"
                      % (query, host, port)).encode())
        socks.append(sock)
    for sock in socks:
        data = b""
        while b"\r\n\r\n" not in data or b"event: " not in data:
            chunk = sock.recv(65536)
            assert chunk, "a stream closed: %r" % data[:200]
            data += chunk
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        sock.setblocking(False)
    return socks


def drain_streams(socks, stop):
    """Read whatever the streams send until ``stop`` is set; returns the
    bytes each one got."""
    import selectors
    got = {s.fileno(): 0 for s in socks}
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    while not stop.is_set():
        for key, _ in selector.select(0.2):
            try:
                got[key.fd] += len(key.fileobj.recv(65536))
            except BlockingIOError:
                pass
    selector.close()
    return got


def timed(url, count=20):
    import statistics
    times = []
    for _ in range(count):
        start = time.perf_counter()
        status, _, _ = request(url, timeout=10)
        times.append((time.perf_counter() - start) * 1000)
        assert status in (200, 503), (url, status)
    return statistics.median(times), max(times)


def test_a_hundred_open_streams_do_not_starve_the_api(web_profile, tmp_path,
                                                      make_app, runtime):
    import threading
    profile, base = web_profile
    make_app(profile)
    rt = runtime(profile)
    rt.wait_ready()
    proc, log = start_web(profile, tmp_path, "--app", "apps.basic")
    socks = []
    try:
        wait_for(lambda: up(base + "/api/queues"), 20, message="gunicorn")
        wait_for(lambda: request(base + "/api/health")[0] == 200, 30,
                 message="a healthy runtime")
        before = {path: timed(base + path, 10)
                  for path in ("/api/queues", "/api/health", "/metrics")}
        socks = open_streams(base, 100)
        stop = threading.Event()
        got = {}
        reader = threading.Thread(target=lambda: got.update(
            drain_streams(socks, stop)))
        reader.start()
        during = {path: timed(base + path)
                  for path in ("/api/queues", "/api/health", "/metrics")}
        stop.set()
        reader.join(10)
        print("\nmedian / max ms without streams: %s; with 100 open streams:"
              " %s" % ({p: "%.1f / %.1f" % v for p, v in before.items()},
                       {p: "%.1f / %.1f" % v for p, v in during.items()}))
        # Starved, a request would wait for a free thread: until a stream
        # ends (HUEYQ_STREAM_LIFETIME) or its 10 s timeout. The bound leaves
        # room for a loaded machine, not for that.
        for path, (median, _) in during.items():
            assert median < 500, (path, during)
        assert len(got) == 100
        for sock in socks:          # every stream is still open
            try:
                assert sock.recv(65536) != b"", "a stream was closed"
            except BlockingIOError:
                pass
    finally:
        for sock in socks:
            sock.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()
