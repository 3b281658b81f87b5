"""What an asyncio program (a web app's handlers) uses to talk to hueyq.

Every call here keeps the event loop's thread free: an enqueue (on SQLite
an fsync), a job lookup and a result read run on a thread
(:func:`off_loop`), and ``await result.aget(timeout=)`` registers with the
process's :class:`ResultWaiter`, one thread per App that reads every
awaited result off the loop and resolves the awaiting futures, so a
thousand waiting handlers cost one thread, not a thousand. huey's
``huey.contrib.asyncio.aget_result`` reads the backend on the loop between
its sleeps; this module is what hueyq offers instead.
"""

import asyncio
import functools
import logging
import os
import threading
import time
from typing import Any, Callable

from huey import api as huey_api
from huey.constants import EmptyData
from huey.exceptions import ResultTimeout

logger = logging.getLogger("hueyq.aio")

#: Without a wake-up: the first and longest pause between reads of the
#: awaited results.
FIRST_DELAY = 0.01
MAX_DELAY = 0.25
#: With one: the longest block on it, and the longest time between reads.
TICK = 0.05
FALLBACK = 1.0
#: Results looked for in one backend call.
CHUNK = 500


async def off_loop(func: Callable, *args: Any, **kwargs: Any) -> Any:
    """Run ``func(*args, **kwargs)`` on a thread and await its return."""
    return await asyncio.to_thread(func, *args, **kwargs)


class Result(huey_api.Result):
    """huey's Result, which an asyncio program can also ``await``."""

    async def aget(self, timeout: "float | None" = None,
                   preserve: bool = False) -> Any:
        """The task's return value, waited for without blocking the loop;
        huey's ``ResultTimeout`` after ``timeout`` seconds, and huey's
        ``TaskException`` if the task failed (as ``get()``)."""
        await ResultWaiter.of(self.huey.app).wait(self, timeout, preserve)
        return self.get(preserve=preserve)


def async_handles(result: Any, huey) -> Any:
    """The handle(s) huey's enqueue returned, as :class:`Result`."""
    if type(result) is huey_api.Result:
        return Result(huey, result.task)
    if type(result) is huey_api.ResultGroup:
        return huey_api.ResultGroup([async_handles(r, r.huey)
                                     for r in result._results])
    return result


class ResultWaiter:
    """One thread per App and process that reads the results asyncio tasks
    await, and resolves their futures on their own loops."""

    def __init__(self, home) -> None:
        self._home = home
        self._lock = threading.Lock()
        self._waiting: "dict[int, tuple]" = {}
        self._kick = threading.Event()
        self._thread: "threading.Thread | None" = None
        self._pid = os.getpid()

    @classmethod
    def of(cls, app) -> "ResultWaiter":
        """The waiter of ``app`` in this process."""
        waiter = app.__dict__.get("_result_waiter")
        if waiter is None or waiter._pid != os.getpid():
            waiter = app.__dict__["_result_waiter"] = cls(
                app.queue_backend.home)
        return waiter

    async def wait(self, result, timeout: "float | None",
                   preserve: bool) -> None:
        """Until ``result`` has a value (read into it) or ``timeout``."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        key = id(future)
        with self._lock:
            self._waiting[key] = (result, preserve, loop, future)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="hueyq-result-waiter", daemon=True)
                self._thread.start()
        self._kick.set()
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise ResultTimeout("timed out waiting for result") from None
        finally:
            with self._lock:
                self._waiting.pop(key, None)

    def _run(self) -> None:
        # Between reads, the thread blocks on the backend's wake-up for
        # results (a FIFO on SQLite, a subscription on Redis), for TICK at
        # a time so a new waiter is read soon; it reads every awaited
        # result when woken, on a new waiter, and every FALLBACK anyway. A
        # backend without a wake-up is read on a doubling delay instead.
        self._wait(0)
        delay, last = FIRST_DELAY, 0.0
        while True:
            with self._lock:
                waiting = list(self._waiting.values())
            if not waiting:
                self._kick.wait()
                continue
            self._kick.clear()
            if self._read_all(waiting):
                delay = FIRST_DELAY
            last = time.monotonic()
            while not self._kick.is_set():
                woken = self._wait(min(TICK, delay))
                if woken or (woken is None and
                             time.monotonic() - last >= delay) or \
                        time.monotonic() - last >= FALLBACK:
                    break
            delay = min(delay * 2, MAX_DELAY)

    def _wait(self, timeout: float) -> "bool | None":
        try:
            woken = self._home.wait_results(timeout)
        except Exception as exc:
            logger.debug("waiting for results failed: %s", exc)
            woken = None
        if woken is None:
            self._kick.wait(timeout)
        return woken

    def _read_all(self, waiting: list) -> bool:
        """Read the awaited results that exist (one backend call per CHUNK
        waiters to find them); whether any was found."""
        open_ = [entry for entry in waiting if not entry[3].done()]
        # By storage: the app's one, or immediate mode's in memory.
        groups: "dict[int, tuple]" = {}
        for entry in open_:
            storage = entry[0].huey.storage
            groups.setdefault(id(storage), (storage, []))[1].append(
                entry[0].id)
        try:
            found = set()
            for storage, ids in groups.values():
                for i in range(0, len(ids), CHUNK):
                    found.update(storage.peek_many(ids[i:i + CHUNK]))
        except _backend_errors() as exc:
            logger.debug("reading awaited results failed: %s", exc)
            return False
        ready = [entry for entry in open_ if entry[0].id in found
                 or entry[0]._result is not EmptyData]
        return any([self._read(*entry) for entry in ready])

    @staticmethod
    def _read(result, preserve: bool, loop, future) -> bool:
        try:
            value = result._get(preserve)
        except _backend_errors() as exc:
            logger.debug("reading an awaited result failed: %s", exc)
            return False
        except Exception as exc:
            loop.call_soon_threadsafe(_settle, future, exc)
            return True
        if value is EmptyData:
            return False
        loop.call_soon_threadsafe(_settle, future, None)
        return True


def _backend_errors() -> tuple:
    from hueyq.app import backend_errors
    from hueyq.exceptions import BackendUnavailable
    return backend_errors() + (BackendUnavailable,)


def _settle(future, exc: "BaseException | None") -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def coroutine_task(create_task: Callable) -> Callable:
    """Wrap huey's ``TaskWrapper.create_task`` so it accepts an ``async def``
    (huey refuses them): the task class keeps the coroutine function as
    ``async_func``, which an async worker awaits on its loop, and its
    ``execute`` runs it to completion with ``asyncio.run`` anywhere else
    (immediate mode, a thread worker)."""
    @functools.wraps(create_task)
    def create(self, func, context=False, name=None, **settings):
        if not asyncio.iscoroutinefunction(func):
            return create_task(self, func, context, name, **settings)

        @functools.wraps(func)
        def run(*args, **kwargs):
            return asyncio.run(func(*args, **kwargs))
        return create_task(self, run, context, name,
                           async_func=staticmethod(func), **settings)
    return create


def is_async_task(task_class) -> bool:
    """Whether a task class's body is an ``async def``."""
    return getattr(task_class, "async_func", None) is not None
