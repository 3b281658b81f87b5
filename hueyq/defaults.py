"""Every default value hueyq uses, in one place.

Profiles override these; nothing else in the code base hard-codes a tunable.
"""

#: Profile used when neither --profile, HUEYQ_PROFILE nor App(...) names one.
PROFILE = "dev"
#: Name of the app (the key space in the backend) when the profile sets none.
APP_NAME = "hueyq"
#: Queue of a task that names no queue and matches no route.
DEFAULT_QUEUE = "medium"
#: Built-in profiles shipped in hueyq/profiles.
BUILTIN_PROFILES = ("dev", "jetson", "server", "server-pg")

# [backend]
#: How long a job enqueued with ``key=`` keeps the key after it was enqueued
#: (after its eta, when later): a second enqueue with the key within it, or
#: while the job is still pending, scheduled or running, returns the first.
DEDUPE_WINDOW = 24 * 3600.0
#: Chunks a job's output stream (``hueyq.emit()``) keeps; past it the oldest
#: are dropped (and counted).
OUTPUT_MAX_CHUNKS = 10_000
#: Bytes of JSON a job's output stream keeps; past it the oldest chunks are
#: dropped, and one chunk over it is refused (``OutputTooLarge``).
OUTPUT_MAX_BYTES = 1 << 20
#: How long an enqueue waits for ``backend.min_replicas`` replicas to
#: acknowledge it (Redis's WAIT) before it fails as not replicated.
MIN_REPLICAS_TIMEOUT = 1.0

# [sentinel]
#: How long a Redis client behind Sentinel retries a command that failed
#: because the primary went away or became a replica (a failover), before
#: the error reaches its caller.
SENTINEL_RETRY_TIMEOUT = 30.0

# [runtime]
#: How long running tasks may finish after SIGTERM before they are handed back.
GRACE_PERIOD = 30.0
#: Deliveries lost to a dead worker before a job is dead-lettered as poison.
MAX_REDELIVERIES = 3
#: Another host's leases are recovered once its heartbeat stood still this long.
LEASE_TIMEOUT = 30.0
#: How often the supervisor publishes its status and checks leases.
HEARTBEAT_INTERVAL = 1.0
#: Longest an idle worker sleeps between polls when no wake-up arrives
#: (producers wake idle workers at once; this is the fallback).
POLL_INTERVAL = 5.0
#: Longest wait before restarting a consumer that keeps dying.
RESTART_BACKOFF_MAX = 30.0
#: Log format: "text" for a terminal, "json" for JSON lines.
LOG_FORMAT = "text"

# [memory]
#: How often the watchdog samples memory.
MEMORY_INTERVAL = 1.0
#: System memory floor under which queues are paused (0: off).
MIN_AVAILABLE = 0
#: Paused queues resume once available memory is this factor over the floor.
RESUME_FACTOR = 1.25

# [store]
#: Jobs and events older than this are deleted by the retention task.
RETENTION_AGE = 7 * 86400.0
#: At most this many finished jobs are kept per state.
RETENTION_COUNT = 100_000
#: Record a short, redacted preview of task arguments.
ARGS_PREVIEW = False
#: Progress of one job is written at most this often.
PROGRESS_INTERVAL = 0.5
#: Buffered job and event rows are written at least this often.
FLUSH_INTERVAL = 0.5

# SQLite files (queue backend and job store)
#: A WAL that a long reader let grow is cut back to this size at the next
#: checkpoint that completes (``pragma journal_size_limit``).
SQLITE_JOURNAL_SIZE_LIMIT = 4 << 20
#: A WAL over this size whose checkpoint cannot complete is a doctor warning.
SQLITE_WAL_WARNING = 16 << 20

#: Seconds a follower of a job's output (``GET /api/jobs/<id>/stream``,
#: ``app.events()``) waits between two looks at the job's state and progress.
FOLLOW_INTERVAL = 0.25

# [web]
#: Address the web UI binds to.
WEB_BIND = "127.0.0.1:8787"
#: gunicorn worker processes of `hueyq web`.
WEB_WORKERS = 2
#: gunicorn threads per worker (server-sent event streams hold one each).
WEB_THREADS = 8
#: Shortest web token accepted.
MIN_TOKEN_LENGTH = 16
#: Wrong sign-ins (password or bearer token) one client may make within
#: SIGNIN_WINDOW before it is locked out for SIGNIN_LOCKOUT (per web worker).
SIGNIN_CLIENT_FAILURES = 5
#: Wrong sign-ins of all clients together within SIGNIN_WINDOW before every
#: sign-in is refused for SIGNIN_LOCKOUT (per web worker).
SIGNIN_GLOBAL_FAILURES = 50
#: Seconds over which wrong sign-ins are counted.
SIGNIN_WINDOW = 60.0
#: Seconds a lockout lasts.
SIGNIN_LOCKOUT = 60.0
#: Seconds a signed-in session lasts.
SESSION_LIFETIME = 12 * 3600.0

# [security]
#: Largest message accepted at enqueue and decoded at dequeue.
MAX_MESSAGE_SIZE = 1024 * 1024

# [queues.*]
#: Priority of a queue: the watchdog pauses low priorities first.
QUEUE_PRIORITY = 0
#: Workers per consumer process.
QUEUE_WORKERS = 1
#: "thread", "process" or "async" (async def tasks on one event loop).
QUEUE_WORKER_TYPE = "thread"
#: Async queues: how many tasks one consumer process runs at once.
QUEUE_CONCURRENCY = 100
#: Seconds after which a task gets SoftTimeLimitExceeded (None: no soft limit).
QUEUE_SOFT_TIME_LIMIT = None
#: Backlog over which another consumer is started (autoscale).
QUEUE_SCALE_UP_DEPTH = 100
#: A backlog must stay over scale_up_depth this long to add a consumer.
QUEUE_SCALE_UP_AFTER = 5.0
#: A queue must stay empty this long before an extra consumer stops.
QUEUE_SCALE_DOWN_AFTER = 30.0
#: Backlog over which health reports the queue (0: no alert).
QUEUE_DEPTH_ALERT = 0
#: Fraction of GPU memory a worker of a gpu queue may use (0: no cap).
QUEUE_GPU_MEMORY_FRACTION = 0.0
