"""The producer side of a trial, run in its own process.

``python -m benchmarks.producer SYSTEM ACTION JSON`` imports one system's
task module (configured by the ``BENCH_*`` and ``HUEYQ_*`` environment the
harness set), does ACTION, and prints ``RESULT {json}`` as its last line.
A separate process keeps each system's client out of the harness and the
others' way, and makes enqueue timings comparable.

Actions: ``enqueue`` (timed), ``warm`` (one probe per queue, waited for),
``latency`` (one probe at a time), ``bulk`` (one ``task.map`` call,
timed: hueyq only), ``priority`` (a low backlog, then high
probes at a fixed rate), ``batch`` (pause, enqueue, resume: hueyq only),
``stream`` (one job's emitted chunks read over SSE: hueyq only) and
``store`` (job store at scale: hueyq only).
"""

import json
import os
import sys
import time

from benchmarks.harness import Completions


class Sender:
    """``send(kind, queue, *args)`` for one system's client."""

    def __init__(self, system: str) -> None:
        self.system = system
        self.family = system.split("-")[0]
        getattr(self, "_open_" + self.family)()

    def _open_hueyq(self) -> None:
        from benchmarks.apps import hueyq_app
        self.app = hueyq_app.app
        self._tasks = hueyq_app.tasks

        def send(kind, queue, *args):
            name = kind if kind.startswith("embed") else kind + "_" + queue
            self._tasks[name](*args)
        self.send = send

    def _open_huey(self) -> None:
        from benchmarks.apps import huey_app
        self.send = lambda kind, queue, *args: getattr(
            huey_app.tasks[queue], kind)(*args)

    def _open_celery(self) -> None:
        from benchmarks.apps import celery_app
        self.send = lambda kind, queue, *args: getattr(
            celery_app, kind).apply_async(args, queue=queue)

    def _open_rq(self) -> None:
        from benchmarks.apps import common, rq_app
        queues = {}

        def send(kind, queue, *args):
            if queue not in queues:
                queues[queue] = rq_app.queue(queue)
            queues[queue].enqueue(getattr(common, kind), *args)
        self.send = send

    def _open_dramatiq(self) -> None:
        from benchmarks.apps import dramatiq_app
        self.send = lambda kind, queue, *args: getattr(
            dramatiq_app, kind).send(*args)

    def close(self) -> None:
        if self.family == "hueyq":
            self.app.close()


def completions() -> Completions:
    return Completions(os.environ["BENCH_COMPLETIONS"])


def wait_token(done: Completions, token: str, timeout: float) -> bool:
    """Poll the completions file (every 2 ms) until ``token`` is in it."""
    deadline = time.monotonic() + timeout
    checked = 0
    while True:
        done.read()
        if any(r[0] == token for r in done.records[checked:]):
            return True
        checked = max(0, len(done.records) - 1)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)


def enqueue(sender: Sender, kind: str, count: int, queues: list,
            prefix: str = "d", seconds: float = 0.0) -> dict:
    """Enqueue ``count`` tasks round-robin over ``queues``, timed."""
    extra = (seconds,) if kind in ("sleep", "asleep") else ()
    cpu = time.process_time()
    start = time.perf_counter()
    for i in range(count):
        sender.send(kind, queues[i % len(queues)], "%s-%d" % (prefix, i),
                    *extra)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "count": count,
            "cpu_seconds": time.process_time() - cpu,
            "rate": count / elapsed if elapsed else None}


def bulk(sender: Sender, kind: str, count: int, queue: str = "high",
         prefix: str = "b", seconds: "float | None" = None) -> dict:
    """Enqueue ``count`` tasks in one ``task.map`` call (hueyq), timed;
    ``stored``: the pending jobs the backend holds afterwards (``seconds``:
    the argument of sleeping tasks)."""
    task = sender._tasks[kind + "_" + queue]
    extra = () if seconds is None else (seconds,)
    items = [("%s-%d" % (prefix, i),) + extra for i in range(count)]
    cpu = time.process_time()
    start = time.perf_counter()
    task.map(items)
    elapsed = time.perf_counter() - start
    return {"seconds": elapsed, "count": count,
            "cpu_seconds": time.process_time() - cpu,
            "rate": count / elapsed if elapsed else None,
            "stored": sender.app.huey(queue).pending_count()}


def warm(sender: Sender, queues: list, timeout: float = 60.0) -> dict:
    """One probe per queue, each waited for: the consumers are up."""
    done = completions()
    start = time.time()
    for queue in queues:
        token = "w-%s-%d" % (queue, os.getpid())
        sender.send("probe", queue, token, time.time())
        if not wait_token(done, token, timeout):
            return {"ok": False, "queue": queue}
    return {"ok": True, "seconds": time.time() - start}


