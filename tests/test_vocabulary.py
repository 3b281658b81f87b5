"""One vocabulary: the keys and state names of the JSON API, of
``App.queue_stats`` and of ``/metrics`` are pinned here, against what the
code answers and what ``openapi.json`` and the glossary of
``docs/ARCHITECTURE.md`` say, so a
rename cannot slip through (change this file, the document and the glossary
in the same commit)."""

import json
import re
import warnings

import pytest

from hueyq.store import FINISHED, STATES
from hueyq.webui import create_app

from conftest import HERE, wait_for, write_profile

GLOSSARY = (HERE.parent / "docs" / "ARCHITECTURE.md").read_text()
OPENAPI = json.loads((HERE.parent / "webui" / "static" / "openapi.json")
                     .read_text())

#: Job states, in order.
JOB_STATES = ("scheduled", "pending", "running", "retrying", "complete",
              "failed", "cancelled", "expired", "dead")
#: App.queue_stats()[queue].
QUEUE_STATS = {
    "pending", "scheduled", "running", "retryable", "paused", "paused_by",
    "pauses", "memory_room", "waiting_for_memory", "priority", "workers",
    "worker_type", "complete_recent", "failed_recent", "cancelled_recent",
    "expired_recent", "dead_recent", "window", "success_rate",
    "mean_runtime", "p95_runtime"}
#: GET /api/queues: queue_stats plus the profile's budgets and a series.
QUEUE = QUEUE_STATS | {"name", "memory_limit", "worker_memory_soft",
                       "worker_memory_hard", "throughput"}
#: GET /api/jobs/<id> (and each job of a listing, which has a history too).
JOB = {"id", "task", "queue", "state", "attempts", "redeliveries",
       "priority", "progress", "message", "error", "traceback", "reason",
       "enqueued_at", "started_at", "finished_at", "updated_at", "duration",
       "eta", "worker", "args", "result", "result_error", "has_payload",
       "memory", "waiting", "history"}
#: GET /api/jobs.
JOB_PAGE = {"jobs", "queue", "state", "task", "id", "error", "since",
            "until", "limit", "next", "now"}
#: GET /api/workers and each of its workers.
WORKERS = {"workers", "runtimes", "hosts", "budgets", "now"}
HOST = {"host", "alive", "age", "pids", "consumers", "running"}
WORKER = {"queue", "pid", "kind", "worker_type", "threads", "memory", "rss",
          "memory_kind", "worker_memory_soft", "worker_memory_hard", "gpu",
          "host", "jobs"}
WORKER_JOB = {"id", "task", "worker", "started_at"}
#: GET /api/health.
HEALTH = {"healthy", "reasons", "checks", "status"}
#: POST /api/jobs/<id>/cancel.
CANCEL = {"job_id", "state", "detail"}
#: Families of /metrics.
METRICS = {"hueyq_info", "hueyq_queue_jobs", "hueyq_queue_retryable",
           "hueyq_queue_waiting_for_memory", "hueyq_queue_finished_last_hour",
           "hueyq_queue_paused", "hueyq_queue_mean_runtime_seconds",
           "hueyq_queue_p95_runtime_seconds", "hueyq_runtime_up",
           "hueyq_runtime_heartbeat_age_seconds", "hueyq_worker_memory_bytes",
           "hueyq_worker_jobs", "hueyq_worker_gpu_memory_bytes",
           "hueyq_fenced_acks"}
#: Reasons a job ended without completing (Job.reason).
REASONS = ("failed", "cancelled", "drained", "expired", "poison",
           "unknown_task", "undecodable", "bad_signature", "too_large")


def schema(name):
    return set(OPENAPI["components"]["schemas"][name]["properties"])


def in_glossary(word):
    """Whether the glossary of docs/ARCHITECTURE.md defines ``word`` (as
    `code` or **bold**)."""
    return re.search(r"`%s`|\*\*%s\*\*" % (re.escape(word), re.escape(word)),
                     GLOSSARY, re.I) is not None


@pytest.fixture
def client(app):
    return create_app(app, config={"TESTING": True}).test_client()


def test_job_states_are_one_list_everywhere():
    assert STATES == JOB_STATES
    assert set(FINISHED) == {"complete", "failed", "cancelled", "expired",
                             "dead"}
    enum = OPENAPI["components"]["schemas"]["Job"]["properties"]["state"]
    assert tuple(enum["enum"]) == JOB_STATES
    for state in JOB_STATES:
        assert in_glossary(state), state


