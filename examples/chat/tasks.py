"""Chat example tasks: a reply on ``high``, background work on ``low``.

``reply`` is what the chat endpoint enqueues: a deterministic stand-in for a
language model that "generates" a few tokens, streaming each one with
``hueyq.emit()`` (the client reads them as they come from ``GET
/jobs/<id>/stream``) and reporting progress as it goes (which is also where
a cancelled reply stops). ``rebuild_index`` is the kind
of background job that piles up on ``low``; it runs in its own consumer
process, so a backlog of it never delays a reply.

Run from this folder: ``hueyq run --app tasks --queues high,low``.
"""

import hashlib
import logging
import os
import time

import hueyq

logger = logging.getLogger("examples.chat")

HERE = os.path.dirname(os.path.abspath(__file__))
app = hueyq.App(os.path.join(HERE, "profile.toml"))

#: Seconds the stand-in model spends per generated token.
TOKEN_SECONDS = 0.01
#: Seconds one background job takes.
BACKGROUND_SECONDS = 0.05


def generate(text: str) -> str:
    """The stand-in model: the same text always gets the same reply."""
    words = text.split()
    mood = ("curious", "cheerful", "thoughtful")[
        hashlib.sha256(text.encode()).digest()[0] % 3]
    return "(%s bot) you said %d word%s: %s" % (
        mood, len(words), "" if len(words) == 1 else "s", " ".join(words[:8]))


@app.task(queue="high", retries=1, retry_delay=0.2, timeout=20)
def reply(conversation: str, text: str) -> dict:
    """Answer one chat message; the result is what the client shows."""
    answer = generate(text)
    tokens = answer.split()
    for i, token in enumerate(tokens):
        time.sleep(TOKEN_SECONDS)
        hueyq.emit(token if i == 0 else " " + token)
        hueyq.progress(100.0 * (i + 1) / len(tokens), "token %d" % (i + 1))
    logger.debug("replied to %s", conversation)
    return {"conversation": conversation, "reply": answer}


@app.task(queue="low")
def rebuild_index(shard: int) -> int:
    """Background work that is allowed to wait: rebuild one index shard."""
    time.sleep(BACKGROUND_SECONDS)
    return shard
