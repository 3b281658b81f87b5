"""The document service's Celery app (the tasks live in tasks.py)."""

import os

from celery import Celery

app = Celery("documents", include=["tasks"], broker=os.environ.get("REDIS_URL", "redis://localhost:6379/0"), backend=os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_max_tasks_per_child=200,
)
