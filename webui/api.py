"""The JSON API under ``/api/``: the same words as the Python API.

Reads are GET (answered with ``Cache-Control: no-store``); controls are POST
(and ``DELETE /api/jobs/<id>``, the cancel of a submitted job) and go
through :mod:`hueyq.control`, so they act through the backend
and work from any host. Query parameters are checked here (400 with the
reason); the documents come from :mod:`hueyq.webui.payloads`; failures
become ``{"error", "detail"}`` in :mod:`hueyq.webui.errors`. The whole API is
described in ``static/openapi.json``, served at ``/api/openapi.json``.
"""

import dataclasses

import flask
from werkzeug.exceptions import BadRequest

from hueyq import __version__
from hueyq.store import STATES
from hueyq.webui import auth, payloads, state, stream, submit

bp = flask.Blueprint("api", __name__, url_prefix="/api")


def _app():
    return state().app


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = flask.request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest("%s must be an integer, got %r" % (name, raw)) \
            from None
    if not low <= value <= high:
        raise BadRequest("%s must be between %d and %d, got %d"
                         % (name, low, high, value))
    return value


def _float_arg(name: str) -> "float | None":
    raw = flask.request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadRequest("%s must be a number, got %r" % (name, raw)) \
            from None


def _before_id_arg() -> "str | None":
    value = flask.request.args.get("before_id") or None
    if value is not None and len(value) > 200:
        raise BadRequest("before_id is longer than 200 characters")
    return value


def _state_arg() -> "str | None":
    value = flask.request.args.get("state") or None
    if value is not None and value not in STATES:
        raise BadRequest("unknown state %r (states: %s)"
                         % (value, ", ".join(STATES)))
    return value


def _search_args() -> dict:
    """The search terms of a job listing: task, id (a prefix), error (text),
    since and until (enqueue times, seconds since the epoch)."""
    args = flask.request.args
    terms = {}
    for word in ("task", "id", "error"):
        value = (args.get(word) or "").strip()
        if len(value) > 200:
            raise BadRequest("%s is longer than 200 characters" % word)
        terms[word] = value or None
    terms["since"] = _float_arg("since")
    terms["until"] = _float_arg("until")
    return terms


# ------------------------------------------------------------------ reads

@bp.get("/queues")
def queues():
    """Every queue: depth, running, recent outcomes, run times, throughput."""
    minutes = _int_arg("minutes", 60, 1, 1440)
    return payloads.stamped(payloads.queues(_app(), minutes))


@bp.get("/queues/<name>")
def queue(name: str):
    """One queue, as in ``/api/queues``."""
    minutes = _int_arg("minutes", 60, 1, 1440)
    return payloads.stamped(payloads.queue(_app(), name, minutes))


@bp.get("/queues/<name>/jobs")
def queue_jobs(name: str):
    """A page of one queue's jobs; see :func:`jobs`."""
    return _jobs(name)


@bp.get("/jobs")
def jobs():
    """A page of jobs of every queue (``?queue=`` for one), newest first,
    filtered by ``?state=``, paged by ``?offset=`` (pending, scheduled,
    running) or ``?before=&before_id=`` (the history: the enqueue time and
    id of the previous page's last job), at most ``?limit=`` long."""
    return _jobs(flask.request.args.get("queue") or None)


def _jobs(name: "str | None"):
    found = payloads.jobs(
        _app(), queue=name, state=_state_arg(),
        limit=_int_arg("limit", 50, 1, payloads.MAX_LIMIT),
        before=_float_arg("before"), before_id=_before_id_arg(),
        offset=_int_arg("offset", 0, 0, 100_000), **_search_args())
    return payloads.stamped(found)


@bp.get("/jobs/bulk")
def bulk_preview():
    """How many failed or dead jobs ``POST /api/jobs/bulk/retry|delete``
    with the same terms would act on."""
    return payloads.stamped(payloads.bulk_preview(
        _app(), state=_bulk_state(), queue=_queue_arg(), **_search_args()))


@bp.get("/tasks")
def tasks():
    """Task names, for searches."""
    return payloads.stamped(payloads.tasks(_app()))


@bp.get("/series")
def series():
    """Per queue, completions, failures and run times per bucket over
    ``?window=1h|24h|7d`` (``?queue=`` for one)."""
    window = flask.request.args.get("window") or "1h"
    if window not in payloads.WINDOWS:
        raise BadRequest("window must be one of %s, got %r"
                         % (", ".join(payloads.WINDOWS), window))
    return payloads.stamped(payloads.series(_app(), window, _queue_arg()))


def _queue_arg() -> "str | None":
    return flask.request.args.get("queue") or None


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    """One job: progress, attempts, history, error and traceback."""
    return payloads.stamped(payloads.job(_app(), job_id))


@bp.get("/jobs/<job_id>/stream")
def job_stream(job_id: str):
    """Server-sent events of one job as it runs: ``state``, ``progress`` and
    ``output`` (the chunks it emits), ending once it has finished;
    resumable with ``Last-Event-ID`` (or ``?after=``)."""
    return stream.job_response(_app(), job_id, _after_arg())


