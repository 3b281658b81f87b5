"""Who may use the web app, and how: host, token, sign-in, CSRF, read-only.

Every request first names a host the server answers to
(:mod:`hueyq.webui.hosts`: the defence against DNS rebinding), or gets 421.
With a token (profile ``web.token`` or ``HUEYQ_WEB_TOKEN``, at least 16
characters), every page and API call needs it: a script sends
``Authorization: Bearer <token>``, a person signs in once on ``/login`` and
gets a session cookie. Tokens are compared with :func:`hmac.compare_digest`;
wrong ones are counted per client and in all (:class:`SignInLimiter`), and
past the limit every attempt gets 429 for a while, with a log line. A
sign-in is a session record in the backend: the cookie holds only its random
id, logging out deletes the record (a replayed cookie gets 401), and a new
token ends every session. Cookies are signed with a random key kept in the
backend (:func:`session_secret`), never one derived from the token, and are
``Secure`` whenever the request came over TLS (or, with ``web.trust_proxy``,
a proxy says it did). Every request that may change something (anything but
GET, HEAD and OPTIONS) carries the session's CSRF token in the
``X-CSRF-Token`` header (or a ``csrf_token`` form field), unless it proved
the bearer token, which no other site can send. A submit token (profile
``web.submit_tokens``) is a bearer token that may only submit tasks
(``POST /api/tasks/<name>``) and read, follow or cancel a job by its id;
every other request with it answers 403. In read-only mode the
controls answer 403. Without a token (loopback only, or ``--insecure``),
anyone who reaches the port may read, and controls still need the CSRF
token.
"""

import collections
import functools
import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import urllib.parse
from typing import Any, Callable

import flask
from flask.sessions import SecureCookieSessionInterface
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import (Forbidden, MisdirectedRequest,
                                 TooManyRequests, Unauthorized)

from hueyq import defaults

logger = logging.getLogger("hueyq.webui.auth")

#: Methods that never change anything, so need no CSRF token.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Endpoints open without signing in.
PUBLIC_ENDPOINTS = ("static", "auth.login")
#: What a submit token (``web.submit_tokens``) may reach: submitting, and
#: reading, following (``/api/stream?job=ID&topics=``: that job alone, and
#: ``/api/jobs/ID/stream``) and cancelling a job by its id.
SUBMIT_ENDPOINTS = ("api.submit_task", "api.job", "api.delete_job",
                    "api.events_stream", "api.job_stream")
#: Header the page's script sends the CSRF token in.
CSRF_HEADER = "X-CSRF-Token"
#: Key of the random cookie-signing key in the backend (huey's result
#: namespace of the app, written once with put_if_empty).
SECRET_KEY_NAME = "hueyq:web:session-key"
#: Prefix of the backend records of signed-in sessions.
SESSION_PREFIX = "web-session:"

bp = flask.Blueprint("auth", __name__)


class CSRFFailed(Forbidden):
    """A control came without this session's CSRF token."""
    name = "CSRF Failed"


class ReadOnly(Forbidden):
    """A control in read-only mode."""
    name = "Read Only"


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookies, ``Secure`` when the request came over TLS."""

    def get_cookie_secure(self, app: flask.Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or (
            flask.has_request_context() and flask.request.is_secure)


class SignInLimiter:
    """Counts wrong tokens per client and in all, within a window; past
    either limit, sign-ins (of that client, or of everyone) are refused
    until the lockout ends. One per web worker process."""

    def __init__(self, per_client: int = defaults.SIGNIN_CLIENT_FAILURES,
                 overall: int = defaults.SIGNIN_GLOBAL_FAILURES,
                 window: float = defaults.SIGNIN_WINDOW,
                 lockout: float = defaults.SIGNIN_LOCKOUT,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_client, self.overall = per_client, overall
        self.window, self.lockout = window, lockout
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: "dict[str, collections.deque]" = {}
        self._all: "collections.deque" = collections.deque()
        self._locked: "dict[str, float]" = {}

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            until = max(self._locked.get(client, 0), self._locked.get("", 0))
        return max(0.0, until - now)

    def failed(self, client: str) -> None:
        """Count a wrong token from ``client``; lock out past the limits."""
        now = self.clock()
        with self._lock:
            if len(self._failures) > 10_000:
                self._forget(now)
            mine = self._failures.setdefault(client, collections.deque())
            for queue, limit, who in ((mine, self.per_client, client),
                                      (self._all, self.overall, "")):
                queue.append(now)
                while queue and queue[0] <= now - self.window:
                    queue.popleft()
                if len(queue) >= limit and self._locked.get(who, 0) <= now:
                    self._locked[who] = now + self.lockout
                    queue.clear()
                    logger.warning(
                        "sign-in locked for %.0fs %s after %d wrong tokens in "
                        "%.0fs", self.lockout, "for %s" % client if who else
                        "for every client", limit, self.window)

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s wrong tokens."""
        with self._lock:
            self._failures.pop(client, None)

    def _forget(self, now: float) -> None:
        for client in [c for c, q in self._failures.items()
                       if not q or q[-1] <= now - self.window]:
            del self._failures[client]


