"""Errors of the web app: every failure as ``{"error", "detail"}`` and a
real status code.

hueyq's own exceptions map to one status each (404 for a missing job or
queue, 409 for a job in the wrong state, 413 for a message over the size
limit, 503 when the backend or the store
does not answer); HTTP errors keep theirs. The API and ``/metrics`` answer
JSON; pages answer a small HTML page with the same words.
"""

import logging

import flask
from werkzeug.exceptions import HTTPException

from hueyq.exceptions import (BackendUnavailable, HueyqError, InvalidState,
                              JobNotFound, PayloadTooLarge, QueueNotFound,
                              StoreUnavailable)

logger = logging.getLogger("hueyq.webui.errors")

#: hueyq's exceptions, most specific first: (class, status, error code).
STATUSES = ((JobNotFound, 404, "job_not_found"),
            (QueueNotFound, 404, "queue_not_found"),
            (InvalidState, 409, "invalid_state"),
            (PayloadTooLarge, 413, "payload_too_large"),
            (BackendUnavailable, 503, "backend_unavailable"),
            (StoreUnavailable, 503, "store_unavailable"))


def describe(exc: BaseException) -> "tuple[int, str, str]":
    """(status, error code, detail) of an exception the API may meet."""
    from hueyq.app import backend_errors
    if isinstance(exc, HTTPException):
        code = (exc.name or "error").lower().replace(" ", "_")
        return exc.code or 500, code, exc.description or exc.name
    for cls, status, code in STATUSES:
        if isinstance(exc, cls):
            return status, code, str(exc)
    if isinstance(exc, backend_errors()):
        return 503, "backend_unavailable", "backend: %s" % exc
    if isinstance(exc, HueyqError):
        return 500, "hueyq_error", str(exc)
    return 500, "internal_error", "internal server error (see the web log)"


def error_response(status: int, code: str, detail: str) -> flask.Response:
    """A JSON error for the API, an HTML page for a person."""
    if wants_json():
        response = flask.jsonify(error=code, detail=detail)
    else:
        response = flask.make_response(flask.render_template(
            "hueyq/error.html", status=status, error=code, detail=detail))
    response.status_code = status
    return response


def wants_json() -> bool:
    """Whether this request is the API's (JSON answers) or a page's."""
    path = flask.request.path
    return path.startswith("/api/") or path == "/metrics"


def _handle(exc: BaseException) -> flask.Response:
    status, code, detail = describe(exc)
    if status >= 500 and not isinstance(exc, HTTPException):
        if status == 500:
            logger.exception("%s %s failed", flask.request.method,
                             flask.request.path)
        else:
            logger.warning("%s %s: %s", flask.request.method,
                           flask.request.path, detail)
    response = error_response(status, code, detail)
    if isinstance(exc, HTTPException):
        headers = dict(exc.get_headers())
        for name in ("WWW-Authenticate", "Allow", "Retry-After"):
            if name in headers:
                response.headers[name] = headers[name]
    return response


def init_app(web: flask.Flask) -> None:
    """Register the handlers on ``web``."""
    web.register_error_handler(HTTPException, _handle)
    web.register_error_handler(Exception, _handle)
