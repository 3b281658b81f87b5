"""A hueyq profile from a Celery app's configuration (``hueyq profiles
from-celery``).

It reads a real ``celery.Celery`` object (Celery need only be installed
where the command runs, never where hueyq runs) and the worker command lines
the deployment starts (``-Q high_priority -c 8 --max-memory-per-child=...``)
and writes a profile: one queue per Celery queue with its concurrency, pool,
memory and task limits; ``task_routes`` (globs kept) and each task's own
``queue=`` as routes; ``result_expires`` as the store's retention; Redis as
the backend. What has no hueyq meaning is listed in comments at the end,
each with what hueyq does instead, and so are the ``beat_schedule`` entries
(``hueyq.celery`` runs them as periodic tasks) with the decorator each would
be in hueyq's own API.
"""

import argparse
import datetime
import importlib
import json
import os
import shlex
import sys
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from hueyq.exceptions import ConfigurationError
from hueyq.units import format_duration, format_size

#: Words in a queue's name and the priority they suggest.
_PRIORITY_WORDS = ((("critical", "urgent", "realtime", "high"), 100),
                   (("low", "background", "bulk", "batch"), 10),
                   (("medium", "default", "normal"), 50))
#: Celery settings this converter carries into the profile.
_MAPPED = {"broker_url", "task_routes", "task_queues", "task_default_queue",
           "worker_concurrency", "worker_max_memory_per_child",
           "worker_max_tasks_per_child", "task_time_limit",
           "task_soft_time_limit", "worker_pool", "result_expires",
           "beat_schedule", "include", "imports"}
#: Settings hueyq does by itself, or has no use for, and why.
_WHY = {
    "task_acks_late": "always on: a job's lease ends only when it ended",
    "task_reject_on_worker_lost": "always on: a dead worker's jobs are "
                                  "redelivered (runtime.max_redeliveries "
                                  "caps a job that keeps killing workers)",
    "task_track_started": "always on: running jobs are `running`",
    "worker_prefetch_multiplier": "workers lease one job at a time",
    "broker_transport_options": "no visibility timeout: leases are "
                                "recovered when their worker's pid is gone "
                                "or its host's heartbeat stops",
    "result_backend": "results live in the backend beside the queues",
    "task_serializer": "messages are pickled in a signed envelope "
                       "(security.secret); JSON-able arguments still work",
    "result_serializer": "results are stored with the message serializer",
    "accept_content": "workers accept only messages signed with the secret",
    "timezone": "periodic tasks run on UTC: write crontab hours in UTC",
    "enable_utc": "times are UTC",
    "worker_send_task_events": "every transition is recorded in the job "
                               "store (hueyq job ID, the web UI)",
    "task_send_sent_event": "enqueues are recorded in the job store",
    "task_annotations": "set limits on the task's decorator",
    "task_default_priority": "set priority= on the task's decorator",
    "task_queue_max_priority": "priorities are plain numbers, higher first",
    "task_default_rate_limit": "set rate_limit= on the task's decorator",
}


@dataclass
class WorkerArgs:
    """What one ``celery worker`` command line says about its queues."""
    queues: "list[str]" = field(default_factory=list)
    concurrency: "int | None" = None
    pool: "str | None" = None
    max_memory_per_child: "int | None" = None
    max_tasks_per_child: "int | None" = None
    time_limit: "float | None" = None
    soft_time_limit: "float | None" = None
    autoscale: "tuple[int, int] | None" = None
    ignored: "list[str]" = field(default_factory=list)


