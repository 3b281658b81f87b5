"""The web app through Flask's test client: every endpoint, status code, and
auth, CSRF and read-only rule, on both backends where the backend matters."""

import json
import re
import time

import pytest

from hueyq import health
from hueyq.webui import STREAM_LIMIT, create_app
from hueyq.webui.serve import (WebServer, check_bind, gunicorn_options,
                               is_loopback)

from conftest import write_profile

TOKEN = "t0ken-for-the-tests"
FAST_STREAM = {"HUEYQ_STREAM_INTERVAL": 0.02, "HUEYQ_STREAM_LIFETIME": 0.3}


def build(app, **config):
    return create_app(app, config=dict(FAST_STREAM, TESTING=True, **config))


@pytest.fixture
def web(app):
    return build(app)


@pytest.fixture
def client(web):
    return web.test_client()


def csrf(client) -> str:
    return client.get("/api/session").get_json()["csrf_token"]


def post(client, path, **kwargs):
    headers = {"X-CSRF-Token": csrf(client)}
    return client.post(path, headers=headers, **kwargs)


def sqlite_app(make_app, tmp_path, app_name, **sections):
    profile = write_profile(tmp_path / ("p-%d.toml" % len(list(
        tmp_path.glob("p-*.toml")))), "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name, extra=sections)
    return make_app(profile)


@pytest.fixture
def token_app(make_app, tmp_path, app_name):
    return sqlite_app(make_app, tmp_path, app_name, web={"token": TOKEN})


def fake_runtime(app, pid=4242, memory=300 << 20, jobs=()):
    """A fresh status record, as a live supervisor on this host writes."""
    now = time.time()
    app.any_storage.put_record("runtime:%s:%d" % (app.host_id, pid), {
        "host": app.host_id, "pid": pid, "app": app.name, "started_at": now - 5,
        "heartbeat": now, "interval": 1.0, "queues": list(app.queues),
        "workers": [{"queue": "high", "pid": pid + 1, "kind": "consumer",
                     "worker_type": "thread", "threads": 2, "memory": memory,
                     "rss": memory, "memory_kind": "pss",
                     "worker_memory_soft": None,
                     "worker_memory_hard": 1 << 30, "gpu": None}]}, ttl=60)


def events_of(body: str) -> "list[tuple[str, dict]]":
    found = []
    for block in body.split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if name and data:
            found.append((name.group(1), json.loads(data.group(1))))
    return found


def stream(client, query=""):
    response = client.get("/api/stream" + query)
    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    response.close()
    assert body.startswith("retry: ")
    return events_of(body)


# ---------------------------------------------------------------- reads

def test_queues_in_priority_order_with_throughput(app, client, inline):
    for i in range(3):
        app.tasks.echo(i)
    app.tasks.add(1, 2)
    inline(app, "high").run()
    response = client.get("/api/queues")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    doc = response.get_json()
    assert list(doc["queues"]) == list(app.queues)
    high = doc["queues"]["high"]
    assert high["name"] == "high" and high["complete_recent"] == 3
    assert len(high["throughput"]) == 60 and sum(high["throughput"]) == 3
    assert high["success_rate"] == 1.0 and high["mean_runtime"] is not None
    assert doc["queues"]["medium"]["pending"] == 1
    assert isinstance(doc["now"], float)
    short = client.get("/api/queues?minutes=5").get_json()
    assert len(short["queues"]["low"]["throughput"]) == 5


def test_one_queue_and_unknown_queue(app, client):
    app.tasks.add(1, 1)
    doc = client.get("/api/queues/medium").get_json()
    assert doc["name"] == "medium" and doc["pending"] == 1
    missing = client.get("/api/queues/nope")
    assert missing.status_code == 404
    assert missing.get_json()["error"] == "queue_not_found"
    assert "nope" in missing.get_json()["detail"]
    assert client.get("/api/queues/nope/jobs").status_code == 404


@pytest.mark.parametrize("query, word", [
    ("/api/queues?minutes=0", "minutes"), ("/api/queues?minutes=x", "minutes"),
    ("/api/jobs?limit=0", "limit"), ("/api/jobs?limit=501", "limit"),
    ("/api/jobs?limit=ten", "limit"), ("/api/jobs?offset=-1", "offset"),
    ("/api/jobs?before=yesterday", "before"), ("/api/jobs?state=weird", "state"),
    ("/api/events?limit=0", "limit"), ("/api/stream?topics=nope", "topic"),
])
def test_bad_parameters_are_400_with_the_reason(client, query, word):
    response = client.get(query)
    assert response.status_code == 400
    doc = response.get_json()
    assert doc["error"] == "bad_request" and word in doc["detail"]


def test_pending_jobs_page_by_offset(app, client):
    ids = [app.tasks.echo(i).id for i in range(7)]
    seen, query, pages = [], "state=pending&limit=3", 0
    while query is not None:
        doc = client.get("/api/queues/high/jobs?" + query).get_json()
        assert doc["limit"] == 3 and len(doc["jobs"]) <= 3
        seen += [j["id"] for j in doc["jobs"]]
        nxt = doc["next"]
        query = None if nxt is None else "state=pending&limit=3&offset=%d" \
            % nxt["offset"]
        pages += 1
    assert pages == 3 and sorted(seen) == sorted(ids)
    assert all(j["state"] == "pending" for j in doc["jobs"])


def test_history_pages_by_before_across_queues(app, client, inline):
    for i in range(4):
        app.tasks.echo(i)
        app.tasks.add(i, i)
    inline(app, "high").run()
    inline(app, "medium").run()
    first = client.get("/api/jobs?state=complete&limit=5").get_json()
    assert len(first["jobs"]) == 5 and "before" in first["next"]
    rest = client.get("/api/jobs?state=complete&limit=5&before=%r"
                      % first["next"]["before"]).get_json()
    assert len(rest["jobs"]) == 3 and rest["next"] is None
    ids = [j["id"] for j in first["jobs"] + rest["jobs"]]
    assert len(set(ids)) == 8
    created = [j["enqueued_at"] for j in first["jobs"] + rest["jobs"]]
    assert created == sorted(created, reverse=True)
    only = client.get("/api/jobs?queue=medium&state=complete").get_json()
    assert {j["queue"] for j in only["jobs"]} == {"medium"}
    assert len(client.get("/api/jobs?limit=50").get_json()["jobs"]) == 8


def _pages(client, path: str, query: str) -> "tuple[list[dict], int]":
    """Every job of a listing, following each page's ``next``."""
    from urllib.parse import urlencode
    seen, following, pages = [], {}, 0
    while following is not None:
        doc = client.get("%s?%s&%s" % (path, query, urlencode(following)))
        assert doc.status_code == 200, doc.get_json()
        doc = doc.get_json()
        seen += doc["jobs"]
        following = doc["next"]
        pages += 1
    return seen, pages


def test_history_pages_through_jobs_enqueued_at_one_instant(
        app, client, inline, monkeypatch):
    # A bulk enqueue or a coarse clock gives many jobs one enqueue time: the
    # cursor is (enqueue time, id), so paging skips and repeats none of
    # them, stored or still in the backend, and keeps (time, id) order.
    same = time.time()
    with monkeypatch.context() as frozen:
        frozen.setattr(time, "time", lambda: same)
        stored = [app.tasks.echo(i).id for i in range(23)]
        live = [app.tasks.add(i, i).id for i in range(17)]
    inline(app, "high").run()
    assert {app.job(i).state for i in stored} == {"complete"}
    # (Redis keeps the time to 14 digits: one time still.)
    assert len({app.job(i).enqueued_at for i in stored + live}) == 1
    for query, expected in (("state=complete&limit=4", stored),
                            ("state=pending&task=add&limit=5", live),
                            ("limit=3", stored + live),
                            ("limit=1", stored + live)):
        jobs, pages = _pages(client, "/api/jobs", query)
        ids = [j["id"] for j in jobs]
        assert len(ids) == len(set(ids)) and set(ids) == set(expected), query
        assert ids == sorted(ids, reverse=True), query
        limit = int(query.rpartition("=")[2])
        assert pages in (len(expected) // limit + 1,
                         -(-len(expected) // limit)), query
    jobs, _ = _pages(client, "/api/queues/medium/jobs",
                     "state=pending&task=add&limit=2")
    assert sorted(j["id"] for j in jobs) == sorted(live)


def test_pages_and_api_stay_bounded_at_scale(make_app, tmp_path, app_name):
    # 10,000 pending jobs and 100,000 in the history: every page and API
    # answer is one bounded page, the counts are whole, nothing is listed in
    # full. (Speed is the benchmarks' business; this checks the bounds.)
    app = sqlite_app(make_app, tmp_path, app_name)
    storage = app.storage("medium")
    # This thread's own connection only: 10,000 enqueues without 10,000
    # fsyncs. Every other connection keeps its own level.
    storage.conn.execute("pragma synchronous = off")
    pending = [app.tasks.add(i, 1).id for i in range(10_000)]
    now, states = time.time(), ["complete"] * 18 + ["failed", "dead"]
    for first in range(0, 100_000, 10_000):
        app.store.write([
            {"id": "h%06d" % i, "task": "history.job", "queue": "low",
             "state": states[i % 20], "attempts": 1,
             "enqueued_at": now - 7200 + i * 0.07, "finished_at":
             now - 7200 + i * 0.07 + 0.01, "updated_at": now - 7200 + i * 0.07,
             "duration": 0.01} for i in range(first, first + 10_000)])
    client = build(app).test_client()

    queues = client.get("/api/queues").get_json()["queues"]
    assert queues["medium"]["pending"] == 10_000
    assert queues["low"]["complete_recent"] + queues["low"]["failed_recent"] \
        > 40_000
    doc = client.get("/api/queues/medium/jobs?state=pending").get_json()
    assert len(doc["jobs"]) == 50 and doc["next"] == {"offset": 50}
    assert [j["id"] for j in doc["jobs"]] == pending[:50]
    far = client.get("/api/queues/medium/jobs?state=pending&limit=500"
                     "&offset=9900").get_json()
    assert [j["id"] for j in far["jobs"]] == pending[9900:]
    assert far["next"] is None
    assert client.get("/api/jobs?limit=100000").status_code == 400
    history = client.get("/api/jobs?state=complete&limit=500").get_json()
    assert len(history["jobs"]) == 500 and "before" in history["next"]
    failed = client.get("/api/jobs?state=failed").get_json()
    assert len(failed["jobs"]) == 50 and failed["next"] is not None
    for path in ("/", "/queues/medium", "/queues/low"):
        page = client.get(path)
        assert page.status_code == 200
        # A page shows at most one page of jobs, not 10,000 or 100,000 rows.
        assert len(page.get_data()) < 400_000, path


def test_job_detail_with_error_traceback_and_history(app, client, inline):
    failed = app.tasks.fail("<b>kaput</b>")
    inline(app, "low").run()
    doc = client.get("/api/jobs/%s" % failed.id).get_json()
    assert doc["state"] == "failed" and doc["attempts"] == 1
    assert "kaput" in doc["error"] and "ValueError" in doc["traceback"]
    assert [h["event"] for h in doc["history"]][-1] in ("error", "failed")
    assert doc["args"] is None
    missing = client.get("/api/jobs/no-such-job")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "job_not_found",
                                  "detail": "no job 'no-such-job'"}


def test_arguments_are_hidden_unless_previewed(make_app, tmp_path, app_name):
    shown = sqlite_app(make_app, tmp_path, app_name,
                       store={"args_preview": True})
    job = shown.tasks.echo("<script>alert(1)</script>")
    doc = build(shown).test_client().get("/api/jobs/%s" % job.id).get_json()
    assert doc["args"] == "'<script>alert(1)</script>'"
    hidden = sqlite_app(make_app, tmp_path, app_name)
    assert build(hidden).test_client().get(
        "/api/jobs/%s" % job.id).get_json()["args"] is None
    listed = build(hidden).test_client().get("/api/jobs?state=pending")
    assert [j["args"] for j in listed.get_json()["jobs"]] == [None]


def test_a_job_waiting_for_memory_says_so(make_app, tmp_path, app_name):
    profile = write_profile(
        tmp_path / "mem.toml", "sqlite://%s" % (tmp_path / "queue.db"),
        "sqlite://%s" % (tmp_path / "store.db"), app_name,
        extra={"queues.medium": {"memory_limit": "512MiB"}})
    app = make_app(profile, "apps.memory")
    client = build(app).test_client()
    handle = app.tasks.bulky(str(tmp_path / "done"), "x", 0)
    # What the supervisor publishes: the budget less the queue's measured use.
    app.storage("medium").set_flag("admission", 200 << 20)
    queue = client.get("/api/queues/medium").get_json()
    assert (queue["waiting_for_memory"], queue["memory_room"]) == (1, 200 << 20)
    job = client.get("/api/jobs/" + handle.id).get_json()
    assert job["state"] == "pending" and job["memory"] == 300 << 20
    assert job["waiting"] == ("memory: needs 300.0 MiB, 200.0 MiB left of the "
                              "queue's budget")
    app.storage("medium").set_flag("admission", 400 << 20)
    assert client.get("/api/jobs/" + handle.id).get_json()["waiting"] is None
    assert client.get("/api/queues/medium").get_json()[
        "waiting_for_memory"] == 0


def test_workers_with_memory_budgets_and_current_jobs(app, client):
    empty = client.get("/api/workers").get_json()
    assert empty["workers"] == [] and set(empty["budgets"]) == set(app.queues)
    fake_runtime(app)
    doc = client.get("/api/workers").get_json()
    worker = doc["workers"][0]
    assert worker["pid"] == 4243 and worker["memory"] == 300 << 20
    assert worker["worker_memory_hard"] == 1 << 30 and worker["jobs"] == []
    assert doc["runtimes"][0]["alive"] and "workers" not in doc["runtimes"][0]


def test_workers_list_every_host_with_its_heartbeat_and_consumers(
        app, client):
    # Two hosts' runtimes on one backend, and a lease of a third whose
    # status record is gone: every host is listed, sorted by name.
    for host, pid in (("box-b", 10), ("box-a", 20)):
        now = time.time()
        app.any_storage.put_record("runtime:%s:%d" % (host, pid), {
            "host": host, "pid": pid, "started_at": now, "heartbeat": now,
            "interval": 1.0, "consumers": [
                {"queue": "high", "index": 0, "pid": pid + 1, "alive": True,
                 "restarts": 0},
                {"queue": "low", "index": 0, "pid": pid + 2, "alive": False,
                 "restarts": 2}], "workers": []}, ttl=60)
    app.tasks.echo(1)
    app.storage("high").lease("box-c:99:Worker-1")
    hosts = client.get("/api/workers").get_json()["hosts"]
    assert [h["host"] for h in hosts] == ["box-a", "box-b", "box-c"]
    a = hosts[0]
    assert a["alive"] and 0 <= a["age"] < 5 and a["pids"] == [20]
    assert a["consumers"] == [
        {"queue": "high", "pid": 21, "alive": True, "restarts": 0},
        {"queue": "low", "pid": 22, "alive": False, "restarts": 2}]
    assert hosts[2] == {"host": "box-c", "alive": False, "age": None,
                        "pids": [], "consumers": [], "running": 1}
    page = client.get("/").get_data(as_text=True)
    assert 'id="hosts"' in page


def test_events_show_watchdog_and_control_actions(app, client):
    assert client.get("/api/events").get_json()["events"] == []
    post(client, "/api/queues/low/pause", json={"reason": "deploy"})
    post(client, "/api/queues/low/resume")
    events = client.get("/api/events?limit=1").get_json()["events"]
    assert [e["action"] for e in events] == ["resume"]
    both = client.get("/api/events?queue=low").get_json()["events"]
    assert [e["action"] for e in both] == ["resume", "pause"]
    assert both[1]["reason"] == "user: deploy"
    assert client.get("/api/events?queue=nope").status_code == 404


def test_health_is_503_without_a_runtime_and_200_with_one(app, client):
    response = client.get("/api/health")
    assert response.status_code == 503
    doc = response.get_json()
    assert doc["healthy"] is False and "no runtime alive" in doc["reasons"][0]
    fake_runtime(app)
    response = client.get("/api/health")
    expected = health.check(app).healthy
    assert response.status_code == (200 if expected else 503)
    assert response.get_json()["healthy"] is expected


def test_backend_down_is_503_never_200(make_app, tmp_path, app_name,
                                      redis_server):
    profile = write_profile(tmp_path / "r.toml", redis_server.url,
                            "sqlite://%s" % (tmp_path / "store.db"), app_name)
    app = make_app(profile)
    client = build(app).test_client()
    assert client.get("/api/queues").status_code == 200
    redis_server.stop()
    for path in ("/api/queues", "/api/jobs?state=pending", "/api/workers",
                 "/metrics"):
        response = client.get(path)
        assert response.status_code == 503, path
        assert response.get_json()["error"] == "backend_unavailable"
    response = client.get("/api/health")
    assert response.status_code == 503
    assert any("backend" in r or "Redis" in r or "redis" in r
               for r in response.get_json()["reasons"])
    events = dict((doc.get("topic", name), (name, doc))
                  for name, doc in stream(client))
    for topic in ("queues", "running", "workers"):
        name, doc = events[topic]
        assert name == "problem" and doc["status"] == 503, topic
    assert events["events"][0] == "events"      # the store still answers
    assert events["failures"][0] == "failures"  # the store's history too


# ---------------------------------------------------------------- controls

def test_cancel_pending_then_conflicts_and_unknown(app, client):
    job = app.tasks.echo("x")
    response = post(client, "/api/jobs/%s/cancel" % job.id)
    assert response.status_code == 200
    assert response.get_json()["state"] == "cancelled"
    again = post(client, "/api/jobs/%s/cancel" % job.id)
    assert again.status_code == 409
    assert again.get_json()["error"] == "invalid_state"
    assert post(client, "/api/jobs/nope/cancel").status_code == 404


def test_cancel_running_is_202_cancelling(app, client):
    job = app.tasks.echo("x")
    assert app.storage("high").lease("%s:1:w0" % app.host_id) is not None
    response = post(client, "/api/jobs/%s/cancel" % job.id)
    assert response.status_code == 202
    doc = response.get_json()
    assert doc["job_id"] == job.id and doc["state"] == "cancelling"


def test_retry_failed_job_and_conflict_on_pending(app, client, inline):
    failed = app.tasks.fail("boom")
    inline(app, "low").run()
    response = post(client, "/api/jobs/%s/retry" % failed.id)
    assert response.status_code == 200
    assert response.get_json()["state"] == "pending"
    assert app.job(failed.id).state == "pending"
    conflict = post(client, "/api/jobs/%s/retry" % failed.id)
    assert conflict.status_code == 409
    assert post(client, "/api/jobs/nope/retry").status_code == 404


def test_pause_resume_drain(app, client):
    for i in range(3):
        app.tasks.add(i, i)
    paused = post(client, "/api/queues/medium/pause", json={"reason": "x"})
    assert paused.get_json() == {"queue": "medium", "changed": True,
                                 "paused": True, "paused_by": ["user"]}
    assert post(client, "/api/queues/medium/pause").get_json()["changed"] \
        is False
    assert app.queue_stats()["medium"]["paused_by"] == ["user"]
    resumed = post(client, "/api/queues/medium/resume").get_json()
    assert resumed == {"queue": "medium", "changed": True, "paused": False,
                       "paused_by": []}
    drained = post(client, "/api/queues/medium/drain")
    assert drained.get_json() == {"queue": "medium", "drained": 3}
    assert app.queue_stats()["medium"]["pending"] == 0
    for action in ("pause", "resume", "drain"):
        assert post(client, "/api/queues/nope/%s" % action).status_code == 404


def test_pause_rejects_a_bad_reason(app, client):
    response = post(client, "/api/queues/low/pause", json={"reason": 5})
    assert response.status_code == 400
    assert not app.queue_stats()["low"]["paused"]


@pytest.mark.parametrize("path", [
    "/api/queues/low/pause", "/api/queues/low/resume", "/api/queues/low/drain",
    "/api/jobs/JOB/cancel", "/api/jobs/JOB/retry"])
def test_get_never_changes_anything(app, client, path):
    job = app.tasks.chore("/dev/null", "t")
    response = client.get(path.replace("JOB", job.id))
    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]
    stats = app.queue_stats()["low"]
    assert stats["pending"] == 1 and not stats["paused"]
    assert app.job(job.id).state == "pending"


def test_reads_are_get_only(client):
    for path in ("/api/queues", "/api/jobs", "/api/workers", "/api/health"):
        assert post(client, path).status_code == 405


# ---------------------------------------------------------------- stream

def test_stream_sends_every_topic_then_only_changes(app, client):
    app.tasks.echo(1)
    events = stream(client)
    names = [name for name, _ in events]
    for topic in ("queues", "running", "failures", "workers", "events"):
        assert names.count(topic) == 1, names  # nothing changed: sent once
    queues = dict(events)["queues"]
    assert queues["queues"]["high"]["pending"] == 1 and "now" in queues
    assert dict(events)["failures"] == {"failed": [], "dead": [],
                                        "now": dict(events)["failures"]["now"]}


def test_stream_topics_and_one_job(app, client, inline):
    failed = app.tasks.fail("x")
    inline(app, "low").run()
    only = stream(client, "?topics=queues")
    assert {name for name, _ in only} == {"queues"}
    job = stream(client, "?topics=&job=%s" % failed.id)
    assert [name for name, _ in job] == ["job"]
    assert job[0][1]["id"] == failed.id and job[0][1]["history"]
    gone = stream(client, "?topics=&job=nope")
    assert gone[0][0] == "problem" and gone[0][1]["status"] == 404


def test_stream_shows_a_change(app, web):
    from hueyq.webui import stream as stream_module
    hub = stream_module.Hub(app, interval=0.01, limit=5)
    sub = hub.subscribe({"queues": stream_module.TOPICS["queues"]})
    body = stream_module.events(hub, sub, lifetime=5)
    assert next(body).startswith("retry:")
    first = next(body)
    assert '"pending":0' in first
    app.tasks.echo(1)
    second = next(body)
    assert second.startswith("event: queues") and '"pending":1' in second
    body.close()
    assert hub.streams == 0


# ---------------------------------------------------------------- metrics

def test_metrics_in_prometheus_text_format(app, client):
    from prometheus_client.parser import text_string_to_metric_families
    app.tasks.echo(1)
    app.pause("low")
    fake_runtime(app)
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    samples = {}
    for family in text_string_to_metric_families(response.get_data(True)):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("hueyq_queue_jobs", (("queue", "high"),
                                         ("state", "pending")))] == 1
    assert samples[("hueyq_queue_paused", (("queue", "low"),))] == 1
    assert samples[("hueyq_queue_paused", (("queue", "high"),))] == 0
    up = [v for (n, _), v in samples.items() if n == "hueyq_runtime_up"]
    assert up == [1]
    memory = [v for (n, _), v in samples.items()
              if n == "hueyq_worker_memory_bytes"]
    assert memory == [300 << 20]


