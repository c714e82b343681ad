"""The initial snapshot of a MySQL/MariaDB source: every row as an op "read" change.

Consistency. The rows are read in one ``START TRANSACTION WITH CONSISTENT
SNAPSHOT, READ ONLY`` (REPEATABLE READ) session, and the binlog position that
matches that snapshot is read in the same session:

- MariaDB (tested): no lock at all. ``SHOW STATUS LIKE 'binlog_snapshot_%'``
  gives the binlog file/position of the consistent snapshot (MariaDB keeps it
  for exactly this purpose); MariaDB 10.11 has no ``binlog_snapshot_gtid``, so
  the GTID state is ``BINLOG_GTID_POS(file, position)``.
- MySQL (not testable here): ``FLUSH TABLES WITH READ LOCK`` is held only while
  the transaction starts and ``SHOW MASTER STATUS`` (8.4: ``SHOW BINARY LOG
  STATUS``) reads file, position and executed GTID set, then ``UNLOCK TABLES``.

Streaming then starts exactly at that position: a transaction committed before
it is in the snapshot, one after it is streamed, none both (exactly once).

Values. Rows come over the text protocol without any client-side conversion
(raw bytes, ``character_set_results = NULL`` so text arrives in its column's
own character set, ``time_zone = '+00:00'``) and are converted per column so
that they equal what `rows` decodes from the binlog for the same row: the
same Python types, the same `Change.columns` type names, the same codecs.
FLOAT is read as ``CAST(c AS DOUBLE)`` (the text form of a FLOAT keeps only 6
digits) and rounded to single precision, as the binlog's 4 bytes are.

Rows are streamed with an unbuffered cursor (pymysql ``SSCursor``) and handed
out in bursts, so memory stays bounded whatever the table size.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import struct
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any, NamedTuple

from cdc.errors import SourceSetupError
from cdc.model import READ, Change

from .errors import classify
from .rows import _time_value, geometry_value, python_encoding

log = logging.getLogger("cdc.mysql")

Converter = Callable[[bytes], Any]
_GEOMETRY = frozenset(("geometry", "point", "linestring", "polygon", "multipoint",
                       "multilinestring", "multipolygon", "geometrycollection",
                       "geomcollection"))  # fmt: skip
_TEXT = frozenset(("tinytext", "text", "mediumtext", "longtext"))
_BLOB = frozenset(("tinyblob", "blob", "mediumblob", "longblob"))
_TIME = re.compile(rb"^(-?)(\d+):(\d\d):(\d\d)(?:\.(\d+))?$")
_FLOAT32 = struct.Struct("<f")
_UTC = dt.UTC


class SnapshotPosition(NamedTuple):
    """The binlog position matching the snapshot: streaming resumes exactly here."""

    file: str
    pos: int
    gtid: str  # MariaDB GTID state / MySQL executed GTID set; '' when GTIDs are off


class SnapshotTable(NamedTuple):
    schema: str
    table: str
    names: tuple[str, ...]
    converters: tuple[Converter, ...]
    columns: dict[str, str]  # column -> type name, as rows.column_reader names it
    key_names: tuple[str, ...]
    select: str


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


# -- conversions from the text protocol (raw bytes) to the binlog decoder's values --


def _int(raw: bytes) -> Any:
    return int(raw)


def _float32(raw: bytes) -> Any:
    return _FLOAT32.unpack(_FLOAT32.pack(float(raw)))[0]


def _float64(raw: bytes) -> Any:
    return float(raw)


def _decimal(raw: bytes) -> Any:
    return Decimal(raw.decode())


def _date(raw: bytes) -> Any:
    text = raw.decode()
    try:
        return dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10]))
    except ValueError:
        return text  # zero dates: the server's text form, as the binlog decoder gives


def _time(raw: bytes) -> Any:
    m = _TIME.match(raw)
    if m is None:
        return raw.decode()
    sign, hours, minutes, seconds, frac = m.groups()
    us = int((frac or b"0").ljust(6, b"0")[:6])
    hms = int(hours) << 12 | int(minutes) << 6 | int(seconds)
    return _time_value(bool(sign), hms, us)


def _datetime_parts(text: str) -> dt.datetime:
    frac = text[20:26] if len(text) > 19 else ""
    return dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                       int(text[14:16]), int(text[17:19]),
                       int(frac.ljust(6, "0")) if frac else 0)  # fmt: skip


def _datetime(raw: bytes) -> Any:
    text = raw.decode()
    try:
        return _datetime_parts(text)
    except ValueError:
        return text  # zero dates


def _timestamp(raw: bytes) -> Any:
    text = raw.decode()
    try:
        return _datetime_parts(text).replace(tzinfo=_UTC)
    except ValueError:
        if not text.strip("0-: ."):
            return "0000-00-00 00:00:00"  # as rows._timestamp2 gives it, whatever the fsp
        return text


def _bool_bit(raw: bytes) -> Any:
    return raw != b"\0" * len(raw)


def _bits(raw: bytes) -> Any:
    return raw[::-1]  # big-endian on the wire, little-endian from the binlog decoder


def _geometry(raw: bytes) -> Any:
    return geometry_value(raw)  # 4-byte SRID, then WKB, as in the binlog


def _bytes(raw: bytes) -> Any:
    return raw


def _text(encoding: str) -> Converter:
    def convert(raw: bytes) -> Any:
        return raw.decode(encoding)

    return convert


def _json_text(encoding: str) -> Converter:
    loads = json.loads

    def convert(raw: bytes) -> Any:
        text = raw.decode(encoding)
        try:
            return loads(text)
        except ValueError:
            return text

    return convert


def column_converter(
    data_type: str,
    column_type: str,
    precision: int | None,
    scale: int | None,
    fsp: int | None,
    collation: int | None,
    json_text: bool,
) -> tuple[Converter, str, str]:
    """(converter, type name, select expression template) of one column.

    The type names are those `rows.column_reader` gives the same column from a
    TABLE_MAP, so snapshot and streamed changes carry the same `columns`.
    """  # fmt: skip
    t = data_type.lower()
    unsigned = "unsigned" in column_type.lower()
    plain = "{}"
    if t == "tinyint":
        return _int, "int2", plain
    if t == "smallint":
        return _int, "int4" if unsigned else "int2", plain
    if t == "mediumint":
        return _int, "int4", plain
    if t in ("int", "integer"):
        return _int, "int8" if unsigned else "int4", plain
    if t == "bigint":
        return _int, "int8", plain
    if t == "float":
        return _float32, "float4", "CAST({} AS DOUBLE)"
    if t in ("double", "real", "double precision"):
        return _float64, "float8", plain
    if t in ("decimal", "numeric"):
        return _decimal, f"numeric({precision or 10},{scale or 0})", plain
    if t == "year":
        return _int, "int2", plain
    if t == "date":
        return _date, "date", plain
    if t == "time":
        return _time, "time", plain
    if t == "datetime":
        return _datetime, f"timestamp({fsp or 0})", plain
    if t == "timestamp":
        return _timestamp, f"timestamptz({fsp or 0})", plain
    if t == "bit":
        return (_bool_bit, "bool", plain) if precision == 1 else (_bits, "bytea", plain)
    if t in _GEOMETRY:
        return _geometry, "point" if t == "point" else "geometry", plain
    if t == "json":  # MySQL's own JSON type
        return _json_text("utf-8"), "json", plain
    encoding = python_encoding(collation)
    if t in ("enum", "set"):
        return _text(encoding or "utf-8"), t, plain
    if t in ("binary", "varbinary") or t in _BLOB or encoding is None:
        return _bytes, "bytea", plain
    if t == "char":
        return _text(encoding), "bpchar", plain
    if t == "varchar":
        return _text(encoding), "varchar", plain
    if t in _TEXT:
        if json_text:
            return _json_text(encoding), "json", plain
        return _text(encoding), "text", plain
    # Types the binlog decoder does not name either (e.g. MariaDB UUID/INET6):
    # their text form.
    log.warning("column type %s has no exact snapshot conversion: using its text", column_type)
    return _text(encoding), "text", plain


# -- catalog --------------------------------------------------------------------


def describe_tables(
    ctl: Any,
    wanted: Callable[[str, str], bool],
    listed: list[tuple[str, str]] | None,
    json_columns: Callable[[str, str], set[str]] | None,
) -> list[SnapshotTable]:
    """The base tables to snapshot (those listed, or every wanted one), with their
    columns in table order and primary key."""
    with ctl.cursor() as cur:
        cur.execute(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') "
            "ORDER BY TABLE_SCHEMA, TABLE_NAME"
        )
        existing = [(str(s), str(t)) for s, t in cur.fetchall()]
    if listed is not None:
        present = set(existing)
        for schema, table in listed:
            if (schema, table) not in present:
                log.warning("table %s.%s does not exist (yet): nothing to snapshot", schema, table)
        chosen = [t for t in listed if t in present and wanted(*t)]
    else:
        chosen = [t for t in existing if wanted(*t)]
    tables = []
    for schema, table in chosen:
        with ctl.cursor() as cur:
            cur.execute(
                "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.COLUMN_TYPE, c.NUMERIC_PRECISION, "
                "c.NUMERIC_SCALE, c.DATETIME_PRECISION, co.ID "
                "FROM information_schema.COLUMNS c LEFT JOIN information_schema.COLLATIONS co "
                "ON co.COLLATION_NAME = c.COLLATION_NAME "
                "WHERE c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s ORDER BY c.ORDINAL_POSITION",
                (schema, table),
            )
            columns = cur.fetchall()
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' ORDER BY SEQ_IN_INDEX",
                (schema, table),
            )
            key_names = tuple(str(r[0]) for r in cur.fetchall())
        json_names = json_columns(schema, table) if json_columns is not None else set()
        names, converters, exprs = [], [], []
        types: dict[str, str] = {}
        for name, data_type, column_type, prec, scale, fsp, collation in columns:
            name = str(name)
            convert, type_name, expr = column_converter(
                str(data_type), str(column_type),
                None if prec is None else int(prec), None if scale is None else int(scale),
                None if fsp is None else int(fsp), None if collation is None else int(collation),
                name in json_names,
            )  # fmt: skip
            names.append(name)
            converters.append(convert)
            types[name] = type_name
            exprs.append(expr.format(quote(name)))
        select = f"SELECT {', '.join(exprs)} FROM {quote(schema)}.{quote(table)}"
        tables.append(SnapshotTable(schema, table, tuple(names), tuple(converters), types,
                                    key_names, select))  # fmt: skip
    return tables


# -- the snapshot ---------------------------------------------------------------


def _lost(e: Exception, what: str) -> Exception:
    import pymysql

    if isinstance(e, (pymysql.err.MySQLError, OSError)):
        return classify(e, what)
    return e


class TableSnapshot:
    """One consistent read of `tables`; `position` is where the binlog continues.

    Example::

        snap = TableSnapshot(conn_args, is_mariadb=True, server_id=1)
        position = snap.begin()                 # transaction + matching binlog position
        for change in snap.changes(tables): ...
    """

    def __init__(self, conn_args: dict[str, Any], is_mariadb: bool, server_id: int = 0):
        self.conn_args = conn_args
        self.is_mariadb = is_mariadb
        self.server_id = server_id
        self.position: SnapshotPosition | None = None
        self.commit_ts = int(time.time() * 1_000_000)
        self.rows_read = 0
        self._conn: Any = None

    def begin(self) -> SnapshotPosition:
        import pymysql
        import pymysql.converters
        from pymysql.cursors import SSCursor

        args = dict(self.conn_args)
        args.pop("database", None)
        # Encoders for the parameters, no decoders: every value arrives as bytes.
        encoders = {k: v for k, v in pymysql.converters.conversions.items() if type(k) is not int}
        try:
            conn = self._conn = pymysql.connect(
                **args, autocommit=True, charset="utf8mb4", connect_timeout=10,
                use_unicode=False, conv=encoders, cursorclass=SSCursor,
            )  # fmt: skip
            with conn.cursor() as cur:
                # Raw values in each column's own character set, TIMESTAMPs in UTC;
                # a slow consumer must not make the server drop the cursor.
                for sql in ("SET SESSION character_set_results = NULL",
                            "SET SESSION time_zone = '+00:00'",
                            "SET SESSION net_write_timeout = 3600",
                            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"):  # fmt: skip
                    cur.execute(sql)
                self.position = (self._begin_mariadb(cur) if self.is_mariadb
                                 else self._begin_mysql(cur))  # fmt: skip
        except pymysql.err.MySQLError as e:
            self.close()
            raise _lost(e, "cannot start the snapshot") from e
        self.commit_ts = int(time.time() * 1_000_000)
        return self.position

    @staticmethod
    def _begin_mariadb(cur: Any) -> SnapshotPosition:
        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
        status = {bytes(k).decode().lower(): bytes(v).decode() for k, v in cur.fetchall()}
        file = status.get("binlog_snapshot_file", "")
        pos = int(status.get("binlog_snapshot_position") or 0)
        if not file:
            raise SourceSetupError("binlog_snapshot_file is empty: is log_bin on?")
        cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file, pos))
        row = cur.fetchone()
        gtid = bytes(row[0]).decode() if row and row[0] is not None else ""
        return SnapshotPosition(file, pos, gtid)

    @staticmethod
    def _begin_mysql(cur: Any) -> SnapshotPosition:
        # A global read lock for as long as it takes to start the transaction and
        # read the matching position (milliseconds); needs the RELOAD privilege.
        cur.execute("FLUSH TABLES WITH READ LOCK")
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            try:
                cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4
            except Exception:
                cur.execute("SHOW MASTER STATUS")
            row = cur.fetchone()
        finally:
            cur.execute("UNLOCK TABLES")
        if row is None:
            raise SourceSetupError("SHOW MASTER STATUS returns nothing: is log_bin on?")
        gtid = bytes(row[4]).decode().replace("\n", "") if len(row) > 4 and row[4] else ""
        return SnapshotPosition(bytes(row[0]).decode(), int(row[1]), gtid)

    def changes(self, tables: list[SnapshotTable], burst: int = 1000) -> Iterator[Change]:
        """Every row of `tables` as READ changes, fetched `burst` rows at a time."""
        import pymysql

        position = self.position
        assert position is not None and self._conn is not None, "begin() first"
        change_position = (position.file, position.pos, "snapshot")
        log_pos = (position.file, position.pos, 0)
        source = {"connector": "mysql", "server_id": self.server_id, "gtid": None,
                  "file": position.file}  # fmt: skip
        commit_ts = self.commit_ts
        index = 0
        try:
            for t in tables:
                names, converters, key_names = t.names, t.converters, t.key_names
                fields = tuple(zip(names, converters, strict=True))
                columns = t.columns
                with self._conn.cursor() as cur:
                    cur.execute(t.select)
                    while True:
                        rows = cur.fetchmany(burst)
                        if not rows:
                            break
                        for raw in rows:
                            row = {
                                name: None if value is None else convert(value)
                                for (name, convert), value in zip(fields, raw, strict=True)
                            }
                            key = {k: row[k] for k in key_names} if key_names else None
                            yield Change(READ, t.schema, "", t.table, key, None, row, columns,
                                         change_position, None, commit_ts, index, (), True,
                                         log_pos, source)  # fmt: skip
                            index += 1
                log.info("snapshot of %s.%s read (%d rows so far)", t.schema, t.table, index)
        except pymysql.err.MySQLError as e:
            raise _lost(e, "snapshot failed") from e
        finally:
            self.rows_read = index
            self.close()

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass
