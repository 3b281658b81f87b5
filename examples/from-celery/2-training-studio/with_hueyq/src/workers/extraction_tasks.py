"""Activation extraction: memory-hungry, two at a time, workers recycled
past --max-memory-per-child."""

from hueyq.celery import shared_task


@shared_task
def extract_activations(texts, layer):
    return {"layer": layer, "activations": [[len(t) * layer] for t in texts]}