def test_each_app_has_its_own_registry(app):
    first, second = build(app), build(app)
    assert first.extensions["hueyq"].registry is not \
        second.extensions["hueyq"].registry
    assert second.test_client().get("/metrics").status_code == 200


# ---------------------------------------------------------------- documents

def test_openapi_documents_every_api_route(web, client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    assert doc["openapi"].startswith("3.")
    documented = {(path, method) for path, item in doc["paths"].items()
                  for method in item}
    for rule in web.url_map.iter_rules():
        if not (rule.rule.startswith("/api/") or rule.rule == "/metrics"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{%s}" % {
            "name": "q", "job_id": "id", "task": "task"}[m.group(1)],
            rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, (path, method)


def test_errors_are_json_for_the_api_and_html_for_pages(client):
    api = client.get("/api/nothing-here")
    assert api.status_code == 404 and api.get_json()["error"] == "not_found"
    page = client.get("/nothing-here")
    assert page.status_code == 404 and page.mimetype == "text/html"


def test_pages_render_and_escape(app, client, inline):
    job = app.tasks.echo("x")
    for path in ("/", "/queues/high", "/jobs/%s" % job.id):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        assert response.headers["Cache-Control"] == "no-store"
        assert re.findall(r"<script[^>]*>", html) == [
            '<script src="/static/hueyq.js?v=%s" defer>'
            % __import__("hueyq").__version__]
        assert 'name="csrf-token"' in html
    assert client.get("/queues/nope").status_code == 404
    evil = client.get("/jobs/<img src=x onerror=alert(1)>")
    assert evil.status_code == 404
    text = evil.get_data(as_text=True)
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" \
        in text


def test_security_headers(client):
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_static_assets_ship_in_the_package(client):
    for name in ("hueyq.js", "hueyq.css"):
        with client.get("/static/" + name) as response:
            assert response.status_code == 200
            text = response.get_data(as_text=True)
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    with client.get("/static/hueyq.js") as response:
        assert "innerHTML" not in response.get_data(as_text=True)


# ---------------------------------------------------------------- auth

def test_token_protects_api_and_pages(token_app):
    client = build(token_app).test_client()
    response = client.get("/api/queues")
    assert response.status_code == 401
    assert response.get_json()["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/api/queues", headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401
    right = client.get("/api/queues",
                       headers={"Authorization": "Bearer " + TOKEN})
    assert right.status_code == 200
    for path in ("/metrics", "/api/health", "/api/stream", "/api/openapi.json"):
        assert client.get(path).status_code == 401, path
    page = client.get("/queues/high?state=failed")
    assert page.status_code == 302
    assert page.headers["Location"].startswith("/login?next=")
    with client.get("/static/hueyq.css") as css:
        assert css.status_code == 200


def test_bearer_scripts_need_no_csrf(token_app):
    client = build(token_app).test_client()
    auth = {"Authorization": "Bearer " + TOKEN}
    response = client.post("/api/queues/low/pause", headers=auth)
    assert response.status_code == 200 and token_app.queue_stats()["low"][
        "paused"]


def test_sign_in_session_and_csrf(token_app):
    client = build(token_app).test_client()
    form = client.get("/login?next=/queues/low")
    assert form.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"',
                      form.get_data(as_text=True)).group(1)
    no_csrf = client.post("/login", data={"token": TOKEN})
    assert no_csrf.status_code == 403
    bad = client.post("/login", data={"token": "wrong", "csrf_token": token})
    assert bad.status_code == 401 and "not right" in bad.get_data(True)
    good = client.post("/login", data={"token": TOKEN, "csrf_token": token,
                                       "next": "/queues/low"})
    assert good.status_code == 302 and good.headers["Location"] == \
        "/queues/low"
    assert client.get("/api/queues").status_code == 200
    denied = client.post("/api/queues/low/pause")
    assert denied.status_code == 403
    assert denied.get_json()["error"] == "csrf_failed"
    stale = client.post("/api/queues/low/pause",
                        headers={"X-CSRF-Token": token})  # rotated at sign-in
    assert stale.status_code == 403
    assert post(client, "/api/queues/low/pause").status_code == 200
    out = client.post("/logout", data={"csrf_token": csrf(client)})
    assert out.status_code == 302
    assert client.get("/api/queues").status_code == 401


def test_sign_in_redirects_only_to_this_site(token_app):
    client = build(token_app).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    response = client.post("/login", data={
        "token": TOKEN, "csrf_token": token, "next": "//evil.example/x"})
    assert response.headers["Location"] == "/"


def test_tokens_are_compared_in_constant_time(token_app, monkeypatch):
    from hueyq.webui import auth
    calls = []
    real = auth.hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)
    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    client = build(token_app).test_client()
    client.get("/api/queues", headers={"Authorization": "Bearer guess"})
    assert (b"guess", TOKEN.encode()) in calls