def parse_worker_args(text: str) -> WorkerArgs:
    """Parse the options of ``celery -A proj worker ...`` that matter."""
    parser = argparse.ArgumentParser(prog="--worker-args", add_help=False,
                                     exit_on_error=False)
    parser.add_argument("-Q", "--queues", default="")
    parser.add_argument("-c", "--concurrency", type=int)
    parser.add_argument("-P", "--pool")
    parser.add_argument("--max-memory-per-child", type=int)
    parser.add_argument("--max-tasks-per-child", type=int)
    parser.add_argument("--time-limit", type=float)
    parser.add_argument("--soft-time-limit", type=float)
    parser.add_argument("--autoscale")
    words = _drop_app(shlex.split(text))
    if words[:1] == ["celery"]:
        words = words[1:]
    if words[:1] == ["worker"]:
        words = words[1:]
    try:
        known, rest = parser.parse_known_args(words)
    except (argparse.ArgumentError, ValueError) as exc:
        raise ConfigurationError("--worker-args %r: %s" % (text, exc)) \
            from None
    autoscale = None
    if known.autoscale:
        try:
            most, least = (int(n) for n in known.autoscale.split(","))
        except ValueError:
            raise ConfigurationError("--worker-args %r: --autoscale takes "
                                     "MAX,MIN" % text) from None
        autoscale = (most, least)
    return WorkerArgs(
        queues=[q for q in known.queues.split(",") if q],
        concurrency=known.concurrency, pool=known.pool,
        max_memory_per_child=known.max_memory_per_child,
        max_tasks_per_child=known.max_tasks_per_child,
        time_limit=known.time_limit, soft_time_limit=known.soft_time_limit,
        autoscale=autoscale, ignored=rest)


def _drop_app(words: "list[str]") -> "list[str]":
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("-A", "--app"):
            skip = True
        elif not word.startswith("--app="):
            out.append(word)
    return out


def load_celery_app(spec: str):
    """Import ``module[:attr]`` and return the Celery app there."""
    try:
        import celery
    except ImportError:
        raise ConfigurationError("from-celery needs Celery installed where "
                                 "it runs: pip install celery") from None
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigurationError("from-celery: cannot import %r (%s)"
                                 % (module_name, exc)) from None
    names = [attr] if attr else ["app", "celery"]
    for name in names:
        found = getattr(module, name, None)
        if isinstance(found, celery.Celery):
            found.loader.import_default_modules()
            return found
    raise ConfigurationError("from-celery: %s has no Celery app named %s"
                             % (module_name, " or ".join(map(repr, names))))


def changed_settings(app) -> "dict[str, Any]":
    """The settings of ``app`` that differ from Celery's defaults."""
    from celery.app.defaults import DEFAULTS
    return {key: value for key, value in app.conf.items()
            if key in DEFAULTS and value != DEFAULTS[key]}


def convert(app, spec: str, worker_args: "list[str]" = (),
            extends: str = "server") -> str:
    """The profile (TOML text) for Celery app ``app``."""
    from hueyq.profile import load_profile
    conf = app.conf
    workers = [parse_worker_args(text) for text in worker_args]
    routes = _routes(app)
    queues = _queue_names(app, routes, workers)
    base = load_profile(extends, env={})
    lines = ["# hueyq profile from the Celery app %s" % spec,
             "# (hueyq profiles from-celery %s%s)" % (spec, "".join(
                 " --worker-args %s" % shlex.quote(w) for w in worker_args)),
             'extends = "%s"' % extends,
             'app_name = %s' % json.dumps(_app_name(app))]
    lines += _backend(conf.broker_url)
    if conf.result_expires:
        lines += ["", "[store]", 'retention_age = "%s"  # result_expires'
                  % _duration(_seconds(conf.result_expires))]
    for index, name in enumerate(queues):
        lines += [""] + _queue(name, index, len(queues), conf, workers)
        if name in base.queues:
            lines += _inherited(base.queues[name], lines, extends)
    for name in base.queue_names:
        if name not in queues:
            lines += ["", "[queues.%s]  # a queue of the %s profile that "
                      "this Celery app does not use" % (name, extends),
                      "enabled = false"]
    lines += ["", "[routes]"]
    lines += ["%s = %s" % (json.dumps(p), json.dumps(q)) for p, q in routes]
    if conf.task_default_queue in queues:
        lines.append('"*" = %s  # task_default_queue: every other task'
                     % json.dumps(conf.task_default_queue))
    lines += _unmapped(app, workers)
    lines += _beat(conf.beat_schedule)
    return "\n".join(lines) + "\n"


def _app_name(app) -> str:
    main = (app.main or "celery").replace(".", "-")
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in main)


