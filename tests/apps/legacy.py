"""One set of tasks, as a huey user had them and as they are on hueyq: the
same decorators on a plain huey (``make_huey``: SqliteHuey, RedisHuey or
PriorityRedisHuey) and on an App (``make_app``), for the tests of ``hueyq
migrate``."""

import hueyq

from apps.basic import attach_tasks


def define(task, priority=None) -> dict:
    @task(queue="high", priority=priority)
    def send(to, subject):
        return "sent %s to %s" % (subject, to)

    @task()
    def resize(path):
        return path

    @task(queue="low", retries=3, retry_delay=60)
    def report(day):
        return day

    @task()
    def add(a, b):
        return a + b

    @task()
    def boom():
        raise ValueError("boom")

    return locals()


def make_app(profile=None, name=None):
    app = hueyq.App(profile, name=name)
    return attach_tasks(app, define(app.task))


def make_huey(kind: str, name: str, where: str):
    """A plain huey (before hueyq) and its tasks, plus one hueyq lacks."""
    from huey import PriorityRedisHuey, RedisHuey, SqliteHuey
    if kind == "sqlite":
        huey = SqliteHuey(name, filename=where)
    else:
        cls = PriorityRedisHuey if kind == "priority-redis" else RedisHuey
        huey = cls(name, url=where)
    tasks = define(huey.task, priority=10 if huey.storage.priority else None)

    @huey.task()
    def obsolete():
        return "gone"
    tasks["obsolete"] = obsolete
    return huey, tasks


def __getattr__(name):
    if name == "app":
        globals()["app"] = make_app()
        return globals()["app"]
    raise AttributeError(name)
