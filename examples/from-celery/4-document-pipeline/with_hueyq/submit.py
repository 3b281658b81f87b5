"""What the upload endpoint does now: enqueue process_document and follow
it with AsyncResult. Prints one JSON line: each document's id, the states
seen while it ran and how it ended; a missing file waits in RETRY and is
then revoked."""

import json
import sys
import time

from hueyq.celery import AsyncResult

from celery_app import app
from tasks import process_document


def follow(result, until, timeout=60):
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = result.state
        if not seen or seen[-1][0] != state:
            info = result.info
            seen.append([state, info if isinstance(info, (dict, type(None)))
                         else repr(info)])
        if state in until:
            break
        time.sleep(0.01)
    return seen


def main(paths) -> int:
    out = {}
    for i, path in enumerate(paths):
        result = process_document.delay("doc-%d" % i, path)
        seen = follow(result, ("SUCCESS", "FAILURE", "RETRY"))
        if seen[-1][0] == "RETRY":
            AsyncResult(result.id, app=app).revoke(terminate=True)
            seen += follow(result, ("REVOKED",))[-1:]
        out[path] = {"id": result.id, "seen": seen}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
