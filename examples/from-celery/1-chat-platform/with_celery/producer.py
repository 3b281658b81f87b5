"""Send one task of each kind and print, as one JSON line, each task's id,
state and result."""

import json
import sys

from tasks import (generate_batch, generate_report, load_phi3,
                   process_document, process_message)


def main() -> int:
    sent = {
        "load_phi3": load_phi3.delay(),
        "process_message": process_message.delay("c1", "hello from the edge"),
        "process_document": process_document.delay("d1", "word " * 120),
        "generate_batch": generate_batch.delay(["a", "bb"]),
        "generate_report": generate_report.apply_async(("2026-01-01",),
                                                       countdown=0.5),
    }
    out = {}
    for name, result in sent.items():
        value = result.get(timeout=60)
        out[name] = {"id": result.id, "state": result.state, "result": value}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
