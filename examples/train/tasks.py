"""Training example task: a sparse autoencoder on the ``gpu`` lane.

``train_sae`` generates seeded synthetic activations (``sae.py``), trains a
sparse autoencoder on them, reports progress once per epoch and writes a
checkpoint after every epoch to ``.hueyq/checkpoints/<job id>.pt``. A job
that runs again (delivery is at least once: its worker may die mid-run)
resumes from its own checkpoint instead of starting over.

The lane does the rest: the profile gives the ``gpu`` queue a process
worker with ``worker_memory_hard = "768MiB"``, so a run that needs more host
memory is killed by the watchdog and its job fails with ``killed: memory
budget exceeded (...)``; ``hueyq cancel ID`` kills the worker of a running
job and the job ends ``cancelled``. On a CUDA device the lane caps the
process at ``gpu_memory_fraction`` of the GPU. Needs torch.
Run from this folder: ``hueyq run --app tasks --queues gpu``.
"""

import logging
import os
import time

import hueyq
from hueyq.profile import sqlite_path

logger = logging.getLogger("examples.train")

HERE = os.path.dirname(os.path.abspath(__file__))
app = hueyq.App(os.path.join(HERE, "profile.toml"))

#: Where checkpoints go: beside the queue, in the example's data folder.
CHECKPOINTS = os.path.join(os.path.dirname(sqlite_path(
    app.profile.backend.url)), "checkpoints")
#: A run that fits the lane comfortably (a second or two on a CPU).
SMALL = {"d_model": 32, "dict_size": 256, "samples": 4096}
#: A run whose activations alone need 1.4 GiB of host memory.
OVERSIZED = {"d_model": 128, "dict_size": 1024, "samples": 3_000_000}


@app.on_startup("gpu")
def warm_up() -> None:
    """Pay torch's one-off costs as the worker starts, not in the first run
    (the first optimizer imports torch._dynamo: over a second on a small
    CPU). CPU only: the lane sets the CUDA memory cap before the first task."""
    import torch
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


@app.task(queue="gpu", retries=0)
def train_sae(d_model: int = 32, dict_size: int = 256, samples: int = 4096,
              epochs: int = 5, batch_size: int = 128, l1: float = 0.1,
              lr: float = 1e-2, seed: int = 0) -> dict:
    """Train a sparse autoencoder; returns the final figures and checkpoint."""
    import torch  # imported in the gpu worker only (the lane set it up)

    import sae
    config = {"d_model": d_model, "dict_size": dict_size, "samples": samples,
              "epochs": epochs, "batch_size": batch_size, "l1": l1, "lr": lr,
              "seed": seed}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.monotonic()
    data = sae.activations(samples, d_model, features=4 * d_model, seed=seed,
                           report=_data_progress)
    torch.manual_seed(seed)
    model = sae.SparseAutoencoder(d_model, dict_size).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    job = hueyq.current_job()
    path = os.path.join(CHECKPOINTS, "%s.pt" % (job.id if job else "local"))
    first = resume(path, config, model, optimizer)
    generator = torch.Generator().manual_seed(seed)
    loss = l0 = None
    for epoch in range(first, epochs):
        loss, l0 = sae.train_epoch(model, optimizer, data, batch_size, l1,
                                   generator, device)
        save(path, config, model, optimizer, epoch, loss, l0)
        hueyq.progress(10 + 90.0 * (epoch + 1) / epochs,
                       "epoch %d/%d loss %.4f L0 %.1f"
                       % (epoch + 1, epochs, loss, l0))
    return {"checkpoint": path, "device": device, "epochs": epochs,
            "resumed_at": first, "loss": loss, "l0": l0,
            "seconds": round(time.monotonic() - started, 2)}


def _data_progress(done: int, total: int) -> None:
    hueyq.progress(10.0 * done / total, "activations %d/%d" % (done, total))


def save(path: str, config: dict, model, optimizer, epoch: int, loss: float,
         l0: float) -> None:
    """Write a checkpoint atomically (a crash never leaves half a file)."""
    import torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "config": config, "epoch": epoch, "loss": loss, "l0": l0}
    torch.save(state, path + ".tmp")
    os.replace(path + ".tmp", path)


def resume(path: str, config: dict, model, optimizer) -> int:
    """Load this job's checkpoint if an earlier delivery left one; returns
    the first epoch still to run."""
    import torch
    if not os.path.exists(path):
        return 0
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["config"] != config:
        return 0
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    logger.info("resuming %s after epoch %d", path, state["epoch"] + 1)
    return state["epoch"] + 1
