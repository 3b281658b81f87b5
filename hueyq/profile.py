"""Profiles: one TOML file decides everything a deployment needs.

This module owns reading a profile and resolving it into a frozen, validated
:class:`Profile`. Precedence, applied in :func:`load_profile` alone:

    packaged profile < profile file < HUEYQ_* environment < CLI flags

A user file may ``extends = "jetson"`` (one level, built-in names only).
String values may use ``${VAR}`` and ``${VAR:-default}``; ``HUEYQ_DATA_DIR``
falls back to a sensible data directory (systemd's state directory, then
``/var/lib/hueyq`` for root, then the XDG data home). Every bad input raises
:class:`ConfigurationError` with one line naming the source and the key.
"""

import dataclasses
import fnmatch
import importlib.resources
import os
import re
import sys
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from hueyq import backends
from hueyq import defaults
from hueyq import urls
from hueyq.exceptions import ConfigurationError
from hueyq.units import parse_duration, parse_size
# Re-exported: the URL helpers lived here before hueyq.urls.
from hueyq.urls import redact_url  # noqa: F401
from hueyq.urls import sqlite_path  # noqa: F401

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

_QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_APP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_TEMPLATE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::-([^}]*))?\}")
_SECRET_KEYS = {("security", "secret"), ("security", "encryption_keys"),
                ("web", "token"), ("web", "submit_tokens"),
                ("sentinel", "password")}


# --------------------------------------------------------------- value parsers

def _int(minimum: int = 0) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("expected an integer, got %r" % (value,))
        if value < minimum:
            raise ValueError("expected an integer >= %d, got %d"
                             % (minimum, value))
        return value
    parse.from_env = int
    return parse


def _float(minimum: float = 0.0, maximum: float = float("inf")):
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number, got %r" % (value,))
        if not minimum <= value <= maximum:
            raise ValueError("expected a number between %s and %s, got %s"
                             % (minimum, maximum, value))
        return float(value)
    parse.from_env = float
    return parse


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false, got %r" % (value,))
    return value


