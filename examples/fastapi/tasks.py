"""FastAPI example tasks: a streamed reply on ``high``, embeddings on ``io``.

``reply`` is what ``POST /chat`` enqueues: a deterministic stand-in for a
language model that generates its answer token by token, sending each token
to the job's output stream with :func:`hueyq.emit` (a client follows it over
server-sent events) and its progress with :func:`hueyq.progress` (which is
also where a cancelled reply stops). ``embed`` is an ``async def``: it runs
on the ``io`` queue's event loop, where a hundred of them wait on the
"remote API" at once in one process.

Run from this folder: ``hueyq run --app tasks --queues high,io``.
"""

import asyncio
import hashlib
import os
import time

import hueyq

HERE = os.path.dirname(os.path.abspath(__file__))
app = hueyq.App(os.path.join(HERE, "profile.toml"))

#: Seconds the stand-in model spends per generated token.
TOKEN_SECONDS = 0.02
#: Seconds the stand-in embedding API takes to answer.
API_SECONDS = 0.2


def generate(text: str) -> str:
    """The stand-in model: the same question always gets the same answer."""
    words = text.split()
    return "You asked %d word%s (%s); here is the answer, one token at a " \
        "time." % (len(words), "" if len(words) == 1 else "s",
                   " ".join(words[:12]))


@app.task(queue="high", retries=1, retry_delay=0.2)
def reply(conversation: str, text: str, token_seconds: float = TOKEN_SECONDS
          ) -> dict:
    """Answer one chat message, streaming it token by token."""
    tokens = generate(text).split()
    for i, token in enumerate(tokens):
        time.sleep(token_seconds)
        hueyq.emit(token if i == 0 else " " + token)
        hueyq.progress(100.0 * (i + 1) / len(tokens), "token %d" % (i + 1))
    return {"conversation": conversation, "reply": " ".join(tokens)}


def vector(text: str, size: int = 8) -> "list[float]":
    """The stand-in embedding: a few numbers from the text's hash."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 4) for b in digest[:size]]


@app.task(queue="io", retries=2, retry_delay=0.5)
async def embed(texts: "list[str]") -> "list[list[float]]":
    """Embed texts through a (stand-in) remote API, without a thread."""
    await asyncio.sleep(API_SECONDS)
    return [vector(text) for text in texts]
