"""A job's output stream: what ``hueyq.emit()`` appends and followers read.

A task calls ``hueyq.emit(data)`` with JSON-serialisable data (a token of a
chat reply, a dict); :func:`append` encodes it as JSON text and appends it to
the job's stream in the queue backend (``append_output``), numbered 1, 2, ...
per job. The stream is bounded by the profile: past
``backend.output_max_chunks`` chunks or ``backend.output_max_bytes`` bytes
the oldest chunks are dropped (a follower sees how many in the ``dropped``
of the next chunk it gets), and one chunk larger than the byte bound by
itself is refused with :class:`~hueyq.exceptions.OutputTooLarge`. It is kept
as long as results are (``store.retention_age``).

A :class:`Follower` turns the stream, and the job's record, into
:class:`Event` s: ``state`` (on start and at every change of state),
``progress`` (at every change of progress or message) and ``output`` (each
chunk, in order), ending after the state event of a finished job, which comes
after every chunk the job emitted and once the store has the job's record
(its error, its end time: up to a store flush after the backend knew).
Every event's ``id`` is the number of the newest chunk delivered so far, so
a follower started ``after`` that number (SSE's ``Last-Event-ID``) gets only
later chunks. It blocks on the backend's
wake-up (:meth:`Backend.output_waiter`) between chunks, and looks at the
job's state and progress every ``FOLLOW_INTERVAL``. :func:`events` and
:func:`aevents` (``app.events(id)``, ``async for ... in app.aevents(id)``)
iterate one; ``GET /api/jobs/<id>/stream`` and ``hueyq job --follow`` are
built on it.
"""

import asyncio
import concurrent.futures
import dataclasses
import json
import time
from typing import Any, AsyncIterator, Iterator

from hueyq import defaults
from hueyq.backends.base import output_size, read_json
from hueyq.exceptions import OutputTooLarge
from hueyq.jobs import FINISHED

#: The kinds of events a follower hands out.
KINDS = ("state", "progress", "output")
#: Seconds a follower waits for the store's record of a job the backend
#: says has finished, so the final state event carries its error.
SETTLE = 5.0


@dataclasses.dataclass(frozen=True)
class Event:
    """One event of a job's stream: ``kind`` is ``state``, ``progress`` or
    ``output``; ``id`` the number of the newest chunk delivered with or
    before it (resume after it); ``data`` the event's JSON-ready document."""
    kind: str
    id: int
    data: dict


def encode(data: Any) -> str:
    """``data`` as the JSON text a chunk stores; ValueError when it is not
    JSON-serialisable (or is a string that is not valid Unicode)."""
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"),
                          allow_nan=False)
        output_size(text)
    except (TypeError, ValueError, UnicodeError) as exc:
        raise ValueError("hueyq.emit() takes JSON-serialisable data "
                         "(str, numbers, lists, dicts): %s" % exc) from None
    return text


def append(storage, profile, job_id: str, data: Any,
           run: "int | None" = None) -> int:
    """Append ``data``, emitted by the run ``run`` of the job (its lease's
    sequence number), to the stream of ``job_id`` through ``storage`` (any
    queue's storage of the app) under the profile's bound; the chunk's
    number."""
    text = encode(data)
    limit = profile.backend.output_max_bytes
    size = output_size(text)
    if size > limit:
        raise OutputTooLarge("hueyq.emit(): a chunk of %d bytes is over "
                             "backend.output_max_bytes (%d)" % (size, limit))
    return storage.append_output(job_id, text,
                                 profile.backend.output_max_chunks, limit,
                                 profile.store.retention_age, run)


def _state_data(job) -> dict:
    from hueyq.preview import plain
    return plain({"id": job.id, "state": job.state, "reason": job.reason,
                  "error": job.error, "attempts": job.attempts,
                  "result": job.result, "result_error": job.result_error,
                  "finished_at": job.finished_at})