def _bool_from_env(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false, got %r" % raw)


_bool.from_env = _bool_from_env


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string, got %r" % (value,))
    return value


def _opt_str(value: Any) -> "str | None":
    return _str(value) or None


def _token(value: Any) -> "str | None":
    token = _opt_str(value)
    if token is None:
        return None
    if len(token) < defaults.MIN_TOKEN_LENGTH:
        raise ValueError("a token needs at least %d characters, got %d"
                         % (defaults.MIN_TOKEN_LENGTH, len(token)))
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("a token cannot hold spaces or control characters")
    return token


def _tokens(value: Any) -> "tuple[str, ...]":
    tokens = _str_list(value)
    for token in tokens:
        _token(token)
    return tokens


def _choice(*choices: str):
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError("expected one of %s, got %r"
                             % (", ".join(choices), value))
        return value
    return parse


def _size(value: Any) -> int:
    return parse_size(value)


def _opt_size(value: Any) -> "int | None":
    return parse_size(value) or None


def _duration(value: Any) -> float:
    return parse_duration(value)


def _opt_duration(value: Any) -> "float | None":
    return parse_duration(value) or None


def _str_list(value: Any) -> "tuple[str, ...]":
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings, got %r" % (value,))
    return tuple(value)


def check_bind(value: Any) -> str:
    """A gunicorn bind address: ``host:port``, ``[v6]:port``, ``unix:path``
    or ``fd://N``, with a port gunicorn can listen on."""
    bind = _str(value).strip()
    if bind.startswith("unix:"):
        if not bind[len("unix:"):]:
            raise ValueError("a unix: bind needs a socket path")
        return bind
    if bind.startswith("fd://"):
        if not bind[len("fd://"):].isdigit():
            raise ValueError("an fd:// bind needs a file descriptor number, "
                             "got %r" % bind)
        return bind
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = bind.rpartition(":")
    if not host or not port:
        raise ValueError("expected HOST:PORT (such as 127.0.0.1:8787), got %r"
                         % bind)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError("port %s out of range in %r (1-65535)" % (port, bind))
    return bind


def _backend_url(value: Any) -> str:
    # Each backend's URL check is registered with its scheme.
    return backends.check_url(_str(value))


def _store_url(value: Any) -> str:
    url = _str(value)
    scheme = urls.scheme(url)
    if scheme == "sqlite":
        return urls.check_sqlite_url(url)
    elif scheme in ("postgresql", "postgres"):
        return urls.check_postgresql_url(url)
    raise ValueError("unsupported store URL %r (use sqlite:///path/"
                     "store.db or postgresql://user@host/db)"
                     % redact_url(url))


# --------------------------------------------------------------- the schema

def _f(default: Any, parse: Callable[[Any], Any], doc: str = "") -> Any:
    return field(default=default, metadata={"parse": parse, "doc": doc})


@dataclass(frozen=True)
class BackendConfig:
    """Where queues, leases and flags live."""
    url: str = _f("sqlite://.hueyq/queue.db", _backend_url)
    dedupe_window: float = _f(defaults.DEDUPE_WINDOW, _duration)
    output_max_chunks: int = _f(defaults.OUTPUT_MAX_CHUNKS, _int(1))
    output_max_bytes: int = _f(defaults.OUTPUT_MAX_BYTES, _size)
    #: Redis: every enqueue waits (WAIT) until this many replicas have it,
    #: so a failover cannot lose an acknowledged enqueue; 0: no waiting.
    min_replicas: int = _f(0, _int(0))
    min_replicas_timeout: float = _f(defaults.MIN_REPLICAS_TIMEOUT, _duration)


@dataclass(frozen=True)
class SentinelConfig:
    """Redis Sentinel, for a ``redis+sentinel://`` backend URL."""
    #: The primary's name at the sentinels, when the URL names none.
    service_name: "str | None" = _f(None, _opt_str)
    #: The sentinels' own password (the URL's is the Redis servers').
    password: "str | None" = _f(None, _opt_str)
    retry_timeout: float = _f(defaults.SENTINEL_RETRY_TIMEOUT, _duration)


@dataclass(frozen=True)
class StoreConfig:
    """Where jobs, events and progress live."""
    url: str = _f("sqlite://.hueyq/store.db", _store_url)
    retention_age: float = _f(defaults.RETENTION_AGE, _duration)
    retention_count: int = _f(defaults.RETENTION_COUNT, _int(1))
    args_preview: bool = _f(defaults.ARGS_PREVIEW, _bool)
    progress_interval: float = _f(defaults.PROGRESS_INTERVAL, _duration)
    flush_interval: float = _f(defaults.FLUSH_INTERVAL, _duration)


@dataclass(frozen=True)
class RuntimeConfig:
    """How the supervisor runs consumers."""
    grace_period: float = _f(defaults.GRACE_PERIOD, _duration)
    max_redeliveries: int = _f(defaults.MAX_REDELIVERIES, _int(0))
    lease_timeout: float = _f(defaults.LEASE_TIMEOUT, _duration)
    heartbeat_interval: float = _f(defaults.HEARTBEAT_INTERVAL, _duration)
    poll_interval: float = _f(defaults.POLL_INTERVAL, _duration)
    restart_backoff_max: float = _f(defaults.RESTART_BACKOFF_MAX, _duration)
    host_id: "str | None" = _f(None, _opt_str)
    log_format: str = _f(defaults.LOG_FORMAT, _choice("text", "json"))
    require_noeviction: bool = _f(False, _bool)
    require_aof: bool = _f(False, _bool)


@dataclass(frozen=True)
class MemoryConfig:
    """System-wide memory watchdog settings."""
    interval: float = _f(defaults.MEMORY_INTERVAL, _duration)
    min_available: int = _f(defaults.MIN_AVAILABLE, _size)
    resume_available: "int | None" = _f(None, _opt_size)

    @property
    def resume_threshold(self) -> int:
        """Available memory at which watchdog pauses are lifted."""
        if self.resume_available:
            return self.resume_available
        return int(self.min_available * defaults.RESUME_FACTOR)


@dataclass(frozen=True)
class WebConfig:
    """The web UI and JSON API."""
    bind: str = _f(defaults.WEB_BIND, check_bind)
    token: "str | None" = _f(None, _token)
    read_only: bool = _f(False, _bool)
    workers: int = _f(defaults.WEB_WORKERS, _int(1))
    threads: int = _f(defaults.WEB_THREADS, _int(1))
    insecure: bool = _f(False, _bool)
    allowed_hosts: "tuple[str, ...]" = _f((), _str_list)
    trust_proxy: bool = _f(False, _bool)
    #: Bearer tokens that may only submit tasks (``POST /api/tasks/<name>``)
    #: and read or cancel what they submitted, never the other controls.
    submit_tokens: "tuple[str, ...]" = _f((), _tokens)
    #: Tasks ``POST /api/tasks/<name>`` enqueues, besides those declared
    #: with ``@app.task(http=True)``.
    submit_tasks: "tuple[str, ...]" = _f((), _str_list)


@dataclass(frozen=True)
class SecurityConfig:
    """Signing, size limits and encryption of messages."""
    secret: "str | None" = _f(None, _opt_str)
    require_secret: bool = _f(False, _bool)
    max_message_size: int = _f(defaults.MAX_MESSAGE_SIZE, _size)
    compression: bool = _f(False, _bool)
    encryption_keys: "tuple[str, ...]" = _f((), _str_list)


@dataclass(frozen=True)
class QueueConfig:
    """One priority queue, run by its own consumer process(es)."""
    name: str
    priority: int = _f(defaults.QUEUE_PRIORITY, _int(-1000))
    enabled: bool = _f(True, _bool)
    workers: int = _f(defaults.QUEUE_WORKERS, _int(1))
    worker_type: str = _f(defaults.QUEUE_WORKER_TYPE,
                          _choice("thread", "process", "async"))
    concurrency: int = _f(defaults.QUEUE_CONCURRENCY, _int(1))
    time_limit: "float | None" = _f(None, _opt_duration)
    soft_time_limit: "float | None" = _f(defaults.QUEUE_SOFT_TIME_LIMIT,
                                         _opt_duration)
    max_tasks: int = _f(0, _int(0))
    memory_limit: "int | None" = _f(None, _opt_size)
    worker_memory_soft: "int | None" = _f(None, _opt_size)
    worker_memory_hard: "int | None" = _f(None, _opt_size)
    gpu: bool = _f(False, _bool)
    gpu_memory_fraction: float = _f(defaults.QUEUE_GPU_MEMORY_FRACTION,
                                    _float(0.0, 1.0))
    torch_threads: int = _f(0, _int(0))
    min_consumers: int = _f(1, _int(1))
    max_consumers: int = _f(1, _int(1))
    scale_up_depth: int = _f(defaults.QUEUE_SCALE_UP_DEPTH, _int(1))
    scale_up_after: float = _f(defaults.QUEUE_SCALE_UP_AFTER, _duration)
    scale_down_after: float = _f(defaults.QUEUE_SCALE_DOWN_AFTER, _duration)
    depth_alert: int = _f(defaults.QUEUE_DEPTH_ALERT, _int(0))


@dataclass(frozen=True)
class Profile:
    """A resolved, validated profile. Every part reads settings from here."""
    name: str
    source: str
    app_name: str
    description: str
    backend: BackendConfig
    store: StoreConfig
    runtime: RuntimeConfig
    memory: MemoryConfig
    web: WebConfig
    security: SecurityConfig
    sentinel: SentinelConfig
    queues: Mapping[str, QueueConfig]
    routes: "tuple[tuple[str, str], ...]"

    @property
    def queue_names(self) -> "tuple[str, ...]":
        """Enabled queues, highest priority first."""
        enabled = [q for q in self.queues.values() if q.enabled]
        enabled.sort(key=lambda q: -q.priority)
        return tuple(q.name for q in enabled)

    def queue(self, name: str) -> QueueConfig:
        """The enabled queue called ``name``; QueueNotFound otherwise."""
        from hueyq.exceptions import QueueNotFound
        config = self.queues.get(name)
        if config is None or not config.enabled:
            raise QueueNotFound("no queue %r in profile %s (queues: %s)"
                                % (name, self.name, ", ".join(self.queue_names)))
        return config

    def route(self, task_name: str, short_name: str) -> "str | None":
        """Queue of the first route whose glob matches the task's name."""
        for pattern, queue in self.routes:
            if (fnmatch.fnmatchcase(task_name, pattern)
                    or fnmatch.fnmatchcase(short_name, pattern)):
                return queue
        return None

    def memory_budget(self) -> "int | None":
        """The sum of every queue's memory_limit (times its max_consumers),
        or None if a queue has no limit: what a systemd MemoryMax= must
        stay above."""
        total = 0
        for name in self.queue_names:
            queue = self.queues[name]
            if not queue.memory_limit:
                return None
            total += queue.memory_limit * queue.max_consumers
        return total

    @property
    def host_id(self) -> str:
        """This host's id in lease owners (HUEYQ_HOST_ID or the hostname)."""
        import socket
        return self.runtime.host_id or socket.gethostname()

    def as_dict(self, redact: bool = True) -> dict:
        """The profile as plain data, secrets redacted unless asked."""
        out = {"profile": self.name, "source": self.source,
               "app_name": self.app_name}
        if self.description:
            out["description"] = self.description
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self, section))
            for key, value in values.items():
                if value and (section, key) in _SECRET_KEYS and redact:
                    values[key] = "***"
                elif isinstance(value, tuple):
                    values[key] = list(value)
            if section == "backend" and redact:
                values["url"] = redact_url(values["url"])
            if section == "store" and redact:
                values["url"] = redact_url(values["url"])
            out[section] = values
        out["queues"] = {name: {k: v for k, v in dataclasses.asdict(q).items()
                                if k != "name"}
                         for name, q in self.queues.items()}
        out["routes"] = dict(self.routes)
        return out


