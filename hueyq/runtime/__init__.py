"""The runtime: a supervisor process and one consumer process per queue.

``hueyq run`` starts :class:`hueyq.runtime.supervisor.Supervisor`, which
starts a fresh interpreter per queue (``python -m hueyq.runtime.consumer``)
running huey's Consumer with hueyq's leasing worker, watches their memory
(:mod:`hueyq.runtime.watchdog`), recovers leases of dead workers, restarts
dead consumers and publishes its status into the backend.
"""

#: /proc names (``ps -o comm``) of what a process consumer forks, so the
#: supervisor tells its workers from its scheduler.
WORKER_PROCESS_NAME = "hueyq-worker"
SCHEDULER_PROCESS_NAME = "hueyq-scheduler"
