"""Health: one code path for ``hueyq doctor`` and ``GET /api/health``.

:func:`check` returns findings (ok, warning or error) about the backend
(reachable, and its own configuration: SQLite journal and sync mode, WAL
size and free disk; Redis eviction policy, persistence and evicted keys), the
store, the runtime (a fresh status record), queue depths against their alert
thresholds, pauses in force, and the profile (unsigned messages, limits that
need process workers, a GPU lane without torch).
"""

import dataclasses
import importlib.util
import time

from hueyq import jobs
from hueyq.backends import Finding
from hueyq.exceptions import HueyqError
from hueyq.urls import redact_url


@dataclasses.dataclass(frozen=True)
class Report:
    """Findings and the verdict."""
    findings: "tuple[Finding, ...]"

    @property
    def errors(self) -> "list[Finding]":
        return [f for f in self.findings if f.level == "error"]

    @property
    def healthy(self) -> bool:
        """True when no finding is an error."""
        return not self.errors

    def as_dict(self) -> dict:
        return {"healthy": self.healthy,
                "reasons": [f.message for f in self.errors],
                "checks": [dataclasses.asdict(f) for f in self.findings]}


def check(app, require_runtime: bool = True) -> Report:
    """Everything health knows about ``app``; a missing runtime is an error
    only when ``require_runtime``."""
    findings = []
    findings += _backend(app)
    findings += _store(app)
    if not any(f.check == "backend" and f.level == "error" for f in findings):
        findings += _runtime(app, require_runtime)
        findings += _queues(app)
    findings += _profile(app)
    return Report(tuple(findings))


def _backend(app) -> "list[Finding]":
    storage = app.queue_backend
    try:
        storage.ping()
    except HueyqError as exc:
        return [Finding("error", "backend", str(exc))]
    runtime = app.profile.runtime
    found = [Finding("ok", "backend", "reachable: %s" % storage.describe())]
    try:
        found += storage.health(require_noeviction=runtime.require_noeviction,
                                require_aof=runtime.require_aof)
    except Exception as exc:  # a health probe must report, never crash
        found.append(Finding("error", "backend", "health check failed: %s"
                             % exc))
    return found


def _store(app) -> "list[Finding]":
    url = redact_url(app.profile.store.url)
    try:
        app.store.ping()
    except HueyqError as exc:
        return [Finding("error", "store", str(exc))]
    return [Finding("ok", "store", "reachable: %s" % url)]


def _runtime(app, required: bool) -> "list[Finding]":
    runtimes = app.runtimes()
    alive = [r for r in runtimes if r["alive"]]
    if alive:
        return [Finding("ok", "runtime", "%s pid %s alive (heartbeat %.1fs "
                        "ago, up %s)" % (r["host"], r["pid"], r["age"],
                                         _ago(r["started_at"])))
                for r in alive]
    level = "error" if required else "warning"
    if runtimes:
        last = runtimes[0]
        return [Finding(level, "runtime", "no runtime alive: the last one "
                        "(%s pid %s) stopped beating %.0fs ago"
                        % (last["host"], last["pid"], last["age"]))]
    return [Finding(level, "runtime", "no runtime alive (start one with "
                    "`hueyq run`)")]


def _queues(app) -> "list[Finding]":
    found = []
    for queue in app.queues:
        storage = app.storage(queue)
        config = app.profile.queues[queue]
        pending = storage.count("pending")
        if config.depth_alert and pending > config.depth_alert:
            found.append(Finding("warning", "queue.depth",
                                 "%s has %d pending (alert at %d)"
                                 % (queue, pending, config.depth_alert)))
        for by, flag in jobs.pauses(storage.flags()).items():
            level = "ok" if by == "user" else "warning"
            found.append(Finding(level, "queue.paused", "%s paused by %s%s"
                                 % (queue, by, ": %s" % flag["reason"]
                                    if flag.get("reason") else "")))
    return found


def _profile(app) -> "list[Finding]":
    profile = app.profile
    found = []
    security = profile.security
    if not security.secret:
        level = "error" if security.require_secret else "warning"
        found.append(Finding(level, "security.secret",
                             "messages are not signed: anyone who can write "
                             "to the backend can run code in the workers "
                             "(set HUEYQ_SECRET)"))
    for queue in profile.queue_names:
        config = profile.queues[queue]
        if config.worker_type == "thread" and config.time_limit:
            found.append(Finding(
                "warning", "queue.limits",
                "%s runs thread workers, so its time_limit is only "
                "cooperative (a task stops at its next hueyq.progress()); a "
                "hard time limit needs worker_type = \"process\"" % queue))
        if config.worker_type != "process" and config.worker_memory_hard:
            found.append(Finding(
                "warning", "queue.limits",
                "%s runs %s workers, so worker_memory_hard stops the whole "
                "consumer with every task it runs; per-task memory limits "
                "need worker_type = \"process\"" % (queue,
                                                     config.worker_type)))
        if config.gpu and importlib.util.find_spec("torch") is None:
            found.append(Finding("warning", "queue.gpu",
                                 "%s is a GPU lane but torch is not "
                                 "installed: its tasks run on the CPU "
                                 "(pip install 'hueyq[gpu]')" % queue))
    return found


def _ago(ts: "float | None") -> str:
    if not ts:
        return "-"
    from hueyq.units import format_duration
    return format_duration(time.time() - ts)
