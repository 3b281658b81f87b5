"""Live updates: ``GET /api/stream`` as server-sent events.

Every stream of one web process shares a :class:`Hub`: once per
``HUEYQ_STREAM_INTERVAL`` one of the streams (whichever finds the documents
due first) reads each topic that any stream follows, and every stream sends
the topics it follows whose document changed, as an event named after the
topic whose data is the same JSON the matching API endpoint answers (plus
``now``, the server's clock). So a hundred open tabs cost one read per topic
per interval, not a hundred, and the rest of the API keeps answering. A
stream holds one server thread while it is open: the hub admits at most
``HUEYQ_STREAM_LIMIT`` at once (past that: 503 ``too_many_streams``), a
comment line every few seconds tells a closed one apart, and each ends after
``HUEYQ_STREAM_LIFETIME`` (the browser's EventSource reconnects by itself).
A backend or store that stops answering becomes a ``problem`` event; the
stream goes on.

``GET /api/jobs/<id>/stream`` (:func:`job_response`) follows one job
instead, through :class:`hueyq.output.Follower`: ``state``, ``progress`` and
``output`` events, each with an ``id`` (the number of the newest output
chunk sent), so a client reconnecting with ``Last-Event-ID`` gets only the
chunks after it; it ends after the finished job's state event. It counts
toward the same limit and has the same keep-alive and lifetime.
"""

import collections
import json
import logging
import threading
import time
from typing import Callable, Iterator

import flask
from werkzeug.exceptions import ServiceUnavailable

from hueyq.exceptions import HueyqError
from hueyq.output import Follower
from hueyq.webui import payloads
from hueyq.webui.errors import describe

logger = logging.getLogger("hueyq.webui.stream")

#: Topic -> (document builder, read every N intervals).
TOPICS: "dict[str, tuple[Callable, int]]" = {
    "queues": (payloads.queues, 1),
    "running": (payloads.running, 1),
    "failures": (payloads.failures, 2),
    "workers": (payloads.workers, 2),
    "events": (payloads.events, 3),
    "health": (payloads.health, 3),
}
#: Seconds of silence after which a keep-alive comment is sent.
KEEPALIVE = 10.0
#: Milliseconds the browser waits before reconnecting.
RETRY_MS = 1500


class TooManyStreams(ServiceUnavailable):
    """Every stream this web process admits is open."""
    name = "Too Many Streams"


class Subscription:
    """One open stream: the topics it follows and the versions it sent."""

    def __init__(self, keys: "tuple[str, ...]") -> None:
        self.keys = keys
        self.sent: "dict[str, int]" = {}
        self.closed = False


class Hub:
    """The documents every stream of one web process shares (see the
    module docstring): at most ``limit`` streams, documents read every
    ``interval`` seconds by whichever stream finds them due."""

    def __init__(self, app, interval: float, limit: int) -> None:
        self.app = app
        self.interval = interval
        self.limit = limit
        self._cond = threading.Condition()
        self._building = threading.Lock()
        self._builders: "dict[str, tuple[Callable, int]]" = {}
        self._followers: "collections.Counter[str]" = collections.Counter()
        self._docs: "dict[str, tuple[str, str, int]]" = {}
        self._due = 0.0
        self._round = 0
        self.streams = 0

    def subscribe(self, builders: "dict[str, tuple[Callable, int]]"
                  ) -> Subscription:
        """Admit one stream following ``builders``' topics (topic -> (build,
        read every N intervals)), or raise TooManyStreams."""
        with self._cond:
            if self.streams >= self.limit:
                raise TooManyStreams(
                    "%d live streams are open on this web server process, "
                    "the most it serves; close a tab or try again shortly"
                    % self.streams, retry_after=5)
            self.streams += 1
            self._builders.update(builders)
            self._followers.update(list(builders))
            if any(k not in self._docs for k in builders):
                self._due = 0.0  # a new topic is read at once
            return Subscription(tuple(builders))

    def unsubscribe(self, sub: Subscription) -> None:
        """Let a stream go (twice is harmless)."""
        with self._cond:
            if sub.closed:
                return
            sub.closed = True
            self.streams -= 1
            self._followers.subtract(sub.keys)
            for key in sub.keys:
                if self._followers[key] <= 0:
                    del self._followers[key]
                    self._docs.pop(key, None)
                    self._builders.pop(key, None)

    def wait(self, sub: Subscription, timeout: float
             ) -> "list[tuple[str, str]]":
        """(event, JSON) of each of ``sub``'s topics changed since it last
        asked, waiting at most ``timeout`` seconds for one."""
        deadline = time.monotonic() + timeout
        while True:
            self._refresh()
            with self._cond:
                changed = []
                for key in sub.keys:
                    doc = self._docs.get(key)
                    if doc is not None and sub.sent.get(key) != doc[2]:
                        sub.sent[key] = doc[2]
                        changed.append((doc[0], doc[1]))
                now = time.monotonic()
                if changed or now >= deadline:
                    return changed
                if self._building.locked():
                    pause = self.interval
                else:
                    pause = self._due - now
                self._cond.wait(max(0.001, min(deadline - now, pause)))

    def _refresh(self) -> None:
        """Read the topics that are due, if no other stream is doing it."""
        if time.monotonic() < self._due or \
                not self._building.acquire(blocking=False):
            return
        try:
            with self._cond:
                if time.monotonic() < self._due:
                    return
                round_, self._round = self._round, self._round + 1
                todo = {k: b for k, b in self._builders.items()
                        if k not in self._docs or round_ % b[1] == 0}
            built = {k: _document(self.app, k, b[0]) for k, b in todo.items()}
            with self._cond:
                for key, (event, text) in built.items():
                    old = self._docs.get(key)
                    if key not in self._followers or \
                            (old is not None and old[1] == text):
                        continue
                    if event == "problem":
                        logger.warning("stream topic %s: %s", key, text)
                    self._docs[key] = (event, text, (old[2] + 1) if old else 1)
                self._due = time.monotonic() + self.interval
                self._cond.notify_all()
        finally:
            self._building.release()


