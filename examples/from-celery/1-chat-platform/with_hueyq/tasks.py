"""A three-tier chat platform's Celery tasks: chat and model loading on
`high`, documents and embeddings on `medium`, analytics on `low`; acks
late, and a lost worker's tasks are rejected back to their queue.
"""

import os
import time

from hueyq.celery import Celery

app = Celery("chat_platform")
app.conf.update(
    task_routes={
        "chat.process_message": {"queue": "high"},
        "models.load_phi3": {"queue": "high"},
        "knowledge.process_document": {"queue": "medium"},
        "embeddings.generate_batch": {"queue": "medium"},
        "analytics.generate_report": {"queue": "low"},
    },
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
)

MODEL = {"name": None}


@app.task(name="models.load_phi3")
def load_phi3():
    """Load the chat model into this worker (a stand-in for Phi-3)."""
    MODEL["name"] = "phi-3-mini"
    return {"model": MODEL["name"], "pid": os.getpid()}


@app.task(name="chat.process_message")
def process_message(conversation_id, text):
    started = time.time()
    reply = "(%s) you said %d words" % (MODEL["name"] or "no model",
                                        len(text.split()))
    return {"conversation_id": conversation_id, "reply": reply,
            "seconds": round(time.time() - started, 6)}


@app.task(name="knowledge.process_document")
def process_document(document_id, text, chunk_words=50):
    words = text.split()
    chunks = [" ".join(words[i:i + chunk_words])
              for i in range(0, len(words), chunk_words)]
    vectors = generate_batch(chunks)
    return {"document_id": document_id, "chunks": len(chunks),
            "dimensions": len(vectors[0]) if vectors else 0}


@app.task(name="embeddings.generate_batch")
def generate_batch(texts):
    """A tiny deterministic embedding, so the example needs no model."""
    return [[len(t) / 100.0, sum(map(ord, t)) % 97 / 97.0] for t in texts]


@app.task(name="analytics.generate_report")
def generate_report(day):
    return {"day": day, "report": "daily usage", "generated_at": time.time()}
