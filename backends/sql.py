"""What the SQL backends share (SQLite, PostgreSQL).

Both keep a queue's messages as rows of one ``hueyq_message`` table with the
same columns, read them into :class:`MessageInfo` the same way and end
leases through their own ``_finish`` and ``_move``. :class:`SqlBackend`
holds those shared readers once; a SQL backend subclasses it in place of
:class:`Backend` and names its driver's parameter placeholder and its
column list (the size of a message is ``length`` on one server and
``octet_length`` on the other).

Both keep jobs' output streams the same way: a row per chunk in
``hueyq_output`` (app, job id, seq) and a head row per job in
``hueyq_output_head`` (its newest seq, chunks, bytes and dropped count, and
when it was last appended to), written in one transaction per append; a
backend adds only its wake-up (``_wake_output``, ``output_waiter``).
"""

import time

from huey.constants import EmptyData

from hueyq.backends.base import (DEAD, Backend, Chunk, MessageInfo,
                                 OutputPage, output_size, read_json)

# An append: the job's head row (numbering the chunk), the chunk, and, past
# the bound, the oldest chunks dropped. "?" is the driver's placeholder.
_OUTPUT_HEAD = (
    "insert into hueyq_output_head (app, job_id, seq, chunks, bytes, dropped,"
    " updated_at) values (?, ?, 1, 1, ?, 0, ?) on conflict (app, job_id) do"
    " update set seq = hueyq_output_head.seq + 1, chunks ="
    " hueyq_output_head.chunks + 1, bytes = hueyq_output_head.bytes +"
    " excluded.bytes, updated_at = excluded.updated_at"
    " returning seq, chunks, bytes")
_OUTPUT_INSERT = ("insert into hueyq_output (app, job_id, seq, data, size, at,"
                  " run) values (?, ?, ?, ?, ?, ?, ?)")
_OUTPUT_OLDEST = ("select seq, size from hueyq_output where app = ? and"
                  " job_id = ? order by seq limit 100")
_OUTPUT_CUT = ("delete from hueyq_output where app = ? and job_id = ? and"
               " seq <= ?")
_OUTPUT_DROPPED = ("update hueyq_output_head set chunks = chunks - ?, bytes ="
                   " bytes - ?, dropped = dropped + ? where app = ? and"
                   " job_id = ?")
_OUTPUT_READ = ("select seq, data, at, run from hueyq_output where app = ? and"
                " job_id = ? and seq > ? order by seq limit ?")
_OUTPUT_READ_HEAD = ("select seq, dropped from hueyq_output_head where"
                     " app = ? and job_id = ?")


class SqlBackend(Backend):
    """The readers and moves the SQL backends share (see the module)."""

    #: The driver's placeholder for one bound parameter.
    placeholder = "?"
    #: The columns :meth:`_info` reads, in its order.
    info_columns = ""
    #: The driver's exception for a table that does not exist.
    missing_table: "tuple[type[BaseException], ...]" = ()

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

    # ------------------------------------------------------------ output

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    def append_output(self, job_id: str, data: str, max_chunks: int,
                      max_bytes: int, ttl: float, run: "int | None" = None
                      ) -> int:
        """Append a chunk in one transaction (see Backend.append_output);
        the SQL backends keep streams until :meth:`purge_output`."""
        size = output_size(data)
        key = (self.app_name, job_id)
        with self.db(commit=True) as curs:
            self._ensure_output(curs)
            curs.execute(self._q(_OUTPUT_HEAD), key + (size, time.time()))
            seq, chunks, total = curs.fetchone()
            curs.execute(self._q(_OUTPUT_INSERT),
                         key + (seq, data, size, time.time(), run))
            if chunks > max_chunks or total > max_bytes:
                self._drop_oldest(curs, key, chunks - max_chunks,
                                  total - max_bytes)
            self._wake_output(curs, job_id)
        self._woken(job_id)
        return seq

    def _drop_oldest(self, curs, key: tuple, chunks: int, size: int) -> None:
        """Drop the oldest chunks until ``chunks`` of them and ``size``
        bytes are gone."""
        dropped = freed = 0
        while dropped < chunks or freed < size:
            curs.execute(self._q(_OUTPUT_OLDEST), key)
            rows = curs.fetchall()
            cut = None
            for seq, each in rows:
                if dropped >= chunks and freed >= size:
                    break
                dropped, freed, cut = dropped + 1, freed + each, seq
            if cut is None:
                break
            curs.execute(self._q(_OUTPUT_CUT), key + (cut,))
        curs.execute(self._q(_OUTPUT_DROPPED),
                     (dropped, freed, dropped) + key)

    def _ensure_output(self, curs) -> None:
        """Create the output tables where an older file lacks them."""

    def _wake_output(self, curs, job_id: str) -> None:
        """Wake the job's followers inside the append's transaction."""

    def _woken(self, job_id: str) -> None:
        """Wake the job's followers once the append is committed."""

    def read_output(self, job_id: str, after: int = 0, limit: int = 1000
                    ) -> OutputPage:
        """Chunks numbered over ``after``, oldest first."""
        key = (self.app_name, job_id)
        try:
            head = self.sql(self._q(_OUTPUT_READ_HEAD), key, results=True)
            rows = self.sql(self._q(_OUTPUT_READ),
                            key + (int(after), int(limit)), results=True) \
                if head else []
        except self.missing_table as exc:
            if "no such table" not in str(exc):
                raise
            return OutputPage([])  # a file from before output streams
        chunks = [Chunk(int(seq), data, float(at), None if run is None
                        else int(run)) for seq, data, at, run in rows]
        if not head:
            return OutputPage(chunks)
        last = max([int(head[0][0])] + [c.seq for c in chunks])
        return OutputPage(chunks, last, int(head[0][1]))

    def delete_output(self, job_ids) -> int:
        """Delete the output streams of these jobs."""
        ids = list(job_ids)
        if not ids:
            return 0
        marks = ", ".join([self.placeholder] * len(ids))
        with self.db(commit=True) as curs:
            self._ensure_output(curs)
            curs.execute("delete from hueyq_output where app = %s and job_id"
                         " in (%s)" % (self.placeholder, marks),
                         [self.app_name] + ids)
            curs.execute("delete from hueyq_output_head where app = %s and"
                         " job_id in (%s)" % (self.placeholder, marks),
                         [self.app_name] + ids)
            return curs.rowcount

    def purge_output(self, before: float) -> int:
        """Delete streams last appended to before ``before``."""
        rows = self.sql(self._q("select job_id from hueyq_output_head where"
                                " app = ? and updated_at < ?"),
                        (self.app_name, before), results=True)
        ids = [row[0] for row in rows]
        for start in range(0, len(ids), 500):
            self.delete_output(ids[start:start + 500])
        return len(ids)

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
