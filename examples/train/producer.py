"""Start a training run on the gpu lane and follow it.

``python producer.py`` enqueues a small run, prints its progress per epoch
and, once it is complete, loads its checkpoint back with ``torch.load``.
``--oversized`` enqueues a run that needs more host memory than the lane's
``worker_memory_hard``: the watchdog kills it and the job fails with the
reason. ``--detach`` only prints the job id (to cancel it with ``hueyq
cancel ID --app tasks``). ``--json`` prints the outcome as one JSON line.

Needs torch. Run from this folder, with ``hueyq run --app tasks --queues
gpu`` running.
"""

import argparse
import importlib.util
import json
import sys
import time

import tasks

FINISHED = ("complete", "failed", "cancelled", "dead", "expired")


def follow(job_id: str, timeout: float):
    """Print progress messages until the job has finished; the Job."""
    deadline = time.monotonic() + timeout
    shown = None
    while time.monotonic() < deadline:
        job = tasks.app.job(job_id, history=False)
        if job.message and job.message != shown:
            print("  %3.0f%%  %s" % (job.progress or 0, job.message))
            shown = job.message
        if job.state in FINISHED:
            return job
        time.sleep(0.2)
    raise TimeoutError("job %s unfinished after %.0fs" % (job_id, timeout))


def check_checkpoint(path: str) -> dict:
    """Load a checkpoint as a deployment would; its tensors' shapes."""
    import torch
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {name: list(t.shape) for name, t in state["model"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--oversized", action="store_true",
                        help="A run too big for the lane's memory budget.")
    parser.add_argument("--detach", action="store_true",
                        help="Print the job id and return.")
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if importlib.util.find_spec("torch") is None:
        sys.exit("this example needs torch: pip install torch (the CPU "
                 "build is enough), or pip install 'hueyq[gpu]'")
    size = tasks.OVERSIZED if args.oversized else tasks.SMALL
    result = tasks.train_sae(epochs=args.epochs, **size)
    if args.detach:
        print(result.id)
        return
    print("training job %s" % result.id)
    job = follow(result.id, args.timeout)
    outcome = {"id": job.id, "state": job.state, "error": job.error}
    if job.state == "complete":
        outcome["result"] = job.result
        outcome["tensors"] = check_checkpoint(job.result["checkpoint"])
    if args.json:
        print(json.dumps(outcome))
        return
    print("%s: %s" % (job.state, job.error or job.result))
    if "tensors" in outcome:
        print("checkpoint loads with torch.load: %s" % outcome["tensors"])
    print("details: hueyq job %s --app tasks" % job.id)


if __name__ == "__main__":
    main()