_SECTIONS = {"backend": BackendConfig, "store": StoreConfig,
             "runtime": RuntimeConfig, "memory": MemoryConfig,
             "web": WebConfig, "security": SecurityConfig,
             "sentinel": SentinelConfig}
_TOP_LEVEL = {"extends", "app_name", "description", "queues", "routes",
              *_SECTIONS}
#: Environment variables with a name of their own, and the key each sets.
ENV_KEYS = {
    "HUEYQ_BACKEND": ("backend", "url"),
    "HUEYQ_STORE": ("store", "url"),
    "HUEYQ_SECRET": ("security", "secret"),
    "HUEYQ_WEB_TOKEN": ("web", "token"),
    "HUEYQ_HOST_ID": ("runtime", "host_id"),
    "HUEYQ_ENCRYPTION_KEY": ("security", "encryption_keys"),
    "HUEYQ_APP_NAME": ("app_name",),
}
#: Variables that are not keys: selectors and template inputs.
_ENV_NOT_KEYS = {"HUEYQ_PROFILE", "HUEYQ_DATA_DIR", "HUEYQ_REDIS_URL",
                 "HUEYQ_LOG_LEVEL", "HUEYQ_SUPERVISOR_PID", "HUEYQ_WEB_SECRET_KEY"}


# --------------------------------------------------------------- loading

