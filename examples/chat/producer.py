"""Load the chat endpoint while a backlog drains on ``low``; report latency.

1. Sends one warm-up message and waits for its reply (the runtime is up).
2. Enqueues ``--backlog`` background jobs on ``low`` and waits until the
   low worker is busy with them.
3. Sends ``--chats`` messages to ``POST /chat``, one every ``--interval``
   seconds, and polls ``GET /jobs/<id>`` for each until it is complete.
4. Prints the replies, the enqueue-to-start latency of the chat jobs
   (p50/p99), and how many background jobs were still pending when the last
   reply was done: more than zero means chats did not wait for the backlog.

Run from this folder, with the runtime and ``server.py`` running:
``python producer.py``; ``--json`` prints the summary as one JSON line.
"""

import argparse
import json
import math
import time
import urllib.error
import urllib.request

import tasks


def call(url: str, body: "dict | None" = None) -> "tuple[int, dict]":
    """One HTTP request with a JSON body and answer."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def send(base: str, conversation: str, text: str) -> str:
    """POST one message; returns the job id (the answer is 202 at once)."""
    status, body = call(base + "/chat", {"conversation": conversation,
                                         "text": text})
    if status != 202:
        raise RuntimeError("POST /chat answered %d: %s" % (status, body))
    return body["id"]


def follow(base: str, job_ids: "list[str]",
           timeout: float) -> "dict[str, dict]":
    """Poll /jobs/<id> until every job is finished and its times are in."""
    done: "dict[str, dict]" = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(job_ids):
        if time.monotonic() > deadline:
            raise TimeoutError("%d chat jobs unfinished after %.0fs"
                               % (len(job_ids) - len(done), timeout))
        for job_id in job_ids:
            if job_id in done:
                continue
            _, job = call(base + "/jobs/" + job_id)
            if job["state"] in ("failed", "cancelled", "dead", "expired"):
                raise RuntimeError("chat job %s ended %s: %s"
                                   % (job_id, job["state"], job["error"]))
            if job["state"] == "complete" and job["started_at"]:
                done[job_id] = job
        time.sleep(0.02)
    return done


def percentile(values: "list[float]", pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def wait_until_busy(backlog: int, timeout: float = 30.0) -> None:
    """Wait until the low worker has started on the backlog."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        low = tasks.app.queue_stats()["low"]
        if low["running"] or low["pending"] < backlog:
            return
        time.sleep(0.05)
    raise TimeoutError("the low queue did not start; is `hueyq run` running "
                       "with --queues high,low?")


def run(base: str, backlog: int, chats: int, interval: float) -> dict:
    """The whole scenario; returns the summary."""
    follow(base, [send(base, "warm-up", "hello")], timeout=60)
    for shard in range(backlog):
        tasks.rebuild_index(shard)
    wait_until_busy(backlog)
    ids = []
    for i in range(chats):
        ids.append(send(base, "user%d" % (i % 5), "message number %d" % i))
        time.sleep(interval)
    jobs = follow(base, ids, timeout=60)
    low_pending = tasks.app.queue_stats()["low"]["pending"]
    waits = [jobs[i]["started_at"] - jobs[i]["enqueued_at"] for i in ids]
    return {"chats": chats, "backlog": backlog,
            "replies": [jobs[i]["result"]["reply"] for i in ids],
            "enqueue_to_start_p50_ms": round(1000 * percentile(waits, 50), 1),
            "enqueue_to_start_p99_ms": round(1000 * percentile(waits, 99), 1),
            "enqueue_to_start_max_ms": round(1000 * max(waits), 1),
            "low_pending_when_chats_done": low_pending}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:5000")
    parser.add_argument("--backlog", type=int, default=300)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    summary = run(args.url.rstrip("/"), args.backlog, args.chats,
                  args.interval)
    if args.json:
        print(json.dumps(summary))
        return
    for text in summary["replies"][:3]:
        print("reply:", text)
    print("%d chat jobs during a backlog of %d low jobs" % (args.chats,
                                                           args.backlog))
    print("enqueue-to-start: p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (summary["enqueue_to_start_p50_ms"],
             summary["enqueue_to_start_p99_ms"],
             summary["enqueue_to_start_max_ms"]))
    print("low jobs still pending when the last reply was done: %d"
          % summary["low_pending_when_chats_done"])


if __name__ == "__main__":
    main()
