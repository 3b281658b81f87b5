"""`hueyq migrate`: a plain huey's queue (a SqliteHuey file, RedisHuey and
PriorityRedisHuey keys, written by the installed huey in a process of its
own) moved into hueyq's backend, task by task to its queue, dry run first,
idempotent, unknown tasks kept as dead letters."""

import datetime
import json
import os
import subprocess
import sys

import pytest
from huey.exceptions import TaskException

from conftest import HERE


#: Run by the installed huey alone, as the user's old code did.
WRITER = r"""
import datetime, json, sys
from apps.legacy import make_huey
huey, t = make_huey(sys.argv[1], sys.argv[2], sys.argv[3])
ids = {}
eta = datetime.datetime.utcnow().replace(microsecond=0) + \
    datetime.timedelta(hours=1)
ids["report"] = t["report"].schedule(("monday",), eta=eta, retries=5).id
ids["eta"] = eta.isoformat()
huey.execute(huey.dequeue())        # a worker moves it into the schedule
ids["add"] = t["add"](1, 2).id
ids["boom"] = t["boom"]().id
while len(huey):                    # a worker ran these two: results kept
    huey.execute(huey.dequeue())
ids["send"] = t["send"]("ann@example.com", "hi").id
ids["urgent"] = t["send"]("bob@example.com", "now", priority=50).id \
    if huey.storage.priority else t["send"]("bob@example.com", "now").id
ids["resize"] = t["resize"]("/img/1.png").id
revoked = t["resize"]("/img/2.png")
revoked.revoke()
ids["revoked"] = revoked.id
ids["obsolete"] = t["obsolete"]().id
assert huey.scheduled_count() == 1 and len(huey) == 5
print(json.dumps(ids))
"""

@pytest.fixture(params=["sqlite", "redis", "priority-redis"])
def legacy(request, tmp_path, app_name):
    """(URL, ids) of a plain huey's storage with work in it."""
    kind = request.param
    if kind == "sqlite":
        where = str(tmp_path / "huey.db")
        url = "sqlite://" + where
    else:
        where = url = request.getfixturevalue("redis_session").url
    out = subprocess.run([sys.executable, "-c", WRITER, kind, app_name,
                          where], env=dict(os.environ, PYTHONPATH=str(HERE)),
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return url, json.loads(out.stdout), kind


def hueyq_migrate(profile, *args):
    env = dict(os.environ, PYTHONPATH=str(HERE), HUEYQ_PROFILE=str(profile))
    return subprocess.run([sys.executable, "-m", "hueyq", "migrate", "--app",
                           "apps.legacy"] + list(args), capture_output=True,
                          text=True, env=env, cwd=profile.parent)


@pytest.mark.slow
def test_migrate_moves_a_plain_huey_s_queue(legacy, profile_path, make_app,
                                           app_name, inline):
    url, ids, kind = legacy
    dry = hueyq_migrate(profile_path, "--from", url, "--name", app_name)
    assert dry.returncode == 0, dry.stderr
    assert "dry run, nothing written" in dry.stdout
    assert "high       would move 2 pending, 0 scheduled" in dry.stdout
    assert "unknown task apps.legacy.obsolete (%s)" % ids["obsolete"] \
        in dry.stdout
    app = make_app(profile_path, "apps.legacy")
    assert app.pending_count() == app.scheduled_count() == 0

    done = hueyq_migrate(profile_path, "--from", url, "--name", app_name,
                         "--apply", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["moved"] == {"high": {"pending": 2, "scheduled": 0},
                               "medium": {"pending": 2, "scheduled": 0},
                               "low": {"pending": 0, "scheduled": 1}}
    assert (report["results"], report["revokes"]) == (2, 1)
    assert report["dead_letters"] == [{"id": ids["obsolete"], "queue":
                                       "medium",
                                       "task": "apps.legacy.obsolete"}]
    assert report["undecodable"] == []

    # Each task on its queue, with its priority, eta and retries.
    high = app.huey("high").pending()
    assert {t.id for t in high} == {ids["send"], ids["urgent"]}
    if kind != "redis":    # RedisHuey has no priorities
        assert [t.id for t in high] == [ids["urgent"], ids["send"]]
        assert [m.priority for m in app.storage("high").list_messages(
            "pending")] == [50, 10]
    report_task, = app.huey("low").scheduled()
    assert report_task.id == ids["report"] and report_task.retries == 5
    assert report_task.eta == datetime.datetime.fromisoformat(ids["eta"])
    assert app.job(ids["report"]).state == "scheduled"
    assert app.result(ids["add"], preserve=True) == 3
    with pytest.raises(TaskException, match="boom"):
        app.result(ids["boom"], preserve=True)
    assert app.is_revoked(ids["revoked"])
    dead = app.job(ids["obsolete"])
    assert (dead.state, dead.reason, dead.queue) == ("dead", "unknown_task",
                                                     "medium")

    again = hueyq_migrate(profile_path, "--from", url, "--name", app_name,
                          "--apply", "--json")
    assert json.loads(again.stdout)["moved"] == {}
    assert app.pending_count() == 4 and app.scheduled_count() == 1

    # They are hueyq's messages now: the real worker runs them.
    inline(app, "high").run()
    inline(app, "medium").run()
    assert app.result(ids["send"]) == "sent hi to ann@example.com"
    assert app.result(ids["resize"]) == "/img/1.png"
    assert app.job(ids["revoked"]).state == "cancelled"


@pytest.mark.slow
def test_migrate_refuses_what_it_cannot_read(profile_path, tmp_path):
    missing = hueyq_migrate(profile_path, "--from",
                            "sqlite://%s" % (tmp_path / "none.db"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "hueyq: no huey database at %s" % (
        tmp_path / "none.db")
    wrong = hueyq_migrate(profile_path, "--from", "ftp://host/x")
    assert wrong.returncode == 2 and "not a huey storage URL" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1


def test_the_decoder_reads_what_huey_s_serializers_wrote():
    from huey.registry import Message
    from huey.serializer import Serializer, SignedSerializer
    from hueyq.migrate import Decoder
    message = Message("id1", "apps.legacy.add", None, 2, 0, 5, (1, 2), {},
                      None, None, None, None, None, None, None)
    for serializer in (Serializer(), Serializer(compression=True),
                       Serializer(compression=True, use_zlib=True)):
        assert Decoder()(serializer.serialize(message)) == message
    signed = SignedSerializer("s3cret", compression=True).serialize(message)
    assert Decoder("s3cret")(signed) == message
    with pytest.raises(ValueError, match="mismatch"):
        Decoder("wrong")(signed)
