"""Send one task to every queue and print, as one JSON line, each task's
id and result."""

import argparse
import json
import os
import sys

from src.workers.celery_app import app  # noqa: F401 (the app tasks bind to)
from src.workers.dataset_tasks import preprocess_dataset, validate_dataset
from src.workers.extraction_tasks import extract_activations
from src.workers.misc_tasks import notify_user, weekly_report
from src.workers.training_tasks import train_model


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backlog", type=int, default=0,
                        help="only enqueue this many weekly reports")
    args = parser.parse_args()
    if args.backlog:
        ids = [weekly_report.delay("w%d" % i).id for i in range(args.backlog)]
        print(json.dumps({"enqueued": len(ids)}))
        return 0
    rows = [{"text": " Hello "}, {"text": ""}, {"text": "World"}]
    sent = {
        "train_model": train_model.delay("run-1", 3, os.getcwd()),
        "validate_dataset": validate_dataset.delay(rows),
        "preprocess_dataset": preprocess_dataset.delay(rows),
        "extract_activations": extract_activations.delay(["ab", "c"], 2),
        "notify_user": notify_user.delay(7, "training started"),
        "weekly_report": weekly_report.delay("2026-W01"),
    }
    out = {name: {"id": r.id, "result": r.get(timeout=60), "state": r.state}
           for name, r in sent.items()}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
