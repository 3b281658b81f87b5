"""hueyq: an embedded task-queue runtime built on huey.

The public surface: ``App`` (queues, tasks, jobs and controls of one
profile), ``crontab`` (huey's), ``progress()`` and ``emit()`` for use inside
a task, and
the exceptions of ``hueyq.exceptions``.
"""

from hueyq import drivers

drivers.skip_from_env()

from huey import crontab  # noqa: E402

from hueyq.exceptions import (BackendUnavailable, ConfigurationError,
                              HueyqError, InvalidState, JobCancelled,
                              JobNotFound, NotReplicated, OutputTooLarge,
                              PayloadTooLarge,
                              QueueNotFound, SoftTimeLimitExceeded)

__version__ = "0.1.0"

__all__ = ["App", "Job", "crontab", "progress", "emit", "current_job",
           "BackendUnavailable", "ConfigurationError", "HueyqError",
           "InvalidState", "JobCancelled", "JobNotFound", "NotReplicated",
           "OutputTooLarge", "PayloadTooLarge", "QueueNotFound",
           "SoftTimeLimitExceeded", "__version__"]


def __getattr__(name):
    # App pulls in the backends and the store; load them on first use so that
    # `import hueyq` stays cheap in every consumer and producer process.
    if name in ("App", "Job"):
        from hueyq import app
        return getattr(app, name)
    if name in ("progress", "emit", "current_job"):
        from hueyq import context
        return getattr(context, name)
    raise AttributeError("module 'hueyq' has no attribute %r" % name)
