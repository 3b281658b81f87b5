"""Built-in maintenance.

* ``retention`` (every 15 minutes, a periodic task on the app's lowest
  queue, so it shows up as a job like any other): finished jobs past the
  store's retention (``store.retention_age``, ``store.retention_count`` per
  state) are deleted with their history and their huey results (results
  pile up unless read) and output streams, and dead messages kept in the
  backend past the same age are purged, as are output streams last appended
  to before it (Redis expires those by itself);
* :func:`run_checkpoint` (SQLite files): folds the write-ahead logs of the
  queue backend and of the job store back into their databases without
  waiting for readers or writers. The supervisor runs it every half minute,
  under load too; with ``journal_size_limit`` set on every connection, a WAL
  that a long reader let grow is cut back soon after the reader ends.
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
    output = app.queue_backend.delete_output([j for j, _ in expired])
    output += app.queue_backend.purge_output(now - settings.retention_age)
    jobs = app.store.enforce_retention(settings.retention_age,
                                       settings.retention_count, now)
    dead = sum(app.storage(q).purge_dead(now - settings.retention_age,
                                         settings.retention_count)
               for q in app.queues)
    report = {"jobs": jobs, "results": results, "dead_messages": dead,
              "outputs": output}
    logger.info("retention: deleted %(jobs)d jobs, %(results)d results, "
                "%(outputs)d output streams and %(dead_messages)d dead "
                "messages", report)
    return report


def run_checkpoint(app) -> dict:
    """Checkpoint the SQLite WALs of the backend and the store; says, per
    file, whether its WAL was fully folded back (False on Redis or
    PostgreSQL, which have none)."""
    return {"backend": app.queue_backend.checkpoint(),
            "store": app.store.checkpoint()}