def latency(sender: Sender, count: int, queue: str = "high",
            gap: float = 0.02, wait: float = 10.0) -> dict:
    """Send ``count`` probes one at a time into an idle consumer."""
    done = completions()
    missed = 0
    calls = {}
    for i in range(count):
        token = "l-%d" % i
        start = time.time()
        sender.send("probe", queue, token, start)
        calls[token] = time.time() - start
        if not wait_token(done, token, wait):
            missed += 1
        time.sleep(gap)
    return {"sent": count, "missed": missed, "enqueue_s": calls}


def priority(sender: Sender, low_count: int, low_seconds: float,
             high_count: int, interval: float) -> dict:
    """A backlog of ``low_count`` sleeps on low, then ``high_count`` probes
    on high, one every ``interval`` seconds."""
    start = time.perf_counter()
    for i in range(low_count):
        sender.send("sleep", "low", "b-%d" % i, low_seconds)
    low_enqueue = time.perf_counter() - start
    first = time.time()
    for j in range(high_count):
        due = first + j * interval
        pause = due - time.time()
        if pause > 0:
            time.sleep(pause)
        sender.send("probe", "high", "h-%d" % j, time.time())
    return {"low_enqueue_s": low_enqueue, "first_high": first,
            "last_high": time.time()}


def batch(sender: Sender, count: int, kind: str) -> dict:
    """Pause the queue, enqueue ``count`` embeddings, resume (hueyq)."""
    from benchmarks.apps import embed
    app = sender.app
    queue = app.queues[0]
    done = completions()
    # Warm up the model on every text length (torch prepares kernels per
    # shape), in both variants alike.
    for i, text in enumerate(embed.sample_texts(16)):
        sender.send("embed_one", queue, "w-embed-%d" % i, text)
    if not wait_token(done, "w-embed-15", 120):
        return {"ok": False}
    app.pause(queue, reason="benchmark")
    texts = embed.sample_texts(count)
    start = time.perf_counter()
    for i, text in enumerate(texts):
        if kind == "embed_many":
            sender.send(kind, queue, ("e-%d" % i, text))
        else:
            sender.send(kind, queue, "e-%d" % i, text)
    enqueue_s = time.perf_counter() - start
    resumed = time.time()
    app.resume(queue)
    return {"ok": True, "resumed": resumed, "enqueue_s": enqueue_s}


def stream(sender: Sender, count: int, gap: float, url: str,
           delay: float = 0.5, timeout: float = 120.0) -> dict:
    """Enqueue one ``stream`` job and read its events from ``GET
    /api/jobs/<id>/stream`` as they come, over a real HTTP connection:
    emit-to-client latency of each output chunk (the client's
    ``time.time()`` when its event has been read less the task's just
    before ``emit()``)."""
    import http.client
    import urllib.parse
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + 60
    while True:     # the web server is up
        try:
            conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                              timeout=5)
            conn.request("GET", "/api/health")
            conn.getresponse().read()
            conn.close()
            break
        except OSError:
            if time.monotonic() > deadline:
                return {"error": "the web server did not answer"}
            time.sleep(0.1)
    job = sender._tasks["stream"]("s-0", count, gap, delay)
    conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                      timeout=timeout)
    conn.request("GET", "/api/jobs/%s/stream" % job.id,
                 headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    samples, dropped, state, event = [], 0, None, {}
    while True:
        line = response.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line:
            key, _, value = line.partition(": ")
            event[key] = value
            continue
        if event.get("event") == "output":
            data = json.loads(event["data"])
            samples.append((time.time() - data["data"]["t"]) * 1000)
            dropped += data["dropped"]
        elif event.get("event") == "state":
            state = json.loads(event["data"])["state"]
        event = {}
    conn.close()
    return {"samples": samples, "dropped": dropped, "state": state}


def info() -> dict:
    """What the installed hueyq offers, and each built-in profile's queues
    without a GPU lane."""
    import importlib.util

    import hueyq
    from hueyq.profile import load_profile
    out = {"version": hueyq.__version__, "file": hueyq.__file__,
           "batch_task": hasattr(hueyq.App, "batch_task"),
           "torch": importlib.util.find_spec("torch") is not None,
           "profiles": {}}
    for name in ("dev", "jetson", "server"):
        profile = load_profile(name)
        out["profiles"][name] = [q for q in profile.queue_names
                                 if not profile.queues[q].gpu]
    return out


def main(argv: "list[str]") -> int:
    system, action = argv[0], argv[1]
    args = json.loads(argv[2]) if len(argv) > 2 else {}
    if action == "info":
        result = info()
    elif action == "store":
        from benchmarks.storebench import run_store
        result = run_store(**args)
    else:
        sender = Sender(system)
        try:
            result = globals()[action](sender, **args)
        finally:
            sender.close()
    sys.stdout.write("RESULT %s\n" % json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