def test_controls_need_csrf_even_without_a_token(app, client):
    assert client.post("/api/queues/low/pause").status_code == 403
    assert client.post("/api/queues/low/pause", headers={
        "X-CSRF-Token": "forged"}).status_code == 403
    assert not app.queue_stats()["low"]["paused"]
    assert client.get("/login").status_code == 302  # nothing to sign in to


def test_read_only_mode_refuses_controls(make_app, tmp_path, app_name):
    app = sqlite_app(make_app, tmp_path, app_name, web={"read_only": True})
    job = app.tasks.echo(1)
    client = build(app).test_client()
    for path in ("/api/queues/high/pause", "/api/queues/high/drain",
                 "/api/queues/high/resume", "/api/jobs/%s/cancel" % job.id,
                 "/api/jobs/%s/retry" % job.id):
        response = post(client, path)
        assert response.status_code == 403, path
        assert response.get_json()["error"] == "read_only"
    assert app.queue_stats()["high"]["pending"] == 1
    assert client.get("/api/queues").status_code == 200
    assert 'data-read-only="true"' in client.get("/").get_data(True)
    assert client.get("/api/session").get_json()["read_only"] is True


def test_session_secret_is_shared_by_workers_with_a_token(token_app,
                                                          monkeypatch):
    monkeypatch.delenv("HUEYQ_WEB_SECRET_KEY", raising=False)
    one, two = build(token_app), build(token_app)
    assert one.secret_key == two.secret_key
    client = one.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/login", data={"token": TOKEN, "csrf_token": token})
    cookie = client.get_cookie("hueyq_session")
    other = two.test_client()
    other.set_cookie("hueyq_session", cookie.value)
    assert other.get("/api/queues").status_code == 200


