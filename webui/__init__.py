"""The web UI and JSON API of hueyq: a Flask app factory.

:func:`create_app` builds a Flask app around one :class:`hueyq.App`: the JSON
API under ``/api/`` (:mod:`hueyq.webui.api`), server-sent events
(:mod:`hueyq.webui.stream`), Prometheus metrics
(:mod:`hueyq.webui.metrics`), the pages that consume that same API
(:mod:`hueyq.webui.pages`), and sign-in, CSRF and read-only rules
(:mod:`hueyq.webui.auth`). It reads everything from the backend and the
store, so it runs in its own process or on another host; :mod:`hueyq.webui.
serve` runs it under gunicorn. Its state lives in ``app.extensions["hueyq"]``.
"""

import dataclasses
from typing import Any

import flask

from hueyq import __version__

#: Seconds between two polls of a server-sent event stream.
STREAM_INTERVAL = 1.0
#: A stream ends after this long and the browser reconnects, so that no
#: gunicorn thread is held for ever.
STREAM_LIFETIME = 300.0
#: Streams one web server process keeps open at once (each holds a thread;
#: ``hueyq web`` gives every gunicorn worker this many threads more than
#: ``web.threads``); past it a stream is answered 503.
STREAM_LIMIT = 128


@dataclasses.dataclass
class WebState:
    """What the web app knows: the hueyq App, the web settings, and what
    the live streams share (:class:`hueyq.webui.stream.Hub`)."""
    app: Any
    token: "str | None"
    read_only: bool
    #: Bearer tokens that may only submit (``web.submit_tokens``).
    submit_tokens: "tuple[str, ...]" = ()
    registry: Any = None
    hub: Any = None


def state() -> WebState:
    """The WebState of the current Flask app."""
    return flask.current_app.extensions["hueyq"]


def create_app(hueyq_app: Any = None, *, secret_key: "str | None" = None,
               config: "dict | None" = None) -> flask.Flask:
    """A Flask app serving the UI and API of ``hueyq_app``.

    Without ``hueyq_app``, one is built from the profile alone (as ``hueyq
    web`` does without ``--app``). ``secret_key`` signs session cookies; see
    :func:`hueyq.webui.auth.session_secret` for the default.
    """
    from hueyq.webui import api, auth, errors, metrics, pages
    if hueyq_app is None:
        from hueyq.app import App
        hueyq_app = App(require_secret=False)
    web = flask.Flask(__name__)
    web.json.sort_keys = False  # queues stay in priority order
    web.config.update(
        SESSION_COOKIE_NAME="hueyq_session", SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", HUEYQ_STREAM_INTERVAL=STREAM_INTERVAL,
        HUEYQ_STREAM_LIFETIME=STREAM_LIFETIME,
        HUEYQ_STREAM_LIMIT=STREAM_LIMIT)
    web.config.update(config or {})
    settings = hueyq_app.profile.web
    web.secret_key = auth.session_secret(hueyq_app, secret_key)
    from hueyq.webui.stream import Hub
    web.extensions["hueyq"] = WebState(
        app=hueyq_app, token=settings.token, read_only=settings.read_only,
        submit_tokens=settings.submit_tokens,
        hub=Hub(hueyq_app, web.config["HUEYQ_STREAM_INTERVAL"],
                web.config["HUEYQ_STREAM_LIMIT"]))
    auth.init_app(web)
    errors.init_app(web)
    metrics.init_app(web)
    web.register_blueprint(api.bp)
    web.register_blueprint(pages.bp)
    web.after_request(_headers)
    web.context_processor(_template_globals)
    return web


def _headers(response: flask.Response) -> flask.Response:
    if not flask.request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
    return response


def _template_globals() -> dict:
    current = state()
    return {"hueyq_app": current.app, "read_only": current.read_only,
            "auth_required": current.token is not None,
            "version": __version__}
