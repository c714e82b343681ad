"""The streaming replication protocol over psycopg's low-level connection.

`ReplicationStream` owns one walsender connection: it starts logical
replication, hands out the XLogData payloads, answers keepalives and sends
standby status updates. It knows nothing of pgoutput; the source decides what
LSN is safe to confirm and passes it to `send_status()`.
"""

from __future__ import annotations

import select
import struct
import time

import psycopg
from psycopg import pq

from cdc.errors import CdcError, ConnectionLost, SlotInUse, SourceError, SourceSetupError

from .lsn import format_lsn, now_pg_us, parse_lsn

_XLOGDATA_HEADER = struct.Struct("!QQq")  # wal start, wal end, server time
_KEEPALIVE = struct.Struct("!Qq?")  # wal end, server time, reply requested
_STATUS = struct.Struct("!cQQQq?")  # 'r', written, flushed, applied, client time, reply


# GUCs of the walsender session: pgoutput formats values with the session's
# output functions, so they fix the text forms the type converters expect.
SESSION_OPTIONS = (
    "-c DateStyle=ISO -c IntervalStyle=postgres -c TimeZone=UTC "
    "-c extra_float_digits=3 -c bytea_output=hex"
)


# SQLSTATE classes of errors that a new connection may not see again:
# connection exceptions, operator intervention (shutdown, "cannot connect now").
_TRANSIENT_SQLSTATE = ("08", "57")


