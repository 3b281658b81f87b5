"""Who holds a lease, named without wall clocks.

A lease owner is ``host:pid:worker`` (what people read) followed by a stamp
``|boot|start|runtime|group`` that tells a live owner from a dead one without
comparing times: the kernel's boot id (``/proc/sys/kernel/random/boot_id``),
the process's start time in clock ticks since boot (field 22 of
``/proc/<pid>/stat``, which no clock step moves), the runtime it belongs to
(its supervisor's pid and start ticks) and the consumer process whose crash
would take it down (``group``). A lease from another boot is dead whatever
its pid; a pid whose start ticks differ is another process that reused it.
"""

import dataclasses
import functools
import os
from typing import Callable

_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@functools.lru_cache(maxsize=1)
def boot_id() -> str:
    """This boot's id ("" where the kernel does not say)."""
    try:
        with open(_BOOT_ID) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def start_ticks(pid: int) -> "int | None":
    """When process ``pid`` started, in clock ticks since boot; None if there
    is no such process (or it is a zombie)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) < 20 or fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def runtime_id(supervisor_pid: int) -> str:
    """The id of the runtime whose supervisor is ``supervisor_pid``."""
    ticks = start_ticks(supervisor_pid)
    return "" if ticks is None else "%d.%d" % (supervisor_pid, ticks)


@dataclasses.dataclass(frozen=True)
class Owner:
    """A parsed lease owner; the stamp fields are None for owners written
    by older versions (``host:pid:worker`` alone)."""
    host: "str | None"
    pid: "int | None"
    worker: "str | None"
    boot: "str | None" = None
    start: "int | None" = None
    runtime: "str | None" = None
    group: "int | None" = None

    @property
    def name(self) -> str:
        """``host:pid:worker``, for people."""
        return "%s:%s:%s" % (self.host, self.pid, self.worker)


def owner_name(host: str, worker: str, runtime: str = "",
               group: "int | None" = None) -> str:
    """The lease owner of this process's ``worker``."""
    pid = os.getpid()
    ticks = start_ticks(pid)
    return "%s:%d:%s|%s|%s|%s|%d" % (host, pid, worker, boot_id(),
                                     "" if ticks is None else ticks,
                                     runtime, group or pid)


def parse_owner(owner: "str | None") -> Owner:
    """The parts of a lease owner (all None for no owner)."""
    if not owner:
        return Owner(None, None, None)
    base, _, stamp = owner.partition("|")
    parts = base.rsplit(":", 2)
    host = parts[0]
    pid = _int(parts[1]) if len(parts) > 1 else None
    worker = parts[2] if len(parts) > 2 else None
    if not stamp:
        return Owner(host, pid, worker)
    fields = (stamp.split("|") + ["", "", "", ""])[:4]
    return Owner(host, pid, worker, fields[0] or None, _int(fields[1]),
                 fields[2] or None, _int(fields[3]))


def alive_here(owner: Owner,
               processes: "Callable[[int], int | None]" = start_ticks,
               boot: "str | None" = None) -> bool:
    """Whether ``owner``, on this host, is a live process of this boot: the
    same pid, started at the same tick. ``processes`` (a pid's start ticks,
    None for no such process) and ``boot`` (this boot's id) are the
    kernel's unless a test gives its own."""
    if owner.boot is not None and owner.boot != (
            boot_id() if boot is None else boot):
        return False
    if owner.pid is None:
        return False
    ticks = processes(owner.pid)
    if ticks is None:
        return False
    return owner.start is None or owner.start == ticks


def _int(text: str) -> "int | None":
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
