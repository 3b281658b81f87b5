"""The PostgreSQL backend under concurrent consumers: real processes
leasing from one queue each get distinct messages, every one exactly once."""

import multiprocessing

from test_backends import msg

from hueyq import backends


def _drain(url, app_name, worker, out):
    storage = backends.open_storage(url, app_name, "high")
    taken, ack = [], None
    while True:
        lease = storage.lease("h:%d:w%d|1" % (worker, worker), ack)
        if lease is None:
            break
        taken.append(lease.task_id)
        ack = (lease.handle, None, None)
    if ack is not None:
        storage.ack(*ack)
    storage.close()
    out.put(taken)


def test_concurrent_consumers_get_every_message_exactly_once(
        postgres_url, app_name):
    storage = backends.open_storage(postgres_url, app_name, "high")
    ids = ["job%04d" % i for i in range(400)]
    storage.enqueue_many((msg(i)[1], 0) for i in ids)
    out = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(
        target=_drain, args=(postgres_url, app_name, n, out))
        for n in range(4)]
    for proc in procs:
        proc.start()
    taken = [out.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(30)
    delivered = [task_id for part in taken for task_id in part]
    assert sorted(delivered) == ids
    assert sum(1 for part in taken if part) >= 2
    assert storage.counts()["pending"] == 0
    storage.close()


def test_a_session_left_idle_in_a_transaction_is_ended_by_the_server(
        postgres_url, app_name):
    # A host cut off between a lease's statements must not hold its rows'
    # locks (and every other host's recovery of them) for hours.
    from hueyq.backends.postgres import IDLE_IN_TRANSACTION
    storage = backends.open_storage(postgres_url, app_name, "high")
    try:
        rows = storage.sql("show idle_in_transaction_session_timeout",
                           results=True)
        assert rows[0][0] == "%ds" % IDLE_IN_TRANSACTION
    finally:
        storage.close()


def test_deliveries_are_numbered_past_the_counter_row_of_an_older_version(
        postgres_url, app_name):
    # Before the app had a sequence of its own, huey's counter row
    # hueyq:seq numbered deliveries; a job record keeps the number of the
    # delivery that wrote it, so the next ones must come after it.
    storage = backends.open_storage(postgres_url, app_name, "high")
    try:
        storage.sql("insert into huey_counter (queue, key, value) values"
                    " (%s, 'hueyq:seq', 5000) on conflict (queue, key) do"
                    " update set value = 5000", (app_name,))
    finally:
        storage.close()
    storage = backends.open_storage(postgres_url, app_name, "high")
    try:
        storage.enqueue_many((msg(i)[1], 0) for i in ("a", "b"))
        first = storage.lease("h:1:w1|1")
        taken = storage.next_seq()
        second = storage.lease("h:1:w1|1", (first.handle, None, None))
        assert 5000 < first.seq < taken < second.seq
    finally:
        storage.close()
