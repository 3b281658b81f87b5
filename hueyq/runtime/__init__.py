"""The runtime: a supervisor process and one consumer process per queue.

``hueyq run`` starts :class:`hueyq.runtime.supervisor.Supervisor`, which
starts a fresh interpreter per queue (``python -m hueyq.runtime.consumer``)
running huey's Consumer with hueyq's leasing worker, watches their memory
(:mod:`hueyq.runtime.watchdog`), recovers leases of dead workers, restarts
dead consumers and publishes its status into the backend.
"""
