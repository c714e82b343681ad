"""The MySQL/MariaDB source: setup checks, the binlog dump, and the change stream.

pymysqlreplication does the replication protocol: it connects, announces
checksum support, sets the heartbeat period and sends the dump command
(COM_BINLOG_DUMP by file/position, MySQL's COM_BINLOG_DUMP_GTID, or MariaDB's
``@slave_connect_state``). From then on this module reads the raw packets
itself (`PacketReader`) and decodes them with `events` and `rows`: its own
per-packet event objects and per-column row decoding are what limit
pymysqlreplication's throughput. The one private entry point used is
``BinLogStreamReader._BinLogStreamReader__connect_to_stream`` (mysql-replication
1.0.x), which sends the dump command without reading any event; nothing is
buffered in pymysql at that point, so the socket can be read directly.

Positions. A transaction ends at an XID event, a ``COMMIT`` query, or a
statement outside BEGIN (DDL). `Commit.position` is ``(file, end position of
that event, GTID state)``, where the GTID state is MariaDB's
``gtid_slave_pos``-style list (``domain-server-seq`` per domain) or MySQL's
executed GTID set ('' when GTIDs are off). Resuming there starts right
after the last acknowledged transaction: by GTID state on MariaDB (always;
``@slave_connect_state``) and on MySQL with ``gtid_mode=ON``, otherwise by
file/position. `Change.position` is ``(file, position of the transaction's
first event)``: known before the commit arrives, so a transaction never has
to be held in memory, and the same on every replay.

A quiet server still moves the position: every transaction ends in a
`Commit`, also one that touches no captured table; a new binlog file (ROTATE)
and the server's heartbeats after events that are no transaction (binlog
checkpoints, GTID lists) give a `Commit` too when nothing is open. So the
stored file is never one the server has purged while the pipeline idled.

Schema changes (``schema_changes: true``): a DDL statement that names a
captured table (or a captured database, for CREATE/ALTER/DROP DATABASE)
becomes one op "schema" `Change` per such table, then the statement's own
`Commit`, in binlog order with the row changes around it (see `ddl`).

Snapshot (``snapshot: initial | always | initial_only``; see `snapshot`). open()
starts a consistent-snapshot transaction and reads the binlog position that
matches it; read() hands out the rows as op "read" changes in bursts, then a
`Commit` at that position (its acknowledgement stores ``snapshot_complete``),
and only then connects the binlog dump, from exactly that position.
"""

from __future__ import annotations

import logging
import re
import select
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from json.encoder import encode_basestring
from typing import Any
from urllib.parse import unquote, urlsplit

from cdc.config import MysqlSourceConfig
from cdc.errors import (
    ConnectionLost,
    DecodeError,
    PositionLostError,
    SlotInUse,
    SourceError,
    SourceSetupError,
)
from cdc.model import (
    DELETE,
    EVENT_ID_HEADER,
    INSERT,
    SCHEMA,
    TRUNCATE,
    UPDATE,
    Change,
    Commit,
    JsonValues,
    RecordFormat,
    RowRecords,
    format_position,
)
from cdc.source import snapshot_owed

from . import events as ev
from .ddl import Ddl, parse_ddl
from .errors import classify, is_transient
from .rows import (
    DELETE_EVENTS,
    PARTIAL_UPDATE_ROWS_EVENT,
    ROWS_EVENTS,
    TABLE_MAP_EVENT,
    UPDATE_EVENTS,
    WRITE_EVENTS,
    RowsDecoder,
    TableDecoder,
    accelerator,
)
from .snapshot import SnapshotPosition, TableSnapshot, describe_tables

# What read() gives: changes, whole row-event records, transaction ends.
Item = Change | Commit | RowRecords

log = logging.getLogger("cdc.mysql")

BURST = 5000  # changes handed out per read() at most
# A transaction whose events span more than this waits for no more bytes to be
# rendered whole in C (see _read_scanned): the Python path takes it as it comes,
# a row event at a time. Whole, its records cost several times its binlog size.
SCAN_MAX_BYTES = 1 << 18
SYSTEM_SCHEMAS = frozenset(("mysql", "information_schema", "performance_schema", "sys"))
REPLICA_RELEASE_WAIT = 5.0  # seconds to wait for our own previous connection to go
# One header field (see events.HEADER) for the hot events: timestamp at 1, log_pos at 14.
_U32_AT = struct.Struct("<I").unpack_from
_SERVER_SIZE_POS = struct.Struct("<III").unpack_from  # the header's server_id, size, log_pos
_MARIADB_GTID = ev.MARIADB_GTID.unpack_from
_TRUNCATE = re.compile(r"^\s*truncate\s+(?:table\s+)?(?:`?([^`.\s]+)`?\s*\.\s*)?`?([^`\s;]+)`?",
                       re.IGNORECASE)  # fmt: skip
_DDL = re.compile(r"^\s*(alter|create|drop|rename)\s", re.IGNORECASE)
_JSON_CHECK = re.compile(r"json_valid\(`?([^`)]+)`?\)", re.IGNORECASE)


def parse_dsn(dsn: str) -> dict[str, Any]:
    """mysql://user:pass@host:port/db -> pymysql connection keywords (and "database")."""
    url = urlsplit(dsn)
    return {
        "host": url.hostname or "127.0.0.1",
        "port": url.port or 3306,
        "user": unquote(url.username or ""),
        "password": unquote(url.password or ""),
        "database": url.path.strip("/") or None,
    }


