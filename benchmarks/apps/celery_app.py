"""Celery on the benchmark's private Redis (``BENCH_REDIS_URL``).

Tuned for throughput on 2 cores: prefork pool (the harness passes ``-c 2``),
early acks (Celery's default), no result backend, a prefetch multiplier of
32, and no gossip, mingle or heartbeat events.
"""

import os

from celery import Celery

from benchmarks.apps import common

app = Celery("bench", broker=os.environ.get("BENCH_REDIS_URL",
                                            "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_CELERY_PREFETCH",
                                                  "32")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=True,
    task_default_queue="high",
)

noop = app.task(name="noop")(common.noop)
sleep = app.task(name="sleep")(common.sleep)
probe = app.task(name="probe")(common.probe)
