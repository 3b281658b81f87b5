"""hueyq's backend storage without leases: huey's stock Consumer on the
``high`` queue of the benchmark's hueyq App.

Same App, serializer (envelope) and backend class as ``hueyq run``, but
huey's own Worker, which takes messages with the backend's at-most-once
``dequeue()``, and no job store. Consumer options and the backend's
consumer-side commits (``consumer_side()``) are the ones
``hueyq.runtime.consumer.run_consumer`` uses. Comparing its drain with
hueyq's shows what leases, acks and job records cost.

``python -m benchmarks.apps.nolease QUEUE WORKERS``
"""

import logging
import sys

from huey.consumer import Consumer


def main(argv: "list[str]") -> int:
    queue, workers = argv[0], int(argv[1])
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: "
                               "%(message)s")
    from benchmarks.apps.hueyq_app import app
    huey = app.huey(queue)
    huey.storage.consumer_side()
    consumer = Consumer(huey, workers=workers, worker_type="thread",
                        periodic=False, initial_delay=0.1, backoff=1.5,
                        max_delay=5.0, scheduler_interval=1,
                        check_worker_health=True, health_check_interval=1)
    consumer.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