def builtin_names() -> "tuple[str, ...]":
    """Names of the profiles shipped in the package."""
    return defaults.BUILTIN_PROFILES


def _read_builtin(name: str) -> "tuple[dict, str]":
    resource = importlib.resources.files("hueyq.profiles") / ("%s.toml" % name)
    label = "built-in profile %s" % name
    try:
        return tomllib.loads(resource.read_text(encoding="utf-8")), label
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - shipped files
        raise ConfigurationError("%s: TOML syntax error: %s" % (label, exc))


def _read_file(path: str) -> "tuple[dict, str]":
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), path
    except FileNotFoundError:
        raise ConfigurationError("profile file not found: %s" % path) from None
    except IsADirectoryError:
        raise ConfigurationError("profile is a directory, not a file: %s"
                                 % path) from None
    except PermissionError:
        raise ConfigurationError("cannot read profile file %s: permission "
                                 "denied" % path) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError("%s: TOML syntax error: %s"
                                 % (path, exc)) from None
    except UnicodeDecodeError:
        raise ConfigurationError("%s: not a UTF-8 text file" % path) from None


def is_profile_path(name: str) -> bool:
    """Whether ``name`` is a file path rather than a built-in name."""
    return os.sep in name or name.endswith(".toml") or name.startswith(".")


def select(arg: "str | None" = None, env: "Mapping[str, str] | None" = None
           ) -> str:
    """Which profile wins: HUEYQ_PROFILE (the CLI sets it), then ``arg``,
    then ``dev``."""
    env = os.environ if env is None else env
    return env.get("HUEYQ_PROFILE") or arg or defaults.PROFILE


