"""URLs of backends and stores: their scheme, checks, files and redaction.

This module owns what the profile, the backends and the job store all need
to know about a URL and nothing else: its scheme (:func:`scheme`), the file
of a ``sqlite://`` URL (:func:`sqlite_path`), the checks the profile runs
on each kind (:func:`check_sqlite_url`, :func:`check_redis_url`,
:func:`check_sentinel_url`, :func:`check_postgresql_url`, which return the
URL in its normal form or raise ValueError naming what is wrong), the parts
of a ``redis+sentinel://`` URL (:func:`sentinel_parts`), and
:func:`redact_url`, which hides passwords from any output. It imports
nothing of hueyq.
"""

import os
import re
import urllib.parse

#: Query parameters of a URL that hold secrets (redis-py's ``?password=``,
#: libpq's ``?password=`` and ``?sslpassword=``, ...).
_SECRET_PARAM = re.compile(r"(?i)(?<![^&;])([^&;=]*(?:pass|secret|token|"
                           r"auth)[^&;=]*)=[^&;]*")


def scheme(url: str) -> str:
    """The scheme of ``url`` in lower case (``sqlite``, ``redis``, ...);
    empty when it has none."""
    return url.split(":", 1)[0].lower() if ":" in url else ""


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite://`` URL: ``sqlite:///abs`` or ``sqlite://rel``.

    Three slashes mean an absolute path (as in ``sqlite:///var/lib/q.db``);
    anything else after ``sqlite://`` is relative to the working directory.
    """
    if not url.lower().startswith("sqlite://"):
        raise ValueError("not a sqlite:// URL: %r" % url)
    path = url[len("sqlite://"):].split("?", 1)[0]
    if not path or path.endswith("/"):
        raise ValueError("a sqlite URL needs a file path, got %r" % url)
    if path.startswith("//"):
        path = path[1:]
    return os.path.abspath(path)


def check_sqlite_url(url: str) -> str:
    """A ``sqlite://`` URL with its file made absolute."""
    return "sqlite://" + sqlite_path(url)


def check_port(parsed: urllib.parse.SplitResult, url: str) -> None:
    """Raise ValueError when the port of ``parsed`` is not a number."""
    try:
        parsed.port
    except ValueError:
        raise ValueError("bad port in %r" % redact_url(url)) from None


def check_redis_url(url: str) -> str:
    """A ``redis://``, ``rediss://`` or ``unix://`` URL, checked."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "unix":
        if not parsed.path:
            raise ValueError("a unix:// Redis URL needs a socket path")
        return url
    if not parsed.hostname:
        raise ValueError("a Redis URL needs a host, got %r" % redact_url(url))
    check_port(parsed, url)
    db = parsed.path.strip("/")
    if db and not db.isdigit():
        raise ValueError("the Redis database must be a number, got %r" % db)
    return url


#: The port of a Redis Sentinel when a ``redis+sentinel://`` URL names none.
SENTINEL_PORT = 26379


def sentinel_parts(url: str) -> dict:
    """The parts of ``redis+sentinel://[user:password@]host[:port],host[:port]
    [/service[/db]]``: ``sentinels`` (a list of ``(host, port)``, port
    26379 by default), ``service`` (None when the URL names none),
    ``db``, and the ``username`` and ``password`` of the Redis servers
    (not of the sentinels: the profile's ``sentinel.password``)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    netloc, _, path = rest.partition("/")
    username = password = None
    if "@" in netloc:
        auth, _, netloc = netloc.rpartition("@")
        user, colon, secret = auth.partition(":")
        username = urllib.parse.unquote(user) or None
        password = urllib.parse.unquote(secret) if colon else None
    sentinels = []
    for one in netloc.split(","):
        if one.startswith("["):
            host, _, port = one[1:].partition("]")
            port = port[1:] if port.startswith(":") else ""
        else:
            host, _, port = one.partition(":")
        if not host:
            raise ValueError("a redis+sentinel URL needs sentinels as "
                             "host:port,host:port, got %r" % redact_url(url))
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise ValueError("bad port %r in %r" % (port, redact_url(url)))
        sentinels.append((host, int(port) if port else SENTINEL_PORT))
    service, _, db = path.strip("/").partition("/")
    if db and not db.isdigit():
        raise ValueError("the Redis database must be a number, got %r" % db)
    return {"sentinels": sentinels, "service": service or None,
            "db": int(db) if db else 0, "username": username,
            "password": password}


def check_sentinel_url(url: str) -> str:
    """A ``redis+sentinel://host:port,host:port/service/db`` URL, checked."""
    sentinel_parts(url)
    return url


def check_postgresql_url(url: str) -> str:
    """A ``postgresql://`` URL, checked: it names a database."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.path.strip("/"):
        raise ValueError("a PostgreSQL URL needs a database name, got %r"
                         % redact_url(url))
    check_port(parsed, url)
    return url


def check_postgres_url(url: str) -> str:
    """A ``postgresql://`` or ``postgres://`` URL, checked."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname and "host=" not in parsed.query:
        raise ValueError("a PostgreSQL URL needs a host, got %r"
                         % redact_url(url))
    check_port(parsed, url)
    return url


def redact_url(url: str) -> str:
    """Hide the password of a URL (``redis://:***@host``) and secret query
    parameters (``?password=***``) for any output."""
    base, mark, query = url.partition("?")
    if mark:
        url = base + mark + _SECRET_PARAM.sub(r"\1=***", query)
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return url
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)
    user = parsed.username or ""
    return urllib.parse.urlunsplit(parsed._replace(
        netloc="%s:***@%s" % (user, netloc[-1])))
