"""Unused database drivers stay out of a runtime's processes
(hueyq/drivers.py): which ones, and that a task can still import them."""

import os
import subprocess
import sys

import pytest

from hueyq import drivers

pytest.importorskip("redis")
pytest.importorskip("psycopg")


@pytest.mark.parametrize("urls, names", [
    (("sqlite:///q.db", "sqlite:///s.db"), ("redis", "psycopg2", "psycopg")),
    (("redis://h/0", "sqlite:///s.db"), ("psycopg2", "psycopg")),
    (("sqlite:///q.db", "postgresql://h/db"), ("redis",)),
    (("redis://h/0", "postgres://h/db"), ()),
    (("mystery://x", "sqlite:///s.db"), ()),
])
def test_unused_drivers_follow_the_urls(urls, names):
    assert drivers.unused(*urls) == names


def _python(code: str, value: "str | None") -> str:
    env = dict(os.environ)
    env.pop(drivers.ENV, None)
    if value is not None:
        env[drivers.ENV] = value
    return subprocess.run([sys.executable, "-c", code], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


CODE = ("import sys, hueyq, huey.storage, peewee\n"
        "print('redis' in sys.modules, huey.storage.Redis is None, "
        "peewee.psycopg is None)\n"
        "import redis\n"
        "print(redis.Redis is not None)\n")


def test_a_process_told_imports_huey_without_them_and_a_task_still_can():
    assert _python(CODE, "redis,psycopg2,psycopg").split() == [
        "False", "True", "True", "True"]


def test_without_the_variable_or_empty_every_driver_loads():
    for value in (None, ""):
        assert _python(CODE, value).split() == [
            "True", "False", "False", "True"]


def test_backend_errors_load_no_backend_that_was_never_used():
    code = ("import sys\nfrom hueyq.app import backend_errors\n"
            "backend_errors()\nprint('redis' in sys.modules)\n"
            "import hueyq.backends.redis as r\n"
            "print(r.RedisError in backend_errors())\n")
    assert _python(code, "redis,psycopg2,psycopg").split() == ["False",
                                                           "True"]
