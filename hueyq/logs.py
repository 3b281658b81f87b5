"""Logging: plain text for a terminal, JSON lines for machines.

Every process of a runtime logs through :func:`setup`. A record may carry
``queue``, ``job_id``, ``task`` and ``attempt`` (the worker passes them as
``extra``), and the text format shows them as ``key=value``. JSON lines are
chosen with ``--log-format json`` or ``runtime.log_format = "json"``, and by
default under systemd's journal (``JOURNAL_STREAM`` is set). Text that may
come from outside (task ids and names, errors of forged messages) goes
through :func:`escape`: a text record is always one line, and no terminal
escape code reaches a terminal (JSON lines escape by themselves).

:class:`Outage` logs an operation that keeps failing (a backend that went
away) a few times, not once per attempt.
"""

import json
import logging
import os
import re
import socket
import sys
import time

_FIELDS = ("queue", "job_id", "task", "attempt")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\n``,
    ``\\x1b``), safe to print as one line of a log or a terminal."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group()) or (
        "\\x%02x" % ord(m.group()) if ord(m.group()) < 0x100
        else "\\u%04x" % ord(m.group())), text)


class Outage:
    """One failing operation's log: the first failure, then at most one line
    every ``every`` seconds with the count, and one line when it works
    again. Thread-safe enough for its purpose (a count may be off by one)."""

    def __init__(self, logger: logging.Logger, what: str,
                 every: float = 60.0) -> None:
        self.logger = logger
        self.what = what
        self.every = every
        self.failures = 0
        self._next = 0.0

    def failed(self, exc: BaseException) -> None:
        """Note one failure; log it when it is the first or a while passed."""
        self.failures += 1
        now = time.monotonic()
        if self.failures == 1 or now >= self._next:
            self._next = now + self.every
            self.logger.warning("%s failed (%d time%s so far): %s; retrying",
                                self.what, self.failures,
                                "" if self.failures == 1 else "s", exc)

    def ok(self) -> None:
        """Note a success; log the recovery after failures."""
        if self.failures:
            self.logger.info("%s works again after %d failure%s", self.what,
                             self.failures, "" if self.failures == 1 else "s")
            self.failures = 0


class _Context(logging.Filter):
    def __init__(self, queue: "str | None") -> None:
        super().__init__()
        self.queue = queue

    def filter(self, record: logging.LogRecord) -> bool:
        if self.queue and not getattr(record, "queue", None):
            record.queue = self.queue
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-22 10:00:00 INFO  hueyq.worker: message queue=high job=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s",
                         "%Y-%m-%d %H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.msg, record.args = escape(record.getMessage()), None
        line = super().format(record)
        extras = ["%s=%s" % ("job" if f == "job_id" else f,
                             escape(str(getattr(record, f))))
                  for f in _FIELDS if getattr(record, f, None) is not None]
        if extras:
            first, nl, rest = line.partition("\n")
            line = "%s %s%s%s" % (first, " ".join(extras), nl, rest)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the task fields when present."""

    host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        doc = {"ts": round(record.created, 6),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S",
                                     time.gmtime(record.created)),
               "level": record.levelname, "logger": record.name,
               "message": record.getMessage(), "pid": record.process,
               "host": self.host}
        for f in _FIELDS:
            value = getattr(record, f, None)
            if value is not None:
                doc[f] = value
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def choose_format(requested: "str | None", profile_format: str = "text") -> str:
    """The log format: explicit request, else journal -> json, else profile."""
    if requested:
        return requested
    if os.environ.get("JOURNAL_STREAM") and profile_format == "text":
        return "json"
    return profile_format


def setup(fmt: str = "text", level: "str | int | None" = None,
          queue: "str | None" = None, stream=None) -> None:
    """Configure the root logger of this process."""
    level = level or os.environ.get("HUEYQ_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_Context(queue))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else level.upper())
    # huey logs every task at INFO; hueyq's worker logs them with job fields.
    logging.getLogger("huey").setLevel(logging.WARNING)