def test_session_secret_sources(app, token_app, make_app, tmp_path, app_name,
                                monkeypatch):
    from hueyq.webui.auth import session_secret
    monkeypatch.delenv("HUEYQ_WEB_SECRET_KEY", raising=False)
    # Random, kept in the backend: the same for every worker of one app,
    # another for another app, never derived from the token.
    assert session_secret(app) == session_secret(app) == build(app).secret_key
    retokened = sqlite_app(make_app, tmp_path, app_name,
                           web={"token": "another-token-of-16+"})
    assert session_secret(retokened) == session_secret(token_app)
    other = sqlite_app(make_app, tmp_path, app_name + "x")
    assert session_secret(other) != session_secret(token_app)
    assert session_secret(None) != session_secret(None)
    assert session_secret(app, "explicit") == "explicit"
    monkeypatch.setenv("HUEYQ_WEB_SECRET_KEY", "from-env")
    assert session_secret(app) == "from-env"
    assert build(app).secret_key == "from-env"


def test_create_app_without_an_app_uses_the_profile(profile_path,
                                                    monkeypatch):
    monkeypatch.setenv("HUEYQ_PROFILE", str(profile_path))
    web = create_app(config=FAST_STREAM)
    hueyq_app = web.extensions["hueyq"].app
    try:
        assert web.test_client().get("/api/queues").status_code == 200
        assert hueyq_app.profile.source == str(profile_path)
    finally:
        hueyq_app.close()


