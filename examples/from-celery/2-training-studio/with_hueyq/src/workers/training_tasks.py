"""Training runs: one at a time on the `training` queue, a checkpoint when
the soft time limit arrives."""

import json
import os

from hueyq.celery import shared_task
from hueyq.celery import SoftTimeLimitExceeded


@shared_task(bind=True)
def train_model(self, run_id, epochs, out_dir):
    checkpoint = os.path.join(out_dir, "%s.json" % run_id)
    loss = 1.0
    try:
        for epoch in range(epochs):
            loss *= 0.5
            self.update_state(state="PROGRESS", meta={
                "current": epoch + 1, "total": epochs,
                "status": "epoch %d/%d loss %.4f" % (epoch + 1, epochs,
                                                     loss)})
    except SoftTimeLimitExceeded:
        loss = None
    with open(checkpoint, "w") as fh:
        json.dump({"run_id": run_id, "loss": loss}, fh)
    return {"run_id": run_id, "checkpoint": checkpoint, "loss": loss}
