"""Ingest example tasks: documents into chunks, chunks into vectors.

``ingest_directory`` walks a folder of ``.md`` and ``.txt`` files, splits
each into chunks of at most ``MAX_WORDS`` words, enqueues one ``embed`` item
per chunk and reports progress once per document. ``embed`` is a batch
task: a worker takes up to 16 pending chunks at once, from any document,
embeds them in one torch forward pass (see ``embedder.py``) and writes the
vectors to a SQLite file beside the queue (``.hueyq/vectors.db``). Each
chunk stays its own job, with its own result and retries.

Both are idempotent (chunks are upserted by document and index), because a
job may run twice; a failed write is retried with back-off (0.5 s, 1 s,
2 s). ``outage=True`` makes the first batch fail once, to show that.
Needs torch. Run from this folder: ``hueyq run --app tasks --queues medium``.
"""

import logging
import os
import sqlite3
import struct
import time
import uuid

import hueyq
from hueyq.profile import sqlite_path

logger = logging.getLogger("examples.ingest")

HERE = os.path.dirname(os.path.abspath(__file__))
app = hueyq.App(os.path.join(HERE, "profile.toml"))

#: The example's data folder: where the profile keeps the queue.
DATA_DIR = os.path.dirname(sqlite_path(app.profile.backend.url))
#: The vector store.
VECTORS = os.path.join(DATA_DIR, "vectors.db")
#: Longest chunk, in words.
MAX_WORDS = 50
#: Files that are documents.
EXTENSIONS = (".md", ".txt")

SCHEMA = """create table if not exists chunks (
    doc text not null, chunk integer not null, text text not null,
    dim integer not null, vector blob not null, batch text not null,
    embedded_at real not null, primary key (doc, chunk))"""


def documents(directory: str) -> "list[str]":
    """Document paths under ``directory``, relative to it, sorted."""
    found = []
    for root, _, files in os.walk(directory):
        for name in files:
            if name.endswith(EXTENSIONS):
                found.append(os.path.relpath(os.path.join(root, name),
                                             directory))
    return sorted(found)


def split(text: str, max_words: int = MAX_WORDS) -> "list[str]":
    """Paragraphs packed into chunks of at most ``max_words`` words."""
    chunks: "list[list[str]]" = [[]]
    for paragraph in text.split("\n\n"):
        words = paragraph.replace("#", " ").replace("*", " ").split()
        while words:
            room = max_words - len(chunks[-1])
            if room <= 0 or (chunks[-1] and len(words) > room):
                chunks.append([])
                room = max_words
            chunks[-1].extend(words[:room])
            words = words[room:]
    return [" ".join(c) for c in chunks if c]


@app.task(queue="medium", retries=2, retry_delay=1, retry_backoff=2)
def ingest_directory(directory: str, outage: bool = False) -> dict:
    """Chunk every document and enqueue its chunks for embedding."""
    names = documents(directory)
    job_ids = []
    for n, name in enumerate(names):
        with open(os.path.join(directory, name), encoding="utf-8") as fh:
            chunks = split(fh.read())
        for i, text in enumerate(chunks):
            item = {"doc": name, "chunk": i, "text": text}
            if outage and not job_ids:
                item["outage"] = hueyq.current_job().id
            job_ids.append(embed(item).id)
        hueyq.progress(100.0 * (n + 1) / len(names), "%d/%d %s: %d chunks"
                       % (n + 1, len(names), name, len(chunks)))
    return {"documents": len(names), "chunks": len(job_ids), "jobs": job_ids}


@app.on_startup("medium")
def load_model() -> None:
    """Build the embedder as each worker starts, not in the first batch."""
    import embedder  # torch, imported only by the processes that embed
    embedder.load()


@app.batch_task(queue="medium", max_size=16, max_wait="300ms", retries=3,
                retry_delay=0.5, retry_backoff=2)
def embed(items: "list[dict]") -> "list[dict]":
    """Embed a batch of chunks (from any documents) and store them."""
    _simulated_outage(items)
    import embedder
    vectors = embedder.load().embed([item["text"] for item in items]).tolist()
    batch = uuid.uuid4().hex[:8]
    store(items, vectors, batch)
    logger.info("embedded batch %s: %d chunks from %d documents", batch,
                len(items), len({item["doc"] for item in items}))
    return [{"doc": item["doc"], "chunk": item["chunk"], "batch": batch,
             "dim": len(vector)} for item, vector in zip(items, vectors)]


def _simulated_outage(items: "list[dict]") -> None:
    for key in {item["outage"] for item in items if item.get("outage")}:
        if app.huey("medium").put_if_empty("ingest:outage:%s" % key, "1"):
            raise ConnectionError("vector store unavailable (simulated "
                                  "outage, retried with back-off)")


def connect() -> sqlite3.Connection:
    """The vector store (created on first use)."""
    os.makedirs(DATA_DIR, exist_ok=True)
    db = sqlite3.connect(VECTORS, timeout=10)
    db.execute("pragma journal_mode=wal")
    db.execute(SCHEMA)
    return db


def store(items: "list[dict]", vectors: "list[list[float]]",
          batch: str) -> None:
    """Upsert one batch of vectors in one transaction."""
    now = time.time()
    rows = [(item["doc"], item["chunk"], item["text"], len(vector),
             struct.pack("<%df" % len(vector), *vector), batch, now)
            for item, vector in zip(items, vectors)]
    db = connect()
    try:
        with db:
            db.executemany("insert or replace into chunks values "
                           "(?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        db.close()


def unpack(blob: bytes) -> "list[float]":
    """A stored vector."""
    return list(struct.unpack("<%df" % (len(blob) // 4), blob))