# ---------------------------------------------------------------- serve

@pytest.mark.parametrize("bind, loopback", [
    ("127.0.0.1:8787", True), ("localhost:80", True), ("[::1]:8787", True),
    ("127.0.0.2:1", True), ("unix:/run/hueyq.sock", True),
    ("0.0.0.0:8787", False), (":8787", False), ("192.168.1.5:80", False),
    ("[::]:8787", False), ("example.com:80", False), ("fd://3", False)])
def test_loopback_binds(bind, loopback):
    assert is_loopback(bind) is loopback


def test_non_loopback_bind_needs_a_token_or_insecure():
    from hueyq.exceptions import ConfigurationError
    for bind in ("0.0.0.0:8787", "fd://3"):
        with pytest.raises(ConfigurationError, match="--insecure"):
            check_bind(bind, None, False)
    check_bind("0.0.0.0:8787", "token", False)
    check_bind("0.0.0.0:8787", None, True)
    check_bind("127.0.0.1:8787", None, False)


def test_gunicorn_application_is_configured_from_the_profile(app):
    server = WebServer(app, gunicorn_options(app.profile.web), "key")
    cfg = server.cfg
    assert cfg.bind == [app.profile.web.bind]
    assert cfg.workers == app.profile.web.workers
    assert cfg.threads == app.profile.web.threads + STREAM_LIMIT
    assert cfg.worker_class_str == "gthread"
    wsgi = server.load()
    assert wsgi.extensions["hueyq"].app is app and wsgi.secret_key == "key"


# ---------------------------------------------------------------- hosts

@pytest.mark.parametrize("bind, host, answered", [
    ("127.0.0.1:8787", "127.0.0.1:8787", True),
    ("127.0.0.1:8787", "localhost", True),
    ("127.0.0.1:8787", "app.localhost:8787", True),
    ("127.0.0.1:8787", "[::1]:8787", True),
    ("127.0.0.1:8787", "attacker.example:8787", False),
    ("127.0.0.1:8787", "192.168.1.5:8787", False),
    ("127.0.0.1:8787", "", False),
    ("192.168.1.5:80", "192.168.1.5", True),
    ("192.168.1.5:80", "192.168.1.6", False),
    ("0.0.0.0:8787", "192.168.1.6:8787", True),
    ("0.0.0.0:8787", "[fe80::1]:8787", True),
    ("0.0.0.0:8787", "attacker.example", False),
    ("unix:/run/hueyq.sock", "10.0.0.1", True),
    ("unix:/run/hueyq.sock", "attacker.example", False),
    ("0.0.0.0:8787", "ui.example", True),
    ("0.0.0.0:8787", "UI.Example.:443", True),
    ("0.0.0.0:8787", "a.corp.example", True),
    ("0.0.0.0:8787", "corp.example.evil", False),
])
def test_host_policy(bind, host, answered):
    from hueyq.webui.hosts import HostPolicy
    policy = HostPolicy(bind, ("ui.example", "*.corp.example"))
    assert policy.allows(host) is answered


def test_the_machines_own_names_are_answered_on_a_public_bind():
    import socket
    from hueyq.webui.hosts import HostPolicy
    assert HostPolicy("0.0.0.0:8787").allows(socket.gethostname())
    assert not HostPolicy("127.0.0.1:8787").allows("attacker.example")
    assert HostPolicy("127.0.0.1:8787", ("*",)).allows("attacker.example")


