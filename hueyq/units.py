"""Sizes and durations as people write them in profiles.

Sizes take binary units (``512MiB``, ``1GiB``: powers of 1024) and decimal
units (``6GB``: powers of 1000), with or without a space, or a plain number of
bytes. Durations take ``ms``, ``s``, ``m``, ``h`` and ``d``, or a plain number
of seconds.
"""

import re

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000 ** 2, "mb": 1000 ** 2,
    "g": 1000 ** 3, "gb": 1000 ** 3, "t": 1000 ** 4, "tb": 1000 ** 4,
    "kib": 1024, "mib": 1024 ** 2, "gib": 1024 ** 3, "tib": 1024 ** 4,
}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0,
                   "d": 86400.0}
_NUMBER = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(value: "str | int | float") -> int:
    """Return a size in bytes; raise ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB or 2GB, got %r" % value)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return int(value)
    match = _NUMBER.match(str(value))
    unit = match.group(2).lower() if match else None
    if unit not in _SIZE_UNITS:
        raise ValueError("expected a size such as 512MiB, 1GiB or 2GB, got %r"
                         % value)
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_duration(value: "str | int | float") -> float:
    """Return a duration in seconds; raise ValueError with a readable reason."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, got %r" % value)
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    match = _NUMBER.match(str(value))
    unit = match.group(2).lower() if match else None
    if unit not in _DURATION_UNITS:
        raise ValueError("expected a duration such as 500ms, 30s, 5m or 2h, "
                         "got %r" % value)
    return float(match.group(1)) * _DURATION_UNITS[unit]


def format_size(nbytes: "int | float | None") -> str:
    """``1395864371`` -> ``'1.3 GiB'``; the form used in every message."""
    if nbytes is None:
        return "-"
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            break
        value /= 1024
    if unit == "B":
        return "%d B" % value
    return "%.1f %s" % (value, unit)


def format_over(value: int, limit: int) -> str:
    """``"1.3 GiB > 1.0 GiB"``, with enough precision that a value just over
    its limit never reads as equal to it."""
    left, right = format_size(value), format_size(limit)
    if left == right:
        left, right = "%.1f MiB" % (value / 1024 ** 2), \
            "%.1f MiB" % (limit / 1024 ** 2)
        if left == right:
            left, right = "%d B" % value, "%d B" % limit
    return "%s > %s" % (left, right)


def format_duration(seconds: "float | None") -> str:
    """``0.0123`` -> ``'12ms'``, ``75`` -> ``'1m15s'``."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return "%dms" % round(seconds * 1000)
    if seconds < 60:
        return ("%.1fs" % seconds).replace(".0s", "s")
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return "%dm%02ds" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    return "%dh%02dm" % (hours, minutes)
