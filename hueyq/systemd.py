"""systemd units for a hueyq deployment: ``hueyq systemd``.

:func:`units` renders the runtime unit (``Type=notify``: the supervisor
sends READY, STATUS and WATCHDOG itself) and, when asked, the web unit
(gunicorn notifies READY). The numbers come from the profile: the stop
timeout covers the grace period, ``MemoryMax=`` is a backstop above the sum
of the queues' budgets, and SQLite files get write access through
``ReadWritePaths=``, created private (``UMask=0027``,
``StateDirectoryMode=0750``). Secrets stay out of the units, in an
``EnvironmentFile=`` that only root reads. A value with a newline or other
control character (``--app``, ``--user``, ``--workdir``, a path) would
become a directive of its own, so it is refused.
"""

import dataclasses
import math
import os
import shlex
import shutil
import sys

from hueyq import drivers
from hueyq.exceptions import ConfigurationError
from hueyq.profile import Profile, sqlite_path

#: Where --install writes units.
UNIT_DIR = "/etc/systemd/system"
#: What MemoryMax= allows beyond the queues' budgets: the supervisor (in
#: no queue's budget) and the moment the watchdog needs to act on a queue
#: that went over its memory_limit. Everything above MemoryMax= is left to
#: the operating system and other services.
MEMORY_OVERHEAD = 192 << 20
#: Seconds systemd waits for READY and for a WATCHDOG ping.
WATCHDOG_SEC = 30


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit file: its name and text."""
    name: str
    text: str


def hueyq_executable() -> str:
    """The `hueyq` script of the running installation."""
    beside = os.path.join(os.path.dirname(sys.executable), "hueyq")
    if os.path.exists(beside):
        return beside
    return shutil.which("hueyq") or "%s -m hueyq" % sys.executable


def memory_max(profile: Profile) -> "int | None":
    """MemoryMax=: the sum of the queues' budgets plus MEMORY_OVERHEAD,
    rounded up to MiB; None when a queue has no memory_limit. On the
    ``jetson`` profile that is 6.5 GiB + 192 MiB, leaving 1.1 GiB of an
    8 GiB device to the operating system."""
    budget = profile.memory_budget()
    if budget is None:
        return None
    return int(math.ceil((budget + MEMORY_OVERHEAD) / (1 << 20))) << 20


def check_app(app_spec: str, workdir: str) -> None:
    """ConfigurationError unless ``app_spec`` imports from ``workdir`` (as
    the unit will run it) and holds an App; nothing is created meanwhile."""
    from hueyq import files
    from hueyq.app import load_app
    from hueyq.exceptions import ConfigurationError
    _check_value("--app", app_spec)
    _check_value("--workdir", workdir)
    if workdir not in sys.path:
        sys.path.insert(0, workdir)
    try:
        with files.access(files.READ):
            load_app(app_spec)
    except ConfigurationError:
        raise
    except Exception as exc:  # the user's module may raise anything
        raise ConfigurationError("--app: importing %s from %s failed: %s: %s"
                                 % (app_spec, workdir, type(exc).__name__,
                                    exc)) from None


def check_user(user: str) -> None:
    """ConfigurationError unless ``user`` exists on this machine."""
    import pwd
    from hueyq.exceptions import ConfigurationError
    _check_value("--user", user)
    try:
        pwd.getpwnam(user)
    except KeyError:
        raise ConfigurationError("--user: no user %r on this machine (create "
                                 "it first: sudo useradd --system %s)"
                                 % (user, user)) from None


def units(profile: Profile, profile_arg: str, app_spec: str,
          user: "str | None" = None, web: bool = False,
          executable: "str | None" = None,
          workdir: "str | None" = None) -> "list[Unit]":
    """The unit files for running ``app_spec`` under ``profile``;
    ConfigurationError for a value that cannot go into a unit."""
    executable = executable or hueyq_executable()
    workdir = workdir or os.getcwd()
    for option, value in (("--app", app_spec), ("--user", user),
                          ("--workdir", workdir), ("--exec", executable),
                          ("--profile", profile_arg),
                          ("web.bind", profile.web.bind)) + tuple(
            ("a SQLite path", d) for d in _writable(profile)):
        _check_value(option, value)
    base = "hueyq-%s" % profile.app_name
    common = _common(profile, profile_arg, user, workdir)
    run = " ".join([executable, "run", "--profile", shlex.quote(profile_arg),
                    "--app", shlex.quote(app_spec), "--log-format", "json"])
    out = [Unit(base + ".service", _render(
        "hueyq runtime (app %s, profile %s)" % (profile.app_name, profile.name),
        _after(profile), run, common + _runtime_only(profile)))]
    if web:
        serve = " ".join([executable, "web", "--profile",
                          shlex.quote(profile_arg), "--app",
                          shlex.quote(app_spec)])
        out.append(Unit(base + "-web.service", _render(
            "hueyq web UI (app %s, bind %s)" % (profile.app_name,
                                               profile.web.bind),
            _after(profile) + [base + ".service"], serve,
            common + ["TimeoutStopSec=30s", "KillMode=mixed"])))
    return out


def _check_value(option: str, value: "str | None") -> None:
    if value is None:
        return
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ConfigurationError("%s: %r holds a newline or another control "
                                 "character, which a unit file cannot carry"
                                 % (option, value))
    if option == "--user" and (not value or any(c.isspace() for c in value)):
        raise ConfigurationError("--user: %r is not a user name" % value)


def _after(profile: Profile) -> "list[str]":
    after = ["network-online.target"]
    if profile.backend.url.startswith(("redis", "unix")):
        after.append("redis-server.service")
    if profile.store.url.startswith("postgres"):
        after.append("postgresql.service")
    return after


def _writable(profile: Profile) -> "list[str]":
    dirs = []
    for url in (profile.backend.url, profile.store.url):
        if url.startswith("sqlite:"):
            directory = os.path.dirname(sqlite_path(url))
            if directory not in dirs:
                dirs.append(directory)
    return dirs


def _common(profile: Profile, profile_arg: str, user: "str | None",
            workdir: str) -> "list[str]":
    lines = ["Type=notify", "NotifyAccess=main",
             "WorkingDirectory=%s" % workdir,
             "Environment=PYTHONUNBUFFERED=1",
             "EnvironmentFile=-/etc/hueyq/%s.env" % profile.app_name]
    unused = drivers.unused(profile.backend.url, profile.store.url)
    if unused:
        # Every process of the unit imports huey and peewee without them
        # (hueyq/drivers.py): about 20 MiB less each on SQLite.
        lines.append("Environment=%s=%s" % (drivers.ENV, ",".join(unused)))
    if user:
        lines += ["User=%s" % user, "Group=%s" % user]
    lines += ["StateDirectory=hueyq", "StateDirectoryMode=0750",
              "LogsDirectory=hueyq", "UMask=0027",
              "Restart=on-failure", "RestartSec=5s",
              "NoNewPrivileges=yes", "ProtectSystem=strict",
              "ProtectHome=read-only", "PrivateTmp=yes",
              "ProtectKernelTunables=yes", "ProtectKernelModules=yes",
              "ProtectControlGroups=yes", "RestrictSUIDSGID=yes",
              "RestrictRealtime=yes", "LockPersonality=yes"]
    writable = _writable(profile)
    if writable:
        lines.append("ReadWritePaths=%s" % " ".join(writable))
    return lines


def _runtime_only(profile: Profile) -> "list[str]":
    grace = profile.runtime.grace_period
    lines = ["WatchdogSec=%ds" % WATCHDOG_SEC,
             "TimeoutStartSec=%ds" % WATCHDOG_SEC,
             "TimeoutStopSec=%ds" % int(math.ceil(grace + 15)),
             "KillMode=mixed", "KillSignal=SIGTERM", "OOMPolicy=continue"]
    limit = memory_max(profile)
    if limit is None:
        lines.append("# MemoryMax= not set: a queue has no memory_limit, so "
                     "the profile gives no budget to stay above")
    else:
        lines.append("MemoryMax=%dM" % (limit >> 20))
    return lines


def _render(description: str, after: "list[str]", exec_start: str,
            service: "list[str]") -> str:
    lines = ["# Generated by `hueyq systemd`. Secrets (HUEYQ_SECRET, ...) go in",
             "# the EnvironmentFile, readable by root only.",
             "[Unit]", "Description=%s" % description,
             "Wants=network-online.target",
             "After=%s" % " ".join(after), "",
             "[Service]", "ExecStart=%s" % exec_start] + service + [
             "", "[Install]", "WantedBy=multi-user.target", ""]
    return "\n".join(lines)


def install(unit_list: "list[Unit]", directory: str = UNIT_DIR) -> "list[str]":
    """Write the units into ``directory``; return the commands to enable
    them."""
    os.makedirs(directory, exist_ok=True)
    for unit in unit_list:
        with open(os.path.join(directory, unit.name), "w") as fh:
            fh.write(unit.text)
    names = " ".join(u.name for u in unit_list)
    return ["systemctl daemon-reload", "systemctl enable --now %s" % names,
            "systemctl status %s" % names,
            "journalctl -u %s -f" % unit_list[0].name]
