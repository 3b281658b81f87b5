"""RQ on the benchmark's private Redis: the queue and the task functions.

The harness runs ``rq worker-pool -n 2 -w rq.worker.SimpleWorker`` (two
worker processes that run jobs in-process instead of forking a work horse
per job: RQ's fastest setup for short jobs on 2 cores).
"""

import os

from redis import Redis
from rq import Queue


def queue(name: str = "high") -> Queue:
    """The RQ queue ``name`` on ``BENCH_REDIS_URL``."""
    return Queue(name, connection=Redis.from_url(os.environ.get(
        "BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")))
