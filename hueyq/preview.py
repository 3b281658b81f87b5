"""Safe previews of stored values, for the processes that only show them.

The web UI, ``hueyq job`` and :meth:`hueyq.App.job` read results out of the
backend, which they do not trust: they never run a full unpickle. A
:class:`PlainUnpickler` builds only plain data (numbers, strings, bytes,
lists, tuples, dicts, sets, dates and times, decimals, UUIDs and huey's
``Error``); any other class in the pickle becomes an inert :class:`Opaque`
placeholder that shows its name and runs nothing. :func:`plain` then turns
what was built into bounded, JSON-safe data: never deeper than
:data:`MAX_DEPTH`, never more than :data:`MAX_NODES` values, non-finite
floats as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, so the
same value reads the same in the API, the CLI and the page.
"""

import datetime
import decimal
import io
import math
import pickle
import uuid
from typing import Any

#: Deeper containers are cut to "…".
MAX_DEPTH = 32
#: Values :func:`plain` visits at most; the rest are cut to "…".
MAX_NODES = 100_000
#: Distinct unknown class names given their own placeholder type.
_MAX_OPAQUE_TYPES = 32
#: Classes a preview may build: plain data only, none that allocates by a
#: size argument or runs code of its own on unpickling.
SAFE_GLOBALS = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("uuid", "UUID"),
    ("collections", "OrderedDict"), ("huey.utils", "Error"),
})
_CUT = "\u2026"


class Opaque:
    """Stands in for an object of a class a preview does not build: it takes
    any arguments and state and keeps nothing but the class's name."""

    name = "object"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Opaque":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<%s>" % self.name


class PlainUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data and :class:`Opaque` stand-ins."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._opaque: "dict[str, type]" = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        full = "%s.%s" % (module, name)
        found = self._opaque.get(full)
        if found is None:
            if len(self._opaque) >= _MAX_OPAQUE_TYPES:
                return Opaque
            found = self._opaque[full] = type("Opaque", (Opaque,),
                                              {"name": full[:200]})
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not plain data")


def plain_loads(data: bytes) -> Any:
    """Unpickle ``data`` building plain data only (see the module doc)."""
    return PlainUnpickler(data).load()


def plain(value: Any) -> Any:
    """``value`` as bounded, JSON-safe data (see the module doc)."""
    budget = [MAX_NODES]
    return _plain(value, 0, budget)


def _plain(value: Any, depth: int, budget: list) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        return _CUT
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        if depth >= MAX_DEPTH:
            return _CUT
        if isinstance(value, dict):
            return {_key(k): _plain(v, depth + 1, budget)
                    for k, v in list(value.items())}
        return [_plain(v, depth + 1, budget) for v in list(value)]
    return _scalar(value)


def _int(value: int) -> "int | str":
    if value.bit_length() > 13_000:  # more digits than Python converts
        return "<int of %d bits>" % value.bit_length()
    return int(value)


def _float(value: float) -> "float | str":
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    scalar = _scalar(key) if not isinstance(key, (int, float)) else (
        _int(key) if isinstance(key, int) else _float(key))
    return scalar if isinstance(scalar, str) else repr(scalar)


def _scalar(value: Any) -> Any:
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (datetime.timedelta, decimal.Decimal, uuid.UUID,
                          complex)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return repr(bytes(value[:4096])) + (_CUT if len(value) > 4096 else "")
    if isinstance(value, Opaque):
        return repr(value)
    try:
        text = repr(value)
    except Exception:  # a repr of odd data may raise anything
        text = "<%s>" % type(value).__name__
    return text[:4096]
