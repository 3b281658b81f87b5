"""The pages: a dashboard, a job search, a queue's jobs, one job.

Each page is a shell rendered by Jinja (autoescaped) that the one script,
``static/hueyq.js``, fills from the same JSON API scripts use and keeps live
over ``/api/stream``. Pages never change anything on GET; the server only
checks that the queue or job named in the URL exists, so a wrong link is a 404.
"""

import flask

from hueyq.store import STATES
from hueyq.webui import state

bp = flask.Blueprint("pages", __name__)


@bp.get("/")
def dashboard():
    """Queues, running jobs, failures, workers and watchdog actions."""
    return flask.render_template("hueyq/dashboard.html", page="dashboard")


@bp.get("/queues/<name>")
def queue(name: str):
    """One queue's jobs, by state, page by page."""
    state().app.huey(name)
    return flask.render_template("hueyq/queue.html", page="queue",
                                 queue=name, states=STATES)


@bp.get("/jobs")
def jobs():
    """Every queue's jobs: search by task, id, state, queue, error and time,
    page by page, and retry or delete the failed or dead ones found."""
    return flask.render_template("hueyq/jobs.html", page="jobs", queue=None,
                                 states=STATES)


@bp.get("/jobs/<job_id>")
def job(job_id: str):
    """One job: its figures, progress, error, traceback and history."""
    state().app.job(job_id, history=False)
    return flask.render_template("hueyq/job.html", page="job", job_id=job_id)
