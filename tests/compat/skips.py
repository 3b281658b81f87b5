"""huey tests that hueyq differs from by design, with the reason.

Each entry names one test of huey's suite (``module.Class.test``; ``*``
matches any class, for tests a class inherits), the configurations it is
skipped in (see ``hueyq_compat``) and one line on why hueyq behaves
differently. Every entry is one of: where and when hueyq keeps a message
(a future eta stored in the schedule at enqueue, due messages moved
atomically by ``read_schedule``, periodic tasks once per minute across
consumers), ``utc=True``, the storage layout, what a configuration swaps
in, or what hueyq adds to huey's API (``async def`` tasks). A difference in what a task does, returns or signals is fixed in hueyq
instead, not listed here.
"""

import fnmatch

BACKENDS = ("backend-sqlite", "backend-redis")
APPS = ("app-sqlite", "app-redis")
ALL = BACKENDS + APPS

SCHEDULED_AT_ENQUEUE = (
    "a task with a future eta is stored in the schedule when it is enqueued "
    "(huey parks it in the queue until a worker moves it there): pending() "
    "never lists it, SIGNAL_SCHEDULED comes at enqueue, no worker step")
READ_SCHEDULE = (
    "read_schedule() moves due messages into the queue atomically and "
    "returns none, so no scheduler holds a message in memory")
UTC = (
    "an App's hueys run with huey's default utc=True; this test's huey is "
    "utc=False and compares naive local datetimes (huey's UTC conversion "
    "drops their microseconds)")

ASYNC_TASKS = (
    "an App runs async def tasks (on an async queue's event loop, or with "
    "asyncio.run elsewhere), which huey refuses with ConfigurationError")

#: (configurations, test, reason)
SKIPS = [
    # What hueyq adds: async def tasks.
    (APPS, "test_api.TestAsyncTasks.test_async_task_rejected", ASYNC_TASKS),
    # A future eta goes straight to the schedule.
    (APPS, "test_api.TestQueue.test_scheduling", SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestQueue.test_scheduling_expires", SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestQueue.test_schedule_s", SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestQueue.test_reschedule", SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestQueue.test_pending_scheduled_unregistered",
     SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestDecorators.test_task_id", SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestChordPrimitive.test_chord_scheduling",
     SCHEDULED_AT_ENQUEUE),
    (APPS, "test_api.TestStorageWrappers.test_storage_wrappers",
     SCHEDULED_AT_ENQUEUE),
    (APPS, "test_consumer.TestConsumerIntegration.test_consumer_schedule_task",
     SCHEDULED_AT_ENQUEUE),
    (APPS, "test_signals.TestSignals.test_signals_simple",
     SCHEDULED_AT_ENQUEUE),
    # read_schedule() moves, returns nothing.
    (ALL, "test_api.TestQueue.test_read_schedule", READ_SCHEDULE),
    (BACKENDS, "test_api.TestQueue.test_scheduling_expires", READ_SCHEDULE),
    (BACKENDS, "test_api.TestChordPrimitive.test_chord_scheduling",
     READ_SCHEDULE),
    (ALL, "test_priority.TestPriority.test_schedule_priority", READ_SCHEDULE),
    (ALL, "test_storage.*.test_schedule_methods", READ_SCHEDULE),
    (BACKENDS, "test_storage.TestSqliteStorage.test_read_schedule_large",
     READ_SCHEDULE),
    # utc=True.
    (APPS, "test_api.TestQueue.test_expires", UTC),
    (APPS, "test_api.TestQueue.test_reschedule_expires", UTC),
    (APPS, "test_api.TestQueue.test_retrytask_eta_delay", UTC),
    # Periodic tasks once per minute across consumers and hosts.
    (APPS, "test_consumer.TestConsumerIntegration"
     ".test_consumer_periodic_tasks",
     "hueyq's scheduler enqueues a periodic task once per minute across "
     "every consumer and host (a key per task and minute); the test runs the "
     "scheduler twice for 12:00 and expects a second enqueue"),
    # The storage layout is hueyq's.
    (ALL, "test_api.TestChordPrimitive.test_chord_bookkeeping_cleared",
     "reads huey's MemoryStorage's private _counters dict"),
    (BACKENDS, "test_storage.TestSqliteStorage.test_create_tables",
     "hueyq keeps messages in its own table (hueyq_message), created by "
     "producers and runtimes; a file without it is refused as "
     "BackendUnavailable"),
    (BACKENDS, "test_storage.TestSqliteStorage.test_task_index",
     "inspects huey's `task` table; hueyq's messages are in hueyq_message"),
    ("backend-redis", "test_storage.*.test_name_not_mangled",
     "hueyq's Redis keys are hueyq:{<app>}:<queue>:* and storage.name is "
     "the app (its result namespace), not huey's cleaned name"),
    ("backend-redis", "test_storage.*.test_conflicting_init_args",
     "RedisBackend is built by hueyq from backend.url with a connection "
     "pool of its own; users never pass it connection arguments"),
    ("backend-redis", "test_storage.TestRedisStorageOffline.*",
     "stubs the redis calls of huey's RedisStorage (BRPOP, LRANGE); hueyq's "
     "backend moves messages between sorted sets in Lua scripts"),
    # What the configuration swaps.
    (ALL, "test_wrappers.TestWrappers.test_wrappers",
     "checks that MemoryHuey/SqliteHuey/RedisHuey build huey's storage "
     "classes, which this configuration replaces with hueyq's"),
    (ALL, "test_helpers.TestLockTaskSemaphore.test_semaphore_storage_types",
     "expects MemoryHuey's storage not to be Redis; here MemoryHuey stands "
     "for hueyq's backend"),
    (ALL, "test_storage.TestMemoryStorage.test_put_if_empty_ttl",
     "MemoryHuey stands for hueyq's backend, which supports a lock ttl as "
     "huey's SqliteStorage (no) and RedisStorage (Redis 7.4+) do"),
    (APPS, "test_api.TestCustomErrorMetadata.test_custom_error",
     "subclasses MemoryHuey, which here stands for an App's huey; an App "
     "takes a Huey subclass as App.queue_huey_class instead"),
    (APPS, "test_api.TestQueue.test_subtask_error",
     "runs a worker inside a task (execute_next in a task); hueyq's worker "
     "keeps the running task per thread and does not nest"),
]


def reason_for(config: str, test: str) -> "str | None":
    """Why ``test`` is skipped in ``config``, or None."""
    for configs, pattern, reason in SKIPS:
        if config in configs and fnmatch.fnmatchcase(test, pattern):
            return reason
    return None
