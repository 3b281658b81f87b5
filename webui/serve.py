"""``hueyq web``: the web app under gunicorn, embedded through gunicorn's
application API.

:func:`run_web` makes the command-line flags win everywhere (they reach
every gunicorn worker through the environment), builds the App once to read
its profile and to fail early on a bad ``--app``, refuses an unsafe bind,
and hands over to gunicorn's arbiter. Workers are forked without the app
preloaded: each opens its own backend and store connections. A server-sent
event stream holds one of a worker's threads while it is open, so each
worker gets ``web.threads`` threads for requests plus
:data:`hueyq.webui.STREAM_LIMIT` for streams (which share one poll of the
backend, :class:`hueyq.webui.stream.Hub`): open streams never starve the
rest of the API.
"""

import ipaddress
import logging
import secrets
from typing import Any

from gunicorn.app.base import BaseApplication

from hueyq.exceptions import ConfigurationError

logger = logging.getLogger("hueyq.webui.serve")

#: Seconds a worker gets on SIGTERM to finish its requests (an SSE stream
#: never finishes by itself, so keep this short).
GRACEFUL_TIMEOUT = 3
#: gunicorn kills a worker silent for this long.
WORKER_TIMEOUT = 30


class WebServer(BaseApplication):
    """gunicorn running :func:`hueyq.webui.create_app` for one hueyq App."""

    def __init__(self, hueyq_app: Any, options: dict,
                 secret_key: "str | None" = None) -> None:
        self.hueyq_app = hueyq_app
        self.options = options
        self.secret_key = secret_key
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            # Settings newer than the oldest gunicorn we support are skipped.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        from hueyq.webui import create_app
        return create_app(self.hueyq_app, secret_key=self.secret_key)


def is_loopback(bind: str) -> bool:
    """Whether a gunicorn bind address only listens on this machine: a
    unix socket does; an inherited ``fd://`` socket may listen anywhere, so
    it counts as public."""
    if bind.startswith("unix:"):
        return True
    if bind.startswith("fd://"):
        return False
    host = bind
    if bind.startswith("["):
        host = bind[1:].split("]", 1)[0]
    elif bind.count(":") == 1:
        host = bind.split(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(bind: str, token: "str | None", insecure: bool) -> None:
    """ConfigurationError for a non-loopback bind without a token, unless
    ``insecure``."""
    if token or is_loopback(bind):
        return
    if not insecure:
        raise ConfigurationError(
            "refusing to serve the web UI on %s without a token: set "
            "web.token (or HUEYQ_WEB_TOKEN), bind 127.0.0.1, or pass "
            "--insecure" % bind)
    logger.warning("serving the web UI on %s with no token: anyone who can "
                   "reach it can pause, drain and cancel (--insecure)", bind)


def gunicorn_options(web) -> dict:
    """gunicorn settings from the profile's ``[web]`` table."""
    from hueyq.webui import STREAM_LIMIT
    return {"bind": [web.bind], "workers": web.workers,
            "threads": web.threads + STREAM_LIMIT, "worker_class": "gthread",
            "timeout": WORKER_TIMEOUT, "graceful_timeout": GRACEFUL_TIMEOUT,
            "proc_name": "hueyq-web", "errorlog": "-", "loglevel": "info",
            "control_socket_disable": True}


def run_web(app_spec: "str | None", overrides: "dict | None" = None) -> int:
    """Serve the web UI until stopped; ``app_spec`` is ``module[:attr]`` or
    None for an App built from the profile alone. Returns an exit status."""
    import os
    from hueyq import files, logs
    from hueyq.app import App, load_app
    from hueyq.profile import export_overrides
    export_overrides(overrides or {})
    # The web UI changes state (controls) but never creates the files.
    with files.access(files.EXISTING):
        hueyq_app = load_app(app_spec) if app_spec else \
            App(require_secret=False)
    web = hueyq_app.profile.web
    logs.setup(logs.choose_format(None, hueyq_app.profile.runtime.log_format))
    check_bind(web.bind, web.token, web.insecure)
    hueyq_app.queue_backend.ping()
    secret_key = None
    if not web.token and not os.environ.get("HUEYQ_WEB_SECRET_KEY"):
        secret_key = secrets.token_hex(32)  # shared by this server's workers
    logger.info("web UI of app %s (profile %s) on %s, %d workers%s",
                hueyq_app.name, hueyq_app.profile.name, web.bind, web.workers,
                ", read-only" if web.read_only else "")
    hueyq_app.close()  # the workers open connections of their own
    WebServer(hueyq_app, gunicorn_options(web), secret_key).run()
    return 0