def _backend(url: "str | None") -> "list[str]":
    if not url:
        return []
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return ["", "# broker_url %s: hueyq's backends are Redis, SQLite and "
                "PostgreSQL; the extended profile's backend is kept"
                % parts.scheme]
    comment = "  # Celery's broker_url"
    if parts.password:
        netloc = "%s:${HUEYQ_REDIS_PASSWORD}@%s" % (parts.username or "",
                                                    parts.hostname)
        if parts.port:
            netloc += ":%d" % parts.port
        url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        comment += ", its password from HUEYQ_REDIS_PASSWORD"
    return ["", "[backend]", "url = %s%s" % (json.dumps(url), comment)]


def _routes(app) -> "list[tuple[str, str]]":
    """(glob, queue) from task_routes, then from tasks' own queue=, then
    the default queue for everything else."""
    out = []
    config = app.conf.task_routes or {}
    items = config.items() if isinstance(config, dict) else \
        [kv for item in config if isinstance(item, dict)
         for kv in item.items()]
    for pattern, route in items:
        queue = route.get("queue") if isinstance(route, dict) else route
        if isinstance(pattern, str) and queue:
            out.append((pattern, str(getattr(queue, "name", queue))))
    for name, task in sorted(app.tasks.items()):
        queue = getattr(task, "queue", None)
        if queue and not name.startswith("celery.") and \
                not any(p == name for p, _ in out):
            out.append((name, str(queue)))
    return out


def _queue_names(app, routes, workers) -> "list[str]":
    names = []
    for queue in app.conf.task_queues or ():
        names.append(getattr(queue, "name", str(queue)))
    for worker in workers:
        names += worker.queues
    names += [q for _, q in routes]
    default = app.conf.task_default_queue
    if not workers or any(not w.queues or default in w.queues
                          for w in workers):
        names.append(default)
    seen = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen


def _priority(name: str, index: int, count: int) -> int:
    for words, value in _PRIORITY_WORDS:
        if any(w in name.lower() for w in words):
            return value
    return 50 + (count - index)


def _queue(name: str, index: int, count: int, conf, workers) -> "list[str]":
    worker = next((w for w in workers if name in w.queues), None) or \
        next((w for w in workers if not w.queues), None)
    concurrency = worker.concurrency if worker and worker.concurrency \
        else conf.worker_concurrency
    pool = (worker.pool if worker and worker.pool else conf.worker_pool) \
        or "prefork"
    memory = worker.max_memory_per_child if worker and \
        worker.max_memory_per_child else conf.worker_max_memory_per_child
    tasks = worker.max_tasks_per_child if worker and \
        worker.max_tasks_per_child else conf.worker_max_tasks_per_child
    hard = worker.time_limit if worker and worker.time_limit \
        else conf.task_time_limit
    soft = worker.soft_time_limit if worker and worker.soft_time_limit \
        else conf.task_soft_time_limit
    lines = ["[queues.%s]" % name,
             "priority = %d  # from its name and place; higher runs first "
             "and is paused last under memory pressure"
             % _priority(name, index, count)]
    if worker and worker.autoscale:
        lines.append("workers = %d  # --autoscale=%d,%d" % (
            worker.autoscale[0], *worker.autoscale))
    elif pool == "solo":
        lines.append("workers = 1  # -P solo")
    elif concurrency:
        lines.append("workers = %d  # Celery's concurrency" % concurrency)
    else:
        lines.append("workers = %d  # Celery's default: one per CPU"
                     % (os.cpu_count() or 1))
    if pool == "prefork":
        lines.append('worker_type = "process"  # Celery\'s prefork pool')
    else:
        lines.append('worker_type = "thread"  # -P %s%s' % (
            pool, "" if pool in ("threads", "solo") else
            " (no hueyq equivalent: threads)"))
    if hard:
        lines.append('time_limit = "%s"' % _duration(hard))
    if soft:
        lines.append('soft_time_limit = "%s"' % _duration(soft))
    if memory:
        lines.append('worker_memory_soft = "%s"  # max_memory_per_child %d '
                     'KiB (%s): recycled after its current task' % (
                         _kib(memory), memory, format_size(memory * 1024)))
    if tasks:
        lines.append("max_tasks = %d  # max_tasks_per_child" % tasks)
    return lines