def test_allowed_hosts_and_the_421_answer(make_app, tmp_path, app_name):
    app = sqlite_app(make_app, tmp_path, app_name,
                     web={"allowed_hosts": ["hueyq.example"]})
    client = build(app).test_client()
    assert client.get("/api/queues", base_url="http://hueyq.example").status_code == 200
    refused = client.get("/api/queues", base_url="http://other.example:8787")
    assert refused.status_code == 421
    assert refused.get_json()["error"] == "misdirected_request"
    assert "other.example" in refused.get_json()["detail"]
    page = client.get("/", base_url="http://other.example")
    assert page.status_code == 421 and "text/html" in page.content_type


def test_proxy_headers_count_only_with_trust_proxy(make_app, tmp_path, app_name):
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hueyq.example",
                 "X-Forwarded-For": "203.0.113.9"}
    plain = sqlite_app(make_app, tmp_path, app_name, web={"token": TOKEN})
    response = build(plain).test_client().get("/login", headers=forwarded)
    assert response.status_code == 200
    assert "Secure" not in response.headers["Set-Cookie"]
    trusted = sqlite_app(make_app, tmp_path, app_name, web={
        "token": TOKEN, "trust_proxy": True, "allowed_hosts": ["hueyq.example"]})
    client = build(trusted).test_client()
    response = client.get("/login", headers=forwarded)
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]
    assert client.get("/login", headers=dict(
        forwarded, **{"X-Forwarded-Host": "evil.example"})).status_code == 421


