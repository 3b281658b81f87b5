"""Dramatiq on the benchmark's private Redis (``BENCH_REDIS_URL``).

The harness runs ``dramatiq benchmarks.apps.dramatiq_app -p 2 -t 8``
(Dramatiq's defaults: one process per core, 8 threads each). Actors ack
late, Dramatiq's default; no result backend.
"""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from benchmarks.apps import common

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL",
                                        "redis://127.0.0.1:6379/0"))
dramatiq.set_broker(broker)

noop = dramatiq.actor(common.noop, actor_name="noop", queue_name="high",
                      max_retries=0)
sleep = dramatiq.actor(common.sleep, actor_name="sleep", queue_name="high",
                       max_retries=0)
probe = dramatiq.actor(common.probe, actor_name="probe", queue_name="high",
                       max_retries=0)
