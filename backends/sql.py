"""What the SQL backends share (SQLite, PostgreSQL).

Both keep a queue's messages as rows of one ``hueyq_message`` table with the
same columns, read them into :class:`MessageInfo` the same way and end
leases through their own ``_finish`` and ``_move``. :class:`SqlBackend`
holds those shared readers once; a SQL backend subclasses it in place of
:class:`Backend` and names its driver's parameter placeholder and its
column list (the size of a message is ``length`` on one server and
``octet_length`` on the other).
"""

import time

from huey.constants import EmptyData

from hueyq.backends.base import DEAD, Backend, MessageInfo, read_json


class SqlBackend(Backend):
    """The readers and moves the SQL backends share (see the module)."""

    #: The driver's placeholder for one bound parameter.
    placeholder = "?"
    #: The columns :meth:`_info` reads, in its order.
    info_columns = ""

    def pop_data(self, key: str):
        if not self.has_data_for_key(key):
            return EmptyData
        return super().pop_data(key)

    def ack_many(self, acks) -> None:
        """End several leases in one transaction (see :meth:`ack`)."""
        now = time.time()
        refused = []
        with self.db(commit=True) as curs:
            for ack in acks:
                if not self._finish(curs, now, *ack) and len(ack) > 3 \
                        and ack[3] is not None:
                    refused.append(ack)
        for ack in refused:
            self._refused(ack[0], ack[3])

    def message_data(self, handle) -> "bytes | None":
        """The stored bytes of one message."""
        rows = self.sql("select data from hueyq_message where id = %s"
                        % self.placeholder, (handle,), results=True)
        return bytes(rows[0][0]) if rows else None

    def leases(self) -> "list[MessageInfo]":
        """Every leased (running) message of this queue."""
        return self._infos("state = 'running'", (), "updated_at, id")

    def find(self, task_id: str) -> "MessageInfo | None":
        """The message of a job: its lease first, else its newest row."""
        infos = self._infos("task_id = %s" % self.placeholder, (task_id,),
                            "state = 'running' desc, state = 'done', id desc",
                            limit=1)
        return infos[0] if infos else None

    def drain(self, reason: str = "drained") -> "list[MessageInfo]":
        """Move every pending and scheduled message to ``dead``."""
        return self._move("state in ('pending', 'scheduled')", (), DEAD,
                          reason)

    def _infos(self, where: str, params: tuple, order: str,
               limit: "int | None" = None, offset: int = 0
               ) -> "list[MessageInfo]":
        sql = ("select %s from hueyq_message where queue = %s and %s order"
               " by %s" % (self.info_columns, self.placeholder, where, order))
        if limit is not None:
            sql += " limit %d offset %d" % (int(limit), int(offset))
        rows = self.sql(sql, (self.qname,) + tuple(params), results=True)
        return [self._info(row) for row in rows]

    def _info(self, row) -> MessageInfo:
        meta = read_json(row[13], "meta of message %s of %s" % (
            row[0], self.qname)) if row[13] else {}
        return MessageInfo.checked(
            handle=row[0], queue=self.queue, task_id=row[2], name=row[3],
            state=row[4], priority=row[5], enqueued_at=row[6],
            updated_at=row[7], eta=row[8], owner=row[9], redeliveries=row[10],
            last_error=row[11], reason=row[12], meta=meta, size=row[14],
            lease_seq=row[15])
