"""systemd's notify protocol, without libsystemd.

``notify("READY=1")`` sends one datagram to the socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``). Outside
systemd it does nothing. ``watchdog_interval()`` reads ``$WATCHDOG_USEC``.
"""

import logging
import os
import socket

logger = logging.getLogger("hueyq.notify")


def notify(*lines: str) -> bool:
    """Send ``KEY=value`` lines to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:
        logger.warning("cannot notify systemd at %s: %s",
                       os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval() -> "float | None":
    """Half of systemd's WatchdogSec in seconds, if systemd set one for us."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
