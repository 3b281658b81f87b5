"""Profiles: built-ins, extends, precedence, and every bad input."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from hueyq.exceptions import ConfigurationError
from hueyq.profile import load_profile, select


def test_builtins_define_the_four_queues():
    for name in ("dev", "jetson", "server", "server-pg"):
        profile = load_profile(name, env={"HUEYQ_DATA_DIR": "/data"})
        assert set(profile.queue_names) == {"high", "medium", "low", "gpu"}
        assert profile.queue_names[0] == "high"
        for queue in profile.queues.values():
            assert queue.workers >= 1
            assert queue.worker_type in ("thread", "process")


def test_jetson_lives_in_the_data_directory_and_server_on_redis():
    jetson = load_profile("jetson", env={"HUEYQ_DATA_DIR": "/srv/q"})
    assert jetson.backend.url == "sqlite:///srv/q/queue.db"
    assert jetson.store.url == "sqlite:///srv/q/store.db"
    xdg = load_profile("jetson", env={"XDG_DATA_HOME": "/home/u/.local/share"})
    if os.geteuid() != 0:
        assert xdg.backend.url == "sqlite:///home/u/.local/share/hueyq/queue.db"
    state = load_profile("jetson", env={"STATE_DIRECTORY": "/var/lib/svc"})
    assert state.backend.url == "sqlite:///var/lib/svc/queue.db"
    server = load_profile("server", env={})
    assert server.backend.url == "redis://127.0.0.1:6379/0"
    remote = load_profile("server", env={"HUEYQ_REDIS_URL": "redis://q:6380/2"})
    assert remote.backend.url == "redis://q:6380/2"
    assert server.security.require_secret


def test_jetson_budgets_fit_an_8gb_device():
    jetson = load_profile("jetson", env={"HUEYQ_DATA_DIR": "/d"})
    total = sum(q.memory_limit or 0 for q in jetson.queues.values())
    assert 4 * 1024 ** 3 < total < 7 * 1024 ** 3
    assert jetson.memory.min_available > 0


def test_dev_keeps_files_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dev = load_profile("dev", env={})
    assert dev.backend.url == "sqlite://%s/.hueyq/queue.db" % tmp_path


def test_extends_and_overrides(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(textwrap.dedent('''
        extends = "jetson"
        app_name = "edge"
        [queues.high]
        workers = 4
        [queues.batch]
        priority = 5
        [routes]
        "chat.*" = "medium"
        "batch.*" = "batch"
    '''))
    profile = load_profile(str(path), env={"HUEYQ_DATA_DIR": "/d"})
    assert profile.name == "mine"
    assert profile.app_name == "edge"
    assert profile.queues["high"].workers == 4
    assert profile.queues["high"].time_limit == 60.0       # kept from jetson
    assert profile.queues["batch"].priority == 5
    assert profile.route("chat.reply", "reply") == "medium"  # file wins
    assert profile.route("ingest.split", "split") == "medium"
    assert profile.route("batch.go", "go") == "batch"
    assert profile.route("other.x", "x") is None


def test_precedence_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('extends = "dev"\n[queues.high]\nworkers = 3\n'
                    '[web]\nbind = "127.0.0.1:9000"\n')
    env = {"HUEYQ_QUEUES__HIGH__WORKERS": "5", "HUEYQ_WEB__BIND": "127.0.0.1:9100",
           "HUEYQ_BACKEND": "redis://10.0.0.1:6379/1", "HUEYQ_SECRET": "s3cret"}
    profile = load_profile(str(path), env=env,
                           overrides={"web.bind": "127.0.0.1:9200"})
    assert profile.queues["high"].workers == 5
    assert profile.web.bind == "127.0.0.1:9200"
    assert profile.backend.url == "redis://10.0.0.1:6379/1"
    assert profile.security.secret == "s3cret"


def test_selection_order():
    assert select("jetson", env={}) == "jetson"
    assert select("jetson", env={"HUEYQ_PROFILE": "server"}) == "server"
    assert select(None, env={}) == "dev"


def test_show_redacts_secrets_and_passwords():
    profile = load_profile("server", env={
        "HUEYQ_SECRET": "topsecret", "HUEYQ_WEB_TOKEN": "tok-of-sixteen-chars",
        "HUEYQ_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0"})
    text = json.dumps(profile.as_dict())
    assert "topsecret" not in text and "hunter2" not in text
    assert "tok-of-sixteen" not in text
    assert profile.as_dict()["security"]["secret"] == "***"
    assert profile.as_dict()["backend"]["url"] == "redis://:***@127.0.0.1:6379/0"


def hueyq(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "hueyq", *args],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, **(env or {})), cwd=cwd)


BAD = {
    "syntax": ("[queues.high\nworkers = 2\n", "TOML syntax error"),
    "unknown key": ('extends = "dev"\n[queues.high]\nwrokers = 2\n',
                    "unknown key queues.high.wrokers"),
    "unknown section": ('extends = "dev"\n[bakend]\nurl = "x"\n', "unknown key bakend"),
    "wrong type": ('extends = "dev"\n[queues.high]\nworkers = "two"\n',
                   "queues.high.workers: expected an integer"),
    "bad size": ('extends = "dev"\n[queues.gpu]\nmemory_limit = "6 gigs"\n',
                 "queues.gpu.memory_limit: expected a size"),
    "bad duration": ('extends = "dev"\n[runtime]\ngrace_period = "soon"\n',
                     "runtime.grace_period: expected a duration"),
    "bad worker type": ('extends = "dev"\n[queues.low]\nworker_type = "fiber"\n',
                        "queues.low.worker_type: expected one of thread, process"),
    "unknown route queue": ('extends = "dev"\n[routes]\n"chat.*" = "hgih"\n',
                            "unknown queue 'hgih'"),
    "bad backend url": ('extends = "dev"\n[backend]\nurl = "mysql://x/y"\n',
                        "backend.url: unsupported backend URL"),
    "bad redis port": ('extends = "dev"\n[backend]\nurl = "redis://h:port/0"\n',
                       "backend.url: bad port"),
    "bad store url": ('extends = "dev"\n[store]\nurl = "mongodb://x"\n',
                      "store.url: unsupported store URL"),
    "bad extends": ('extends = "laptop"\n', "extends: expected a built-in profile"),
    "soft over hard": ('extends = "dev"\n[queues.medium]\nworker_memory_soft = "2GiB"\n'
                       'worker_memory_hard = "1GiB"\n', "worker_memory_soft"),
    "no queues": ('[backend]\nurl = "sqlite://q.db"\n', "queues"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profiles_exit_2_with_one_line_naming_the_key(tmp_path, case):
    content, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(content)
    result = hueyq("profiles", "show", str(path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert str(path) in lines[0] or "built-in" in lines[0]
    assert "Traceback" not in result.stderr
    with pytest.raises(ConfigurationError, match="bad.toml"):
        load_profile(str(path), env={})


def test_missing_file_and_unknown_name_exit_2(tmp_path):
    result = hueyq("status", "--profile", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "profile file not found" in result.stderr
    result = hueyq("status", "--profile", "laptop")
    assert result.returncode == 2
    assert "unknown profile 'laptop'" in result.stderr


def test_bad_environment_value_names_the_variable(tmp_path):
    result = hueyq("profiles", "show", "dev", env={"HUEYQ_QUEUES__HIGH__WORKERS": "many"},
                   cwd=tmp_path)
    assert result.returncode == 2
    assert "HUEYQ_QUEUES__HIGH__WORKERS" in result.stderr
    result = hueyq("profiles", "show", "dev", env={"HUEYQ_QUEUES__HIGH__WROKERS": "2"},
                   cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key queues.high.wrokers" in result.stderr


def test_profiles_list_and_show(tmp_path):
    result = hueyq("profiles", "list")
    assert result.returncode == 0
    assert [l.split()[0] for l in result.stdout.splitlines()] == ["dev", "jetson", "server", "server-pg"]
    result = hueyq("profiles", "show", "jetson", env={"HUEYQ_DATA_DIR": str(tmp_path),
                                                      "HUEYQ_SECRET": "abc"})
    assert result.returncode == 0, result.stderr
    assert "[queues.gpu]" in result.stdout
    assert 'memory_limit = 3221225472  # 3.0 GiB' in result.stdout
    assert "abc" not in result.stdout and 'secret = "***"' in result.stdout


def test_a_file_may_disable_an_inherited_queue(tmp_path):
    path = tmp_path / "nogpu.toml"
    path.write_text('extends = "dev"\n[queues.gpu]\nenabled = false\n')
    profile = load_profile(str(path), env={})
    assert profile.queue_names == ("high", "medium", "low")
    assert profile.route("train.fit", "fit") is None
    path.write_text('extends = "dev"\n[queues.gpu]\nenabled = false\n'
                    '[routes]\n"mine.*" = "gpu"\n')
    with pytest.raises(ConfigurationError, match="unknown queue 'gpu'"):
        load_profile(str(path), env={})


def test_a_generic_profile_toml_is_named_after_its_folder(tmp_path):
    folder = tmp_path / "edge-box"
    folder.mkdir()
    (folder / "profile.toml").write_text('extends = "dev"\n')
    assert load_profile(str(folder / "profile.toml"), env={}).name == "edge-box"
    (folder / "other.toml").write_text('extends = "dev"\n')
    assert load_profile(str(folder / "other.toml"), env={}).name == "other"


def test_server_pg_puts_queues_and_store_on_one_postgresql_url():
    profile = load_profile("server-pg", env={
        "HUEYQ_PG_URL": "postgresql://db.example:5432/jobs",
        "HUEYQ_SECRET": "s" * 32})
    assert profile.backend.url == "postgresql://db.example:5432/jobs"
    assert profile.store.url == profile.backend.url