class PacketReader:
    """MySQL protocol packets from a socket, with our own buffer so that `pending()`
    can tell whether a read would block (pymysql's buffered file cannot)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.pos = 0

    def pending(self, timeout: float) -> bool:
        if self.pos < len(self.buf):
            return True
        readable, _, _ = select.select([self.sock], [], [], timeout)
        return bool(readable)

    def _need(self, n: int) -> None:
        have = len(self.buf) - self.pos
        if have >= n:
            return
        chunks = [self.buf[self.pos :]]
        while have < n:
            try:
                chunk = self.sock.recv(max(n - have, 1 << 18))
            except OSError as e:
                raise ConnectionLost(f"binlog connection lost: {e}") from e
            if not chunk:
                raise ConnectionLost("the server closed the binlog connection")
            chunks.append(chunk)
            have += len(chunk)
        self.buf = b"".join(chunks)
        self.pos = 0

    def packets(self) -> list[bytes]:
        """The payloads of every whole packet already buffered, in order; at least
        one (read from the socket if none is buffered, a continuation joined)."""
        buf, pos, size = self.buf, self.pos, len(self.buf)
        out = []
        while pos + 4 <= size:
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            end = pos + 4 + length
            if end > size or length == 0xFFFFFF:
                break
            out.append(buf[pos + 4 : end])
            pos = end
        self.pos = pos
        if not out:
            out.append(self.packet())
        return out

    def next_packet(self) -> bytes | None:
        """The next packet's payload where it is whole in the buffer (one continued
        in further packets is read to its end); None where it is not."""
        buf, pos = self.buf, self.pos
        if pos + 4 > len(buf):
            return None
        length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
        if length == 0xFFFFFF:
            return self.packet()
        end = pos + 4 + length
        if end > len(buf):
            return None
        self.pos = end
        return buf[pos + 4 : end]

    def fill(self, timeout: float) -> bool:
        """Wait up to `timeout` for the socket, then add what it has to the buffer;
        False where nothing came."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable:
            return False
        self._need(len(self.buf) - self.pos + 1)
        return True

    def packet(self) -> bytes:
        """The next packet's payload (continuation packets joined)."""
        parts = []
        while True:
            self._need(4)
            buf, pos = self.buf, self.pos
            length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
            self.pos = pos + 4
            self._need(length)
            start = self.pos
            self.pos = start + length
            parts.append(self.buf[start : self.pos])
            if length < 0xFFFFFF:
                return parts[0] if len(parts) == 1 else b"".join(parts)