def test_queue_stats_keys(app, inline):
    app.tasks.echo(1)
    inline(app, "high").run()
    stats = app.queue_stats()
    assert list(stats) == list(app.queues)
    for name, figures in stats.items():
        assert set(figures) == QUEUE_STATS, name
    assert stats["high"]["complete_recent"] == 1
    assert {s + "_recent" for s in FINISHED} <= QUEUE_STATS
    for key in QUEUE_STATS:
        assert in_glossary(key), key


def test_api_keys_match_the_pins_and_the_openapi_document(app, client,
                                                          inline):
    done = app.tasks.echo("x")
    inline(app, "high").run()
    app.tasks.echo("y")
    queues = client.get("/api/queues").get_json()
    assert set(queues) == {"queues", "now"}
    assert set(queues["queues"]["high"]) == QUEUE == schema("Queue")
    job = client.get("/api/jobs/" + done.id).get_json()
    assert set(job) == JOB | {"now"}
    assert set(schema("Job")) == JOB
    page = client.get("/api/jobs").get_json()
    assert set(page) == JOB_PAGE == schema("JobPage")
    assert [j["state"] for j in page["jobs"]] == ["pending", "complete"]
    assert all(set(j) == JOB for j in page["jobs"])
    workers = client.get("/api/workers").get_json()
    assert set(workers) == WORKERS == schema("Workers")
    health = client.get("/api/health")
    assert set(health.get_json()) == HEALTH == schema("Health")
    assert health.get_json()["status"] == health.status_code
    assert set(OPENAPI["components"]["schemas"]["Workers"]["properties"][
        "workers"]["items"]["properties"]) == WORKER
    assert set(OPENAPI["components"]["schemas"]["Workers"]["properties"][
        "hosts"]["items"]["properties"]) == HOST
    assert all(set(h) == HOST for h in workers["hosts"])
    assert set(schema("CancelResult")) == CANCEL


def test_cancel_names_the_job_as_job_id(app, client):
    pending = app.tasks.echo(1)
    token = client.get("/api/session").get_json()["csrf_token"]
    done = client.post("/api/jobs/%s/cancel" % pending.id,
                       headers={"X-CSRF-Token": token}).get_json()
    assert set(done) == CANCEL and done["job_id"] == pending.id


def test_metric_families(app, client):
    from prometheus_client.parser import text_string_to_metric_families
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name for f in text_string_to_metric_families(text)}
    # Families with no sample yet (no runtime, no GPU) still have a HELP line.
    # (A counter's HELP line names its samples, ``..._total``.)
    helped = {re.sub(r"_total$", "", name) for name in re.findall(
        r"^# HELP (\S+)", text, re.M)}
    assert families | helped == METRICS
    states = set(re.findall(r'hueyq_queue_finished_last_hour\{queue="high",'
                            r'state="(\w+)"\}', text))
    assert states == set(FINISHED)
    assert set(re.findall(r'hueyq_queue_jobs\{queue="high",state="(\w+)"\}',
                          text)) == {"pending", "scheduled", "running"}


def test_the_glossary_defines_reasons_and_terms():
    for word in REASONS + ("lease", "ack", "hand back", "redelivery",
                           "dead letter", "memory room", "retryable",
                           "enqueued_at", "job_id", "worker_memory_soft",
                           "worker_memory_hard", "waiting_for_memory"):
        assert in_glossary(word), word


def test_job_created_at_is_a_deprecated_alias(app):
    job = app.job(app.tasks.echo(1).id)
    assert job.enqueued_at is not None
    with pytest.warns(DeprecationWarning, match="enqueued_at"):
        assert job.created_at == job.enqueued_at
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "created_at" not in job.as_dict()


@pytest.mark.slow
def test_a_real_runtimes_workers_speak_the_profiles_words(
        tmp_path, app_name, make_app, runtime):
    profile = write_profile(
        tmp_path / "w.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        {"queues.medium": {"worker_memory_soft": "700MiB",
                           "worker_memory_hard": "1GiB"}})
    app = make_app(profile)
    rt = runtime(profile, queues="medium")
    rt.wait_ready()
    long = app.tasks.steps(200, 0.05)
    client = create_app(app, config={"TESTING": True}).test_client()

    def busy():
        found = [w for w in client.get("/api/workers").get_json()["workers"]
                 if w["jobs"]]
        return found and found[0]
    worker = wait_for(busy, 20, message="a busy worker")
    assert set(worker) == WORKER
    assert set(worker["jobs"][0]) == WORKER_JOB
    assert worker["jobs"][0]["id"] == long.id
    assert worker["worker_memory_hard"] == 1 << 30
    assert worker["worker_memory_soft"] == 700 << 20
    app.cancel(long.id)
    assert rt.terminate() == 0
