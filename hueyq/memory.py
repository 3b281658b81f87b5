"""The memory room: what a queue's memory budget leaves for new tasks.

A queue with a ``memory_limit`` (its budget) admits a task that declared
``memory=`` only when the declared bytes fit in its **memory room**: the
budget less what the queue's processes use now and what its running tasks
declared. It is computed here and nowhere else: the watchdog measures the
use and publishes ``memory_room(memory_limit, used)`` in the queue's
:data:`ROOM_FLAG` flag every tick; a lease takes off what running tasks
declared in the same atomic step (the SQLite and Redis lease statements
repeat this formula inside the database, where Python cannot run); the
backends' ``memory_room()`` does the same for status, ``hueyq job``,
``hueyq status``, the web UI and ``/metrics``; :func:`waiting` is what a
job that does not fit shows.
"""

from typing import Iterable

from hueyq.units import format_size

#: The backend flag holding the room the watchdog measured, before what
#: running tasks declared (the lease statements read it by this name).
ROOM_FLAG = "admission"


def memory_room(memory_limit: int, used: int = 0,
                declared: "Iterable[int] | int" = 0) -> int:
    """Bytes left for tasks that declared ``memory=``: ``memory_limit`` less
    ``used`` (measured) and ``declared`` (by running tasks), never below 0."""
    if not isinstance(declared, int):
        declared = sum(declared)
    return max(0, memory_limit - used - declared)


def fits(need: "int | None", room: "int | None") -> bool:
    """Whether a task that declared ``need`` bytes may start now (None: it
    declared nothing, or the queue has no budget)."""
    return not need or room is None or need <= room


def waiting(need: int, room: int) -> str:
    """Why a pending job that declared ``need`` does not start."""
    return "memory: needs %s, %s left of the queue's budget" % (
        format_size(need), format_size(room))
