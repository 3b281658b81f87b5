"""What ``backend.min_replicas = 1`` costs an enqueue on Redis.

``python -m benchmarks.replicas [--tasks N] [--bulk N] [--repeat R]``

Starts a private primary and one replica (``redis-server --replicaof``,
``--save '' --appendonly no``, on free loopback ports in a temporary
directory), then, for ``min_replicas`` 0 and 1 in turn (interleaved, each
``--repeat`` times, medians printed), times an App's producer enqueueing
``--tasks`` tasks one call at a time and ``--bulk`` tasks with
``enqueue_many`` (1,000 a script). With ``min_replicas = 1`` every enqueue
is followed by ``WAIT 1`` on its connection: one more round trip and the
replica's acknowledgement (sent every replication ping, or at once when
the primary asks). Every process is stopped by pid at the end.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

from benchmarks.harness import Processes, RedisServer

PROFILE = """extends = "dev"
app_name = "replicas"
[backend]
url = "{url}"
min_replicas = {min_replicas}
min_replicas_timeout = "5s"
[store]
url = "sqlite://{store}"
[queues.medium]
enabled = false
[queues.gpu]
enabled = false
[queues.low]
enabled = false
"""


def _app(workdir: str, url: str, min_replicas: int):
    import hueyq
    path = os.path.join(workdir, "profile-%d.toml" % min_replicas)
    with open(path, "w") as fh:
        fh.write(PROFILE.format(url=url, min_replicas=min_replicas,
                                store=os.path.join(workdir, "store.db")))
    app = hueyq.App(path, maintenance=False)

    @app.task(queue="high")
    def work(n):
        return n
    return app, work


def measure(app, work, tasks: int, bulk: int) -> "tuple[float, float]":
    """(enqueue/s one call at a time, enqueue/s with enqueue_many)."""
    app.flush()
    started = time.perf_counter()
    for n in range(tasks):
        work(n)
    one = tasks / (time.perf_counter() - started)
    app.flush()
    calls = [work.s(n) for n in range(bulk)]
    started = time.perf_counter()
    app.enqueue_many(calls)
    many = bulk / (time.perf_counter() - started)
    app.flush()
    return one, many


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replicas")
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--bulk", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    processes = Processes()
    workdir = tempfile.mkdtemp(prefix="hueyq-replicas-")
    try:
        # No 5 s wait for more replicas before the first sync.
        primary = RedisServer(processes, os.path.join(workdir, "primary"),
                              args=("--repl-diskless-sync-delay", "0"))
        primary.start()
        replica = RedisServer(processes, os.path.join(workdir, "replica"),
                              args=("--replicaof", "127.0.0.1",
                                    str(primary.port)))
        replica.start()
        import redis
        client = redis.Redis(port=primary.port)
        deadline = time.monotonic() + 20
        while client.info("replication").get("slave0", {}).get(
                "state") != "online":
            if time.monotonic() > deadline:
                print("the replica did not connect", file=sys.stderr)
                return 1
            time.sleep(0.05)
        client.close()
        apps = {n: _app(workdir, primary.url, n) for n in (0, 1)}
        figures: "dict[int, list]" = {0: [], 1: []}
        for _ in range(args.repeat):
            for n in (0, 1):
                figures[n].append(measure(*apps[n], args.tasks, args.bulk))
        print("| min_replicas | enqueue/s (one call each) | enqueue/s "
              "(enqueue_many) |")
        print("|---|---|---|")
        medians = {}
        for n in (0, 1):
            one = statistics.median(f[0] for f in figures[n])
            many = statistics.median(f[1] for f in figures[n])
            medians[n] = (one, many)
            print("| %d | %.0f | %.0f |" % (n, one, many))
        print("min_replicas=1 costs %.0f%% of single enqueues' rate and %.0f%%"
              " of enqueue_many's (medians of %d, %d tasks and %d bulk)" % (
                  100 * (1 - medians[1][0] / medians[0][0]),
                  100 * (1 - medians[1][1] / medians[0][1]), args.repeat,
                  args.tasks, args.bulk))
        for app, _ in apps.values():
            app.close()
        return 0
    finally:
        processes.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
