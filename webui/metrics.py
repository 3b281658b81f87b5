"""``GET /metrics``: queue, runtime and worker figures for Prometheus.

A :class:`HueyqCollector` reads the app's state at scrape time (the same
``queue_stats``, ``runtimes`` and ``workers`` the API answers) into a fresh
:class:`prometheus_client.CollectorRegistry` owned by each Flask app, and
prometheus_client writes the text format. A backend that does not answer
fails the scrape with 503, which Prometheus records as ``up == 0``.
"""

from typing import Iterator

import flask
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from prometheus_client import generate_latest
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,
                                   InfoMetricFamily)
from prometheus_client.registry import Collector

from hueyq import __version__

#: Live job states exported per queue (``queue_stats`` keys).
_LIVE = ("pending", "scheduled", "running")
#: Job states a job ends in, exported per queue for the last hour (the
#: ``<state>_recent`` keys of ``queue_stats``).
_FINISHED = ("complete", "failed", "cancelled", "expired", "dead")


class HueyqCollector(Collector):
    """Gauges of one hueyq App, read when Prometheus scrapes."""

    def __init__(self, app) -> None:
        self.app = app

    def describe(self) -> list:
        # Nothing at registration time: reading the backend waits for a scrape.
        return []

    def collect(self) -> Iterator:
        """Every metric, read from the backend and the store now."""
        app = self.app
        info = InfoMetricFamily("hueyq", "The hueyq app behind these metrics")
        info.add_metric([], {"app": app.name, "profile": app.profile.name,
                             "version": __version__})
        yield info
        yield from self._queues(app.queue_stats())
        yield from self._runtimes(app.runtimes())
        yield from self._workers(app.workers())
        fenced = CounterMetricFamily(
            "hueyq_fenced_acks", "Acks the backend refused because their "
            "holder had lost the lease (recovered and re-leased elsewhere), "
            "on every host")
        fenced.add_metric([], app.queue_backend.home.fenced())
        yield fenced

    def _queues(self, stats: dict) -> Iterator:
        jobs = GaugeMetricFamily("hueyq_queue_jobs", "Jobs in the backend by "
                                 "live state", labels=["queue", "state"])
        retryable = GaugeMetricFamily(
            "hueyq_queue_retryable", "Messages kept after their job failed, "
            "was cancelled, drained, expired or died, so it can be retried",
            labels=["queue"])
        waiting = GaugeMetricFamily(
            "hueyq_queue_waiting_for_memory", "Pending jobs (of the next "
            "1,000) that wait for memory room", labels=["queue"])
        recent = GaugeMetricFamily("hueyq_queue_finished_last_hour",
                                   "Jobs that ended in the last hour, by "
                                   "outcome", labels=["queue", "state"])
        paused = GaugeMetricFamily("hueyq_queue_paused", "1 while the queue "
                                   "is paused", labels=["queue"])
        mean = GaugeMetricFamily("hueyq_queue_mean_runtime_seconds", "Mean "
                                 "run time of the last hour's completions",
                                 labels=["queue"])
        p95 = GaugeMetricFamily("hueyq_queue_p95_runtime_seconds", "95th "
                                "percentile run time of the last hour's "
                                "completions", labels=["queue"])
        for queue, s in stats.items():
            for state in _LIVE:
                jobs.add_metric([queue, state], s.get(state, 0))
            retryable.add_metric([queue], s.get("retryable", 0))
            waiting.add_metric([queue], s.get("waiting_for_memory") or 0)
            for state in _FINISHED:
                recent.add_metric([queue, state],
                                  s.get(state + "_recent") or 0)
            paused.add_metric([queue], 1 if s["paused"] else 0)
            if s.get("mean_runtime") is not None:
                mean.add_metric([queue], s["mean_runtime"])
            if s.get("p95_runtime") is not None:
                p95.add_metric([queue], s["p95_runtime"])
        yield from (jobs, retryable, waiting, recent, paused, mean, p95)

    def _runtimes(self, runtimes: "list[dict]") -> Iterator:
        up = GaugeMetricFamily("hueyq_runtime_up", "1 while a runtime's "
                               "heartbeat is fresh", labels=["host", "pid"])
        age = GaugeMetricFamily("hueyq_runtime_heartbeat_age_seconds",
                                "Seconds since a runtime's last heartbeat",
                                labels=["host", "pid"])
        for r in runtimes:
            labels = [str(r.get("host")), str(r.get("pid"))]
            up.add_metric(labels, 1 if r["alive"] else 0)
            age.add_metric(labels, r["age"])
        yield from (up, age)

    def _workers(self, workers: "list[dict]") -> Iterator:
        labels = ["queue", "host", "pid", "kind"]
        memory = GaugeMetricFamily("hueyq_worker_memory_bytes", "Memory of a "
                                   "worker process (PSS where the kernel "
                                   "offers it, else RSS)", labels=labels)
        busy = GaugeMetricFamily("hueyq_worker_jobs", "Jobs a worker process "
                                 "is running", labels=labels)
        gpu = GaugeMetricFamily("hueyq_worker_gpu_memory_bytes", "GPU memory "
                                "a worker process has allocated",
                                labels=labels)
        for w in workers:
            values = [str(w.get(k)) for k in ("queue", "host", "pid", "kind")]
            if w.get("memory") is not None:
                memory.add_metric(values, w["memory"])
            busy.add_metric(values, len(w.get("jobs") or ()))
            if w.get("gpu") and w["gpu"].get("allocated") is not None:
                gpu.add_metric(values, w["gpu"]["allocated"])
        yield from (memory, busy, gpu)


def registry_for(app) -> CollectorRegistry:
    """A fresh registry holding one app's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HueyqCollector(app))
    return registry


def init_app(web: flask.Flask) -> None:
    """Give ``web`` its registry and the ``/metrics`` route."""
    current = web.extensions["hueyq"]
    current.registry = registry_for(current.app)
    web.add_url_rule("/metrics", "metrics", _metrics)


def _metrics() -> flask.Response:
    registry = flask.current_app.extensions["hueyq"].registry
    return flask.Response(generate_latest(registry),
                          content_type=CONTENT_TYPE_LATEST)
