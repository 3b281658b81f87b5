"""Drive the maintenance example: scratch files, questions, a report by hand.

``python producer.py scratch`` makes scratch files, some of them two hours
old, for ``cleanup_scratch`` to find. ``python producer.py ask "..."``
enqueues questions for the warm model and shows whether the model was
already loaded when each job started. ``python producer.py report`` runs
the nightly report now instead of at 02:00 UTC and prints where it went.

Run from this folder; ``ask`` and ``report`` need ``hueyq run --app tasks
--queues high,low`` running.
"""

import argparse
import datetime
import json
import os
import time

import tasks

#: Age given to the old scratch files (seconds).
OLD = 2 * 3600
FINISHED = ("complete", "failed", "cancelled", "dead", "expired")


def make_scratch(old: int = 3, fresh: int = 2) -> "list[str]":
    """Scratch files: ``old`` of them past the cleanup's age limit."""
    os.makedirs(tasks.SCRATCH, exist_ok=True)
    made = []
    for i in range(old + fresh):
        path = os.path.join(tasks.SCRATCH, "%s-%d.tmp" % (
            "old" if i < old else "new", i))
        with open(path, "w") as fh:
            fh.write("scratch\n")
        if i < old:
            stamp = time.time() - OLD
            os.utime(path, (stamp, stamp))
        made.append(path)
    return made


def finished(job_id: str, timeout: float = 60.0):
    """The job once it has finished and its record has its start time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = tasks.app.job(job_id, history=False)
        if job.state in FINISHED and job.started_at:
            return job
        time.sleep(0.1)
    raise TimeoutError("job %s unfinished after %.0fs" % (job_id, timeout))


def ask(questions: "list[str]") -> "list[dict]":
    """Answers, and whether each job found the model already loaded."""
    results = [tasks.answer(q) for q in questions]
    out = []
    for result in results:
        job = finished(result.id)
        value = result(blocking=True, timeout=10)
        out.append(dict(value, id=result.id, state=job.state,
                        warm=value["model_loaded_at"] < job.started_at))
    return out


def report() -> str:
    """Run the nightly report now; the file it wrote. (huey keeps no
    results for periodic tasks, so follow the job, not its Result.)"""
    job = finished(tasks.nightly_report().id)
    if job.state != "complete":
        raise RuntimeError("nightly_report %s: %s" % (job.state, job.error))
    day = datetime.datetime.fromtimestamp(job.started_at,
                                          datetime.timezone.utc).date()
    return os.path.join(tasks.REPORTS, "%s.json" % day.isoformat())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("scratch", help="Make old and new scratch files.")
    asking = commands.add_parser("ask", help="Ask the warm model.")
    asking.add_argument("questions", nargs="+")
    commands.add_parser("report", help="Run the nightly report now.")
    args = parser.parse_args()
    if args.command == "scratch":
        for path in make_scratch():
            print(path)
    elif args.command == "ask":
        for answer in ask(args.questions):
            print(json.dumps(answer))
    else:
        print(report())


if __name__ == "__main__":
    main()