def load_profile(name: "str | None" = None,
                 env: "Mapping[str, str] | None" = None,
                 overrides: "Mapping[str, Any] | None" = None) -> Profile:
    """Resolve a profile: packaged < file < environment < ``overrides``.

    ``name`` is a built-in name or a path to a .toml file. ``overrides`` maps
    dotted keys (``"web.bind"``) to values, as CLI flags give them.
    """
    env = dict(os.environ if env is None else env)
    name = name or defaults.PROFILE
    data, origins, label = _layers(name)
    _apply_env(data, origins, env)
    for dotted, value in (overrides or {}).items():
        path = tuple(dotted.split("."))
        _set(data, path, value)
        origins[path] = "command line"
    _expand(data, env, origins, label)
    return _build(name, label, data, origins)


def export_overrides(overrides: "Mapping[str, Any]",
                     env: "dict | None" = None) -> None:
    """Make command-line flags win in this process and its children.

    Each dotted key (``"web.bind"``) becomes its ``HUEYQ_WEB__BIND``
    variable, set last, so every App built afterwards (in the user's module,
    in gunicorn or consumer processes) sees it over the file and the
    environment.
    """
    env = os.environ if env is None else env
    for dotted, value in overrides.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        env["HUEYQ_" + "__".join(p.upper() for p in dotted.split("."))] = \
            str(value)


def _layers(name: str) -> "tuple[dict, dict, str]":
    if is_profile_path(name):
        data, label = _read_file(name)
        origins = _origins(data, label)
        base = data.pop("extends", None)
        if base is not None:
            if not isinstance(base, str) or base not in builtin_names():
                raise ConfigurationError(
                    "%s: extends: expected a built-in profile (%s), got %r"
                    % (label, ", ".join(builtin_names()), base))
            base_data, base_label = _read_builtin(base)
            base_origins = _origins(base_data, base_label)
            data = _merge(base_data, data)
            origins = {**base_origins, **origins}
        return data, origins, label
    if name not in builtin_names():
        raise ConfigurationError(
            "unknown profile %r (built-in: %s; or a path to a .toml file)"
            % (name, ", ".join(builtin_names())))
    data, label = _read_builtin(name)
    data.pop("extends", None)
    return data, _origins(data, label), label


def _origins(data: dict, label: str, prefix: tuple = ()) -> dict:
    out = {}
    for key, value in data.items():
        path = prefix + (key,)
        out[path] = label
        if isinstance(value, dict):
            out.update(_origins(value, label, path))
    return out


def _merge(base: dict, top: dict) -> dict:
    merged = dict(base)
    for key, value in top.items():
        if key == "routes" and isinstance(value, dict):
            old = base.get(key) if isinstance(base.get(key), dict) else {}
            merged[key] = {**value, **{k: v for k, v in old.items()
                                       if k not in value}}
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def _set(data: dict, path: tuple, value: Any) -> None:
    node = data
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigurationError("%s: is not a table" % ".".join(path))
    node[path[-1]] = value


def _apply_env(data: dict, origins: dict, env: Mapping[str, str]) -> None:
    for var, raw in sorted(env.items()):
        if not var.startswith("HUEYQ_") or var in _ENV_NOT_KEYS:
            continue
        if var in ENV_KEYS:
            path = ENV_KEYS[var]
        elif "__" in var:
            path = tuple(p.lower() for p in var[len("HUEYQ_"):].split("__"))
        else:
            continue
        label = "environment %s" % var
        _set(data, path, _env_value(path, raw, label))
        origins[path] = label


def _env_value(path: tuple, raw: str, label: str) -> Any:
    """Convert an environment string to the type its key expects."""
    parse = _field_parser(path)
    if parse is None:
        raise ConfigurationError("%s: unknown key %s" % (label, ".".join(path)))
    convert = getattr(parse, "from_env", None)
    if convert is None:
        return raw
    try:
        return convert(raw)
    except ValueError:
        kind = {int: "an integer", float: "a number"}.get(convert,
                                                          "true or false")
        raise ConfigurationError("%s: expected %s, got %r"
                                 % (label, kind, raw)) from None


