"""A messaging service's queue types, each with a priority, retries, a
retry delay, a number of workers and a timeout. Celery declares the
queues and gives each task its type's retry settings and time limit; the
worker command lines give each queue its workers and timeout."""

import os

from hueyq.celery import Celery

QUEUE_TYPES = {
    "notifications": {"priority": 8, "max_retries": 5, "retry_delay": 10,
                      "max_workers": 8, "timeout": 30},
    "default": {"priority": 5, "max_retries": 3, "retry_delay": 60,
                "max_workers": 4, "timeout": 300},
    "reports": {"priority": 3, "max_retries": 2, "retry_delay": 300,
                "max_workers": 2, "timeout": 1800},
    "background": {"priority": 1, "max_retries": 1, "retry_delay": 600,
                   "max_workers": 1, "timeout": 3600},
}

app = Celery("messaging", include=["tasks"])
app.conf.update(
    task_queues={name: {"routing_key": name} for name in QUEUE_TYPES},
    task_default_queue="default",
    task_acks_late=True,
)


def queue_task(queue_type, **options):
    """The decorator of a task of one queue type."""
    config = QUEUE_TYPES[queue_type]
    return app.task(queue=queue_type, max_retries=config["max_retries"],
                    default_retry_delay=config["retry_delay"],
                    time_limit=config["timeout"],
                    priority=config["priority"], **options)