def session_secret(hueyq_app: Any = None, explicit: "str | None" = None
                   ) -> str:
    """The key that signs session cookies: ``explicit``, else
    HUEYQ_WEB_SECRET_KEY, else a random key kept in the app's backend
    (made once, so every worker and host agrees), else, when the backend
    does not answer, a random one for this process."""
    key = explicit or os.environ.get("HUEYQ_WEB_SECRET_KEY")
    if key:
        return key
    if hueyq_app is not None:
        from hueyq.app import backend_errors
        from hueyq.exceptions import HueyqError
        storage = hueyq_app.queue_backend.results
        try:
            storage.put_if_empty(SECRET_KEY_NAME,
                                 secrets.token_hex(32).encode())
            stored = storage.peek_data(SECRET_KEY_NAME)
            if isinstance(stored, (bytes, str)) and len(stored) >= 32:
                return stored.decode() if isinstance(stored, bytes) else stored
        except (HueyqError, *backend_errors()) as exc:
            logger.warning("cannot keep the session key in the backend (%s): "
                           "sessions last as long as this worker", exc)
    return secrets.token_hex(32)


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = flask.session.get("csrf")
    if not isinstance(token, str) or not token:
        token = flask.session["csrf"] = secrets.token_urlsafe(32)
    return token


def control(view: Callable) -> Callable:
    """Mark a view as a control: 403 in read-only mode."""
    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        from hueyq.webui import state
        if state().read_only:
            raise ReadOnly("read-only mode: controls are turned off")
        return view(*args, **kwargs)
    return wrapper


def init_app(web: flask.Flask) -> None:
    """Guard every request of ``web`` and add the sign-in pages."""
    from hueyq.webui.hosts import HostPolicy
    settings = web.extensions["hueyq"].app.profile.web
    web.extensions["hueyq.auth"] = {
        "hosts": HostPolicy(settings.bind, settings.allowed_hosts),
        "limiter": SignInLimiter()}
    web.session_interface = SessionInterface()
    if settings.trust_proxy:
        from werkzeug.middleware.proxy_fix import ProxyFix
        web.wsgi_app = ProxyFix(web.wsgi_app, x_for=1, x_proto=1, x_host=1,
                                x_port=1)
    web.before_request(_guard)
    web.register_blueprint(bp)
    web.jinja_env.globals["csrf_token"] = csrf_token


def _extension() -> dict:
    return flask.current_app.extensions["hueyq.auth"]


def _guard() -> "flask.Response | None":
    from hueyq.webui import state
    from hueyq.webui.hosts import report, split_host
    host = flask.request.host
    if not _extension()["hosts"].allows(host):
        report(split_host(host))
        raise MisdirectedRequest("this server does not answer to host %r "
                                 "(add it to web.allowed_hosts)"
                                 % split_host(host)[:100])
    current = state()
    role = _bearer(current.token, current.submit_tokens)
    bearer = role == "token"
    flask.g.hueyq_bearer = bearer
    if flask.request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if role == "submit":
        _check_submitter()
        return None
    if current.token and not bearer and not signed_in(current.token):
        from hueyq.webui.errors import wants_json
        if wants_json():
            raise Unauthorized("sign in first: send Authorization: Bearer "
                               "<token>", www_authenticate=_challenge())
        return flask.redirect(flask.url_for(
            "auth.login", next=flask.request.full_path.rstrip("?")))
    if flask.request.method not in SAFE_METHODS and not bearer:
        check_csrf()
    return None


def _bearer(token: "str | None", submit_tokens: "tuple[str, ...]" = ()
            ) -> "str | None":
    """``"token"`` for the web token, ``"submit"`` for a submit token; 401
    for a wrong one, 429 while this client (or everyone) is locked out;
    None for none."""
    header = flask.request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not (token or submit_tokens):
        return None
    _check_lockout()
    given = given.strip()
    # Every token is compared, so the time taken says nothing of which.
    role = None
    for name, each in [("token", token)] + [("submit", t)
                                            for t in submit_tokens]:
        if each and _matches(given, each) and role is None:
            role = name
    if role is None:
        logger.warning("rejected a bearer token from %s", _client())
        _extension()["limiter"].failed(_client())
        raise Unauthorized("wrong token", www_authenticate=_challenge())
    _extension()["limiter"].succeeded(_client())
    return role


