"""Document processing moved off FastAPI's BackgroundTasks onto Celery:
read the file (retried when it is not there yet), chunk it, embed the
chunks in batches, and report progress while doing so."""

import json
import time

from hueyq.celery import shared_task

CHUNK_WORDS = 40
BATCH_SIZE = 8


def chunk_text(text, size=CHUNK_WORDS):
    words = text.split()
    return [" ".join(words[i:i + size]) for i in range(0, len(words), size)]


def generate_embeddings(batch):
    """A stand-in for the embedding model: one call per batch."""
    time.sleep(0.05)
    return [[len(chunk) / 1000.0, sum(map(ord, chunk)) % 101 / 101.0]
            for chunk in batch]


@shared_task(bind=True, max_retries=3)
def process_document(self, document_id, file_path):
    try:
        with open(file_path) as fh:
            text = fh.read()
    except OSError as e:
        raise self.retry(exc=e, countdown=60)
    chunks = chunk_text(text)
    vectors = []
    for start in range(0, len(chunks), BATCH_SIZE):
        vectors.extend(generate_embeddings(chunks[start:start + BATCH_SIZE]))
        self.update_state(state="PROGRESS", meta={
            "current": len(vectors), "total": len(chunks),
            "status": "embedded %d/%d chunks" % (len(vectors), len(chunks))})
    out = file_path + ".vectors.json"
    with open(out, "w") as fh:
        json.dump({"document_id": document_id, "vectors": vectors}, fh)
    return {"document_id": document_id, "chunks": len(chunks),
            "batches": (len(chunks) + BATCH_SIZE - 1) // BATCH_SIZE,
            "vectors_path": out}
