"""The web server under attack, as the hostile review attacked it: a real
gunicorn (`hueyq web`) hit with rebound host names, forged results written
straight into the backend, wrong tokens by the hundred, replayed cookies and
header injection; and schemathesis against the OpenAPI description."""

import http.client
import json
import os
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.parse

import pytest

from conftest import HERE, free_port, wait_for, write_profile

TOKEN = "t0ken-for-the-attackers"


class Canary:
    """Unpickling this creates a file: proof that a forged value ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def strict(body: bytes):
    """JSON as a strict parser reads it (no NaN, no Infinity)."""
    def refuse(name):
        raise ValueError("not JSON: %s" % name)
    return json.loads(body, parse_constant=refuse)


class Server:
    """`hueyq web` as a real gunicorn process on a private port."""

    def __init__(self, tmp_path, backend, app_name, web=None, security=None,
                 env=None):
        self.port = free_port()
        sections = {"web": dict({"bind": "127.0.0.1:%d" % self.port,
                                 "workers": 1}, **(web or {}))}
        if security:
            sections["security"] = security
        self.profile = write_profile(
            tmp_path / ("web-%d.toml" % self.port), backend,
            "sqlite://%s" % (tmp_path / "store.db"), app_name, sections)
        self.env = dict(os.environ, PYTHONPATH=str(HERE),
                        HUEYQ_PROFILE=str(self.profile), **(env or {}))
        self.log_path = tmp_path / ("web-%d.log" % self.port)
        self.proc = self._log = None

    def start(self) -> "Server":
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hueyq", "web", "--app", "apps.basic"],
            env=self.env, cwd=self.log_path.parent, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._up, 30, message="gunicorn")
        return self

    def _up(self):
        if self.proc.poll() is not None:
            raise AssertionError("hueyq web exited:\n" + self.log())
        try:
            return self.request("/static/hueyq.css")[0] == 200
        except OSError:
            return False

    def request(self, path, method="GET", host=None, headers=None,
                body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, path, skip_host=True,
                            skip_accept_encoding=True)
            conn.putheader("Host", host or "127.0.0.1:%d" % self.port)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, response.headers, response.read()
        finally:
            conn.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self._log is not None:
            self._log.close()


@pytest.fixture
def serve(tmp_path, app_name, make_app):
    """Start `hueyq web` for the app (``server.app``, built first: the web
    server opens only databases that exist)."""
    started = []

    def start(backend=None, **kwargs) -> Server:
        server = Server(tmp_path, backend or "sqlite://%s" % (
            tmp_path / "queue.db"), app_name, **kwargs)
        server.app = make_app(server.profile)
        started.append(server)
        return server.start()
    yield start
    for server in started:
        server.stop()


def cookie_of(headers) -> "str | None":
    for value in headers.get_all("Set-Cookie") or ():
        if value.startswith("hueyq_session="):
            return value.split(";", 1)[0]
    return None


def hueyq(profile, *args):
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, env=env, timeout=60)


# ---------------------------------------------------------------- 1. rebinding

@pytest.mark.slow
def test_a_rebound_host_name_gets_421_on_every_route(serve, make_app, inline):
    server = serve()
    app = server.app
    nan = app.tasks.echo(float("nan"))
    inline(app, "high").run()
    evil = "attacker.example:%d" % server.port
    # The attack: read the CSRF token, then pause a queue, from a page whose
    # name now resolves to 127.0.0.1.
    status, headers, body = server.request("/api/session", host=evil)
    assert status == 421 and b"csrf_token" not in body
    status, headers, body = server.request("/api/session")
    csrf, cookie = strict(body)["csrf_token"], cookie_of(headers)
    status, _, _ = server.request("/api/queues/low/pause", "POST", host=evil,
                                  headers={"X-CSRF-Token": csrf,
                                           "Cookie": cookie}, body=b"")
    assert status == 421 and not app.queue_stats()["low"]["paused"]
    for path in ("/", "/api/queues", "/api/jobs/%s" % nan.id, "/metrics",
                 "/api/stream?topics=queues", "/static/hueyq.js", "/login",
                 "/api/openapi.json"):
        assert server.request(path, host=evil)[0] == 421, path
        assert server.request(path, host="rebind.example")[0] == 421, path
    for host in ("127.0.0.1:%d" % server.port, "localhost:%d" % server.port,
                 "localhost", "[::1]:%d" % server.port):
        assert server.request("/api/queues", host=host)[0] == 200, host
    assert "refused a request for host 'attacker.example'" in server.log()
    # 9: a NaN result is strict JSON in the API and the CLI.
    status, _, body = server.request("/api/jobs/%s" % nan.id)
    assert status == 200 and strict(body)["result"] == "NaN"
    shown = hueyq(server.profile, "job", nan.id, "--json")
    assert shown.returncode == 0 and strict(shown.stdout)["result"] == "NaN"


# ---------------------------------------------------------------- 2. forged results

def forge_result(app, job_id: str, data: bytes) -> None:
    """Write a result into the backend by hand (kv row, Redis hash)."""
    storage = app.any_storage
    if hasattr(storage, "filename"):
        db = sqlite3.connect(storage.filename)
        with db:
            db.execute("insert or replace into kv (queue, key, value) values"
                       " (?, ?, ?)", (app.name, job_id, data))
        db.close()
    else:
        storage.conn.hset(storage.result_key, job_id, data)


@pytest.mark.slow
@pytest.mark.parametrize("secret", [None, "s3cret"])
def test_a_forged_result_never_runs_in_the_web_ui_or_the_cli(
        serve, make_app, inline, backend_url, tmp_path, secret):
    server = serve(backend_url, security={"secret": secret} if secret else None)
    app = server.app
    handle = app.tasks.echo("real")
    inline(app, "high").run()
    canary = tmp_path / "canary"
    forge_result(app, handle.id, b"HQ1\x00\x00\x02{}" + pickle.dumps(
        Canary(str(canary))))
    status, _, body = server.request("/api/jobs/%s" % handle.id)
    assert status == 200
    job = strict(body)
    page = server.request("/jobs/%s" % handle.id)
    assert page[0] == 200
    shown = hueyq(server.profile, "job", handle.id)
    assert shown.returncode == 0 and "Traceback" not in shown.stderr
    assert not canary.exists()
    if secret:
        assert job["result"] is None
        assert job["result_error"] == "result unreadable: bad signature"
        assert "result:       result unreadable: bad signature" in shown.stdout
    else:
        assert job["result"] == "<io.open>" and job["result_error"] is None
        assert "result:       '<io.open>'" in shown.stdout
    assert app.job(handle.id).result_error == job["result_error"]
    assert not canary.exists()


# ---------------------------------------------------------------- 5. sign-in

def login_form(server, query=""):
    status, headers, body = server.request("/login" + query)
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1)
    return status, cookie_of(headers), token.decode()


def form(**fields) -> bytes:
    return urllib.parse.urlencode(fields).encode()


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.mark.slow
def test_sign_in_is_limited_revocable_and_keyed_off_the_token(
        serve, make_app, tmp_path):
    from flask import Flask
    from flask.sessions import SecureCookieSessionInterface
    import hashlib
    import hmac
    from itsdangerous import BadSignature
    from hueyq.webui.auth import session_secret
    server = serve(web={"token": TOKEN, "trust_proxy": True})
    app = server.app

    # The cookie of an unauthenticated GET /login is not signed with a key
    # derived from the token (no offline guessing), but with the backend's.
    status, cookie, csrf = login_form(server)
    value = cookie.split("=", 1)[1]
    signer = SecureCookieSessionInterface()
    derived = Flask("x")
    derived.secret_key = hmac.new(TOKEN.encode(), b"hueyq.webui session key",
                                  hashlib.sha256).hexdigest()
    with pytest.raises(BadSignature):
        signer.get_signing_serializer(derived).loads(value)
    kept = Flask("y")
    kept.secret_key = session_secret(app)
    assert signer.get_signing_serializer(kept).loads(value)["csrf"] == csrf

    # Sign in, then out: the old cookie replayed gets 401.
    status, headers, _ = server.request(
        "/login", "POST", headers=dict(FORM, Cookie=cookie),
        body=form(token=TOKEN, csrf_token=csrf, next="/queues/low"))
    assert status == 302 and headers["Location"] == "/queues/low"
    signed = cookie_of(headers)
    assert server.request("/api/queues", headers={"Cookie": signed})[0] == 200
    session = strict(server.request("/api/session",
                                    headers={"Cookie": signed})[2])
    status, _, _ = server.request("/logout", "POST", headers=dict(
        FORM, Cookie=signed), body=form(csrf_token=session["csrf_token"]))
    assert status == 302
    assert server.request("/api/queues", headers={"Cookie": signed})[0] == 401

    # CR/LF in next: a safe redirect, never a 500 or a header.
    evil_next = "?next=/%0d%0aSet-Cookie:%20evil=1"
    status, headers, _ = server.request("/login" + evil_next)
    assert status == 200 and "evil" not in str(headers)
    status, cookie, csrf = login_form(server)
    status, headers, _ = server.request(
        "/login", "POST", headers=dict(FORM, Cookie=cookie),
        body=form(token=TOKEN, csrf_token=csrf, next="/\r\nSet-Cookie: evil=1"))
    assert status == 302 and headers["Location"] == "/"
    assert "evil" not in str(headers)

    # Secure cookies when the proxy says the request came over TLS.
    _, plain, _ = server.request("/login")
    _, tls, _ = server.request("/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in plain["Set-Cookie"] and "Secure" in tls["Set-Cookie"]

    # Wrong tokens: five, then 429 for this client, even for the right one.
    statuses = [server.request("/api/queues", headers={
        "Authorization": "Bearer guess-%03d-xxxxxxxxxxxx" % i})[0]
        for i in range(40)]
    assert statuses[:5] == [401] * 5 and set(statuses[5:]) == {429}
    status, headers, _ = server.request("/api/queues", headers={
        "Authorization": "Bearer " + TOKEN})
    assert status == 429 and int(headers["Retry-After"]) > 0
    status, cookie, csrf = login_form(server)
    status, headers, body = server.request(
        "/login", "POST", headers=dict(FORM, Cookie=cookie),
        body=form(token="wrong", csrf_token=csrf))
    assert status == 429 and b"Too many wrong tokens" in body
    assert "sign-in locked for 60s for 127.0.0.1 after 5 wrong tokens" in \
        server.log()
    assert "Traceback" not in server.log()


@pytest.mark.slow
@pytest.mark.parametrize("token", ["short-token", " " * 20, "has a space in it"])
def test_weak_tokens_are_refused(tmp_path, profile_path, token):
    result = subprocess.run(
        [sys.executable, "-m", "hueyq", "web"], capture_output=True, text=True,
        timeout=60, env=dict(os.environ, PYTHONPATH=str(HERE),
                             HUEYQ_PROFILE=str(profile_path),
                             HUEYQ_WEB_TOKEN=token))
    assert result.returncode == 2
    assert "web.token" in result.stderr and "Traceback" not in result.stderr


# ---------------------------------------------------------------- schemathesis

def test_schemathesis_finds_no_500_and_every_answer_matches_the_schema(
        tmp_path, app_name, make_app, inline):
    """Every operation of webui/static/openapi.json, a bounded number of
    generated requests each, against the app with a token: no server error,
    and status, content type and body as the description says."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import (content_type_conformance,
                                     not_a_server_error,
                                     response_schema_conformance,
                                     status_code_conformance)
    from hueyq.webui import create_app
    profile = write_profile(tmp_path / "p.toml", "sqlite://%s" % (
        tmp_path / "queue.db"), "sqlite://%s" % (tmp_path / "store.db"),
        app_name, {"web": {"token": TOKEN}})
    app = make_app(profile)

    @app.task(queue="low", http=True)
    def take(*args, **kwargs):
        """Submitted over HTTP with whatever arguments it was given."""
    app.tasks.echo(float("inf"))
    app.tasks.fail("boom")
    inline(app, "high").run()
    inline(app, "low").run()
    app.tasks.add(1, 2)
    now = time.time()
    app.any_storage.put_record("runtime:%s:1" % app.host_id, {
        "host": app.host_id, "pid": 1, "started_at": now, "heartbeat": now,
        "interval": 3600.0, "workers": []}, ttl=3600)
    web = create_app(app, config={"HUEYQ_STREAM_INTERVAL": 0.01,
                                  "HUEYQ_STREAM_LIFETIME": 0.05})
    schema = schemathesis.openapi.from_path(
        str(HERE.parent / "webui" / "static" / "openapi.json"))
    schema.app = web
    checks = [not_a_server_error, status_code_conformance,
              content_type_conformance, response_schema_conformance]
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            case.headers = dict(case.headers or {},
                                Authorization="Bearer " + TOKEN)
            if "task" in (case.path_parameters or {}):
                # A task it may submit, so the bodies reach the checks.
                case.path_parameters["task"] = "test_webui_security.take"
            case.call_and_validate(checks=checks)
        try:
            check()
        except Exception as exc:  # one report for every failing operation
            failures.append("%s: %s" % (operation.label, exc))
    assert operations >= 17
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------- in a browser

