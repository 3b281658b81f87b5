"""Lease owners named without wall clocks: boot id, pid, start ticks."""

import os
import subprocess
import sys
import uuid

from hueyq.owner import (Owner, alive_here, boot_id, owner_name, parse_owner,
                         runtime_id, start_ticks)


def test_an_owner_reads_back_and_old_owners_still_parse():
    name = owner_name("jetson:1", "Worker-2", runtime="10.20", group=77)
    owner = parse_owner(name)
    assert (owner.host, owner.pid, owner.worker) == ("jetson:1", os.getpid(),
                                                     "Worker-2")
    assert (owner.boot, owner.start, owner.runtime, owner.group) == \
        (boot_id(), start_ticks(os.getpid()), "10.20", 77)
    assert owner.name == "jetson:1:%d:Worker-2" % os.getpid()
    assert parse_owner("host:12:Worker-1") == Owner("host", 12, "Worker-1")
    assert parse_owner(None) == Owner(None, None, None)


def test_liveness_by_boot_pid_and_start_ticks():
    me = parse_owner(owner_name("h", "w"))
    assert alive_here(me)
    from dataclasses import replace
    assert not alive_here(replace(me, boot=str(uuid.uuid4())))
    assert not alive_here(replace(me, start=me.start + 1))     # pid reused
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert start_ticks(child.pid) is None
    assert not alive_here(replace(me, pid=child.pid))
    assert runtime_id(os.getpid()) == "%d.%d" % (os.getpid(), me.start)
    assert runtime_id(child.pid) == ""
