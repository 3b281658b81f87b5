"""The hueyq app under test: ``hueyq run --app benchmarks.apps.hueyq_app``.

The profile comes from ``HUEYQ_PROFILE`` (a file the harness writes, or a
built-in name). Every enabled queue ``q`` gets ``noop_q``, ``sleep_q`` and
``probe_q`` (an async queue only ``asleep_q``, an ``async def``); the first
queue also gets ``stream`` (the stream workload: chunks emitted with
``hueyq.emit``, each holding when it was emitted); the batch workload adds
``embed_one`` and ``embed_many`` on the first queue when ``BENCH_BATCH`` is
set.
"""

import os
import time

import hueyq

from benchmarks.apps import common

app = hueyq.App()
tasks = {}

for _queue in app.queues:
    if app.profile.queues[_queue].worker_type == "async":
        # An async queue runs only async def tasks.
        tasks["asleep_" + _queue] = app.task(
            queue=_queue, name="asleep_" + _queue)(common.asleep)
        continue
    tasks["noop_" + _queue] = app.task(queue=_queue, name="noop_" + _queue)(
        common.noop)
    tasks["sleep_" + _queue] = app.task(queue=_queue, name="sleep_" + _queue)(
        common.sleep)
    tasks["probe_" + _queue] = app.task(queue=_queue, name="probe_" + _queue)(
        common.probe)

if hasattr(hueyq, "emit"):
    @app.task(queue=app.queues[0], name="stream")
    def stream(token, count, gap, delay):
        """After ``delay`` s, ``count`` chunks ``gap`` s apart, each holding
        the time just before its ``hueyq.emit()`` call."""
        time.sleep(delay)
        for i in range(count):
            time.sleep(gap)
            hueyq.emit({"i": i, "t": time.time()})
        common.record(token)

    tasks["stream"] = stream

if os.environ.get("BENCH_BATCH"):
    from benchmarks.apps import embed

    _first = app.queues[0]

    @app.task(queue=_first)
    def embed_one(token, text):
        embed.embed([text])
        common.record(token)

    @app.batch_task(queue=_first, max_size=int(os.environ.get(
        "BENCH_BATCH_SIZE", "64")), max_wait=os.environ.get(
        "BENCH_BATCH_WAIT", "20ms"))
    def embed_many(items):
        embed.embed([text for _, text in items])
        for token, _ in items:
            common.record(token)
        return [None] * len(items)

    tasks["embed_one"], tasks["embed_many"] = embed_one, embed_many