def test_sign_in_limiter_counts_per_client_and_in_all():
    from hueyq.webui.auth import SignInLimiter
    now = [1000.0]
    limiter = SignInLimiter(per_client=3, overall=5, window=60, lockout=30,
                            clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("a")
    assert limiter.retry_after("a") == 0
    limiter.failed("a")
    assert limiter.retry_after("a") == 30 and limiter.retry_after("b") == 0
    now[0] += 31
    assert limiter.retry_after("a") == 0
    limiter.failed("b")
    now[0] += 61                        # outside the window: forgotten
    limiter.failed("b")
    limiter.failed("b")
    assert limiter.retry_after("b") == 0
    limiter.succeeded("b")
    for client in ("c", "d", "e"):      # 2 + 3 in the window: everyone
        limiter.failed(client)
    assert limiter.retry_after("z") == 30


# ---------------------------------------------------------------- search

def test_the_all_listing_has_jobs_no_consumer_has_seen(app, client, inline):
    done = app.tasks.echo("done")
    inline(app, "high").run()
    fresh = app.tasks.add(1, 2)
    doc = client.get("/api/jobs").get_json()
    assert [j["id"] for j in doc["jobs"]] == [fresh.id, done.id]
    assert [j["state"] for j in doc["jobs"]] == ["pending", "complete"]
    one = client.get("/api/queues/medium/jobs").get_json()
    assert [j["id"] for j in one["jobs"]] == [fresh.id]
    paged = client.get("/api/jobs?limit=1").get_json()
    # The cursor is the last job's (enqueue time, id): see
    # test_history_pages_through_jobs_enqueued_at_one_instant.
    assert paged["next"] == {"before": paged["jobs"][0]["enqueued_at"],
                             "before_id": paged["jobs"][0]["id"]}
    rest = client.get("/api/jobs?limit=1&before=%r"
                      % paged["next"]["before"]).get_json()
    assert [j["id"] for j in rest["jobs"]] == [done.id]


def test_search_terms_of_the_api(app, client, inline):
    done = app.tasks.echo("done")
    failed = app.tasks.fail("Disk full")
    inline(app, "high").run()
    inline(app, "low").run()
    fresh = app.tasks.echo("fresh")

    def found(query):
        response = client.get("/api/jobs?" + query)
        assert response.status_code == 200, response.get_json()
        return [j["id"] for j in response.get_json()["jobs"]]
    assert found("task=echo") == [fresh.id, done.id]
    assert found("task=echo&state=pending") == [fresh.id]
    assert found("id=" + failed.id[:7]) == [failed.id]
    assert found("error=disk") == [failed.id]
    since = app.job(fresh.id).enqueued_at
    assert found("since=%r" % since) == [fresh.id]
    assert found("until=%r" % since) == [failed.id, done.id]
    assert found("queue=low&state=failed&task=fail") == [failed.id]
    doc = client.get("/api/queues/high/jobs?task=echo&limit=1").get_json()
    assert doc["task"] == "echo" and doc["next"] == {
        "before": doc["jobs"][0]["enqueued_at"],
        "before_id": doc["jobs"][0]["id"]}
    for bad, word in (("since=today", "since"), ("until=x", "until"),
                      ("task=" + "x" * 201, "task"),
                      ("before_id=" + "x" * 201, "before_id")):
        response = client.get("/api/jobs?" + bad)
        assert response.status_code == 400 and word in \
            response.get_json()["detail"]
    tasks = client.get("/api/tasks").get_json()["tasks"]
    assert app.job(done.id).task in tasks and app.job(failed.id).task in tasks


def test_bulk_retry_and_delete_over_the_api(app, client, inline):
    failed = [app.tasks.fail("boom %d" % i) for i in range(3)]
    inline(app, "low").run()
    preview = client.get("/api/jobs/bulk?state=failed&error=boom").get_json()
    assert (preview["matched"], preview["states"], preview["limit"]) == \
        (3, ["failed"], 1000)
    assert client.get("/api/jobs/bulk?state=pending").status_code == 400
    assert client.post("/api/jobs/bulk/retry?state=failed").status_code == 403
    assert client.get("/api/jobs/bulk/retry").status_code == 405
    done = post(client, "/api/jobs/bulk/retry?state=failed&error=boom+1")
    assert done.status_code == 200
    assert done.get_json() == {"action": "retry", "matched": 1, "done": 1,
                               "skipped": [], "remaining": 0}
    assert app.job(failed[1].id).state == "pending"
    deleted = post(client, "/api/jobs/bulk/delete?state=failed").get_json()
    assert (deleted["matched"], deleted["done"]) == (2, 2)
    assert client.get("/api/jobs/" + failed[0].id).status_code == 404
    events = client.get("/api/events?limit=2").get_json()["events"]
    assert [e["action"] for e in events] == ["delete", "retry"]
    assert events[1]["reason"] == "user: 1 failed jobs (error=boom 1)"


def test_bulk_controls_are_refused_read_only(make_app, tmp_path, app_name):
    app = sqlite_app(make_app, tmp_path, app_name, web={"read_only": True})
    client = build(app).test_client()
    for path in ("/api/jobs/bulk/retry", "/api/jobs/bulk/delete"):
        response = post(client, path + "?state=failed")
        assert response.status_code == 403
        assert response.get_json()["error"] == "read_only"
    assert client.get("/api/jobs/bulk?state=dead").status_code == 200


def test_series_per_window(app, client, inline):
    for i in range(3):
        app.tasks.echo(i)
    inline(app, "high").run()
    for window, bucket, count in (("1h", 60, 60), ("24h", 900, 96),
                                  ("7d", 3600, 168)):
        doc = client.get("/api/series?window=" + window).get_json()
        assert (doc["window"], doc["bucket"]) == (window, bucket)
        assert doc["end"] - doc["start"] == doc["seconds"] == bucket * count
        high = doc["queues"]["high"]
        assert len(high["complete"]) == count and sum(high["complete"]) == 3
        assert high["complete"][-1] == 3 or high["complete"][-2] == 3
        assert max(v or 0 for v in high["max_runtime"]) > 0
        assert list(doc["queues"]) == list(app.queues)
    one = client.get("/api/series?queue=low").get_json()
    assert list(one["queues"]) == ["low"]
    assert client.get("/api/series?window=2h").status_code == 400
    assert client.get("/api/series?queue=nope").status_code == 404


def test_a_jobs_stream_sends_its_output_and_ends_with_its_state(
        app, client, inline):
    handle = app.tasks.chatter(4)
    assert client.get("/api/jobs/%s/stream" % handle.id).status_code == 200
    inline(app, "high").run()
    response = client.get("/api/jobs/%s/stream" % handle.id)
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    found = events_of(body)
    assert [d["data"] for k, d in found if k == "output"] == \
        ["t0", "t1", "t2", "t3"]
    assert found[-1][0] == "state" and found[-1][1]["state"] == "complete"
    assert re.findall(r"^id: (\d+)$", body, re.M)[-1] == "4"
    later = events_of(client.get("/api/jobs/%s/stream" % handle.id, headers={
        "Last-Event-ID": "3"}).get_data(as_text=True))
    assert [d["seq"] for k, d in later if k == "output"] == [4]
    assert client.get("/api/jobs/nope/stream").status_code == 404
    assert client.get("/api/jobs/%s/stream?after=x" % handle.id
                      ).status_code == 400
    assert client.application.extensions["hueyq"].hub.streams == 0


def test_a_submit_token_may_follow_a_job(submit_app):
    handle = submit_app.tasks.add(1, 2)
    client = build(submit_app).test_client()
    response = client.get("/api/jobs/%s/stream" % handle.id,
                          headers={"Authorization": "Bearer " + SUBMIT_TOKEN})
    assert response.status_code == 200
    response.close()


def test_streams_are_bounded_with_a_clear_503(app):
    client = build(app, HUEYQ_STREAM_LIMIT=2, HUEYQ_STREAM_LIFETIME=30
                   ).test_client()
    first = client.get("/api/stream?topics=queues", buffered=False)
    second = client.get("/api/stream?topics=health", buffered=False)
    assert first.status_code == second.status_code == 200
    third = client.get("/api/stream")
    assert third.status_code == 503
    assert third.get_json()["error"] == "too_many_streams"
    assert "2 live streams are open" in third.get_json()["detail"]
    assert third.headers["Retry-After"] == "5"
    assert client.get("/api/queues").status_code == 200
    first.close()
    again = client.get("/api/stream?topics=health", buffered=False)
    assert again.status_code == 200
    lines = []
    for chunk in again.response:
        lines.append(chunk.decode() if isinstance(chunk, bytes) else chunk)
        if "event: health" in lines[-1]:
            break
    health = json.loads(lines[-1].split("data: ", 1)[1])
    assert health["status"] == 503 and health["healthy"] is False
    second.close()
    again.close()
    hub = client.application.extensions["hueyq"].hub
    assert hub.streams == 0


def test_many_streams_share_one_read_per_topic(app, monkeypatch):
    from hueyq.webui import stream as stream_module
    reads = []
    build_queues = stream_module.TOPICS["queues"][0]

    def counted(a):
        reads.append(time.monotonic())
        return build_queues(a)
    monkeypatch.setitem(stream_module.TOPICS, "queues", (counted, 1))
    hub = stream_module.Hub(app, interval=0.05, limit=50)
    subs = [hub.subscribe({"queues": stream_module.TOPICS["queues"]})
            for _ in range(20)]
    bodies = [stream_module.events(hub, s, lifetime=0.6) for s in subs]
    first = [next(b) and next(b) for b in bodies]
    assert all(f.startswith("event: queues") for f in first)
    assert len(reads) == 1          # twenty streams, one read
    app.tasks.echo(1)
    import threading
    seen = []

    def drain(body):
        seen.append(sum(1 for text in body if '"pending":1' in text))
    threads = [threading.Thread(target=drain, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [1] * 20
    assert len(reads) <= 0.6 / 0.05 + 2     # one per interval, not per stream
    assert hub.streams == 0


# ---------------------------------------------------------------- submit

SUBMIT_TOKEN = "submit-only-t0ken-1"


@pytest.fixture
def submit_app(make_app, tmp_path, app_name):
    """An app with a web token, a submit token, ``add`` listed in
    web.submit_tasks and ``shout`` declared with http=True."""
    app = sqlite_app(make_app, tmp_path, app_name, web={
        "token": TOKEN, "submit_tokens": [SUBMIT_TOKEN],
        "submit_tasks": ["apps.basic.add"]},
        security={"max_message_size": "4KiB"})

    @app.task(queue="high", http=True)
    def shout(text, times=1):
        return (text.upper() + "!") * times
    return app


def submitter(app, token=SUBMIT_TOKEN):
    client = build(app).test_client()
    auth = {"Authorization": "Bearer " + token}

    def call(method, path, **kwargs):
        kwargs["headers"] = dict(auth, **kwargs.get("headers", {}))
        return client.open(path, method=method, **kwargs)
    return call


def test_submit_enqueues_an_exposed_task_and_links_to_it(submit_app, inline):
    call = submitter(submit_app)
    response = call("POST", "/api/tasks/apps.basic.add",
                    json={"args": [1], "kwargs": {"b": 2}})
    assert response.status_code == 202
    doc = response.get_json()
    job_id = doc["id"]
    assert doc["state"] == "pending"
    assert doc["links"] == {
        "self": "/api/jobs/%s" % job_id,
        "stream": "/api/stream?job=%s&topics=" % job_id,
        "cancel": "/api/jobs/%s" % job_id}
    assert response.headers["Location"] == doc["links"]["self"]
    assert submit_app.job(job_id).queue == "medium"
    inline(submit_app, "medium").run()
    assert submit_app.job(job_id).result == 3
    assert call("GET", doc["links"]["self"]).get_json()["state"] == \
        "complete"
    shouted = call("POST", "/api/tasks/test_webui.shout",
                   json={"args": ["hi"], "kwargs": {"times": 2}})
    assert shouted.status_code == 202
    inline(submit_app, "high").run()
    assert submit_app.job(shouted.get_json()["id"]).result == "HI!HI!"


def test_only_exposed_tasks_can_be_submitted(submit_app):
    call = submitter(submit_app)
    for name in ("apps.basic.echo", "no.such.task"):
        response = call("POST", "/api/tasks/" + name, json={"args": [1]})
        assert response.status_code == 404, name
        assert response.get_json()["error"] == "not_found"
    assert submit_app.queue_stats()["high"]["pending"] == 0


@pytest.mark.parametrize("body,word", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"args": [1, 2], "colour": 1}', "unknown field 'colour'"),
    (b'{"args": {"a": 1}}', "args must be a JSON array"),
    (b'{"args": [], "kwargs": [1]}', "kwargs must be a JSON object"),
    (b'{"args": [1]}', "missing a required argument: 'b'"),
    (b'{"args": [1, 2, 3]}', "too many positional arguments"),
    (b'{"args": [1], "kwargs": {"b": 2, "c": 3}}', "unexpected keyword"),
    (b'{"args": [1, 2], "kwargs": {"priority": 3}}', "cannot name priority"),
    (b'{"args": [1, 2], "kwargs": {"key": "k"}}', "cannot name key"),
    (b'{"args": [1, 2], "priority": "high"}', "priority must be an integer"),
    (b'{"args": [1, 2], "delay": -1}', "delay must be a number"),
    (b'{"args": [1, 2], "delay": 1, "eta": 2}', "not both"),
    (b'{"args": [1, 2], "eta": "tomorrow"}', "eta must be"),
    (b'{"args": [1, 2], "eta": "2030-01-01T00:00:00"}', "with its offset"),
    (b'{"args": [1, 2], "eta": 1e300}', "eta must be a number of seconds"),
    (b'{"args": [1, 2], "delay": 1e20}', "delay must be a number"),
    (b'{"args": [1, 2], "eta": "9999-12-31T23:59:59-01:00"}', "out of range"),
    (b'{"args": [1, 2], "eta": "1969-12-31T23:59:59+00:00"}', "out of range"),
    (b'{"args": [1, 2], "queue": "nope"}', "queue must be one of"),
    (b'{"args": [NaN, 2]}', "not a JSON number"),
])
def test_a_bad_submission_is_400_with_the_reason(submit_app, body, word):
    response = submitter(submit_app)("POST", "/api/tasks/apps.basic.add",
                                     data=body)
    assert response.status_code == 400, response.get_json()
    assert word in response.get_json()["detail"]
    assert submit_app.queue_stats()["medium"]["pending"] == 0


def test_submit_options_priority_delay_eta_and_queue(submit_app):
    call = submitter(submit_app)
    delayed = call("POST", "/api/tasks/apps.basic.add",
                   json={"args": [1, 2], "delay": 60, "priority": 5})
    assert delayed.get_json()["state"] == "scheduled"
    job = submit_app.job(delayed.get_json()["id"])
    assert job.priority == 5 and job.eta > time.time() + 50
    at = call("POST", "/api/tasks/apps.basic.add",
              json={"args": [1, 2], "eta": "2099-01-01T00:00:00+00:00"})
    assert submit_app.job(at.get_json()["id"]).eta == 4070908800
    moved = call("POST", "/api/tasks/apps.basic.add",
                 json={"args": [1, 2], "queue": "low"})
    assert submit_app.job(moved.get_json()["id"]).queue == "low"
    assert submit_app.queue_stats()["low"]["pending"] == 1


def test_a_submission_over_the_size_limit_is_413(submit_app):
    call = submitter(submit_app)
    body = call("POST", "/api/tasks/apps.basic.add",
                data=json.dumps({"args": ["x" * 5000, "y"]}))
    assert body.status_code == 413
    assert body.get_json()["error"] == "payload_too_large"
    # A body under the limit whose message is over it.
    message = call("POST", "/api/tasks/apps.basic.add",
                   json={"args": ["x" * 4000, "y"]})
    assert message.status_code == 413
    assert message.get_json()["error"] == "payload_too_large"
    assert submit_app.queue_stats()["medium"]["pending"] == 0


def test_an_idempotency_key_submits_once(submit_app):
    call = submitter(submit_app)
    headers = {"Idempotency-Key": "order-42"}
    first = call("POST", "/api/tasks/apps.basic.add",
                 json={"args": [1, 2]}, headers=headers)
    again = call("POST", "/api/tasks/apps.basic.add",
                 json={"args": [3, 4]}, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert submit_app.queue_stats()["medium"]["pending"] == 1
    bad = call("POST", "/api/tasks/apps.basic.add", json={"args": [1, 2]},
               headers={"Idempotency-Key": "k" * 201})
    assert bad.status_code == 400 and "Idempotency-Key" in \
        bad.get_json()["detail"]


def test_a_submit_token_submits_follows_and_cancels_but_controls_nothing(
        submit_app):
    call = submitter(submit_app)
    doc = call("POST", "/api/tasks/apps.basic.add",
               json={"args": [1, 2]}).get_json()
    assert call("GET", doc["links"]["self"]).status_code == 200
    with call("GET", doc["links"]["stream"]) as events:
        assert events.status_code == 200
        sent = events_of(events.get_data(as_text=True))
    assert {name for name, _ in sent} == {"job"}
    assert sent[0][1]["id"] == doc["id"]
    for method, path in (("POST", "/api/queues/medium/pause"),
                         ("POST", "/api/queues/medium/drain"),
                         ("POST", "/api/jobs/%s/retry" % doc["id"]),
                         ("GET", "/api/queues"), ("GET", "/api/jobs"),
                         ("GET", "/api/stream"), ("GET", "/metrics"),
                         ("GET", "/")):
        response = call(method, path)
        assert response.status_code == 403, (method, path)
    stats = submit_app.queue_stats()["medium"]
    assert not stats["paused"] and stats["pending"] == 1
    cancelled = call("DELETE", doc["links"]["cancel"])
    assert cancelled.status_code == 200
    assert cancelled.get_json()["state"] == "cancelled"
    assert submitter(submit_app, "wrong-t0ken-0000000")(
        "POST", "/api/tasks/apps.basic.add",
        json={"args": [1, 2]}).status_code == 401


def test_the_web_token_submits_too_and_a_session_needs_csrf(submit_app):
    assert submitter(submit_app, TOKEN)(
        "POST", "/api/tasks/apps.basic.add",
        json={"args": [1, 2]}).status_code == 202
    client = build(submit_app).test_client()
    assert client.post("/api/tasks/apps.basic.add",
                       json={"args": [1, 2]}).status_code == 401


def test_delete_cancels_like_the_cancel_control(app, client):
    job = app.tasks.echo("x")
    assert client.delete("/api/jobs/%s" % job.id).status_code == 403  # CSRF
    response = client.delete("/api/jobs/%s" % job.id,
                             headers={"X-CSRF-Token": csrf(client)})
    assert response.status_code == 200
    assert response.get_json()["state"] == "cancelled"
    again = client.delete("/api/jobs/%s" % job.id,
                          headers={"X-CSRF-Token": csrf(client)})
    assert again.status_code == 409
    assert client.delete("/api/jobs/nope", headers={
        "X-CSRF-Token": csrf(client)}).status_code == 404


def test_read_only_mode_refuses_submissions(make_app, tmp_path, app_name):
    app = sqlite_app(make_app, tmp_path, app_name, web={
        "read_only": True, "submit_tasks": ["apps.basic.add"]})
    client = build(app).test_client()
    response = post(client, "/api/tasks/apps.basic.add",
                    json={"args": [1, 2]})
    assert response.status_code == 403
    assert response.get_json()["error"] == "read_only"
    assert app.queue_stats()["medium"]["pending"] == 0
