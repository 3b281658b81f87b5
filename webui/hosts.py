"""Which ``Host`` the web app answers to: the defence against DNS rebinding.

A web page on any site can point a name of its own at 127.0.0.1 and then
talk to a loopback web UI as if it were that site: read the CSRF token,
pause, drain, cancel. The browser still sends the name it looked up in
``Host``, so :class:`HostPolicy` answers only to the names and addresses the
server is known by, and every other request, on every route (the event
stream and static files too), gets 421 Misdirected Request:

* loopback names and addresses (``localhost``, ``*.localhost``,
  ``127.0.0.0/8``, ``::1``), always;
* the names in ``web.allowed_hosts`` (``*.example.com`` patterns; ``*``
  answers any name);
* the bind address when it is a specific address or name;
* when the bind listens beyond loopback (``0.0.0.0``, ``::``, a unix socket
  or an inherited ``fd://``), any IP address literal (rebinding needs a
  name, so an address in ``Host`` is the server itself) and this machine's
  own host names.

With ``web.trust_proxy`` the name is the one the proxy forwarded
(``X-Forwarded-Host``).
"""

import fnmatch
import ipaddress
import logging
import socket

logger = logging.getLogger("hueyq.webui.hosts")

_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")
_reported: "set[str]" = set()


class HostPolicy:
    """The ``Host`` values a server bound to ``bind`` answers."""

    def __init__(self, bind: str, allowed: "tuple[str, ...]" = ()) -> None:
        self.patterns = tuple(a.strip().lower().rstrip(".") for a in allowed
                              if a.strip())
        self.names: "set[str]" = set()
        self.any_address = False
        host = bind_host(bind)
        if host is None or _wildcard(host):
            self.any_address = True
            self.names.update(_own_names())
        elif not _is_loopback(host):
            self.names.add(host)

    def allows(self, host_header: str) -> bool:
        """Whether a request whose ``Host`` is ``host_header`` is answered."""
        name = split_host(host_header)
        if not name:
            return False
        if name in _LOOPBACK_NAMES or name.endswith(".localhost") \
                or _is_loopback(name):
            return True
        if name in self.names or any(fnmatch.fnmatchcase(name, p)
                                     for p in self.patterns):
            return True
        return self.any_address and _is_address(name)


def split_host(value: str) -> str:
    """The name or address of a ``Host`` value, lower case, without port."""
    value = (value or "").strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def bind_host(bind: str) -> "str | None":
    """The host of a gunicorn bind (None for ``unix:`` and ``fd://``)."""
    if bind.startswith(("unix:", "fd://")):
        return None
    return split_host(bind)


def is_loopback_host(host: str) -> bool:
    """Whether a bind host only listens on this machine."""
    return host in _LOOPBACK_NAMES or _is_loopback(host)


def report(host: str) -> None:
    """Log, once per name, a request refused for its Host."""
    if host not in _reported and len(_reported) < 1000:
        _reported.add(host)
        logger.warning("refused a request for host %r (not a name this "
                       "server answers; see web.allowed_hosts)", host[:100])


def _wildcard(host: str) -> bool:
    if host in ("", "*"):
        return True
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _own_names() -> "set[str]":
    names = set()
    for name in (socket.gethostname(), socket.getfqdn()):
        name = (name or "").lower().rstrip(".")
        if name:
            names.update((name, name.split(".")[0] + ".local"))
    return names
