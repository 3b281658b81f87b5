"""Talk to the FastAPI example as a web frontend would.

Sends one chat message and prints its reply token by token as the server's
event stream delivers it, then embeds ``--texts`` texts in ``--requests``
concurrent requests (each an async task on ``io``) and prints how long they
took. ``--json`` prints one JSON line instead, for tests.

Run from this folder while the runtime and the server run:
``python client.py --base http://127.0.0.1:8000``.
"""

import argparse
import concurrent.futures
import json
import sys
import time
import urllib.error
import urllib.request


def call(method: str, url: str, body: "dict | None" = None,
         timeout: float = 30) -> "tuple[int, dict]":
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def follow(url: str, timeout: float = 30):
    """(event, data) of a server-sent event stream, until it ends."""
    request = urllib.request.Request(url, headers={
        "Accept": "text/event-stream"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        kind, data = None, []
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and kind:
                yield kind, json.loads("\n".join(data))
                kind, data = None, []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--text", default="tell me about task queues")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--texts", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    sent = time.perf_counter()
    status, accepted = call("POST", args.base + "/chat", {"text": args.text})
    if status != 202:
        print("POST /chat answered %d: %s" % (status, accepted),
              file=sys.stderr)
        return 1
    first_token, tokens, states = None, [], []
    for kind, data in follow(args.base + accepted["links"]["stream"]):
        if kind == "output":
            first_token = first_token or time.perf_counter() - sent
            tokens.append(data["data"])
            if not args.json:
                print(data["data"], end="", flush=True)
        elif kind == "state":
            states.append(data["state"])
    if not args.json:
        print()
    _, job = call("GET", args.base + accepted["links"]["self"])

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.requests) as pool:
        answers = list(pool.map(lambda i: call("POST", args.base + "/embed", {
            "texts": ["text %d.%d" % (i, j) for j in range(args.texts)]}),
            range(args.requests)))
    embed_seconds = time.perf_counter() - started
    vectors = sum(len(a["vectors"]) for s, a in answers if s == 200)
    summary = {"id": accepted["id"], "reply": "".join(tokens),
               "result": job["result"], "states": states,
               "first_token_ms": round(1000 * (first_token or 0), 1),
               "embed_requests": args.requests, "vectors": vectors,
               "embed_seconds": round(embed_seconds, 2)}
    if args.json:
        print(json.dumps(summary))
    else:
        print("first token after %.1f ms; %d embedding requests (%d vectors)"
              " in %.2f s" % (summary["first_token_ms"], args.requests,
                              vectors, embed_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