def classify(e: psycopg.Error, what: str) -> CdcError:
    """A psycopg error as ConnectionLost (worth a retry) or SourceSetupError (needs a fix)."""
    text = f"{what}: {str(e).strip()}"
    state = e.sqlstate
    if isinstance(e, psycopg.OperationalError) and (
        state is None or state.startswith(_TRANSIENT_SQLSTATE)
    ):
        return ConnectionLost(text)
    return SourceSetupError(text)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class ReplicationStream:
    """One logical replication connection in CopyBoth mode."""

    def __init__(self, dsn: str, application_name: str = "cdc"):
        self._dsn = dsn
        self._application_name = application_name
        self._conn: psycopg.Connection | None = None
        self._pgconn: pq.abc.PGconn | None = None
        self.keepalive_lsn = 0  # wal end of the last keepalive (what the server has sent)
        self.reply_requested = False
        self.last_status = 0.0
        self.streaming = False  # True once START_REPLICATION succeeded
        self._confirmed = 0

    # -- connection -----------------------------------------------------------------

    def connect(self) -> None:
        try:
            self._conn = psycopg.Connection.connect(
                self._dsn,
                autocommit=True,
                replication="database",
                options=SESSION_OPTIONS,
                application_name=self._application_name,
            )
        except psycopg.Error as e:
            raise classify(e, "cannot open a replication connection") from e
        self._pgconn = self._conn.pgconn

    def command(self, sql: str) -> list[tuple[str | None, ...]]:
        """Run a replication command (simple query protocol) and return its rows as text."""
        pgconn = self._require()
        res = pgconn.exec_(sql.encode())
        if res.status not in (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK):
            raise self._failure(res, sql.split("(")[0].strip())
        rows = []
        for r in range(res.ntuples):
            row = []
            for c in range(res.nfields):
                v = res.get_value(r, c)
                row.append(None if v is None else bytes(v).decode())
            rows.append(tuple(row))
        return rows

    def create_slot(self, slot: str, export_snapshot: bool = False) -> tuple[int, str | None]:
        """Create a pgoutput slot; returns its consistent point and exported snapshot name.

        An exported snapshot stays importable only until this connection runs
        its next command.
        """
        mode = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        rows = self.command(f"CREATE_REPLICATION_SLOT {quote_ident(slot)} LOGICAL pgoutput {mode}")
        return parse_lsn(rows[0][1] or "0/0"), rows[0][2]

    def start(self, slot: str, start_lsn: int, options: dict[str, str]) -> None:
        opts = ", ".join(f"{quote_ident(k)} {_quote_literal(v)}" for k, v in options.items())
        sql = (
            f"START_REPLICATION SLOT {quote_ident(slot)} LOGICAL {format_lsn(start_lsn)} ({opts})"
        )
        pgconn = self._require()
        pgconn.send_query(sql.encode())
        res = pgconn.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_BOTH:
            raise self._failure(res, "START_REPLICATION")
        pgconn.nonblocking = 1
        self._confirmed = start_lsn
        self.streaming = True

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                pass
        self._conn = None
        self._pgconn = None

    def _require(self) -> pq.abc.PGconn:
        if self._pgconn is None:
            raise SourceError("replication connection is not open")
        return self._pgconn

    def _failure(self, res: pq.abc.PGresult | None, what: str) -> CdcError:
        """The error for a failed command: lost connection, slot in use, or a setup problem."""
        pgconn = self._require()
        raw = (res.error_message if res is not None else b"") or pgconn.error_message
        text = f"{what} failed: {raw.decode(errors='replace').strip()}"
        state = res.error_field(pq.DiagnosticField.SQLSTATE) if res is not None else None
        if pgconn.status == pq.ConnStatus.BAD or (state or b"").startswith((b"08", b"57")):
            return ConnectionLost(text)
        if state == b"55006":  # object_in_use: another walsender holds the slot
            return SlotInUse(text)
        return SourceSetupError(text)

    # -- streaming ------------------------------------------------------------------

    def messages(self, timeout: float, limit: int = 2000) -> list[tuple[int, bytes]]:
        """Up to `limit` (wal_start, payload) pairs, waiting at most `timeout` for the first.

        Keepalives are handled here: their LSN is recorded and a requested
        reply is flagged for the next `send_status` (which ends the burst).
        """
        pgconn = self._require()
        get = pgconn.get_copy_data
        header = _XLOGDATA_HEADER.unpack_from
        out: list[tuple[int, bytes]] = []
        append = out.append
        waited = False
        while len(out) < limit:
            try:
                nbytes, data = get(1)
            except psycopg.Error as e:
                raise ConnectionLost(f"replication connection lost: {str(e).strip()}") from e
            if nbytes > 0:
                kind = data[0]
                if kind == 0x77:  # 'w' XLogData
                    wal_start, wal_end, _ = header(data, 1)
                    append((wal_start, bytes(data[25:])))  # one copy, owned: decoders keep it
                elif kind == 0x6B:  # 'k' primary keepalive
                    wal_end, _, reply = _KEEPALIVE.unpack_from(data, 1)
                    self.keepalive_lsn = wal_end
                    if reply:
                        self.reply_requested = True
                        return out  # let the caller answer now
                continue
            if nbytes == 0:
                if out or waited:
                    return out
                waited = True
                self._wait_readable(timeout)
                continue
            if nbytes == -1:
                res = pgconn.get_result()
                msg = res.error_message.decode(errors="replace").strip() if res else ""
                raise ConnectionLost(f"replication stream ended by the server {msg}".strip())
            raise ConnectionLost(
                "replication connection failed: "
                + pgconn.error_message.decode(errors="replace").strip()
            )
        return out

    def _wait_readable(self, timeout: float) -> None:
        pgconn = self._require()
        if timeout > 0:
            readable, _, _ = select.select([pgconn.socket], [], [], timeout)
            if not readable:
                return
        try:
            pgconn.consume_input()
        except psycopg.OperationalError as e:
            raise ConnectionLost(f"replication connection lost: {str(e).strip()}") from e

    def send_status(self, flush_lsn: int, reply: bool = False) -> None:
        """Report `flush_lsn` as written, flushed and applied.

        The server moves the slot's confirmed_flush_lsn to it, so it must only
        ever be a position whose every event the broker has acknowledged.
        """
        pgconn = self._require()
        if flush_lsn < self._confirmed:
            flush_lsn = self._confirmed  # never move backwards
        msg = _STATUS.pack(b"r", flush_lsn, flush_lsn, flush_lsn, now_pg_us(), reply)
        try:
            # 0: the send buffer is full (non-blocking mode): flush, then retry.
            while pgconn.put_copy_data(msg) == 0:
                self._flush(pgconn)
            self._flush(pgconn)
        except psycopg.Error as e:
            raise ConnectionLost(f"cannot send standby status: {str(e).strip()}") from e
        self._confirmed = flush_lsn
        self.reply_requested = False
        self.last_status = time.monotonic()

    @staticmethod
    def _flush(pgconn: pq.abc.PGconn) -> None:
        # Non-blocking mode: flush() returns 1 while bytes remain queued.
        deadline = time.monotonic() + 10.0
        while True:
            state = pgconn.flush()
            if state == 0:
                return
            if state < 0 or time.monotonic() > deadline:
                raise ConnectionLost(
                    "cannot send standby status: "
                    + pgconn.error_message.decode(errors="replace").strip()
                )
            select.select([], [pgconn.socket], [], 1.0)

    @property
    def confirmed_lsn(self) -> int:
        return self._confirmed