def _field_parser(path: tuple) -> "Callable | None":
    if path == ("app_name",):
        return _str
    if len(path) == 2 and path[0] in _SECTIONS:
        fields = {f.name: f for f in dataclasses.fields(_SECTIONS[path[0]])}
        f = fields.get(path[1])
        return f.metadata["parse"] if f is not None else None
    if len(path) == 3 and path[0] == "queues":
        fields = {f.name: f for f in dataclasses.fields(QueueConfig)
                  if f.name != "name"}
        f = fields.get(path[2])
        return f.metadata["parse"] if f is not None else None
    return None


#: The service's data directory (systemd's ``StateDirectory=hueyq``).
SYSTEM_DATA_DIR = "/var/lib/hueyq"


def data_dir(env: Mapping[str, str], system: str = SYSTEM_DATA_DIR) -> str:
    """Default data directory: systemd state dir, /var/lib/hueyq, or XDG.

    Once the service's directory exists, every user gets it, writable or
    not: a login user then reads the service's queues (or is told the files
    are not theirs to read), never a fresh private database of their own.
    """
    if env.get("HUEYQ_DATA_DIR"):
        return env["HUEYQ_DATA_DIR"]
    if env.get("STATE_DIRECTORY"):
        return env["STATE_DIRECTORY"].split(":")[0]
    if (hasattr(os, "geteuid") and os.geteuid() == 0) or \
            os.path.lexists(system):
        return system
    xdg = env.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share")
    return os.path.join(xdg, "hueyq")


def _expand(data: Any, env: Mapping[str, str], origins: dict, label: str,
            path: tuple = ()) -> Any:
    if isinstance(data, dict):
        for key in list(data):
            data[key] = _expand(data[key], env, origins, label, path + (key,))
        return data
    if not isinstance(data, str) or "${" not in data:
        return data

    def substitute(match: "re.Match") -> str:
        var, default = match.group(1), match.group(2)
        if var == "HUEYQ_DATA_DIR":
            return data_dir(env)
        value = env.get(var)
        if value is None:
            if default is None:
                raise ConfigurationError(
                    "%s: %s: environment variable %s is not set"
                    % (origins.get(path, label), ".".join(path), var))
            return default
        return value
    return _TEMPLATE.sub(substitute, data)


def _parse_section(cls: type, raw: Any, prefix: tuple, origins: dict,
                   label: str, **fixed: Any) -> Any:
    where = origins.get(prefix, label)
    if not isinstance(raw, dict):
        raise ConfigurationError("%s: %s: expected a table, got %r"
                                 % (where, ".".join(prefix), raw))
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in fixed}
    values = dict(fixed)
    for key, value in raw.items():
        path = prefix + (key,)
        if key not in fields:
            raise ConfigurationError(
                "%s: unknown key %s (known: %s)"
                % (origins.get(path, where), ".".join(path),
                   ", ".join(sorted(fields))))
        try:
            values[key] = fields[key].metadata["parse"](value)
        except ValueError as exc:
            raise ConfigurationError("%s: %s: %s"
                                     % (origins.get(path, where),
                                        ".".join(path), exc)) from None
    return cls(**values)


def _build(name: str, label: str, data: dict, origins: dict) -> Profile:
    for key in data:
        if key not in _TOP_LEVEL:
            raise ConfigurationError(
                "%s: unknown key %s (known: %s)"
                % (origins.get((key,), label), key, ", ".join(sorted(_TOP_LEVEL))))
    sections = {s: _parse_section(cls, data.get(s, {}), (s,), origins, label)
                for s, cls in _SECTIONS.items()}
    queues = _build_queues(data.get("queues", {}), origins, label)
    routes = _build_routes(data.get("routes", {}), queues, origins, label)
    app_name = data.get("app_name", defaults.APP_NAME)
    if not isinstance(app_name, str) or not _APP_NAME.match(app_name):
        raise ConfigurationError(
            "%s: app_name: expected letters, digits, '-' or '_' starting with "
            "a letter, got %r" % (origins.get(("app_name",), label), app_name))
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigurationError("%s: description: expected a string"
                                 % origins.get(("description",), label))
    profile = Profile(name=_display_name(name),
                      source=label, app_name=app_name, description=description,
                      queues=types.MappingProxyType(queues), routes=routes,
                      **sections)
    _check_consistency(profile, origins, label)
    return profile