def _inherited(queue, lines: "list[str]", extends: str) -> "list[str]":
    """A comment naming what a queue keeps from the extended profile."""
    import dataclasses
    written = {line.split(" = ")[0] for line in lines if " = " in line}
    kept = []
    for f in dataclasses.fields(queue):
        value = getattr(queue, f.name)
        if f.name in written or f.name in ("name", "enabled") or \
                value in (None, 0, False) or value == f.default:
            continue
        if f.name.endswith(("time_limit", "_after")):
            value = _duration(value)
        elif "memory" in f.name and isinstance(value, int):
            value = format_size(value)
        kept.append("%s = %s" % (f.name, value))
    if not kept:
        return []
    return ["# kept from the %s profile: %s" % (extends, ", ".join(kept))]


def _unmapped(app, workers) -> "list[str]":
    out = []
    for key, value in sorted(changed_settings(app).items()):
        if key in _MAPPED or key.startswith("broker_url"):
            continue
        out.append("# %s = %s: %s" % (key, _repr(value),
                                      _WHY.get(key, "no hueyq meaning")))
    for worker in workers:
        if worker.ignored:
            out.append("# worker options %s: no hueyq meaning"
                       % " ".join(worker.ignored))
    if not out:
        return []
    return ["", "# Celery settings not carried over (what hueyq does "
            "instead):"] + out


def _beat(schedule: "dict | None") -> "list[str]":
    if not schedule:
        return []
    out = ["", "# beat_schedule: hueyq.celery runs app.conf.beat_schedule "
           "as periodic tasks of this", "# runtime (no beat process); in "
           "hueyq's own API each entry is a decorator:"]
    for name, entry in schedule.items():
        out.append("# %r: %s every %s -> @app.periodic_task(%s)" % (
            name, entry.get("task"), _schedule_text(entry.get("schedule")),
            _schedule_code(entry.get("schedule"))))
    return out


def _schedule_text(schedule: Any) -> str:
    if hasattr(schedule, "_orig_minute"):
        return "crontab %s %s %s %s %s (m h dom mon dow)" % (
            schedule._orig_minute, schedule._orig_hour,
            schedule._orig_day_of_month, schedule._orig_month_of_year,
            schedule._orig_day_of_week)
    return _duration(_seconds(getattr(schedule, "run_every", schedule)))


def _schedule_code(schedule: Any) -> str:
    if hasattr(schedule, "_orig_minute"):
        from hueyq.celery import weekdays
        parts = [("minute", schedule._orig_minute),
                 ("hour", schedule._orig_hour),
                 ("day", schedule._orig_day_of_month),
                 ("month", schedule._orig_month_of_year),
                 ("day_of_week", weekdays(str(schedule._orig_day_of_week)))]
        return "hueyq.crontab(%s)" % ", ".join(
            "%s=%s" % (k, json.dumps(str(v))) for k, v in parts
            if str(v) != "*")
    seconds = _seconds(getattr(schedule, "run_every", schedule))
    if seconds and seconds % 60 == 0:
        if seconds < 3600:
            return 'hueyq.crontab(minute="*/%d")' % (seconds // 60)
        if seconds == 3600:
            return 'hueyq.crontab(minute="0")'
        if seconds % 3600 == 0 and seconds < 86400:
            return 'hueyq.crontab(minute="0", hour="*/%d")' % (seconds // 3600)
    return "... (%s: periodic tasks run on whole minutes)" % _duration(seconds)


def _seconds(value: Any) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    return float(value)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d%s" % (seconds // size, unit)
    return "%gs" % seconds if seconds >= 1 else format_duration(seconds)


def _kib(kib: int) -> str:
    if kib % (1024 * 1024) == 0:
        return "%dGiB" % (kib // (1024 * 1024))
    if kib % 1024 == 0:
        return "%dMiB" % (kib // 1024)
    return "%dKiB" % kib


def _repr(value: Any) -> str:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return json.dumps(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
