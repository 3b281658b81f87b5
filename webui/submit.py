"""Tasks submitted over HTTP: what ``POST /api/tasks/<name>`` accepts.

This module owns the checks of a submission and nothing else: the body (a
JSON object of ``args``, ``kwargs``, ``queue``, ``priority``, ``delay`` and
``eta``, no larger than the profile's ``security.max_message_size``, else
413), the arguments bound against the task function's signature
(:meth:`inspect.Signature.bind`, 400 with its reason), the
``Idempotency-Key`` header (the enqueue's ``key=``), and the huey task they
make. Only tasks the app exposed are found (:meth:`hueyq.App.http_task`);
any other name is 404, whether or not it exists. The route lives in
:mod:`hueyq.webui.api`, who may call it in :mod:`hueyq.webui.auth`.
"""

import datetime
import inspect
import json
import math
import time
from typing import Any

import flask
from werkzeug.exceptions import BadRequest, NotFound, RequestEntityTooLarge

from hueyq.app import check_key

#: Fields of a submission's body.
FIELDS = ("args", "kwargs", "queue", "priority", "delay", "eta")
#: Keyword arguments huey's task call takes for itself: a task cannot get
#: them from a submission's kwargs.
RESERVED = ("id", "eta", "delay", "retries", "retry_delay", "retry_backoff",
            "priority", "expires", "timeout")
#: Longest delay (and farthest eta) a submission may ask for: 100 years.
MAX_DELAY = 100 * 365 * 86400.0
#: The header whose value becomes the enqueue's ``key=``.
IDEMPOTENCY_HEADER = "Idempotency-Key"


class BodyTooLarge(RequestEntityTooLarge):
    """A submission over the size limit (error ``payload_too_large``, as
    for a message over it)."""
    name = "Payload Too Large"


def task_of(app: Any, name: str):
    """(task, queue) that the current request submits to task ``name``."""
    wrapper = app.http_task(name)
    if wrapper is None:
        raise NotFound("no task %r may be submitted over HTTP (declare it "
                       "with @app.task(http=True) or list it in "
                       "web.submit_tasks)" % name[:200])
    fields = _body(app.profile.security.max_message_size)
    args, kwargs = fields.get("args", []), fields.get("kwargs", {})
    if not isinstance(args, list):
        raise BadRequest("args must be a JSON array")
    if not isinstance(kwargs, dict):
        raise BadRequest("kwargs must be a JSON object")
    _check_arguments(wrapper, name, args, kwargs)
    task = wrapper.s(*args, **kwargs, **_options(fields))
    key = flask.request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None:
        try:
            task.key = check_key(key)
        except ValueError as exc:
            raise BadRequest("%s: %s" % (IDEMPOTENCY_HEADER, exc)) from None
    return task, _queue(app, fields.get("queue"))


def _body(limit: int) -> dict:
    length = flask.request.content_length
    if length is not None and length > limit:
        raise BodyTooLarge("the body has %d bytes; the limit is %d "
                                    "(security.max_message_size)"
                                    % (length, limit))
    raw = flask.request.stream.read(limit + 1)
    if len(raw) > limit:
        raise BodyTooLarge("the body is over the limit of %d bytes "
                                    "(security.max_message_size)" % limit)
    try:
        fields = json.loads(raw or b"{}", parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadRequest("the body is not JSON: %s" % exc) from None
    if not isinstance(fields, dict):
        raise BadRequest("the body must be a JSON object with args, kwargs "
                         "and optionally queue, priority, delay, eta")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise BadRequest("unknown field %s (fields: %s)" % (
            ", ".join(repr(k[:50]) for k in unknown[:5]), ", ".join(FIELDS)))
    return fields


def _no_constant(name: str):
    raise ValueError("%s is not a JSON number" % name)


def _check_arguments(wrapper: Any, name: str, args: list,
                     kwargs: dict) -> None:
    taken = [k for k in kwargs if k in RESERVED
             or (k == "key" and not wrapper.takes_key)
             or (k == "task" and wrapper.task_class.context)]
    if taken:
        raise BadRequest("kwargs cannot name %s: the task call takes it for "
                         "itself (use the body's priority, delay or eta, or "
                         "the %s header)" % (taken[0], IDEMPOTENCY_HEADER))
    try:
        signature = inspect.signature(wrapper.func)
    except (TypeError, ValueError):
        return
    extra = {"task": None} if wrapper.task_class.context else {}
    try:
        signature.bind(*args, **kwargs, **extra)
    except TypeError as exc:
        raise BadRequest("arguments do not match %s%s: %s"
                         % (name, signature, exc)) from None


def _options(fields: dict) -> dict:
    options = {}
    priority = fields.get("priority")
    if priority is not None:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise BadRequest("priority must be an integer")
        options["priority"] = priority
    if fields.get("delay") is not None and fields.get("eta") is not None:
        raise BadRequest("give delay or eta, not both")
    if fields.get("delay") is not None:
        options["delay"] = _seconds(fields["delay"], "delay")
    if fields.get("eta") is not None:
        options["eta"] = _eta(fields["eta"])
    return options


def _seconds(value: Any, what: str, most: float = MAX_DELAY) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not 0 <= value <= most:
        raise BadRequest("%s must be a number of seconds from 0 to %d"
                         % (what, most))
    return float(value)


def _eta(value: Any) -> datetime.datetime:
    """An eta given as seconds since the epoch or an ISO 8601 time with its
    offset (``2026-12-03T08:00:00Z``)."""
    latest = time.time() + MAX_DELAY
    if not isinstance(value, str):
        seconds = _seconds(value, "eta", latest)
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    try:
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise BadRequest("eta must be seconds since the epoch or an ISO 8601 "
                         "time with its offset, got %r" % value[:50])
    try:
        seconds = when.timestamp()
    except (OverflowError, OSError, ValueError):
        seconds = math.inf
    if not 0 <= seconds <= latest:
        raise BadRequest("eta %r is out of range (from 1970 to 100 years "
                         "ahead)" % value[:50])
    return when


def _queue(app: Any, queue: Any) -> "str | None":
    if queue is None:
        return None
    if not isinstance(queue, str) or queue not in app.queues:
        raise BadRequest("queue must be one of %s" % ", ".join(app.queues))
    return queue


def answer(app: Any, result: Any) -> flask.Response:
    """202 with the job's id, state and where to follow and cancel it."""
    from hueyq.exceptions import JobNotFound
    job_id = result.id
    try:
        state = app.job(job_id, history=False).state
    except JobNotFound:
        state = "pending"
    links = {"self": flask.url_for("api.job", job_id=job_id),
             "stream": flask.url_for("api.events_stream", job=job_id,
                                     topics=""),
             "cancel": flask.url_for("api.delete_job", job_id=job_id)}
    response = flask.jsonify(id=job_id, state=state, links=links)
    response.status_code = 202
    response.headers["Location"] = links["self"]
    return response
