"""The power-cut test's producer: enqueue jobs, note each acknowledged one.

``python -m powercut.producer --count N --ledger FILE --seed S [--marathons
K]`` enqueues K marathon jobs and N others (mostly short, some failing once,
some long) and, after each enqueue has returned, appends ``job_id kind`` to the ledger,
which lies outside the filesystem that loses power. A job in the ledger was
acknowledged to its producer: hueyq must never lose it.
"""

import argparse
import os
import random
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--ledger", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--marathons", type=int, default=0)
    parser.add_argument("--marathon-seconds", type=float, default=6.0)
    args = parser.parse_args()
    from powercut.app import make_app
    app = make_app()
    rng = random.Random(args.seed)
    ledger = os.open(args.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                     0o644)
    plan = [("marathon", args.marathon_seconds)] * args.marathons
    for _ in range(args.count):
        roll = rng.random()
        if roll < 0.06:
            plan.append(("long", rng.uniform(0.3, 1.5)))
        elif roll < 0.12:
            plan.append(("flaky", None))
        else:
            plan.append(("short", rng.choice((0, 1, 5, 20))))
    for kind, arg in plan:
        task = app.tasks[kind]
        result = task() if arg is None else task(arg)
        os.write(ledger, ("%s %s\n" % (result.id, kind)).encode())
        if rng.random() < 0.3:
            time.sleep(rng.uniform(0, 0.02))


if __name__ == "__main__":
    main()
