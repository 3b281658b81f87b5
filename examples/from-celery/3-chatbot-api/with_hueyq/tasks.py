"""A chatbot's Celery tasks: replies generated step by step with progress
for the job-status API, transient model errors retried with exponential
back-off, and Celery Beat's nightly, hourly and weekly jobs."""

import os
import time

from hueyq.celery import Celery
from hueyq.celery import crontab

app = Celery("chatbot")
app.conf.update(
    task_track_started=True,
    beat_schedule={
        "daily-cleanup": {
            "task": "tasks.cleanup_conversations",
            "schedule": crontab(hour=2, minute=0),
            "kwargs": {"older_than_days": 30},
        },
        "hourly-result-cleanup": {
            "task": "tasks.cleanup_results",
            "schedule": crontab(minute=0),
        },
        "weekly-usage-report": {
            "task": "tasks.usage_report",
            "schedule": crontab(hour=3, minute=0, day_of_week="sunday"),
        },
    },
)


class TransientError(Exception):
    """The model server is busy; trying again later will work."""


@app.task(bind=True, autoretry_for=(TransientError,), retry_backoff=True,
          retry_backoff_max=60, max_retries=5)
def generate_reply(self, conversation_id, message, steps=5,
                   step_seconds=0.1, busy=0):
    if self.request.retries < busy:
        raise TransientError("model server busy")
    for step in range(steps):
        time.sleep(step_seconds)
        self.update_state(state="PROGRESS", meta={
            "progress": int(100 * (step + 1) / (steps + 1)),
            "status": "generating token %d/%d" % (step + 1, steps)})
    return {"conversation_id": conversation_id,
            "reply": "You said: %s" % message,
            "retries": self.request.retries}


@app.task
def cleanup_conversations(older_than_days):
    return {"deleted": 0, "older_than_days": older_than_days}


@app.task
def cleanup_results():
    return {"deleted": 0}


@app.task
def usage_report():
    return {"report": "weekly usage"}
