"""The initial snapshot: every row of the captured tables as op "read" changes.

Where the slot is created for the snapshot, its exported snapshot is imported
(`SET TRANSACTION SNAPSHOT`), so the rows are exactly the state at the slot's
consistent point and streaming continues without a gap or an overlap. Where
the slot already existed, a fresh REPEATABLE READ snapshot is read instead:
the stream then replays changes that the snapshot already shows (at least
once, never lost; the final state is the same).

Rows are read with COPY in text format, so the same converters as the
pgoutput stream produce the same Python values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import psycopg

from cdc.model import READ, Change

from .replication import classify, quote_ident
from .types import converter_for, type_name

CHUNK = 1 << 16  # bytes asked of COPY per read

_COPY_ESCAPES = {
    ord("b"): b"\b", ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r",
    ord("t"): b"\t", ord("v"): b"\v", ord("\\"): b"\\",
}  # fmt: skip


def unescape_copy(field: bytes) -> bytes:
    """Undo COPY text-format escaping (backslash sequences) in one field."""
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        c = field[i]
        if c != 0x5C or i + 1 == n:  # not a backslash
            out.append(c)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _COPY_ESCAPES:
            out += _COPY_ESCAPES[nxt]
            i += 2
        elif 0x30 <= nxt <= 0x37:  # \ooo octal
            j = i + 1
            while j < min(i + 4, n) and 0x30 <= field[j] <= 0x37:
                j += 1
            out.append(int(field[i + 1 : j], 8) & 0xFF)
            i = j
        elif nxt == ord("x"):  # \xhh
            j = i + 2
            while j < min(i + 4, n) and chr(field[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(field[i + 2 : j], 16))
            i = j
        else:
            out.append(nxt)
            i += 2
    return bytes(out)


class PublishedTable(NamedTuple):
    """A table as its publication publishes it."""

    schema: str
    table: str
    columns: tuple[str, ...] | None = None  # the publication's column list (None: all)
    rowfilter: str | None = None  # the publication's row filter, an SQL expression


class TableSnapshot:
    """Reads tables in one REPEATABLE READ transaction and yields READ changes."""

    def __init__(
        self,
        dsn: str,
        database: str,
        tables: list[PublishedTable],
        position: int,
        snapshot_name: str | None,
        base_type: Callable[[int], int | None] | None = None,
    ):
        self.base_type = base_type  # domain -> base type, as the stream decodes them
        self.database = database
        self.tables = tables
        self.position = position
        self.commit_ts = int(time.time() * 1_000_000)
        self.rows_read = 0
        try:
            self._conn = psycopg.Connection.connect(dsn, autocommit=False)
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            if snapshot_name is not None:
                # Must run before the replication connection issues another command.
                self._conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_name}'")
            # Values in the text forms the converters expect (as on the stream).
            for setting, value in (("DateStyle", "ISO"), ("IntervalStyle", "postgres"),
                                   ("TimeZone", "UTC"), ("extra_float_digits", "3"),
                                   ("bytea_output", "hex")):  # fmt: skip
                self._conn.execute("SELECT set_config(%s, %s, true)", (setting, value))
        except psycopg.Error as e:
            raise classify(e, "cannot start the snapshot") from e

    def changes(self) -> Iterator[Change]:
        index = 0
        try:
            for published in self.tables:
                for change in self._table(published, index):
                    index += 1
                    yield change
        except psycopg.Error as e:
            raise classify(e, "snapshot failed") from e
        finally:
            self.close()
        self.rows_read = index

    def _table(self, published: PublishedTable, first_index: int) -> Iterator[Change]:
        conn = self._conn
        schema, table = published.schema, published.table
        # Generated columns are not published (pgoutput leaves them out).
        columns = conn.execute(
            """
            SELECT a.attname, a.atttypid, a.atttypmod, t.typname, t.typtype
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            ORDER BY a.attnum
            """,
            (schema, table),
        ).fetchall()
        if published.columns is not None:
            columns = [c for c in columns if c[0] in published.columns]
        index_columns = conn.execute(
            """
            SELECT i.indisprimary, a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
            WHERE (i.indisprimary OR i.indisreplident)
              AND i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass
            ORDER BY array_position(i.indkey::int2[], a.attnum)
            """,
            (schema, table),
        ).fetchall()
        # The primary key, else the replica identity index (as the stream reports keys).
        primary = tuple(name for is_pk, name in index_columns if is_pk)
        key_names = primary or tuple(name for _, name in index_columns)
        custom = {oid: typname for _, oid, _, typname, _ in columns}
        resolved = [
            (name, self._base(oid) if kind == "d" else oid, mod)
            for name, oid, mod, _, kind in columns
        ]
        names = [name for name, _, _ in resolved]
        converters = [converter_for(oid, mod, custom) for _, oid, mod in resolved]
        column_types = {name: type_name(oid, custom, mod) for name, oid, mod in resolved}
        source = {"last_commit_lsn": None}
        fields = list(zip(names, converters, strict=True))
        select = ", ".join(quote_ident(n) for n in names)
        where = f" WHERE {published.rowfilter}" if published.rowfilter else ""
        sql = (
            f"COPY (SELECT {select} FROM {quote_ident(schema)}.{quote_ident(table)}{where}) "
            "TO STDOUT"
        )
        index = first_index
        with conn.cursor().copy(sql) as copy:
            for line in _lines(copy):
                row: dict[str, Any] = {}
                for (name, convert), raw in zip(fields, line.split(b"\t"), strict=True):
                    if raw == b"\\N":
                        row[name] = None
                    else:
                        row[name] = convert(unescape_copy(raw) if b"\\" in raw else raw)
                key = {k: row[k] for k in key_names} if key_names else None
                yield Change(READ, self.database, schema, table, key, None, row, column_types,
                             self.position, None, self.commit_ts, index, (), True,
                             self.position, source)  # fmt: skip
                index += 1

    def _base(self, oid: int) -> int:
        base = self.base_type(oid) if self.base_type is not None else None
        return base if base is not None else oid

    def close(self) -> None:
        if not self._conn.closed:
            try:
                self._conn.rollback()
            finally:
                self._conn.close()


def _lines(copy: psycopg.Copy) -> Iterator[bytes]:
    """COPY's data as lines, whatever the chunking."""
    rest = b""
    while True:
        chunk = copy.read()
        if not chunk:
            break
        data = rest + bytes(chunk)
        lines = data.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest
