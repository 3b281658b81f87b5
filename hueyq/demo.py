"""``hueyq demo``: example tasks flowing through every priority queue.

The demo enqueues chat replies (high), document embeddings with progress and
one transient failure that is retried (medium), a small training run (gpu),
cleanups and one task that always fails (low); starts the real runtime
(``hueyq run --app hueyq.demo``) in a child process; follows the jobs until
they are done; stops the runtime with SIGTERM and prints what happened.
"""

import hashlib
import math
import os
import signal
import subprocess
import time

import click

import hueyq
from hueyq import urls
from hueyq.runtime import python_command

app = hueyq.App()


@app.task(queue="high")
def chat_reply(user: str, text: str) -> str:
    """A deterministic stand-in for a chat model."""
    time.sleep(0.02)
    return "bot to %s: you said %d words" % (user, len(text.split()))


@app.task(queue="medium", retries=2, retry_delay=0.5)
def embed(doc_id: int, text: str) -> "list[float]":
    """A deterministic 8-dimensional 'embedding', one chunk at a time."""
    if doc_id == 0 and app.huey("medium").put_if_empty("demo:flaky", "1"):
        raise ConnectionError("demo: vector store timed out (retried)")
    words = text.split()
    vector = [0.0] * 8
    for i, word in enumerate(words):
        digest = hashlib.sha256(word.encode()).digest()
        for d in range(8):
            vector[d] += digest[d] / 255.0
        hueyq.progress(100.0 * (i + 1) / len(words), "chunk %d" % (i + 1))
        time.sleep(0.01)
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [round(v / norm, 4) for v in vector]


@app.task(queue="gpu")
def train(epochs: int) -> dict:
    """A tiny 'training run' that reports progress per epoch."""
    loss = 1.0
    for epoch in range(epochs):
        time.sleep(0.05)
        loss *= 0.7
        hueyq.progress(100.0 * (epoch + 1) / epochs, "epoch %d" % (epoch + 1))
    return {"epochs": epochs, "loss": round(loss, 4)}


@app.task(queue="low")
def cleanup(batch: int) -> int:
    """Pretend to delete old files."""
    time.sleep(0.01)
    return batch * 3


@app.task(queue="low")
def broken_report(day: str) -> None:
    """Always fails: shows how a failed job looks."""
    raise ValueError("demo: no data for %s" % day)


def enqueue(count: int) -> "dict[str, list]":
    """Put ``count`` jobs on each queue (and one that fails)."""
    jobs = {"high": [], "medium": [], "gpu": [], "low": []}
    text = "hueyq runs tasks on huey with leases budgets and a web ui"
    for i in range(count):
        jobs["high"].append(chat_reply("user%d" % i, "hello number %d" % i))
        jobs["medium"].append(embed(i, text))
        jobs["gpu"].append(train(3 + i % 3))
        jobs["low"].append(cleanup(i))
    jobs["low"].append(broken_report("2026-11-22"))
    return jobs


def main(count: int = 8, timeout: float = 120.0) -> int:
    """Run the demo; 0 when every job ended as expected."""
    storage = app.queue_backend
    click.echo("hueyq demo: app %s, profile %s" % (app.name, app.profile.name))
    click.echo("  queue backend: %s" % storage.describe())
    click.echo("  job store:     %s" % urls.redact_url(
        app.profile.store.url))
    jobs = enqueue(count)
    ids = [r.id for results in jobs.values() for r in results]
    click.echo("enqueued %d jobs on %s" % (len(ids), ", ".join(jobs)))
    log_path = _log_path()
    with open(log_path, "ab") as log:
        runtime = subprocess.Popen(
            python_command("hueyq", "run", "--app", "hueyq.demo"),
            stdout=log, stderr=subprocess.STDOUT)
    click.echo("started the runtime (pid %d); its log: %s" % (runtime.pid,
                                                             log_path))
    try:
        finished = _follow(ids, runtime, timeout)
    finally:
        stopped = runtime.poll() is None
        if stopped:
            runtime.send_signal(signal.SIGTERM)
        code = runtime.wait(60)
    if stopped:
        click.echo("runtime stopped with SIGTERM, exit status %d" % code)
    else:
        click.echo("the runtime exited early with %s; its log: %s"
                   % (_exit_text(code), log_path), err=True)
    return _report(jobs, finished and stopped and code == 0)


def _exit_text(code: int) -> str:
    if code < 0:
        return "signal %s" % signal.Signals(-code).name
    return "exit status %d" % code


def _log_path() -> str:
    url = app.profile.backend.url
    if url.startswith("sqlite:"):
        directory = os.path.dirname(urls.sqlite_path(url))
    else:
        directory = os.path.abspath(".hueyq")
    os.makedirs(directory, exist_ok=True)
    return os.path.join(directory, "demo-runtime.log")


def _follow(ids: list, runtime: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if runtime.poll() is not None:
            return False
        states = {}
        for job_id in ids:
            state = app.job(job_id, history=False).state
            states[state] = states.get(state, 0) + 1
        line = "  " + ", ".join("%s %d" % kv for kv in sorted(states.items()))
        if line != last:
            click.echo(line)
            last = line
        if sum(states.get(s, 0) for s in ("complete", "failed", "dead")) \
                == len(ids):
            return True
        time.sleep(0.5)
    click.echo("timed out after %.0fs" % timeout, err=True)
    return False


def _report(jobs: "dict[str, list]", finished: bool) -> int:
    click.echo("")
    ok = finished
    for queue, results in jobs.items():
        states = [app.job(r.id, history=False) for r in results]
        done = sum(1 for j in states if j.state == "complete")
        click.echo("%-7s %d/%d complete" % (queue, done, len(states)))
    samples = [("chat reply", jobs["high"][0]), ("embedding", jobs["medium"][0]),
               ("training", jobs["gpu"][0]), ("cleanup", jobs["low"][0])]
    for label, result in samples:
        job = app.job(result.id)
        click.echo("  %-11s %s attempts=%d -> %r" % (label, job.state,
                                                     job.attempts, job.result))
        ok = ok and job.state == "complete"
    failed = app.job(jobs["low"][-1].id)
    click.echo("  %-11s %s: %s" % ("report", failed.state, failed.error))
    ok = ok and failed.state == "failed"
    click.echo("")
    click.echo("next: hueyq status | hueyq jobs --state failed | hueyq job %s"
               % failed.id)
    return 0 if ok else 1
