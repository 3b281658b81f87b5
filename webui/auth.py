"""Who may use the web app, and how: token, sign-in, CSRF, read-only.

With a token (profile ``web.token`` or ``HUEYQ_WEB_TOKEN``), every page and
API call needs it: a script sends ``Authorization: Bearer <token>``, a person
signs in once on ``/login`` and gets a session cookie. Tokens are compared
with :func:`hmac.compare_digest`. Every request that may change something
(anything but GET, HEAD and OPTIONS) carries the session's CSRF token in the
``X-CSRF-Token`` header (or a ``csrf_token`` form field), unless it proved the
bearer token, which no other site can send. In read-only mode the controls
answer 403. Without a token (loopback only, or ``--insecure``), anyone who
reaches the port may read, and controls still need the CSRF token.
"""

import functools
import hashlib
import hmac
import logging
import os
import secrets
import urllib.parse
from typing import Callable

import flask
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

logger = logging.getLogger("hueyq.webui.auth")

#: Methods that never change anything, so need no CSRF token.
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
#: Endpoints open without signing in.
PUBLIC_ENDPOINTS = ("static", "auth.login")
#: Header the page's script sends the CSRF token in.
CSRF_HEADER = "X-CSRF-Token"

bp = flask.Blueprint("auth", __name__)


class CSRFFailed(Forbidden):
    """A control came without this session's CSRF token."""
    name = "CSRF Failed"


class ReadOnly(Forbidden):
    """A control in read-only mode."""
    name = "Read Only"


def session_secret(token: "str | None", explicit: "str | None" = None) -> str:
    """The key that signs session cookies: ``explicit``, else
    HUEYQ_WEB_SECRET_KEY, else derived from the web token (so every gunicorn
    worker agrees, and changing the token signs everyone out), else random
    for this process."""
    key = explicit or os.environ.get("HUEYQ_WEB_SECRET_KEY")
    if key:
        return key
    if token:
        return hmac.new(token.encode(), b"hueyq.webui session key",
                        hashlib.sha256).hexdigest()
    return secrets.token_hex(32)


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = flask.session.get("csrf")
    if not token:
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
    wrapper.hueyq_control = True
    return wrapper


def init_app(web: flask.Flask) -> None:
    """Guard every request of ``web`` and add the sign-in pages."""
    web.before_request(_guard)
    web.register_blueprint(bp)
    web.jinja_env.globals["csrf_token"] = csrf_token


def _guard() -> "flask.Response | None":
    from hueyq.webui import state
    current = state()
    bearer = _bearer(current.token)
    flask.g.hueyq_bearer = bearer
    if flask.request.endpoint in PUBLIC_ENDPOINTS:
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


def _bearer(token: "str | None") -> bool:
    """True for a right bearer token; 401 for a wrong one; False for none."""
    header = flask.request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        logger.warning("rejected a bearer token from %s",
                       flask.request.remote_addr)
        raise Unauthorized("wrong token", www_authenticate=_challenge())
    return True


def _challenge() -> WWWAuthenticate:
    return WWWAuthenticate("bearer", {"realm": "hueyq"})


def signed_in(token: str) -> bool:
    """Whether this session signed in with the current token."""
    proof = flask.session.get("auth")
    return bool(proof) and hmac.compare_digest(str(proof), _proof(token))


def _proof(token: str) -> str:
    return hashlib.sha256(b"hueyq.webui signed in:" + token.encode()
                          ).hexdigest()[:32]


def check_csrf() -> None:
    """403 unless the request carries this session's CSRF token."""
    expected = flask.session.get("csrf")
    given = flask.request.headers.get(CSRF_HEADER) \
        or flask.request.form.get("csrf_token")
    if not expected or not given \
            or not hmac.compare_digest(given.encode(), expected.encode()):
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
    if flask.request.method == "POST":
        check_csrf()
        given = flask.request.form.get("token", "")
        if hmac.compare_digest(given.encode(), token.encode()):
            flask.session.clear()
            flask.session["auth"] = _proof(token)
            csrf_token()
            return flask.redirect(target)
        logger.warning("failed sign-in from %s", flask.request.remote_addr)
        error, status = "That token is not right.", 401
    return flask.render_template("hueyq/login.html", error=error,
                                 next=target), status


@bp.route("/logout", methods=["POST"])
def logout():
    """Forget the session."""
    flask.session.clear()
    return flask.redirect(flask.url_for("auth.login"))


def _safe_next(target: "str | None") -> str:
    """Only a path on this site, never another host."""
    parts = urllib.parse.urlsplit(target or "")
    if not target or parts.scheme or parts.netloc \
            or not target.startswith("/") or target.startswith("//") \
            or "\\" in target:
        return flask.url_for("pages.dashboard")
    return target
