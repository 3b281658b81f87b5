"""What every benchmark task does: append one line per execution to the file
named by ``BENCH_COMPLETIONS``.

The line is ``token t_enqueue t_start t_end pid``. The write is one
``O_APPEND`` ``write()`` of a whole line, so lines from any number of
processes and threads never interleave, and the harness counts completions
the same way for every system by reading that file.
"""

import os
import time

_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


def record(token, t_enq: float = 0.0, t_start: "float | None" = None) -> None:
    """Note that task ``token`` ran (started at ``t_start``, ends now)."""
    end = time.time()
    line = "%s %.6f %.6f %.6f %d\n" % (token, t_enq or 0.0, t_start or end,
                                       end, os.getpid())
    fd = os.open(os.environ["BENCH_COMPLETIONS"], _FLAGS, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def noop(token) -> None:
    """A no-op task."""
    record(token)


def sleep(token, seconds: float) -> None:
    """Sleep ``seconds``; the start time is recorded."""
    start = time.time()
    time.sleep(seconds)
    record(token, t_start=start)


async def asleep(token, seconds: float) -> None:
    """``await asyncio.sleep(seconds)`` (a stand-in for a remote call); the
    start time is recorded."""
    import asyncio
    start = time.time()
    await asyncio.sleep(seconds)
    record(token, t_start=start)


def probe(token, t_enq: float) -> None:
    """Record when this task started, next to when it was enqueued."""
    record(token, t_enq, time.time())