def _after_arg() -> int:
    raw = flask.request.headers.get("Last-Event-ID")
    name = "Last-Event-ID"
    if raw is None or raw.strip() == "":
        raw, name = flask.request.args.get("after"), "after"
    if raw is None or raw.strip() == "":
        return 0
    raw = raw.strip()
    if not raw.isdigit() or not raw.isascii() or len(raw) > 18:
        raise BadRequest("%s must be the number of an output chunk (an "
                         "integer >= 0), got %r" % (name, raw[:40]))
    return int(raw)


@bp.get("/workers")
def workers():
    """Worker processes with memory, current jobs and GPU memory."""
    return payloads.stamped(payloads.workers(_app()))


@bp.get("/events")
def events():
    """The newest watchdog actions (``?queue=``, ``?limit=``)."""
    return payloads.stamped(payloads.events(
        _app(), limit=_int_arg("limit", 50, 1, payloads.MAX_LIMIT),
        queue=flask.request.args.get("queue") or None))


@bp.get("/health")
def health_report():
    """200 when the backend answers and a runtime is alive, else 503."""
    report = payloads.health(_app())
    return report, report["status"]


@bp.get("/session")
def session():
    """Who is asking, and the CSRF token their controls must send."""
    current = state()
    return {"app": current.app.name, "profile": current.app.profile.name,
            "version": __version__, "auth_required": current.token is not None,
            "bearer": bool(flask.g.get("hueyq_bearer")),
            "read_only": current.read_only, "csrf_token": auth.csrf_token()}


@bp.get("/stream")
def events_stream():
    """Server-sent events: ``queues``, ``running``, ``failures``,
    ``workers``, ``events`` (and ``job`` with ``?job=ID``) whenever they
    change; ``?topics=a,b`` picks some (``?topics=`` none)."""
    topics = flask.request.args.get("topics")
    chosen = None if topics is None else [t for t in topics.split(",") if t]
    job_id = flask.request.args.get("job") or None
    try:
        return stream.response(_app(), chosen, job_id)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


@bp.get("/openapi.json")
def openapi():
    """This API described in OpenAPI 3."""
    with flask.current_app.open_resource("static/openapi.json") as fh:
        return flask.Response(fh.read(), mimetype="application/json")


# ------------------------------------------------------------------ controls

@bp.post("/tasks/<task>")
@auth.control
def submit_task(task: str):
    """Enqueue a task the app exposed (:mod:`hueyq.webui.submit`): 202 with
    the job's id, state and links to follow or cancel it."""
    app = _app()
    job, queue = submit.task_of(app, task)
    return submit.answer(app, app.submit(job, queue))


@bp.delete("/jobs/<job_id>")
@auth.control
def delete_job(job_id: str):
    """Cancel a job, as ``POST /api/jobs/<id>/cancel`` does."""
    return cancel(job_id)


@bp.post("/jobs/<job_id>/cancel")
@auth.control
def cancel(job_id: str):
    """Cancel a job: 200 when it will never run, 202 while a running one
    stops."""
    result = _app().cancel(job_id)
    status = 202 if result.state == "cancelling" else 200
    return dataclasses.asdict(result), status


@bp.post("/jobs/<job_id>/retry")
@auth.control
def retry(job_id: str):
    """Run a failed, cancelled, expired or dead job again."""
    app = _app()
    return payloads.job_dict(app, app.retry(job_id))


@bp.post("/jobs/bulk/retry")
@auth.control
def bulk_retry():
    """Retry the failed or dead jobs matching the query's terms (those of
    ``GET /api/jobs``; ``state`` failed or dead, or none for both), newest
    first, at most 1,000 at once."""
    from hueyq import control
    result = control.retry_many(_app(), **_bulk_args())
    return payloads.bulk(result)


@bp.post("/jobs/bulk/delete")
@auth.control
def bulk_delete():
    """Delete the failed or dead jobs matching the query's terms, as
    ``bulk/retry`` chooses them: records, history, results, kept messages."""
    from hueyq import control
    result = control.delete_many(_app(), **_bulk_args())
    return payloads.bulk(result)


def _bulk_args() -> dict:
    terms = _search_args()
    terms["id_prefix"] = terms.pop("id")
    return dict(terms, state=_bulk_state(), queue=_queue_arg())


def _bulk_state() -> "str | None":
    from hueyq.control import BULK_STATES
    value = _state_arg()
    if value is not None and value not in BULK_STATES:
        raise BadRequest("bulk retry and delete act on failed or dead jobs "
                         "(state=failed, state=dead, or no state for both), "
                         "not %s" % value)
    return value


@bp.post("/queues/<name>/pause")
@auth.control
def pause(name: str):
    """Stop consumers taking from a queue (``{"reason": ...}`` optional)."""
    app = _app()
    body = flask.request.get_json(silent=True)
    reason = body.get("reason", "") if isinstance(body, dict) else ""
    if not isinstance(reason, str):
        raise BadRequest("reason must be a string")
    return payloads.paused(app, name, app.pause(name, reason=reason[:200]))


@bp.post("/queues/<name>/resume")
@auth.control
def resume(name: str):
    """Lift the user's pause of a queue (others' pauses stay)."""
    app = _app()
    return payloads.paused(app, name, app.resume(name))


@bp.post("/queues/<name>/drain")
@auth.control
def drain(name: str):
    """Cancel every pending job of a queue; returns how many."""
    return {"queue": name, "drained": _app().drain(name)}
