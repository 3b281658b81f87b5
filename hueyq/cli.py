"""The ``hueyq`` command line (click).

Every command takes ``--profile`` (a built-in name or a .toml path; it wins
over HUEYQ_PROFILE and the profile named in code) and, where tasks or a
custom app name matter, ``--app MODULE[:ATTR]``. Domain errors print one line
and exit 1; bad arguments and bad profiles exit 2; nothing prints a traceback
for a user's mistake.
"""

import dataclasses
import json
import os
import sys
import time

import click

from hueyq import __version__
from hueyq.exceptions import ConfigurationError, HueyqError
from hueyq.logs import escape
from hueyq.urls import redact_url
from hueyq.units import format_duration, format_size


class Group(click.Group):
    """Maps hueyq's errors to one line and an exit status."""

    def main(self, args=None, prog_name=None, **extra):
        # click prints a usage error as three lines; one names the problem.
        try:
            status = super().main(args, prog_name, standalone_mode=False,
                                  **extra)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "hueyq"
            click.echo("%s: error: %s (see %s --help)"
                       % (where, exc.format_message(), where), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo("hueyq: error: %s" % exc.format_message(), err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        sys.exit(status if isinstance(status, int) else 0)

    def invoke(self, ctx: click.Context):
        from hueyq.app import backend_errors
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            click.echo("hueyq: error: %s" % exc, err=True)
            ctx.exit(2)
        except HueyqError as exc:
            click.echo("hueyq: %s" % exc, err=True)
            ctx.exit(1)
        except backend_errors() as exc:
            # A driver's error (Redis, SQLite) the command did not expect:
            # the backend explains it in one line.
            app = ctx.meta.get("hueyq.app")
            click.echo("hueyq: %s" % (app.explain(exc) if app is not None
                                      else exc), err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            ctx.exit(130)


def _profile_option(f):
    def remember(ctx, param, value):
        if value:
            from hueyq.profile import is_profile_path
            os.environ["HUEYQ_PROFILE"] = (os.path.abspath(value)
                                           if is_profile_path(value) else value)
        return value
    return click.option("--profile", "-p", metavar="NAME|FILE",
                        expose_value=False, is_eager=True, callback=remember,
                        help="Built-in profile (dev, jetson, server, server-pg) or a "
                        ".toml file.")(f)


def _app_option(required: bool = False):
    return click.option("--app", "-a", "app_spec", metavar="MODULE[:ATTR]",
                        required=required,
                        help="Module holding the hueyq.App (attribute app).")


def _open_app(app_spec: "str | None", require_secret: bool = True,
              access: str = "create"):
    """The App of ``--app`` (or of the profile alone), its files opened in
    ``access`` mode (``hueyq.files``): commands that look never create a
    file, commands that change state only use files that exist."""
    from hueyq import files
    from hueyq.app import App, load_app
    with files.access(access):
        app = load_app(app_spec) if app_spec else \
            App(require_secret=require_secret)
    click.get_current_context().meta["hueyq.app"] = app
    return app


def _json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _table(rows: "list[list]", headers: "list[str]") -> None:
    rows = [["" if v is None else escape(str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows])
              for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())


def _ago(ts: "float | None") -> str:
    return format_duration(time.time() - ts) + " ago" if ts else "-"


@click.group(cls=Group, context_settings={"help_option_names": ["-h",
                                                                "--help"]})
@click.version_option(__version__, prog_name="hueyq")
@_profile_option
def main() -> None:
    """hueyq: priority task queues on huey, with leases, budgets and a UI."""


# ---------------------------------------------------------------- run

@main.command()
@_profile_option
@_app_option(required=True)
@click.option("--queues", "-q", metavar="Q1,Q2",
              help="Run only these queues (default: all enabled).")
@click.option("--web", is_flag=True, help="Serve the web UI beside the "
              "runtime.")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log as text or JSON lines (default: text, JSON under "
              "systemd's journal).")
def run(app_spec: str, queues: "str | None", web: bool,
        log_format: "str | None") -> None:
    """Run the consumers of every queue under one supervisor."""
    from hueyq import logs
    from hueyq.runtime.supervisor import Supervisor
    app = _open_app(app_spec)
    fmt = logs.choose_format(log_format, app.profile.runtime.log_format)
    logs.setup(fmt)
    selected = [q.strip() for q in queues.split(",") if q.strip()] \
        if queues else None
    web_command = None
    if web:
        from hueyq.runtime import python_command
        web_command = python_command("hueyq", "web", "--app", app_spec)
    supervisor = Supervisor(app, app_spec, selected, log_format=fmt,
                            web_command=web_command)
    sys.exit(supervisor.run())


# ---------------------------------------------------------------- web

def _check_bind(ctx, param, value):
    from hueyq.profile import check_bind
    try:
        return None if value is None else check_bind(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@main.command()
@_profile_option
@_app_option()
@click.option("--bind", "-b", metavar="HOST:PORT", callback=_check_bind,
              help="Address to listen on (default: the profile's web.bind).")
@click.option("--workers", "-w", type=int, help="gunicorn worker processes.")
@click.option("--read-only", is_flag=True, help="Show state; refuse controls.")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind "
              "without a token.")
def web(app_spec: "str | None", bind: "str | None", workers: "int | None",
        read_only: bool, insecure: bool) -> None:
    """Serve the web UI and JSON API with gunicorn."""
    from hueyq.webui.serve import run_web
    overrides = {k: v for k, v in (("web.bind", bind),
                                   ("web.workers", workers)) if v}
    if read_only:
        overrides["web.read_only"] = True
    if insecure:
        overrides["web.insecure"] = True
    sys.exit(run_web(app_spec, overrides))


# ---------------------------------------------------------------- status

def _hosts_table(hosts: "list[dict]", lease_timeout: float) -> None:
    """Every host of the app: whether it beats, its heartbeat's age, its
    consumers by queue and the leases it holds (a silent host's are
    recovered by the others once it was silent for lease_timeout)."""
    rows = []
    for h in hosts:
        queues: "dict[str, int]" = {}
        for c in h["consumers"]:
            if c["alive"]:
                queues[c["queue"]] = queues.get(c["queue"], 0) + 1
        rows.append([h["host"], "alive" if h["alive"] else "silent",
                     "-" if h["age"] is None else "%.1fs ago" % h["age"],
                     " ".join("%s:%d" % q for q in queues.items()) or "-",
                     h["running"]])
    click.echo("")
    _table(rows, ["host", "state", "heartbeat", "consumers", "running"])
    if any(not h["alive"] for h in hosts):
        click.echo("a silent host's leases go to the others after %s "
                   "(runtime.lease_timeout)" % format_duration(lease_timeout))


@main.command()
@_profile_option
@_app_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(app_spec: "str | None", as_json: bool) -> None:
    """Queue depths, runtimes and workers."""
    app = _open_app(app_spec, require_secret=False, access="read")
    stats = app.queue_stats()
    runtimes = app.runtimes()
    workers = app.workers()
    actions = app.store.watchdog_events(limit=8)
    if as_json:
        _json({"app": app.name, "profile": app.profile.name,
               "queues": stats, "runtimes": runtimes, "workers": workers,
               "hosts": app.hosts(),
               "actions": actions})
        return
    alive = [r for r in runtimes if r["alive"]]
    if alive:
        for r in alive:
            click.echo("runtime: alive on %s pid %s, up %s, heartbeat %.1fs "
                       "ago" % (r["host"], r["pid"],
                                format_duration(time.time() - r["started_at"]),
                                r["age"]))
    else:
        click.echo("runtime: not running")
    hosts = app.hosts()
    if len(hosts) > 1 or any(not h["alive"] for h in hosts):
        _hosts_table(hosts, app.profile.runtime.lease_timeout)
    click.echo("backend: %s" % app.queue_backend.describe())
    click.echo("store:   %s" % redact_url(app.profile.store.url))
    rows = []
    for q, s in stats.items():
        rows.append([q, s["priority"], s["pending"], s["scheduled"],
                     s["running"], s["retryable"],
                     ",".join(s["paused_by"]) or "-", s["complete_recent"],
                     s["failed_recent"], _rate(s["success_rate"]),
                     format_duration(s["p95_runtime"])])
    _table(rows, ["queue", "prio", "pending", "scheduled", "running",
                  "retryable", "paused", "complete/1h", "failed/1h",
                  "success", "p95"])
    for q, s in stats.items():
        if s.get("waiting_for_memory"):
            click.echo("%s: %d pending job(s) waiting for memory (%s left of "
                       "the queue's budget)" % (q, s["waiting_for_memory"],
                                                format_size(
                                                    s["memory_room"])))
    if workers:
        click.echo("")
        rows = []
        several = len({w["host"] for w in workers}) > 1
        for w in workers:
            jobs = ", ".join("%s (%s, %s)" % (j["id"][:8], j["task"]
                                               .rsplit(".", 1)[-1],
                                               format_duration(
                                                   time.time()
                                                   - j["started_at"]))
                             for j in w["jobs"]) or "-"
            rows.append(([w["host"]] if several else []) + [
                w["queue"], w["pid"], w["kind"],
                "%s %s" % (format_size(w["memory"]),
                           (w.get("memory_kind") or "").upper()),
                format_size(w.get("worker_memory_hard")), jobs])
        _table(rows, (["host"] if several else []) +
               ["queue", "pid", "kind", "memory", "hard", "jobs"])
    if actions:
        click.echo("")
        click.echo("recent actions:")
        for action in actions:
            click.echo("  %s  %-7s %-7s %s" % (
                time.strftime("%H:%M:%S", time.localtime(action["ts"])),
                action["action"], action["queue"] or "-",
                escape(action["reason"] or "")))


def _rate(value: "float | None") -> str:
    return "-" if value is None else "%.0f%%" % (value * 100)


# ---------------------------------------------------------------- jobs

def _when(value: "str | None") -> "float | None":
    """A time given on the command line: a duration ago (``30m``, ``2h``,
    ``7d``), an ISO date or date and time (local), or Unix seconds."""
    import datetime
    from hueyq.units import parse_duration
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return time.time() - parse_duration(value)
    except (ValueError, ConfigurationError):
        pass
    try:
        return datetime.datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise click.BadParameter("%r is not a time: give a duration ago "
                                 "(30m, 2h, 7d), an ISO date or date and "
                                 "time, or Unix seconds" % value) from None


def _search_options(f):
    """--task, --id, --error, --since and --until: the job search terms."""
    for option in reversed((
            click.option("--task", "-t", metavar="NAME", help="Only this "
                         "task (full name, or its last part: echo)."),
            click.option("--id", "id_prefix", metavar="PREFIX",
                         help="Only jobs whose id starts with PREFIX."),
            click.option("--error", "-e", metavar="TEXT", help="Only jobs "
                         "whose error or reason contains TEXT (any case; "
                         "among the newest 10,000 matching jobs)."),
            click.option("--since", metavar="WHEN", help="Enqueued at or "
                         "after WHEN (30m, 2h, 7d ago; 2026-11-23T08:00; "
                         "Unix seconds)."),
            click.option("--until", metavar="WHEN", help="Enqueued before "
                         "WHEN (as --since)."))):
        f = option(f)
    return f


def _search(task, id_prefix, error, since, until) -> dict:
    return {"task": task, "id_prefix": id_prefix, "error": error,
            "since": _when(since), "until": _when(until)}


@main.command()
@_profile_option
@_app_option()
@click.option("--queue", "-q", help="Only this queue.")
@click.option("--state", "-s", help="Only this state (pending, running, "
              "failed, dead, ...).")
@_search_options
@click.option("--limit", "-n", default=50, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def jobs(app_spec: "str | None", queue: "str | None", state: "str | None",
         task: "str | None", id_prefix: "str | None", error: "str | None",
         since: "str | None", until: "str | None", limit: int,
         as_json: bool) -> None:
    """List jobs, newest first (pending, scheduled or running alone: in the
    order they will run)."""
    app = _open_app(app_spec, require_secret=False, access="read")
    # Stored states alone need only the store, but a missing or unreachable
    # backend means this looks at the wrong place: say so.
    app.queue_backend.ping()
    try:
        found = app.jobs(queue=queue, state=state, limit=limit,
                         **_search(task, id_prefix, error, since, until))
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if as_json:
        _json([j.as_dict() for j in found])
        return
    if not found:
        click.echo("no jobs")
        return
    rows = [[j.id, j.task.rsplit(".", 1)[-1], j.queue, j.state, j.attempts,
             "-" if j.progress is None else "%.0f%%" % j.progress,
             _ago(j.enqueued_at), (j.error or j.reason or "")[:60]]
            for j in found]
    _table(rows, ["id", "task", "queue", "state", "attempts", "progress",
                  "enqueued", "error"])


def _bulk(app_spec: "str | None", action: str, state: "str | None",
          queue: "str | None", search: dict, yes: bool) -> None:
    """Retry or delete the failed or dead jobs matching the filters, after
    showing how many and asking (unless ``yes``)."""
    from hueyq import control
    app = _open_app(app_spec, require_secret=False, access="existing")
    try:
        count, _ = control.matching(app, state, queue, limit=1, **search)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    what = "%s jobs" % (state or "failed or dead")
    terms = " ".join("%s=%s" % (k, v) for k, v in (
        ("queue", queue), ("task", search["task"]),
        ("id", search["id_prefix"]), ("error", search["error"])) if v)
    if count == 0:
        click.echo("no %s match%s" % (what, " " + terms if terms else ""))
        return
    if not yes:
        click.confirm("%s %d %s%s?" % (action.capitalize(), min(
            count, control.BULK_LIMIT), what, " matching " + terms
            if terms else ""), abort=True)
    run = control.retry_many if action == "retry" else control.delete_many
    click.echo(str(run(app, state, queue, **search)))


@main.command()
@_profile_option
@_app_option()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--follow", "-f", is_flag=True,
              help="Print the job's output as it comes, until it has "
              "finished; exit 0 when it completed, 1 otherwise.")
def job(app_spec: "str | None", job_id: str, as_json: bool,
        follow: bool) -> None:
    """Show one job with its history (or follow its output)."""
    app = _open_app(app_spec, require_secret=False, access="read")
    if follow:
        sys.exit(_follow(app, job_id, as_json))
    found = app.job(job_id)
    if as_json:
        _json(found.as_dict())
        return
    for field in ("id", "task", "queue", "state", "waiting", "args",
                  "attempts", "redeliveries", "progress", "message", "worker",
                  "reason", "error"):
        value = getattr(found, field)
        if field == "progress" and value is not None:
            value = "%.0f%%" % value
        if value not in (None, ""):
            click.echo("%-13s %s" % (field + ":", escape(str(value))))
    if found.memory:
        click.echo("%-13s %s" % ("memory:", format_size(found.memory)))
    for field, label in (("enqueued_at", "enqueued"), ("started_at", "started"),
                         ("finished_at", "finished")):
        value = getattr(found, field)
        if value:
            click.echo("%-13s %s (%s)" % (label + ":", time.strftime(
                "%Y-%m-%d %H:%M:%S", time.localtime(value)), _ago(value)))
    if found.state == "complete":
        click.echo("%-13s %s" % ("result:", found.result_error
                                 or repr(found.result)))
    if found.traceback:
        click.echo("traceback:\n" + "\n".join(
            escape(line) for line in found.traceback.rstrip().split("\n")))
    if found.history:
        click.echo("history:")
        for event in found.history:
            click.echo("  %s  %-16s %s" % (
                time.strftime("%H:%M:%S", time.localtime(event["ts"])),
                escape(str(event["event"])), escape(event["detail"] or "")))


def _follow(app, job_id: str, as_json: bool) -> int:
    """Print a job's output chunks as they come (a string as it is, other
    data as a JSON line; with ``as_json`` every event as a JSON line),
    progress and the final state on stderr; the exit status: 0 when the
    job completed, 1 when it failed, was cancelled, expired or is dead."""
    state, at_line_start = None, True
    for event in app.events(job_id):
        if as_json:
            click.echo(json.dumps({"event": event.kind, "id": event.id,
                                   "data": event.data}, default=str))
        elif event.kind == "output":
            data = event.data["data"]
            text = data if isinstance(data, str) else json.dumps(data) + "\n"
            if event.data["dropped"]:
                click.echo("[%d chunks dropped]" % event.data["dropped"],
                           err=True)
            # Newlines as they are; other control characters escaped.
            click.echo("\n".join(map(escape, text.split("\n"))), nl=False)
            sys.stdout.flush()
            at_line_start = text.endswith("\n") if text else at_line_start
        elif event.kind == "progress":
            click.echo("progress: %.0f%% %s" % (
                event.data["progress"], event.data["message"] or ""), err=True)
        if event.kind == "state":
            state = event.data
    if not as_json:
        if not at_line_start:
            click.echo("")
        if state is not None:
            click.echo("state: %s%s" % (state["state"], (": " + escape(
                state["error"])) if state.get("error") else ""), err=True)
    return 0 if state is not None and state["state"] == "complete" else 1


@main.command()
@_profile_option
@_app_option()
@click.argument("job_id")
def cancel(app_spec: "str | None", job_id: str) -> None:
    """Cancel a job (pending: never runs; running: stopped)."""
    app = _open_app(app_spec, require_secret=False, access="existing")
    click.echo(str(app.cancel(job_id)))


@main.command()
@_profile_option
@_app_option()
@click.argument("job_id", required=False)
@click.option("--state", "-s", type=click.Choice(["failed", "dead"]),
              help="Without JOB_ID: retry the failed (or dead) jobs that "
              "match; both when not given.")
@click.option("--queue", "-q", help="Without JOB_ID: only this queue.")
@_search_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def retry(app_spec: "str | None", job_id: "str | None", state: "str | None",
          queue: "str | None", task: "str | None", id_prefix: "str | None",
          error: "str | None", since: "str | None", until: "str | None",
          yes: bool) -> None:
    """Run a failed, cancelled or dead job again; without JOB_ID, every
    failed or dead job that matches the options (asks first)."""
    search = _search(task, id_prefix, error, since, until)
    if job_id is None:
        if not state and not queue and not any(search.values()):
            raise click.UsageError("give a JOB_ID, or choose jobs with "
                                   "--state failed|dead, --task, --queue ...")
        return _bulk(app_spec, "retry", state, queue, search, yes)
    if state or queue or any(search.values()):
        raise click.UsageError("give a JOB_ID or options, not both")
    app = _open_app(app_spec, require_secret=False, access="existing")
    found = app.retry(job_id)
    click.echo("%s queued again on %s (attempt %d next)"
               % (found.id, found.queue, found.attempts + 1))


@main.command()
@_profile_option
@_app_option()
@click.argument("queue")
@click.option("--reason", default="", help="Shown wherever the pause is.")
def pause(app_spec: "str | None", queue: str, reason: str) -> None:
    """Stop consumers taking from QUEUE (nothing is discarded)."""
    app = _open_app(app_spec, require_secret=False, access="existing")
    changed = app.pause(queue, reason=reason)
    click.echo("%s %s" % (queue, "paused" if changed else "was already "
                          "paused"))


@main.command()
@_profile_option
@_app_option()
@click.argument("queue")
def resume(app_spec: "str | None", queue: str) -> None:
    """Undo a pause of QUEUE."""
    app = _open_app(app_spec, require_secret=False, access="existing")
    changed = app.resume(queue)
    others = app.queue_stats()[queue]["paused_by"]
    text = "resumed" if changed else "was not paused by a user"
    if others:
        text += " (still paused by %s)" % ", ".join(others)
    click.echo("%s %s" % (queue, text))


@main.command()
@_profile_option
@_app_option()
@click.argument("queue")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def drain(app_spec: "str | None", queue: str, yes: bool) -> None:
    """Remove every pending job of QUEUE (recorded as cancelled)."""
    app = _open_app(app_spec, require_secret=False, access="existing")
    app.huey(queue)
    if not yes and sys.stdin.isatty():
        click.confirm("Cancel every pending job of %s?" % queue, abort=True)
    click.echo("%s drained: %d jobs cancelled" % (queue, app.drain(queue)))


@main.command()
@_profile_option
@_app_option()
@click.option("--state", "-s", type=click.Choice(["failed", "dead"]),
              help="Only failed (or dead) jobs; both when not given.")
@click.option("--queue", "-q", help="Only this queue.")
@_search_options
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
def delete(app_spec: "str | None", state: "str | None", queue: "str | None",
           task: "str | None", id_prefix: "str | None", error: "str | None",
           since: "str | None", until: "str | None", yes: bool) -> None:
    """Delete the failed or dead jobs that match (their records, history,
    results and kept messages); asks first."""
    search = _search(task, id_prefix, error, since, until)
    if not state and not queue and not any(search.values()):
        raise click.UsageError("choose the jobs to delete: --state "
                               "failed|dead, --task, --queue, --id ...")
    _bulk(app_spec, "delete", state, queue, search, yes)


# ---------------------------------------------------------------- profiles

@main.group()
def profiles() -> None:
    """List and show profiles."""


@profiles.command("list")
def profiles_list() -> None:
    """The built-in profiles."""
    from hueyq.profile import builtin_names, load_profile
    for name in builtin_names():
        click.echo("%-8s %s" % (name, load_profile(name, env={}).description))


@profiles.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profiles_show(name: str, as_json: bool) -> None:
    """The resolved profile NAME (a built-in or a file), secrets redacted."""
    from hueyq.profile import load_profile
    profile = load_profile(name)
    data = profile.as_dict()
    if as_json:
        _json(data)
        return
    click.echo(_toml(data, _size_keys()))


@profiles.command("from-celery")
@click.argument("spec", metavar="MODULE[:APP]")
@click.option("--worker-args", "worker_args", multiple=True,
              metavar="ARGS", help="A `celery worker` command line of the "
              "deployment (-Q QUEUES -c N -P POOL --max-memory-per-child=KIB "
              "...); once per worker.")
@click.option("--extends", default="server", show_default=True,
              help="The built-in profile the new one extends.")
def profiles_from_celery(spec: str, worker_args: "tuple[str, ...]",
                         extends: str) -> None:
    """Print a profile made from a Celery app's configuration (queues,
    routes, concurrency, limits); unmappable settings are listed in
    comments: hueyq profiles from-celery proj.celery:app > profile.toml"""
    from hueyq import fromcelery
    from hueyq.profile import builtin_names
    if extends not in builtin_names():
        raise click.BadParameter("%r is not a built-in profile (%s)"
                                 % (extends, ", ".join(builtin_names())),
                                 param_hint="--extends")
    app = fromcelery.load_celery_app(spec)
    click.echo(fromcelery.convert(app, spec, list(worker_args), extends),
               nl=False)


def _size_keys() -> "set[str]":
    from hueyq import profile as profile_module
    keys = set()
    for cls in list(profile_module._SECTIONS.values()) + \
            [profile_module.QueueConfig]:
        for f in dataclasses.fields(cls):
            parse = f.metadata.get("parse")
            if parse in (profile_module._size, profile_module._opt_size):
                keys.add(f.name)
    return keys


def _toml(data: dict, sizes: "set[str]") -> str:
    lines = ["# profile %s (%s)" % (data.pop("profile"), data.pop("source"))]
    tables = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append("%s = %s" % (key, _toml_value(value)))
    for key, value in tables:
        if key == "queues":
            for qname, queue in value.items():
                lines += ["", "[queues.%s]" % qname]
                lines += _toml_items(queue, sizes)
        elif key == "routes":
            lines += ["", "[routes]"]
            lines += ["%s = %s" % (json.dumps(k), json.dumps(v))
                      for k, v in value.items()]
        else:
            lines += ["", "[%s]" % key]
            lines += _toml_items(value, sizes)
    return "\n".join(lines)


def _toml_items(table: dict, sizes: "set[str]") -> "list[str]":
    out = []
    for key, value in table.items():
        if value is None:
            out.append("# %s = (not set)" % key)
            continue
        line = "%s = %s" % (key, _toml_value(value))
        if key in sizes and value:
            line += "  # %s" % format_size(value)
        out.append(line)
    return out


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


# ---------------------------------------------------------------- doctor

@main.command()
@_profile_option
@_app_option()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--require-runtime", is_flag=True,
              help="Treat a missing runtime as an error.")
def doctor(app_spec: "str | None", as_json: bool,
           require_runtime: bool) -> None:
    """Check the backend, store, runtime and profile; exit 1 on errors."""
    from hueyq import health
    app = _open_app(app_spec, require_secret=False, access="read")
    report = health.check(app, require_runtime=require_runtime)
    if as_json:
        _json(report.as_dict())
    else:
        click.echo("profile %s (%s), app %s" % (app.profile.name,
                                                app.profile.source, app.name))
        marks = {"ok": "ok   ", "warning": "WARN ", "error": "ERROR"}
        for finding in report.findings:
            click.echo("%s %-24s %s" % (marks[finding.level], finding.check,
                                        finding.message))
    sys.exit(0 if report.healthy else 1)


# ---------------------------------------------------------------- systemd

@main.command()
@_profile_option
@_app_option(required=True)
@click.option("--user", "-u", help="Run the services as this user.")
@click.option("--web", is_flag=True, help="Also a unit for the web UI.")
@click.option("--install", is_flag=True, help="Write the units and print the "
              "systemctl commands.")
@click.option("--dir", "directory", default=None, metavar="DIR",
              help="Where --install writes (default /etc/systemd/system).")
@click.option("--exec", "executable", metavar="PATH",
              help="The hueyq executable (default: this installation's).")
@click.option("--workdir", metavar="DIR",
              help="Working directory, where --app imports from (default: .).")
def systemd(app_spec: str, user: "str | None", web: bool, install: bool,
            directory: "str | None", executable: "str | None",
            workdir: "str | None") -> None:
    """Print (or install) systemd units for this profile and app."""
    from hueyq import systemd as units_module
    from hueyq.profile import load_profile, select
    profile_arg = os.environ.get("HUEYQ_PROFILE")
    if not profile_arg:
        raise ConfigurationError("hueyq systemd needs --profile (the units "
                                 "name it)")
    # Resolve data paths as the service will see them (StateDirectory=hueyq).
    env = dict(os.environ, STATE_DIRECTORY="/var/lib/hueyq")
    profile = load_profile(select(profile_arg), env=env)
    workdir = os.path.abspath(workdir or ".")
    if user:
        units_module.check_user(user)
    units_module.check_app(app_spec, workdir)
    found = units_module.units(profile, profile_arg, app_spec, user=user,
                               web=web, executable=executable,
                               workdir=workdir)
    if not install:
        for unit in found:
            click.echo("# ---- %s" % unit.name)
            click.echo(unit.text)
        return
    target = directory or units_module.UNIT_DIR
    commands = units_module.install(found, target)
    for unit in found:
        click.echo("wrote %s" % os.path.join(target, unit.name))
    click.echo("secrets (HUEYQ_SECRET, HUEYQ_WEB_TOKEN) go in "
               "/etc/hueyq/%s.env (chmod 600)" % profile.app_name)
    click.echo("then:")
    for command in commands:
        click.echo("  " + command)


# ---------------------------------------------------------------- migrate

@main.command()
@_profile_option
@_app_option(required=True)
@click.option("--from", "source_url", required=True, metavar="URL",
              help="The plain huey's storage: sqlite:///path/huey.db or "
              "redis://host:port/db.")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="The huey's name (repeatable; default: every one found).")
@click.option("--secret", metavar="SECRET",
              help="The secret of huey's SignedSerializer, if it signed.")
@click.option("--apply", is_flag=True, help="Copy (without it: only report "
              "what would be copied).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def migrate(app_spec: str, source_url: str, names: "tuple[str, ...]",
            secret: "str | None", apply: bool, as_json: bool) -> None:
    """Move a plain huey's pending and scheduled tasks and kept results
    into this app's queues, each task to its queue (a dry run without
    --apply; running it again copies nothing twice)."""
    from hueyq import migrate as migration
    source = migration.open_source(source_url)
    try:
        app = _open_app(app_spec, require_secret=False,
                        access="create" if apply else "read")
        report = migration.migrate(app, source, list(names) or None, secret,
                                   apply)
    finally:
        source.close()
    if as_json:
        _json(report.as_dict())
        return
    click.echo("from %s (huey %s)%s" % (
        report.source, ", ".join(report.names) or "nothing found",
        "" if apply else ": dry run, nothing written (--apply to migrate)"))
    verb = "moved" if apply else "would move"
    for queue, counts in sorted(report.moved.items()):
        click.echo("  %-10s %s %d pending, %d scheduled"
                   % (queue, verb, counts["pending"], counts["scheduled"]))
    click.echo("  results %d, revokes %d, counters %d"
               % (report.results, report.revokes, report.counters))
    for dead in report.dead_letters:
        click.echo("  unknown task %s (%s): kept as a dead letter on %s"
                   % (dead["task"], dead["id"], dead["queue"]))
    for line in report.undecodable:
        click.echo("  could not decode a %s (left in huey's storage)" % line)
    if report.already:
        click.echo("  already migrated: %d" % report.already)
    if report.not_copied:
        click.echo("  not copied: %d locks and rate-limit windows"
                   % report.not_copied)


# ---------------------------------------------------------------- demo

@main.command()
@_profile_option
@click.option("--jobs", "count", default=8, show_default=True, type=int,
              help="Jobs per queue.")
@click.option("--timeout", default=120.0, show_default=True,
              help="Give up after this many seconds.")
def demo(count: int, timeout: float) -> None:
    """Run the runtime with example tasks on every queue, then report."""
    from hueyq import demo as demo_module
    sys.exit(demo_module.main(count, timeout))


if __name__ == "__main__":
    main()
