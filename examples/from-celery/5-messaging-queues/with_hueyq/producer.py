"""Send one task of each queue type, and one notification whose gateway is
down (it waits in RETRY for its retry delay, then is revoked); print one
JSON line with each task's id, state and result."""

import json
import sys
import time

from tasks import (build_report, compact_history, deliver_message,
                   send_notification)


def main() -> int:
    sent = {
        "send_notification": send_notification.delay(1, "hi"),
        "deliver_message": deliver_message.delay("c1", "hello"),
        "build_report": build_report.delay(7, "2026-01"),
        "compact_history": compact_history.delay(30),
    }
    out = {name: {"id": r.id, "result": r.get(timeout=60), "state": r.state}
           for name, r in sent.items()}
    down = send_notification.delay(2, "hello?", gateway_up=False)
    deadline = time.monotonic() + 30
    while down.state != "RETRY" and time.monotonic() < deadline:
        time.sleep(0.01)
    out["gateway_down"] = {"id": down.id, "state": down.state,
                           "info": repr(down.info)}
    down.revoke()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
