"""Live updates: ``GET /api/stream`` as server-sent events.

Each connection polls the backend and the store every
``HUEYQ_STREAM_INTERVAL`` seconds and sends a topic only when its document
changed, as an event named after the topic whose data is the same JSON the
matching API endpoint answers (plus ``now``, the server's clock). A
comment line every few seconds keeps proxies from closing an idle stream
and tells a closed one apart. The stream ends after
``HUEYQ_STREAM_LIFETIME`` (the browser's EventSource reconnects by itself),
so a gunicorn thread is never held for ever. A backend or store that stops
answering becomes a ``problem`` event; the stream goes on polling.
"""

import json
import logging
import time
from typing import Callable, Iterator

import flask

from hueyq.exceptions import HueyqError
from hueyq.webui import payloads
from hueyq.webui.errors import describe

logger = logging.getLogger("hueyq.webui.stream")

#: Topic -> (document builder, send every N polls).
TOPICS: "dict[str, tuple[Callable, int]]" = {
    "queues": (payloads.queues, 1),
    "running": (payloads.running, 1),
    "failures": (payloads.failures, 2),
    "workers": (payloads.workers, 2),
    "events": (payloads.events, 3),
}
#: Seconds of silence after which a keep-alive comment is sent.
KEEPALIVE = 10.0
#: Milliseconds the browser waits before reconnecting.
RETRY_MS = 1500


def response(app, topics: "list[str] | None" = None,
             job_id: "str | None" = None) -> flask.Response:
    """The streaming response for ``topics`` (all by default) and, with
    ``job_id``, that job; ValueError for an unknown topic."""
    chosen = list(TOPICS) if topics is None else topics
    unknown = [t for t in chosen if t not in TOPICS]
    if unknown:
        raise ValueError("unknown topic %s (topics: %s)"
                         % (", ".join(map(repr, unknown)), ", ".join(TOPICS)))
    builders = {t: TOPICS[t] for t in chosen}
    if job_id:
        builders["job"] = (lambda a: payloads.job(a, job_id), 1)
    config = flask.current_app.config
    body = events(app, builders, config["HUEYQ_STREAM_INTERVAL"],
                  config["HUEYQ_STREAM_LIFETIME"])
    return flask.Response(body, mimetype="text/event-stream",
                          headers={"X-Accel-Buffering": "no"})


def events(app, builders: dict, interval: float, lifetime: float
           ) -> Iterator[str]:
    """Server-sent event text: each topic when it changes, until
    ``lifetime`` has passed."""
    yield "retry: %d\n\n" % RETRY_MS
    last: "dict[str, str]" = {}
    deadline = time.monotonic() + lifetime
    quiet_since = time.monotonic()
    poll = 0
    while True:
        for name, (build, every) in builders.items():
            if poll % every:
                continue
            event, text = _document(app, name, build)
            if last.get(name) != text:
                last[name] = text
                quiet_since = time.monotonic()
                if event == "problem":
                    logger.warning("stream topic %s: %s", name, text)
                yield _event(event, text)
        poll += 1
        if time.monotonic() - quiet_since >= KEEPALIVE:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        if time.monotonic() + interval > deadline:
            return
        time.sleep(interval)


def _document(app, name: str, build: Callable) -> "tuple[str, str]":
    """(event name, JSON): the topic's document, or a ``problem`` event
    naming the topic when it cannot be read (not ``error``, which an
    EventSource uses for its own connection errors)."""
    from hueyq.app import backend_errors
    try:
        return name, _json(build(app))
    except (HueyqError, *backend_errors()) as exc:
        status, code, detail = describe(exc)
        return "problem", _json({"topic": name, "error": code,
                               "detail": detail, "status": status})


def _json(document: dict) -> str:
    return json.dumps(document, default=str, separators=(",", ":"))


def _event(name: str, text: str) -> str:
    """One event; ``now`` added after the change check, which it would
    defeat."""
    stamp = '"now":%.3f' % time.time()
    data = "{%s,%s" % (stamp, text[1:]) if text != "{}" else "{%s}" % stamp
    return "event: %s\ndata: %s\n\n" % (name, data)