def _check_submitter() -> None:
    """403 unless a submit token's request is one it may make."""
    args = flask.request.args
    allowed = flask.request.endpoint in SUBMIT_ENDPOINTS and (
        flask.request.endpoint != "api.events_stream"
        or (args.get("job") and args.get("topics") == ""))
    if not allowed:
        raise Forbidden("a submit token may only submit tasks (POST "
                        "/api/tasks/<name>) and read, follow or cancel a "
                        "job by its id")


def _matches(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "replace"),
                               token.encode())


def _client() -> str:
    return flask.request.remote_addr or "?"


def _check_lockout() -> None:
    wait = _extension()["limiter"].retry_after(_client())
    if wait > 0:
        raise TooManyRequests("too many wrong tokens: try again in %.0fs"
                              % wait, retry_after=int(wait) + 1)


def _challenge() -> WWWAuthenticate:
    return WWWAuthenticate("bearer", {"realm": "hueyq"})


def signed_in(token: str) -> bool:
    """Whether this session signed in, with the current token, and has not
    signed out since (its record is in the backend)."""
    sid = flask.session.get("sid")
    if not isinstance(sid, str) or not sid:
        return False
    from hueyq.webui import state
    key = _session_key(sid)
    record = state().app.queue_backend.records(key).get(key)
    return isinstance(record, dict) and isinstance(record.get("proof"), str) \
        and hmac.compare_digest(record["proof"], _proof(token))


def _session_key(sid: str) -> str:
    return SESSION_PREFIX + hashlib.sha256(sid.encode()).hexdigest()[:40]


def _proof(token: str) -> str:
    # Keyed with the cookie key, so a stolen backend record alone does not
    # make the token guessable offline; a new token signs everyone out.
    return hmac.new(flask.current_app.secret_key.encode(),
                    b"hueyq.webui signed in:" + token.encode(),
                    hashlib.sha256).hexdigest()[:32]


def check_csrf() -> None:
    """403 unless the request carries this session's CSRF token."""
    expected = flask.session.get("csrf")
    given = flask.request.headers.get(CSRF_HEADER) \
        or flask.request.form.get("csrf_token")
    if not isinstance(expected, str) or not expected or not given \
            or not hmac.compare_digest(given.encode("utf-8", "replace"),
                                       expected.encode()):
        raise CSRFFailed("missing or wrong CSRF token: send the %s header "
                         "(GET /api/session gives it) or a bearer token"
                         % CSRF_HEADER)


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Sign in with the web token; sets the session cookie."""
    from hueyq.webui import state
    token = state().token
    target = _safe_next(flask.request.values.get("next"))
    if not token or signed_in(token):
        return flask.redirect(target)
    error = None
    status = 200
    headers = {}
    if flask.request.method == "POST":
        check_csrf()
        wait = _extension()["limiter"].retry_after(_client())
        if wait > 0:
            error = "Too many wrong tokens: try again in %.0f s." % wait
            status, headers = 429, {"Retry-After": str(int(wait) + 1)}
        elif _matches(flask.request.form.get("token", ""), token):
            _extension()["limiter"].succeeded(_client())
            _start_session(token)
            return flask.redirect(target)
        else:
            logger.warning("failed sign-in from %s", _client())
            _extension()["limiter"].failed(_client())
            error, status = "That token is not right.", 401
    return flask.render_template("hueyq/login.html", error=error,
                                 next=target), status, headers


def _start_session(token: str) -> None:
    from hueyq.webui import state
    sid = secrets.token_urlsafe(32)
    state().app.queue_backend.put_record(
        _session_key(sid), {"proof": _proof(token), "since": time.time()},
        ttl=defaults.SESSION_LIFETIME)
    flask.session.clear()
    flask.session["sid"] = sid
    csrf_token()


@bp.route("/logout", methods=["POST"])
def logout():
    """End the session: its record goes, so its cookie no longer works."""
    sid = flask.session.get("sid")
    if isinstance(sid, str) and sid:
        from hueyq.webui import state
        state().app.queue_backend.delete_record(_session_key(sid))
    flask.session.clear()
    return flask.redirect(flask.url_for("auth.login"))


def _safe_next(target: "str | None") -> str:
    """Only a path on this site, never another host, never a header."""
    try:
        parts = urllib.parse.urlsplit(target or "")
    except ValueError:
        return flask.url_for("pages.dashboard")
    if not target or parts.scheme or parts.netloc \
            or not target.startswith("/") or target.startswith("//") \
            or "\\" in target or any(ord(c) < 32 or ord(c) == 127
                                     for c in target):
        return flask.url_for("pages.dashboard")
    return target