class MysqlSource:
    """Streams committed row changes of a MySQL or MariaDB server's binlog.

    Example::

        source = MysqlSource(config, name="orders")
        source.open(None)                 # or the dict position_to_store gave
        for item in source.read(0.1):     # Change ..., Commit
            ...
    """

    # Resume by GTID where the server has GTIDs (MariaDB: always). Tests turn it off
    # to run the plain file/position dump (MySQL with gtid_mode=OFF) against MariaDB.
    resume_by_gtid = True

    def __init__(self, config: MysqlSourceConfig, name: str = "mysql"):
        self.name = name
        self.config = config
        self.finished = False
        self.start_position: tuple[str, int, str] | None = None
        self._conn_args = parse_dsn(config.dsn)
        self._tables = (
            None if config.tables is None else {tuple(t.split(".", 1)) for t in config.tables}
        )
        self._excluded = {tuple(t.split(".", 1)) for t in config.exclude_tables}
        self._wanted_cache: dict[tuple[str, str], bool] = {}
        self._lower_names = False  # lower_case_table_names != 0: DDL names compare lower-cased
        self.is_mariadb = True
        self._reader: Any = None  # pymysqlreplication's BinLogStreamReader
        self._packets: PacketReader | None = None
        self._ctl: Any = None  # a pymysql connection for catalog lookups
        self._checksum = True
        self._decoder: RowsDecoder | None = None
        # Set (before open) by a pipeline without mappers whose format can take
        # rows rendered by the decoder: see RenderedRow.
        self.json_values: JsonValues | None = None
        # Set (before open) by a pipeline without mappers whose error policy is
        # `fail` and whose format gives record templates: the records of row
        # events, and of whole MariaDB transactions, rendered here (RowRecords).
        self.record_format: RecordFormat | None = None
        self._record_plans: dict[TableDecoder, Any] = {}  # the C RecordPlan, or None
        self._scanner: Any = None  # whole MariaDB transactions in C (_read_scanned)
        self._file = ""
        self._file_json = b'""'  # the file's name as JSON text
        self._id_file = b":"  # format_position's text of a position in the file, before it
        self._last_packet = time.monotonic()
        self._silence_limit = max(3 * config.heartbeat_interval, 30.0)
        # transaction state
        self._in_txn = False
        self._txn_open = False  # GTID/BEGIN seen, Commit not yet given
        self._txn_pos: tuple[str, int] = ("", 0)
        self._txn_gtid: str | None = None
        self._txn_seq: int | None = None
        self._txn_domain = 0
        self._txn_source: dict[str, Any] = {}
        self._index = 0
        self._burst_rows = 0  # rows in this read's RowRecords, beyond one per item
        # Where the last Commit handed out ends, and the end of the last event outside
        # a transaction since (a heartbeat then moves the position there).
        self._last_commit: tuple[str, int] = ("", 0)
        self._idle_end = 0
        self._gtid_state: dict[int, str] = {}  # MariaDB: domain -> last GTID
        self._gtid_text = ""  # the GTID state as text, as of the last commit
        self._mysql_gtids: Any = None  # MySQL: pymysqlreplication GtidSet
        self._acked: Any = None
        self._pending: list[Item] = []  # decoded during open(), given by read()
        # The snapshot (snapshot: initial | always | initial_only), read before streaming.
        self._snapshot: TableSnapshot | None = None
        self._snapshot_rows: Iterator[Change] | None = None
        self._snapshot_owed = False  # True until the snapshot's Commit has been handed out
        self._stream_from: tuple[str, int, str] = ("", 0, "")

    # -- setup ----------------------------------------------------------------------

    def _connect_ctl(self) -> Any:
        import pymysql

        args = dict(self._conn_args)
        args.pop("database")
        try:
            return pymysql.connect(**args, autocommit=True, charset="utf8mb4",
                                   connect_timeout=10)  # fmt: skip
        except pymysql.err.MySQLError as e:
            raise classify(e, f"cannot connect to {self.config.redacted()}") from e

    def open(self, stored_position: Any | None) -> None:
        owed = snapshot_owed(self.config.snapshot, stored_position)
        if not owed and self.config.snapshot == "initial_only":
            log.info("snapshot already complete (snapshot: initial_only): nothing to do")
            self.finished = True
            return
        ctl = self._ctl = self._connect_ctl()
        try:
            variables = self._check_server(ctl)
            self._lower_names = variables.get("lower_case_table_names", "0") != "0"
            self._check_grants(ctl)
            self._check_server_id(ctl, variables)
            if owed:
                position = self._begin_snapshot(ctl, variables)
                # Streaming continues exactly at the snapshot's binlog position.
                stored_position = {"file": position.file, "pos": position.pos,
                                   "gtid_set": position.gtid}  # fmt: skip
            file, pos, gtid = self._start_position(ctl, variables, stored_position)
        except SourceError:
            self._end_snapshot()
            raise
        except Exception as e:
            import pymysql

            self._end_snapshot()
            if isinstance(e, (pymysql.err.MySQLError, OSError)):
                raise classify(e, f"setting up {self.config.redacted()}") from e
            raise
        self._decoder = RowsDecoder(
            is_mariadb=self.is_mariadb,
            json_columns=self._json_columns if self.is_mariadb else None,
            json_values=self.json_values,
        )
        if self.record_format is not None and self.is_mariadb and accelerator is not None:
            self._scanner = accelerator.Scanner(self._checksum)
        self._set_file(file)
        self._last_commit = (file, pos)
        self._acked = self.start_position = (file, pos, gtid)
        self._stream_from = (file, pos, gtid)
        if owed:
            return  # streaming starts once the snapshot is read (in read())
        self._start_streaming()

    def _start_streaming(self) -> None:
        file, pos, gtid = self._stream_from
        by_gtid = self._connect_stream(file, pos, gtid)
        log.info(
            "streaming the binlog of %s (%s) from %s:%d (%s) as server_id %d",
            self.config.redacted(), "MariaDB" if self.is_mariadb else "MySQL", file, pos,
            f"by GTID state {gtid!r}" if by_gtid else "by file and position",
            self.config.server_id,
        )  # fmt: skip
        # The server answers the dump command at once: a purged position shows here.
        if self._packets is not None and self._packets.pending(10.0):
            self._handle(self._packets.packet(), self._pending)

    def _begin_snapshot(self, ctl: Any, variables: dict[str, str]) -> SnapshotPosition:
        listed = None if self._tables is None else sorted(self._tables)
        tables = describe_tables(
            ctl, self._wanted, listed,  # type: ignore[arg-type]
            self._json_columns if self.is_mariadb else None,
        )  # fmt: skip
        snapshot = self._snapshot = TableSnapshot(
            self._conn_args, self.is_mariadb, int(variables.get("server_id") or 0)
        )
        position = snapshot.begin()
        self._snapshot_rows = snapshot.changes(tables, burst=BURST)
        self._snapshot_owed = True
        log.info(
            "snapshot of %d table(s) at binlog %s:%d%s (%s)", len(tables), position.file,
            position.pos, f", GTID {position.gtid!r}" if position.gtid else "",
            "consistent snapshot, no lock" if self.is_mariadb
            else "consistent snapshot, global read lock while reading the position",
        )  # fmt: skip
        return position

    def _end_snapshot(self) -> None:
        snapshot, self._snapshot = self._snapshot, None
        rows, self._snapshot_rows = self._snapshot_rows, None
        if rows is not None:
            rows.close()  # type: ignore[attr-defined]
        if snapshot is not None:
            snapshot.close()

    def _check_server(self, ctl: Any) -> dict[str, str]:
        with ctl.cursor() as cur:
            cur.execute("SELECT VERSION()")
            version = str(cur.fetchone()[0])
            cur.execute("SHOW GLOBAL VARIABLES")
            variables = {str(k).lower(): str(v) for k, v in cur.fetchall()}
        self.is_mariadb = "mariadb" in version.lower()
        self._checksum = variables.get("binlog_checksum", "NONE").upper() != "NONE"

        def require(name: str, wanted: str, how: str) -> None:
            value = variables.get(name)
            if value is None or value.upper() != wanted:
                raise SourceSetupError(
                    f"{name} is {value!r} on {self.config.redacted()}; change data capture "
                    f"needs {name}={wanted}: {how}"
                )

        restart = "in the server's option file ([mysqld] section) and restart it"
        require("log_bin", "ON", f"set log_bin (e.g. log-bin=binlog) {restart}")
        for name, wanted in (("binlog_format", "ROW"), ("binlog_row_image", "FULL"),
                             ("binlog_row_metadata", "FULL")):  # fmt: skip
            require(
                name, wanted,
                f"run SET GLOBAL {name} = '{wanted}'; and set {name}={wanted} {restart} "
                "(sessions that are already open keep the old value until they reconnect)",
            )  # fmt: skip
        if variables.get("binlog_transaction_compression", "OFF").upper() == "ON":
            raise SourceSetupError(
                "binlog_transaction_compression is ON: compressed transactions are not "
                "decoded; run SET GLOBAL binlog_transaction_compression = OFF; (and in the "
                "option file)"
            )
        if variables.get("binlog_row_value_options", "").upper() == "PARTIAL_JSON":
            raise SourceSetupError(
                "binlog_row_value_options is PARTIAL_JSON: partial JSON updates are not "
                "decoded; run SET GLOBAL binlog_row_value_options = ''; (and in the option file)"
            )
        return variables

    def _check_grants(self, ctl: Any) -> None:
        with ctl.cursor() as cur:
            cur.execute("SHOW GRANTS")
            grants = " ".join(str(r[0]).upper() for r in cur.fetchall())
        everything = "GRANT ALL PRIVILEGES ON *.*" in grants
        slave = everything or "REPLICATION SLAVE" in grants or "REPLICATION REPLICA" in grants
        client = everything or any(
            g in grants for g in ("REPLICATION CLIENT", "BINLOG MONITOR", "SUPER")
        )
        if not (slave and client):
            missing = [n for n, ok in (("REPLICATION SLAVE", slave),
                                       ("REPLICATION CLIENT", client)) if not ok]  # fmt: skip
            user = self._conn_args["user"]
            raise SourceSetupError(
                f"user {user!r} lacks {' and '.join(missing)}: run GRANT REPLICATION SLAVE, "
                f"REPLICATION CLIENT ON *.* TO '{user}'@'%'; (MariaDB 10.5+: REPLICATION "
                "CLIENT is called BINLOG MONITOR)"
            )

    def _check_server_id(self, ctl: Any, variables: dict[str, str]) -> None:
        sid = self.config.server_id
        if variables.get("server_id") == str(sid):
            raise SourceSetupError(
                f"source.server_id {sid} is the server's own server_id: choose another one"
            )
        # A predecessor that died without closing stays registered until the server
        # next writes to it: at most one heartbeat.
        deadline = time.monotonic() + max(REPLICA_RELEASE_WAIT, self.config.heartbeat_interval + 2)
        while True:
            ids = self._replica_ids(ctl)
            if ids is None or sid not in ids:
                return
            if time.monotonic() > deadline:
                raise SlotInUse(
                    f"another replica is connected with server_id {sid} (SHOW SLAVE HOSTS): "
                    "give this pipeline a unique source.server_id, or stop the other reader"
                )
            time.sleep(0.5)

    def _replica_ids(self, ctl: Any) -> set[int] | None:
        """server_ids of the connected replicas; None when this user may not list them.

        Listing needs more than the grants streaming needs (MariaDB 10.5+: REPLICATION
        MASTER ADMIN): without it the check is skipped, and a clash shows up as the
        server ending one of the two dumps.
        """
        import pymysql

        statements = ("SHOW REPLICA HOSTS", "SHOW SLAVE HOSTS", "SHOW REPLICAS")
        for sql in statements:
            try:
                with ctl.cursor() as cur:
                    cur.execute(sql)
                    return {int(r[0]) for r in cur.fetchall()}
            except pymysql.err.ProgrammingError:
                continue  # this server spells it differently
            except pymysql.err.OperationalError as e:
                if e.args and e.args[0] in (1227, 1044, 1142):
                    log.warning(
                        "cannot list replicas to check that server_id %d is unique (%s); "
                        "grant REPLICATION MASTER ADMIN (MariaDB) or REPLICATION SLAVE "
                        "ADMIN / REPLICATION CLIENT (MySQL) to have it checked",
                        self.config.server_id, e.args[1] if len(e.args) > 1 else e,
                    )
                    return None
                raise
        return None

    def _start_position(
        self, ctl: Any, variables: dict[str, str], stored: dict[str, Any] | None
    ) -> tuple[str, int, str]:
        with ctl.cursor() as cur:
            cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
            cur.execute("SHOW BINARY LOGS")
            files = [str(r[0]) for r in cur.fetchall()]
        if row is None:
            raise SourceSetupError("SHOW MASTER STATUS returns nothing: is log_bin on?")
        gtid_on = self.is_mariadb or variables.get("gtid_mode", "OFF").upper() == "ON"
        if stored and stored.get("file"):
            file, pos = str(stored["file"]), int(stored["pos"])
            gtid = str(stored.get("gtid_set") or "")
            if not (gtid_on and gtid) and file not in files:
                raise PositionLostError(
                    f"binlog {file} (the stored position {file}:{pos}) is no longer on the "
                    f"server (oldest: {files[0] if files else 'none'}): changes since then "
                    "are lost to log mining. Re-snapshot the tables, then remove the offsets "
                    "file to start from the current position"
                )
            if self.is_mariadb and not gtid:
                # MariaDB resumes by GTID state only; derive it from file:pos (a start
                # position saved before the server logged any GTID has none).
                with ctl.cursor() as cur:
                    cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
                    found = cur.fetchone()
                if found is None or found[0] is None:
                    raise PositionLostError(
                        f"the stored position {file}:{pos} cannot be turned into a GTID "
                        "state (is the binlog purged?); re-snapshot the tables, then remove "
                        "the offsets file"
                    )
                gtid = str(found[0])
        else:
            file, pos = str(row[0]), int(row[1])
            if self.is_mariadb:
                with ctl.cursor() as cur:
                    cur.execute("SELECT @@GLOBAL.gtid_binlog_pos")
                    gtid = str(cur.fetchone()[0] or "")
            else:
                gtid = str(variables.get("gtid_executed", "")) if gtid_on else ""
                gtid = gtid.replace("\n", "")
        if self.is_mariadb:
            self._gtid_state = {
                int(g.split("-")[0]): g for g in gtid.replace(" ", "").split(",") if g
            }
            self._gtid_text = ",".join(self._gtid_state[d] for d in sorted(self._gtid_state))
        elif gtid_on and gtid:
            from pymysqlreplication.gtid import GtidSet

            self._mysql_gtids = GtidSet(gtid)
            self._gtid_text = str(self._mysql_gtids)
        return file, pos, self._gtid_text if gtid_on else ""

    def _connect_stream(self, file: str, pos: int, gtid: str) -> bool:
        """Connect and send the dump command; True when it resumes by GTID state."""
        from pymysqlreplication import BinLogStreamReader

        args = dict(self._conn_args)
        args.pop("database")
        use_gtid = bool(gtid) and self.resume_by_gtid and (
            self.is_mariadb or self._mysql_gtids is not None
        )
        reader = BinLogStreamReader(
            connection_settings=args,
            server_id=self.config.server_id,
            blocking=True,
            resume_stream=True,
            log_file=file,
            log_pos=pos,
            auto_position=gtid if use_gtid else None,
            # pymysqlreplication's MariaDB dump ignores file and position (it always
            # sends @slave_connect_state): a dump by file/position is the plain
            # COM_BINLOG_DUMP, which MariaDB serves too.
            is_mariadb=self.is_mariadb and use_gtid,
            slave_heartbeat=self.config.heartbeat_interval,
            report_slave=f"cdc-{self.name}",
            enable_logging=False,
        )
        connect = getattr(reader, "_BinLogStreamReader__connect_to_stream", None)
        if connect is None:
            raise SourceError(
                "this version of mysql-replication has no __connect_to_stream; "
                "install mysql-replication 1.0.x"
            )
        try:
            connect()
        except Exception as e:
            raise classify(e, "cannot start the binlog dump") from e
        self._reader = reader
        self._packets = PacketReader(reader._stream_connection._sock)
        self._last_packet = time.monotonic()
        return use_gtid

    def _json_columns(self, schema: str, table: str) -> set[str]:
        """MariaDB's JSON columns of a table: LONGTEXT with a json_valid() CHECK."""
        try:
            if self._ctl is None:
                self._ctl = self._connect_ctl()
            with self._ctl.cursor() as cur:
                cur.execute(
                    "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
                    "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s", (schema, table),
                )  # fmt: skip
                clauses = [str(r[0]) for r in cur.fetchall()]
        except Exception as e:
            log.warning("cannot look up the JSON columns of %s.%s: %s", schema, table, e)
            self._ctl = None
            return set()
        return {m.group(1) for c in clauses for m in _JSON_CHECK.finditer(c)}

    def _wanted(self, schema: str, table: str) -> bool:
        key = (schema, table)
        ok = self._wanted_cache.get(key)
        if ok is None:
            if self._tables is not None:
                ok = key in self._tables
            else:
                ok = schema not in SYSTEM_SCHEMAS
            ok = ok and key not in self._excluded
            self._wanted_cache[key] = ok
        return ok

    # -- streaming ------------------------------------------------------------------

    def read(self, timeout: float) -> Sequence[Item]:
        if self._snapshot_rows is not None:
            return self._read_snapshot()
        packets = self._packets
        if packets is None:
            if self.finished:
                time.sleep(timeout)  # initial_only: done, the pipeline is draining
            return ()
        out, self._pending = self._pending, []
        if not packets.pending(0 if out else timeout):
            self._check_silence()
            return out
        # Rows count, not items: a RowRecords item holds every row of its event.
        self._burst_rows = 0
        if self._scanner is not None:
            self._read_scanned(packets, out, timeout)
            return out
        handle = self._handle
        while len(out) + self._burst_rows < BURST:
            # What one socket read brought (up to 256 kB): a burst may pass BURST by that.
            for packet in packets.packets():
                handle(packet, out)
            if not packets.pending(0):
                break
        self._last_packet = time.monotonic()
        return out

    def _check_silence(self) -> None:
        if time.monotonic() - self._last_packet > self._silence_limit:
            raise ConnectionLost(
                f"no data or heartbeat from the server for {self._silence_limit:.0f}s"
            )

    def _read_scanned(self, packets: PacketReader, out: list[Item], timeout: float) -> None:
        """A burst where whole MariaDB transactions are rendered in C (the scanner):
        between transactions it takes every whole one in the buffer at once
        (_scan); what it leaves (events between transactions, a transaction of
        another shape, one too big to wait for) goes packet by packet through
        _handle, up to that transaction's end."""
        handle = self._handle
        while len(out) + self._burst_rows < BURST:
            if not self._txn_open:
                stop = self._scan(packets, out)
                if stop == accelerator.SCAN_FULL:
                    break
                if (stop == accelerator.SCAN_INCOMPLETE
                        and len(packets.buf) - packets.pos < SCAN_MAX_BYTES):  # fmt: skip
                    # The rest of the transaction is on its way (a server writes it
                    # whole at commit): read on, without waiting once there is work.
                    if not packets.fill(0 if out else timeout):
                        self._check_silence()
                        return
                    self._last_packet = time.monotonic()
                    continue
            packet = packets.next_packet()
            if packet is None:
                if not packets.fill(0):
                    break
                continue
            handle(packet, out)
        self._last_packet = time.monotonic()

    def _scan(self, packets: PacketReader, out: list[Item]) -> int:
        """The whole transactions at the buffer's head, rendered by the scanner: their
        records (RowRecords) and one Commit for them all; why it stopped (SCAN_*)."""
        pos, stop, records, commit_times, rows, end, seq = self._scanner.scan(
            packets.buf, packets.pos, self._file_json, self._id_file, self._gtid_state,
            BURST - len(out) - self._burst_rows,
        )  # fmt: skip
        packets.pos = pos
        if commit_times:
            if records:
                out.append(RowRecords(records, rows))
                self._burst_rows += rows - 1  # the item itself counts one
            self._gtid_text = self._mariadb_gtid_text()
            out.append(Commit((self._file, end, self._gtid_text), seq, commit_times[-1],
                              commit_times[:-1]))  # fmt: skip
            self._last_commit = (self._file, end)
            self._idle_end = 0
        return int(stop)

    def _read_snapshot(self) -> list[Item]:
        """The next burst of snapshot rows; after the last, the Commit whose position
        is the snapshot's binlog position, then streaming starts there."""
        rows, snapshot = self._snapshot_rows, self._snapshot
        assert rows is not None and snapshot is not None
        out: list[Item] = []
        append = out.append
        for change in rows:
            append(change)
            if len(out) >= BURST:
                return out
        self._snapshot_rows = None
        self._snapshot = None
        log.info("snapshot read: %d rows", snapshot.rows_read)
        file, pos, gtid = self._stream_from
        # Once acknowledged, the offsets record the snapshot as complete.
        # No commit time: a snapshot is not a transaction of the log, and its
        # duration is no commit-to-ack latency.
        out.append(Commit((file, pos, self._gtid_text), None, 0))
        self._snapshot_owed = False
        if self.config.snapshot == "initial_only":
            self.finished = True
        else:
            self._start_streaming()
        return out

    def _handle(self, packet: bytes, out: list[Item]) -> None:
        first = packet[0]
        if first != 0:
            if first == 0xFF:
                code = packet[1] | packet[2] << 8
                message = packet[9:].decode(errors="replace")
                if code == 4052 or "same server_uuid/server_id" in message:
                    # MariaDB's ER_SLAVE_SAME_ID; MySQL says it in an error 1236, which
                    # must not read as a purged binlog.
                    raise SlotInUse(
                        f"another replica connected with server_id {self.config.server_id} "
                        f"and the server ended this pipeline's binlog dump ({message}): give "
                        "this pipeline a unique source.server_id, or stop the other reader"
                    )
                if code == 1236:
                    raise PositionLostError(
                        f"the server cannot resume the binlog at the stored position: "
                        f"{message}. The binlog was probably purged: re-snapshot the tables, "
                        "then remove the offsets file to start from the current position"
                    )
                text = f"binlog dump failed: error {code}: {message}"
                raise ConnectionLost(text) if is_transient(code) else SourceSetupError(text)
            if first == 0xFE and len(packet) < 9:
                raise ConnectionLost("the server ended the binlog stream")
            return
        etype = packet[5]
        if etype == ev.MARIADB_ANNOTATE_ROWS_EVENT and self._txn_open:
            return  # the statement text before each row event (MariaDB's default): unused
        body = packet[20 : len(packet) - 4] if self._checksum else packet[20:]
        decoder = self._decoder
        assert decoder is not None
        # The hot events first, reading only the header fields they need.
        if etype in ROWS_EVENTS:
            table = decoder.decoder(body)
            if table is not None:
                self._rows(packet, etype, body, table, out)
            return
        if etype == TABLE_MAP_EVENT:
            table = decoder.table_map(body, self._wanted)
            if self._scanner is not None:
                self._learn(body, table)
            return
        if etype == ev.XID_EVENT:
            self._commit(_U32_AT(packet, 14)[0], _U32_AT(packet, 1)[0], out)
            return
        if etype == ev.MARIADB_GTID_EVENT:
            server_id, size, log_pos = _SERVER_SIZE_POS(packet, 6)
            seq, domain, flags = _MARIADB_GTID(packet, 20)  # the body starts at 20
            self._begin(log_pos - size)
            self._txn_gtid = f"{domain}-{server_id}-{seq}"
            self._txn_seq = seq
            self._txn_domain = domain
            self._in_txn = not flags & ev.MARIADB_FL_STANDALONE
            return
        header = ev.Header(*ev.HEADER.unpack_from(packet, 1))
        if etype in (ev.GTID_EVENT, ev.ANONYMOUS_GTID_EVENT):
            self._begin(header.log_pos - header.size)
            self._txn_gtid = ev.parse_mysql_gtid(body) if etype == ev.GTID_EVENT else None
            self._txn_seq = None
        elif etype == ev.QUERY_EVENT:
            self._query(header, body, out)
        elif etype == ev.ROTATE_EVENT:
            file, pos = ev.parse_rotate(body)
            self._set_file(file)
            self._idle_end = 0
            decoder.forget_ids()
            if self._scanner is not None:
                self._scanner.forget()
            # A real rotate (not the one the server sends first on connecting) ends the
            # old file: nothing open is left in it, the position moves to the new one.
            if header.log_pos and not header.flags & ev.ARTIFICIAL_FLAG:
                self._idle(file, pos, out)
        elif etype == ev.HEARTBEAT_EVENT or etype == ev.HEARTBEAT_V2_EVENT:
            if self._idle_end:
                self._idle(self._file, self._idle_end, out)
        elif etype == PARTIAL_UPDATE_ROWS_EVENT:
            raise DecodeError(
                "a partial JSON update (binlog_row_value_options=PARTIAL_JSON) arrived: it "
                "cannot be decoded into full rows; run SET GLOBAL binlog_row_value_options = '';"
            )
        elif etype == ev.TRANSACTION_PAYLOAD_EVENT or etype in ev.MARIADB_COMPRESSED_EVENTS:
            raise DecodeError(
                f"a compressed binlog event (type {etype}) arrived: turn off "
                "binlog_transaction_compression (MySQL) / log_bin_compress (MariaDB)"
            )
        elif header.log_pos and not self._txn_open:
            # Between transactions: binlog checkpoints, GTID lists, format descriptions.
            self._idle_end = header.log_pos

    def _idle(self, file: str, pos: int, out: list[Item]) -> None:
        """Nothing open and the server is at `file`:`pos`: a Commit there, if it is ahead
        of the last one (binlog file names sort in creation order)."""
        if self._txn_open:
            return
        last_file, last_pos = self._last_commit
        if file < last_file or (file == last_file and pos <= last_pos):
            return
        self._last_commit = (file, pos)
        self._idle_end = 0
        # No commit time: nothing was committed, so no commit-to-ack latency to measure.
        out.append(Commit((file, pos, self._gtid_text), None, 0))

    def _begin(self, start: int) -> None:
        """A transaction starts at `start` (its first event's position)."""
        self._txn_open = True
        self._txn_pos = (self._file, start)
        self._index = 0
        self._txn_source = {}

    def _source_block(self, server_id: int) -> dict[str, Any]:
        block = self._txn_source
        if not block:
            block = self._txn_source = {
                "connector": "mysql",
                "server_id": server_id,
                "gtid": self._txn_gtid,
                "file": self._file,
            }
        return block

    def _rows(self, packet: bytes, etype: int, body: bytes, table: Any,
              out: list[Item]) -> None:  # fmt: skip
        timestamp, _, server_id, size, log_pos, _ = ev.HEADER.unpack_from(packet, 1)
        start = log_pos - size
        if not self._txn_open:  # a server without GTID/BEGIN events: the rows start it
            self._begin(start)
        op = INSERT if etype in WRITE_EVENTS else UPDATE if etype in UPDATE_EVENTS else DELETE
        assert etype in WRITE_EVENTS or etype in UPDATE_EVENTS or etype in DELETE_EVENTS
        schema, name, columns = table.schema, table.table, table.columns
        position = self._txn_pos
        txid = self._txn_seq
        ts = timestamp * 1_000_000
        source = self._txn_source or self._source_block(server_id)
        file = self._file
        index = self._index
        append = out.append
        if self.record_format is not None and self._records(
            op, table, etype, body, timestamp, start, source, out
        ):
            return
        try:
            rows = table.keyed_rows(body, etype)
        except (IndexError, struct.error) as e:  # an image shorter than its columns
            raise DecodeError(
                f"cannot decode the row event of {schema}.{name} at {file}:{start} "
                f"({e}); the position stays before its transaction: report it"
            ) from e
        for row, (before, after, key) in enumerate(rows):
            # Positional: measurably faster than keywords on this path.
            append(Change(op, schema, "", name, key, before, after, columns, position, txid,
                          ts, index, (), False, (file, start, row), source))  # fmt: skip
            index += 1
        self._index = index

    def _query(self, header: ev.Header, body: bytes, out: list[Item]) -> None:
        default_schema, sql = ev.parse_query(body)
        word = " ".join(sql[:40].split()).upper()
        if word.startswith("XA "):
            # The rows of an XA transaction are logged at XA PREPARE and only become
            # real at a later XA COMMIT: publishing them here could publish rows
            # that are rolled back. Stop rather than guess.
            raise SourceError(
                f"XA transaction at {self._file}:{header.log_pos} ({sql[:60]!r}): XA "
                "transactions are not supported yet; exclude the tables they touch"
            )
        if word.startswith("BEGIN"):
            if not self._txn_open:
                self._begin(header.log_pos - header.size)
            self._in_txn = True
            return
        if word.startswith(("SAVEPOINT", "ROLLBACK TO", "RELEASE SAVEPOINT")):
            return  # inside the transaction: not its end
        if word.startswith(("COMMIT", "ROLLBACK")):
            self._commit(header.log_pos, header.timestamp, out)
            return
        if not self._txn_open:
            self._begin(header.log_pos - header.size)
        m = _TRUNCATE.match(sql)
        if m:
            schema = m.group(1) or default_schema
            table = m.group(2)
            if self._wanted(schema, table):
                where = (self._file, header.log_pos - header.size, 0)
                out.append(Change(TRUNCATE, schema, "", table, None, None, None, {},
                                  self._txn_pos, self._txn_seq, header.timestamp * 1_000_000,
                                  self._index, log_pos=where,
                                  source=self._source_block(header.server_id)))  # fmt: skip
                self._index += 1
        else:
            ddl = parse_ddl(sql)
            if ddl is not None or _DDL.match(sql):
                log.info("schema change in %s: %s", default_schema or "-", sql[:200])
            if ddl is not None and self.config.schema_changes:
                self._schema_change(header, default_schema, sql, ddl, out)
        if not self._in_txn:
            self._commit(header.log_pos, header.timestamp, out)

    def _schema_change(self, header: ev.Header, default_schema: str, sql: str, ddl: Ddl,
                       out: list[Item]) -> None:  # fmt: skip
        """One op "schema" change per captured table the statement names (one for a
        captured database, for a database-level statement)."""
        lower = self._lower_names
        targets: list[tuple[str, str]] = []
        for db, table in ddl.tables:
            db = db or default_schema
            if not db:
                continue  # an unqualified name without a default database: cannot be ours
            key = (db.lower(), table.lower()) if lower else (db, table)
            if key not in targets and self._wanted(*key):
                targets.append(key)
        if not ddl.tables:
            db = ddl.database or default_schema
            if lower:
                db = db.lower()
            if db and self._captured_database(db):
                targets.append((db, ""))
        if not targets:
            return
        after = {"ddl": sql, "kind": ddl.kind, "default_database": default_schema}
        where = (self._file, header.log_pos - header.size, 0)
        ts = header.timestamp * 1_000_000
        source = self._source_block(header.server_id)
        for db, table in targets:
            out.append(Change(SCHEMA, db, "", table, None, None, dict(after), {}, self._txn_pos,
                              self._txn_seq, ts, self._index, log_pos=where,
                              source=source))  # fmt: skip
            self._index += 1

    def _captured_database(self, db: str) -> bool:
        if db in SYSTEM_SCHEMAS:
            return False
        return self._tables is None or any(schema == db for schema, _ in self._tables)

    def _records(self, op: str, table: TableDecoder, etype: int, body: bytes, timestamp: int,
                 start: int, source: dict[str, Any], out: list[Item]) -> bool:  # fmt: skip
        """The row event as whole Kafka records (RowRecords), where the format and
        the C reader can make them; False where its rows must be decoded."""
        plan = self._record_plan(table)
        if plan is None:
            return False
        gtid = source["gtid"]
        context = (timestamp, source["server_id"],
                   b"null" if gtid is None else encode_basestring(gtid).encode(),
                   self._file_json, start, f"{format_position(self._txn_pos)}/".encode(),
                   self._index)  # fmt: skip
        records = plan.render(body, etype, context)
        if records is None:
            return False
        assert self.record_format is not None
        rows = len(records) // 2 if op == DELETE and self.record_format.tombstones else len(records)
        out.append(RowRecords(records, rows))
        self._index += rows
        self._burst_rows += rows - 1  # the item itself counts one
        return True

    def _record_plan(self, table: TableDecoder) -> Any:
        """How a table version's row events become whole records (the C RecordPlan,
        made once); None where the format or the C reader cannot make them."""
        try:
            return self._record_plans[table]
        except KeyError:
            pass
        spec, plan = self.record_format, None
        image = table.full_image() if spec is not None else None
        if spec is not None and image is not None:
            per_op = spec.per_op(table.schema, "", table.table, table.columns,
                                 {"connector": "mysql"})  # fmt: skip
            if per_op is not None:
                templates, topics = per_op
                plan = accelerator.RecordPlan(image, templates, topics, spec.tombstones,
                                              EVENT_ID_HEADER)  # fmt: skip
        self._record_plans[table] = plan
        return plan

    def _learn(self, body: bytes, table: TableDecoder | None) -> None:
        """Teach the scanner a TABLE_MAP: the rows of its table rendered by the table's
        plan, or skipped (a table not captured). A table without a plan is not
        taught: its transactions stay on the Python path."""
        if table is None:
            self._scanner.learn(body[:6], body[6:], None)
            return
        plan = self._record_plan(table)
        if plan is not None:
            self._scanner.learn(body[:6], body[6:], plan)

    def _set_file(self, file: str) -> None:
        self._file = file
        self._file_json = encode_basestring(file).encode()
        self._id_file = f"{file}:".encode()  # format_position((file, pos)) is "file:pos"

    def _mariadb_gtid_text(self) -> str:
        """MariaDB's GTID state as text: the last GTID of every domain."""
        state = self._gtid_state
        if len(state) == 1:
            for gtid in state.values():
                return gtid
        return ",".join(state[d] for d in sorted(state))

    def _commit(self, log_pos: int, timestamp: int, out: list[Item]) -> None:
        """The transaction ends with the event that ends at `log_pos`."""
        gtid = self._txn_gtid
        if gtid is not None:
            if self.is_mariadb:
                self._gtid_state[self._txn_domain] = gtid
                self._gtid_text = self._mariadb_gtid_text()
            elif self._mysql_gtids is not None:
                from pymysqlreplication.gtid import Gtid

                self._mysql_gtids.merge_gtid(Gtid(gtid))
                self._gtid_text = str(self._mysql_gtids)
        out.append(Commit((self._file, log_pos, self._gtid_text), self._txn_seq,
                          timestamp * 1_000_000))  # fmt: skip
        self._last_commit = (self._file, log_pos)
        self._idle_end = 0
        self._txn_open = False
        self._in_txn = False
        self._txn_gtid = None
        self._txn_seq = None

    # -- checkpoints ----------------------------------------------------------------

    def ack(self, position: Any) -> None:
        self._acked = position

    def tick(self, idle: bool) -> None:
        """Nothing to send: the server's heartbeats keep the dump connection alive."""

    def position_to_store(self, position: Any) -> dict[str, Any]:
        file, pos, gtid = position
        # Every position handed out during a run with a snapshot comes after the
        # snapshot's Commit: once one is acknowledged, the snapshot is complete.
        return {"source": "mysql", "file": file, "pos": pos, "gtid_set": gtid,
                "snapshot_complete": not self._snapshot_owed}  # fmt: skip

    def close(self) -> None:
        self._end_snapshot()
        reader, self._reader = self._reader, None
        self._packets = None
        ctl, self._ctl = self._ctl, None
        if reader is not None:
            thread_id = None
            try:
                thread_id = reader._stream_connection.thread_id()
                reader.close()
            except Exception:  # already broken: nothing left to release
                pass
            # The server only notices a closed dump connection when it next writes to
            # it (up to a heartbeat later) and keeps our server_id registered until
            # then: end it now, so a restart right away does not find it "in use".
            if ctl is not None and thread_id is not None:
                try:
                    with ctl.cursor() as cur:
                        cur.execute(f"KILL CONNECTION {int(thread_id)}")
                except Exception:
                    pass  # already gone
        if ctl is not None:
            try:
                ctl.close()
            except Exception:
                pass
