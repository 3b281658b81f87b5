"""A task that keeps a ledger of its runs, for the failover tests: each
execution appends ``start N PID`` and ``done N PID`` to a file, fsync'd,
so the test can compare what was acknowledged with what ran."""

import os

import hueyq


def append(path: str, line: str) -> None:
    """Append one whole line (O_APPEND) and fsync it."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def make_app(profile=None, name=None):
    app = hueyq.App(profile, name=name)

    @app.task(queue="high")
    def step(path, n):
        append(path, "start %d %d\n" % (n, os.getpid()))
        append(path, "done %d %d\n" % (n, os.getpid()))
        return n

    app.step = step
    return app


def read(path) -> "dict[str, dict[int, int]]":
    """``{"start": {n: count}, "done": {n: count}}`` of a ledger file."""
    out: "dict[str, dict[int, int]]" = {"start": {}, "done": {}}
    if not os.path.exists(path):
        return out
    with open(path) as fh:
        for line in fh:
            kind, n, _ = line.split()
            out[kind][int(n)] = out[kind].get(int(n), 0) + 1
    return out


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
