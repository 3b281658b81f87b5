"""A model-training studio's Celery app: six queues, glob routes, long
training runs with soft and hard time limits."""

import os

from hueyq.celery import Celery

app = Celery("studio", include=["src.workers.training_tasks", "src.workers.dataset_tasks", "src.workers.extraction_tasks", "src.workers.misc_tasks"])
app.conf.update(
    task_routes={
        "src.workers.training_tasks.*": {"queue": "training"},
        "src.workers.dataset_tasks.preprocess_*": {"queue": "processing"},
        "src.workers.dataset_tasks.*": {"queue": "datasets"},
        "src.workers.extraction_tasks.*": {"queue": "extraction"},
        "src.workers.misc_tasks.notify_*": {"queue": "high_priority"},
        "src.workers.misc_tasks.*": {"queue": "low_priority"},
    },
    task_soft_time_limit=1800,
    task_time_limit=3600,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    result_expires=86400,
)
