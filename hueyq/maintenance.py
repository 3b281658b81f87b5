"""Built-in maintenance: periodic tasks every App runs on its lowest queue.

* ``retention`` (every 15 minutes): finished jobs past the store's
  retention (``store.retention_age``, ``store.retention_count`` per state)
  are deleted with their history and their huey results (results pile up
  unless read), and dead messages kept in the backend past the same age are
  purged;
* ``checkpoint`` (every 5 minutes, SQLite only): when no queue has work, the
  WAL is folded back into the database file so it does not grow without end.

They are ordinary huey periodic tasks, so they show up as jobs like any other.
"""

import logging
import time

from huey import crontab

logger = logging.getLogger("hueyq.maintenance")


def install(app) -> None:
    """Register the maintenance tasks on ``app``'s lowest-priority queue."""
    queue = app.queues[-1]

    @app.periodic_task(crontab(minute="*/15"), queue=queue)
    def retention():
        return run_retention(app)

    @app.periodic_task(crontab(minute="*/5"), queue=queue)
    def checkpoint():
        return run_checkpoint(app)


def run_retention(app, now: "float | None" = None) -> dict:
    """Apply the store's retention to jobs, results and dead messages."""
    now = time.time() if now is None else now
    settings = app.profile.store
    expired = app.store.expired_jobs(settings.retention_age,
                                     settings.retention_count, now)
    results = 0
    for job_id, queue in expired:
        if queue in app.queues and app.huey(queue).delete(job_id):
            results += 1
    jobs = app.store.enforce_retention(settings.retention_age,
                                       settings.retention_count, now)
    dead = sum(app.storage(q).purge_dead(now - settings.retention_age,
                                         settings.retention_count)
               for q in app.queues)
    report = {"jobs": jobs, "results": results, "dead_messages": dead}
    logger.info("retention: deleted %(jobs)d jobs, %(results)d results and "
                "%(dead_messages)d dead messages", report)
    return report


def run_checkpoint(app) -> bool:
    """Checkpoint the SQLite WAL when every queue is idle; True if it did."""
    storages = [app.storage(q) for q in app.queues]
    if any(s.count("pending") or s.count("running") > 1 for s in storages):
        return False
    return storages[0].checkpoint()