class Follower:
    """Follows one job's stream (see the module): :meth:`step` hands out
    the events since the last step; :attr:`done` once the finished job's
    state event was handed out. Raises JobNotFound for an unknown job."""

    def __init__(self, app, job_id: str, after: int = 0,
                 interval: float = defaults.FOLLOW_INTERVAL) -> None:
        self.app = app
        self.job_id = job_id
        self.after = max(0, int(after))
        self.interval = interval
        self.done = False
        self._job = app.job(job_id, history=False)
        self._sent: "dict[str, Any]" = {}
        self._look_at = 0.0
        self._settle_by: "float | None" = None
        self.waiter = app.queue_backend.output_waiter(job_id)

    def step(self, timeout: float = 1.0) -> "list[Event]":
        """Events since the last step, waiting up to ``timeout`` seconds
        for one; none once :attr:`done`."""
        if self.done:
            return []
        deadline = time.monotonic() + timeout
        while True:
            found = self._chunks()
            now = time.monotonic()
            # Chunks go out before the look at the job (a few reads) unless
            # it is a whole interval late; the next step looks.
            if now >= self._look_at and (not found or now >= self._look_at
                                         + self.interval):
                found += self._look()
                now = time.monotonic()
            if found or self.done or now >= deadline:
                return found
            self.waiter.wait(self.after, max(0.0, min(deadline,
                                                      self._look_at) - now))

    def _chunks(self) -> "list[Event]":
        page = self.app.queue_backend.read_output(self.job_id, self.after)
        found = []
        for chunk in page.chunks:
            data = read_json(chunk.data, "output %d of job %s" % (
                chunk.seq, self.job_id))
            found.append(Event("output", chunk.seq, {
                "seq": chunk.seq, "data": data, "at": chunk.at,
                "run": chunk.run, "dropped": chunk.seq - self.after - 1}))
            self.after = chunk.seq
        return found

    def _look(self) -> "list[Event]":
        """A state or progress event for each that changed; a finished job
        gets the rest of its output first, and ends the stream."""
        self._look_at = time.monotonic() + self.interval
        job = self._job or self.app.job(self.job_id, history=False)
        self._job = None
        found = []
        progress = {"progress": job.progress, "message": job.message}
        if job.progress is not None and self._sent.get("progress") != progress:
            self._sent["progress"] = progress
            found.append(Event("progress", self.after, progress))
        if job.state in FINISHED and not self._settled(job):
            return found
        if self._sent.get("state") != job.state:
            self._sent["state"] = job.state
            if job.state in FINISHED:
                found += self._drain()
                self.done = True
            found.append(Event("state", self.after, _state_data(job)))
        return found

    def _settled(self, job) -> bool:
        """Whether a finished job's record (its error, its end time) is
        written: the backend knows a job ended up to a store flush before
        the store does. Looked at again shortly; past ``SETTLE`` seconds
        the job ends as it is (a store that does not write)."""
        if job.finished_at is not None and \
                job.finished_at >= (job.started_at or 0):
            return True
        now = time.monotonic()
        if self._settle_by is None:
            self._settle_by = now + SETTLE
        self._look_at = min(self._look_at, now + 0.05)
        return now >= self._settle_by

    def _drain(self) -> "list[Event]":
        found = []
        while True:
            more = self._chunks()
            if not more:
                return found
            found += more

    def close(self) -> None:
        """Let the backend's wake-up go."""
        self.waiter.close()


def events(app, job_id: str, after: int = 0,
           timeout: "float | None" = None) -> Iterator[Event]:
    """A job's events as they come, until it has finished (or ``timeout``
    seconds passed); JobNotFound for an unknown job."""
    follower = Follower(app, job_id, after)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while not follower.done:
            wait = 1.0 if deadline is None else deadline - time.monotonic()
            if wait <= 0:
                return
            yield from follower.step(min(wait, 1.0))
    finally:
        follower.close()


async def aevents(app, job_id: str, after: int = 0,
                  timeout: "float | None" = None) -> AsyncIterator[Event]:
    """:func:`events` for ``async for``: each blocking step runs in a
    thread of its own, so the event loop goes on meanwhile."""
    pool = concurrent.futures.ThreadPoolExecutor(
        1, thread_name_prefix="hueyq-follow")
    step = None
    follower = None
    try:
        step = pool.submit(Follower, app, job_id, after)
        follower = await asyncio.wrap_future(step)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not follower.done:
            wait = 1.0 if deadline is None else deadline - loop.time()
            if wait <= 0:
                return
            step = pool.submit(follower.step, min(wait, 1.0))
            for event in await asyncio.wrap_future(step):
                yield event
    finally:
        if follower is not None:
            if step is not None and not step.done():
                # The thread is still in a step: close once it is out.
                step.add_done_callback(lambda _: follower.close())
            else:
                follower.close()
        pool.shutdown(wait=False)