def _display_name(name: str) -> str:
    """A built-in's name, or a file's stem (its folder for a generic
    ``profile.toml``)."""
    if not is_profile_path(name):
        return name
    path = os.path.abspath(name)
    stem = os.path.splitext(os.path.basename(path))[0]
    if stem == "profile":
        return os.path.basename(os.path.dirname(path)) or stem
    return stem


def _build_queues(raw: Any, origins: dict, label: str) -> dict:
    if not isinstance(raw, dict) or not raw:
        raise ConfigurationError("%s: queues: at least one [queues.NAME] "
                                 "table is required"
                                 % origins.get(("queues",), label))
    queues = {}
    for qname, qraw in raw.items():
        if not _QUEUE_NAME.match(qname):
            raise ConfigurationError(
                "%s: queues.%s: a queue name is lower-case letters, digits, "
                "'-' or '_'" % (origins.get(("queues", qname), label), qname))
        queues[qname] = _parse_section(QueueConfig, qraw, ("queues", qname),
                                       origins, label, name=qname)
    if not any(q.enabled for q in queues.values()):
        raise ConfigurationError("%s: queues: every queue is disabled" % label)
    return queues


def _build_routes(raw: Any, queues: dict, origins: dict, label: str) -> tuple:
    if not isinstance(raw, dict):
        raise ConfigurationError("%s: routes: expected a table of "
                                 "\"glob\" = \"queue\"" % label)
    routes = []
    for pattern, queue in raw.items():
        where = origins.get(("routes", pattern), label)
        if not isinstance(queue, str):
            raise ConfigurationError("%s: routes.%r: expected a queue name, "
                                     "got %r" % (where, pattern, queue))
        if where.startswith("built-in") and where != label and \
                queue in queues and not queues[queue].enabled:
            continue  # a packaged route to a queue this file disabled
        if queue not in queues or not queues[queue].enabled:
            known = ", ".join(q for q in queues if queues[q].enabled)
            raise ConfigurationError("%s: routes.%r: unknown queue %r "
                                     "(queues: %s)" % (where, pattern, queue,
                                                       known))
        routes.append((pattern, queue))
    return tuple(routes)


def _check_consistency(profile: Profile, origins: dict, label: str) -> None:
    for q in profile.queues.values():
        where = origins.get(("queues", q.name), label)
        if q.max_consumers < q.min_consumers:
            raise ConfigurationError(
                "%s: queues.%s.max_consumers: must be >= min_consumers (%d)"
                % (where, q.name, q.min_consumers))
        if (q.worker_memory_soft and q.worker_memory_hard
                and q.worker_memory_soft > q.worker_memory_hard):
            raise ConfigurationError(
                "%s: queues.%s.worker_memory_soft: must not exceed "
                "worker_memory_hard" % (where, q.name))
        if q.worker_type == "async" and q.workers != 1:
            raise ConfigurationError(
                "%s: queues.%s.workers: an async queue runs one event loop "
                "per consumer process: set concurrency, not workers (%d)"
                % (where, q.name, q.workers))
        if (q.soft_time_limit and q.time_limit
                and q.soft_time_limit >= q.time_limit):
            raise ConfigurationError(
                "%s: queues.%s.soft_time_limit: must be under time_limit"
                % (where, q.name))
    backend = profile.backend
    if backend.min_replicas and urls.scheme(backend.url) not in (
            "redis", "rediss", "unix", "redis+sentinel"):
        raise ConfigurationError(
            "%s: backend.min_replicas: only a Redis backend has replicas to "
            "wait for" % origins.get(("backend", "min_replicas"), label))
    sentinel = urls.scheme(backend.url) == "redis+sentinel"
    if sentinel and not profile.sentinel.service_name and \
            urls.sentinel_parts(backend.url)["service"] is None:
        raise ConfigurationError(
            "%s: backend.url: a redis+sentinel URL needs the primary's "
            "service name (redis+sentinel://host:26379/mymaster/0) or "
            "sentinel.service_name" % origins.get(("backend", "url"), label))
    memory = profile.memory
    if memory.resume_available and memory.resume_available < memory.min_available:
        raise ConfigurationError(
            "%s: memory.resume_available: must be >= memory.min_available"
            % origins.get(("memory", "resume_available"), label))