@pytest.mark.slow
@pytest.mark.browser
def test_in_chromium_a_rebound_name_is_refused_and_a_forged_result_shows_so(
        serve, make_app, inline, tmp_path):
    """Chromium resolving attacker.example to 127.0.0.1 (what DNS rebinding
    achieves) gets 421; the job page of a signed deployment whose result was
    forged shows "result unreadable: bad signature"."""
    if not os.path.exists("/usr/bin/chromium"):
        from conftest import missing
        missing("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    server = serve(security={"secret": "s3cret"})
    app = server.app
    handle = app.tasks.echo("real")
    inline(app, "high").run()
    forge_result(app, handle.id, b"HQ1\x00\x00\x02{}" + pickle.dumps(
        Canary(str(tmp_path / "canary"))))
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  "--host-resolver-rules=MAP attacker.example 127.0.0.1"])
        try:
            tab = browser.new_page()
            tab.set_default_timeout(20_000)
            rebound = tab.goto("http://attacker.example:%d/api/session"
                               % server.port)
            assert rebound.status == 421
            assert "csrf_token" not in tab.content()
            tab.goto("http://127.0.0.1:%d/jobs/%s" % (server.port, handle.id))
            result = tab.locator("#job-result pre")
            sync_api.expect(result).to_have_text(
                "result unreadable: bad signature")
        finally:
            browser.close()
    assert not (tmp_path / "canary").exists()
