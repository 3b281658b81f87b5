"""`hueyq profiles from-celery` on real Celery app objects: queues, routes,
concurrency, limits and memory from the app and its worker command lines,
the unmappable settings in comments, and one-line errors."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("celery")

STUDIO = '''
from celery import Celery
from celery.schedules import crontab
from kombu import Queue

app = Celery("studio", broker="redis://:hunter2@redis.internal:6380/2",
             backend="redis://redis.internal:6380/3")
app.conf.update(
    task_queues=[Queue("high_priority"), Queue("training")],
    task_routes={"src.workers.training_tasks.*": {"queue": "training"},
                 "reports.*": "low_priority"},
    task_soft_time_limit=1800, task_time_limit=3600,
    worker_prefetch_multiplier=1, task_acks_late=True,
    broker_transport_options={"visibility_timeout": 43200},
    result_expires=7200,
    beat_schedule={"nightly": {"task": "reports.nightly",
                               "schedule": crontab(minute=0, hour=2)},
                   "every-5": {"task": "reports.ping", "schedule": 300.0}},
)

@app.task(queue="high_priority")
def ping():
    return "pong"
'''


def from_celery(tmp_path, *args, source=STUDIO):
    (tmp_path / "proj.py").write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "hueyq", "profiles",
                           "from-celery", *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_a_celery_app_and_its_workers_become_a_profile(tmp_path):
    from hueyq.profile import load_profile
    done = from_celery(tmp_path, "proj:app", "--worker-args",
                       "celery -A proj worker -Q high_priority -c 8 -P threads",
                       "--worker-args", "-Q training -c 1 "
                       "--max-memory-per-child=4000000 --max-tasks-per-child=10",
                       "--worker-args", "-Q low_priority --autoscale=6,2 -O fair")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    (tmp_path / "out.toml").write_text(text)
    profile = load_profile(str(tmp_path / "out.toml"), env={
        "HUEYQ_SECRET": "x", "HUEYQ_REDIS_PASSWORD": "hunter2",
        "HUEYQ_DATA_DIR": str(tmp_path)})
    queues = profile.queues
    assert profile.queue_names == ("high_priority", "training",
                                   "low_priority")
    assert (queues["high_priority"].workers,
            queues["high_priority"].worker_type) == (8, "thread")
    training = queues["training"]
    assert (training.workers, training.worker_type, training.max_tasks) == \
        (1, "process", 10)
    assert training.worker_memory_soft == 4000000 * 1024
    assert (training.soft_time_limit, training.time_limit) == (1800, 3600)
    assert queues["low_priority"].workers == 6
    assert profile.routes == (
        ("src.workers.training_tasks.*", "training"),
        ("reports.*", "low_priority"), ("proj.ping", "high_priority"))
    assert profile.backend.url == "redis://:hunter2@redis.internal:6380/2"
    assert "hunter2" not in text
    assert profile.store.retention_age == 7200
    assert profile.app_name == "studio"
    assert not any(queues[q].enabled for q in ("high", "medium", "gpu", "low"))
    for line in [
            "# broker_transport_options = {'visibility_timeout': 43200}: "
            "no visibility timeout",
            "# worker_prefetch_multiplier = 1: workers lease one job at a "
            "time",
            "# task_acks_late = true: always on",
            "# worker options -O fair: no hueyq meaning",
            "@app.periodic_task(hueyq.crontab(minute=\"0\", hour=\"2\"))",
            "@app.periodic_task(hueyq.crontab(minute=\"*/5\"))"]:
        assert line in text, line


def test_without_worker_lines_the_default_queue_takes_the_rest(tmp_path):
    from hueyq.profile import load_profile
    done = from_celery(tmp_path, "proj", "--extends", "dev", source='''
        from celery import Celery
        app = Celery("plain")
        app.conf.worker_concurrency = 3
        app.conf.worker_max_memory_per_child = 512000
    ''')
    assert done.returncode == 0, done.stderr
    (tmp_path / "out.toml").write_text(done.stdout)
    profile = load_profile(str(tmp_path / "out.toml"), env={})
    assert profile.queue_names == ("celery",)
    celery_queue = profile.queues["celery"]
    assert (celery_queue.workers, celery_queue.worker_memory_soft) == \
        (3, 500 << 20)
    assert profile.routes == (("*", "celery"),)
    assert 'extends = "dev"' in done.stdout


@pytest.mark.parametrize("args, message", [
    (["nosuchmodule:app"], "cannot import 'nosuchmodule'"),
    (["proj:nothing"], "has no Celery app named 'nothing'"),
    (["proj:app", "--worker-args", "-c many"], "--worker-args '-c many'"),
    (["proj:app", "--worker-args", "--autoscale=x"], "MAX,MIN"),
    (["proj:app", "--extends", "nope"], "'nope' is not a built-in profile"),
])
def test_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    done = from_celery(tmp_path, *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "Traceback" not in done.stderr