def hub() -> Hub:
    """This web app's hub."""
    from hueyq.webui import state
    return state().hub


def response(app, topics: "list[str] | None" = None,
             job_id: "str | None" = None) -> flask.Response:
    """The streaming response for ``topics`` (all by default) and, with
    ``job_id``, that job; ValueError for an unknown topic, TooManyStreams
    past the limit."""
    chosen = list(TOPICS) if topics is None else topics
    unknown = [t for t in chosen if t not in TOPICS]
    if unknown:
        raise ValueError("unknown topic %s (topics: %s)"
                         % (", ".join(map(repr, unknown)), ", ".join(TOPICS)))
    builders = {t: TOPICS[t] for t in chosen}
    if job_id:
        builders["job:" + job_id] = (lambda a: payloads.job(a, job_id), 1)
    shared = hub()
    sub = shared.subscribe(builders)
    body = events(shared, sub, flask.current_app.config[
        "HUEYQ_STREAM_LIFETIME"])
    out = flask.Response(body, mimetype="text/event-stream",
                         headers={"X-Accel-Buffering": "no"})
    # The server closes the body when the client goes, even one that was
    # never iterated.
    out.call_on_close(lambda: shared.unsubscribe(sub))
    return out


def events(shared: Hub, sub: Subscription, lifetime: float) -> Iterator[str]:
    """Server-sent event text: each of ``sub``'s topics when it changes,
    until ``lifetime`` has passed."""
    try:
        yield "retry: %d\n\n" % RETRY_MS
        deadline = time.monotonic() + lifetime
        quiet_since = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline - now, KEEPALIVE - (now - quiet_since))
            for event, text in shared.wait(sub, max(0.0, wait)):
                quiet_since = time.monotonic()
                yield _event(event, text)
            if time.monotonic() - quiet_since >= KEEPALIVE:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        shared.unsubscribe(sub)


def _document(app, name: str, build: Callable) -> "tuple[str, str]":
    """(event name, JSON): the topic's document, or a ``problem`` event
    naming the topic when it cannot be read (not ``error``, which an
    EventSource uses for its own connection errors)."""
    from hueyq.app import backend_errors
    event = "job" if name.startswith("job:") else name
    try:
        return event, _json(build(app))
    except (HueyqError, *backend_errors()) as exc:
        status, code, detail = describe(exc)
        return "problem", _json({"topic": event, "error": code,
                                 "detail": detail, "status": status})
    except Exception:  # a topic must fail alone, never every stream
        logger.exception("stream topic %s failed", name)
        return "problem", _json({"topic": event, "error": "internal_error",
                                 "detail": "internal server error (see the "
                                 "web log)", "status": 500})


def _json(document: dict) -> str:
    return json.dumps(document, default=str, separators=(",", ":"))


def _event(name: str, text: str) -> str:
    """One event; ``now`` added after the change check, which it would
    defeat."""
    stamp = '"now":%.3f' % time.time()
    data = "{%s,%s" % (stamp, text[1:]) if text != "{}" else "{%s}" % stamp
    return "event: %s\ndata: %s\n\n" % (name, data)


def job_response(app, job_id: str, after: int) -> flask.Response:
    """The streaming response of one job's events after output chunk
    ``after``; JobNotFound (404) for an unknown job, TooManyStreams past
    the limit."""
    shared = hub()
    sub = shared.subscribe({})
    try:
        follower = Follower(app, job_id, after)
    except BaseException:
        shared.unsubscribe(sub)
        raise

    def done() -> None:
        follower.close()
        shared.unsubscribe(sub)
    body = job_events(follower, flask.current_app.config[
        "HUEYQ_STREAM_LIFETIME"], done)
    out = flask.Response(body, mimetype="text/event-stream",
                         headers={"X-Accel-Buffering": "no"})
    out.call_on_close(done)
    return out


def job_events(follower: Follower, lifetime: float,
               done: Callable[[], None]) -> Iterator[str]:
    """Server-sent event text of one job's events, until the job has
    finished or ``lifetime`` has passed."""
    try:
        yield "retry: %d\n\n" % RETRY_MS
        deadline = time.monotonic() + lifetime
        quiet_since = time.monotonic()
        while not follower.done:
            now = time.monotonic()
            if now >= deadline:
                return
            wait = min(deadline - now, KEEPALIVE - (now - quiet_since))
            for text in _job_step(follower, max(0.0, wait)):
                quiet_since = time.monotonic()
                yield text
            if time.monotonic() - quiet_since >= KEEPALIVE:
                quiet_since = time.monotonic()
                yield ": keep-alive\n\n"
    finally:
        done()


def _job_step(follower: Follower, wait: float) -> "list[str]":
    """The next events of the job as text; a ``problem`` event (and a
    pause) when the backend or the store does not answer."""
    from hueyq.app import backend_errors
    try:
        return ["id: %d\nevent: %s\ndata: %s\n\n" % (
            e.id, e.kind, _json(e.data)) for e in follower.step(wait)]
    except (HueyqError, *backend_errors()) as exc:
        status, code, detail = describe(exc)
        time.sleep(min(wait, 1.0))
        return ["event: problem\ndata: %s\n\n" % _json({
            "topic": "job", "error": code, "detail": detail,
            "status": status})]
