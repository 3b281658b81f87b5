"""The memory room (hueyq.memory): one formula for the watchdog, the
backends' lease and status, and what a waiting job shows."""

import pytest

from hueyq.memory import ROOM_FLAG, fits, memory_room, waiting

from test_backends import GIB, admission_queue, owner

MIB = 1024 ** 2


def test_the_room_is_the_budget_less_use_and_declared_never_below_zero():
    assert memory_room(2 * GIB, 512 * MIB) == 1536 * MIB
    assert memory_room(2 * GIB, 512 * MIB, [256 * MIB, 256 * MIB]) == GIB
    assert memory_room(GIB, 3 * GIB) == 0
    assert memory_room(GIB, 0, 2 * GIB) == 0


@pytest.mark.parametrize("need,room,ok", [
    (None, 0, True), (0, 0, True), (GIB, None, True), (GIB, GIB, True),
    (GIB + 1, GIB, False)])
def test_fits(need, room, ok):
    assert fits(need, room) is ok


def test_waiting_says_what_is_needed_and_left():
    assert waiting(3 * GIB, 1200 * MIB) == \
        "memory: needs 3.0 GiB, 1.2 GiB left of the queue's budget"


def test_a_budget_shrunk_under_running_tasks_leaves_no_room_and_no_waiting_for_a_task_that_declared_nothing(storage):
    big, small, plain = admission_queue(storage)
    storage.set_flag(ROOM_FLAG, 2 * GIB)
    assert storage.lease(owner()).task_id == small       # 1 GiB running
    storage.set_flag(ROOM_FLAG, 0)                        # the queue grew
    assert storage.memory_room() == 0
    # The big one waits; the one that declared nothing is taken next.
    assert storage.waiting_for_memory(storage.memory_room()) == 1
    assert storage.lease(owner(2)).task_id == plain
