"""Decoding of binlog TABLE_MAP and row events into Python values.

pymysqlreplication parses every TABLE_MAP into objects and every row one
column at a time through a chain of method calls; that is its throughput
ceiling. Here a TABLE_MAP is parsed once per distinct table version into a
`TableDecoder` holding one small reader function per column, and a row image
is a plain loop over those readers. Decoders are cached by the TABLE_MAP's
bytes after the table id (schema, name, types, metadata, optional metadata),
never by the id alone: ids are reused across server restarts and table
rebuilds, while the bytes change with every ALTER TABLE.

Needs ``binlog_row_metadata=FULL``: column names, signedness, charsets and
ENUM/SET labels come from the TABLE_MAP's optional metadata, so a row is
always labelled with the table definition it was written with.

Python values (see cdc.model) and the type names put in `Change.columns`.
The names are the PostgreSQL spellings the formats already know, chosen so
the ``debezium`` format renders what Debezium's MySQL connector renders:

=======================  ===================================  ====================
MySQL type               Python value                         Change.columns name
=======================  ===================================  ====================
TINYINT/SMALLINT/YEAR    int (YEAR: 1901..2155, 0)            int2
MEDIUMINT/INT            int (unsigned: 0..2**32-1)           int4
BIGINT                   int (unsigned: 0..2**64-1)           int8
DECIMAL(p,s)             decimal.Decimal, exact               numeric(p,s)
FLOAT / DOUBLE           float                                float4 / float8
DATE                     datetime.date ('0000-00-00': str)    date
TIME(fsp)                datetime.time; outside 00:00..24:00  time
                         (negative, >= 24h): datetime.timedelta
DATETIME(fsp)            naive datetime (zero dates: str)     timestamp(fsp)
TIMESTAMP(fsp)           aware datetime, UTC (0: str)         timestamptz(fsp)
CHAR/VARCHAR/TEXT        str, decoded with the column charset bpchar/varchar/text
BINARY/VARBINARY/BLOB    bytes                                bytea
JSON                     parsed (dict, list, str, int, ...)   json
                         (MariaDB: LONGTEXT with a json_valid
                         CHECK, parsed from its text)
ENUM                     str label ('' for the error value)   enum
SET                      str: labels joined with ',' (MySQL's set
                         own text form, and Debezium's)
BIT(1)                   bool                                 bool
BIT(n>1)                 bytes, little-endian (Debezium's     bytea
                         io.debezium.data.Bits layout)
GEOMETRY, LINESTRING,    cdc.model.Geometry(wkb, srid): the   geometry
POLYGON, MULTI*, ...     binlog value is a 4-byte SRID + WKB
POINT                    the same                             point
=======================  ===================================  ====================

In a pipeline without mappers (`json_values` given, see cdc.model.RenderedRow)
new row images without NULLs are rendered straight into the format's JSON
by a second generated function per table layout (`TableDecoder.keyed_rows`).

Example::

    decoders = RowsDecoder(is_mariadb=True)
    table = decoders.table_map(body)             # TABLE_MAP event body
    for before, after, key in table.keyed_rows(body, 30):  # WRITE_ROWS_EVENT v2 body
        ...
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Callable, Sequence
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

from cdc.errors import DecodeError
from cdc.model import EPOCH_UNIT, QUOTES_PLAIN_NUMERIC, Geometry, JsonValues, RenderedRow
from connectors.accel import accelerator  # the C reader of row images, or None

from .jsonb import parse_json_binary

# -- event and column type codes (MySQL's binlog_event.h / field_types.h) ------

TABLE_MAP_EVENT = 19
WRITE_ROWS_V1, UPDATE_ROWS_V1, DELETE_ROWS_V1 = 23, 24, 25
WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2 = 30, 31, 32
PARTIAL_UPDATE_ROWS_EVENT = 39  # MySQL 8 binlog_row_value_options=PARTIAL_JSON
WRITE_EVENTS = frozenset((WRITE_ROWS_V1, WRITE_ROWS_V2))
UPDATE_EVENTS = frozenset((UPDATE_ROWS_V1, UPDATE_ROWS_V2))
DELETE_EVENTS = frozenset((DELETE_ROWS_V1, DELETE_ROWS_V2))
ROWS_EVENTS = WRITE_EVENTS | UPDATE_EVENTS | DELETE_EVENTS
V2_EVENTS = frozenset((WRITE_ROWS_V2, UPDATE_ROWS_V2, DELETE_ROWS_V2))

T_DECIMAL = 0
T_TINY = 1
T_SHORT = 2
T_LONG = 3
T_FLOAT = 4
T_DOUBLE = 5
T_NULL = 6
T_TIMESTAMP = 7
T_LONGLONG = 8
T_INT24 = 9
T_DATE = 10
T_TIME = 11
T_DATETIME = 12
T_YEAR = 13
T_NEWDATE = 14
T_VARCHAR = 15
T_BIT = 16
T_TIMESTAMP2 = 17
T_DATETIME2 = 18
T_TIME2 = 19
T_JSON = 245
T_NEWDECIMAL = 246
T_ENUM = 247
T_SET = 248
T_TINY_BLOB = 249
T_MEDIUM_BLOB = 250
T_LONG_BLOB = 251
T_BLOB = 252
T_VAR_STRING = 253
T_STRING = 254
T_GEOMETRY = 255

_NUMERIC = frozenset(
    (T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_NEWDECIMAL, T_FLOAT, T_DOUBLE, T_DECIMAL)
)
_CHARACTER = frozenset((T_STRING, T_VAR_STRING, T_VARCHAR, T_BLOB))
_BINARY_COLLATION = 63

# Optional metadata field types (binlog_row_metadata=FULL).
_SIGNEDNESS = 1
_DEFAULT_CHARSET = 2
_COLUMN_CHARSET = 3
_COLUMN_NAME = 4
_SET_STR_VALUE = 5
_ENUM_STR_VALUE = 6
_GEOMETRY_TYPE = 7
_SIMPLE_PRIMARY_KEY = 8
_PRIMARY_KEY_WITH_PREFIX = 9
_ENUM_AND_SET_DEFAULT_CHARSET = 10
_ENUM_AND_SET_COLUMN_CHARSET = 11

_UTC = dt.UTC
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=_UTC)
_EPOCH_ORDINAL = 719163  # dt.date(1970, 1, 1).toordinal()

Reader = Callable[[bytes, int], tuple[Any, int]]
Row = dict[str, Any]


def _lenenc(data: bytes, pos: int) -> tuple[int, int]:
    """A length-encoded integer at `pos`: (value, position after it)."""
    first = data[pos]
    if first < 0xFB:
        return first, pos + 1
    if first == 0xFC:
        return data[pos + 1] | data[pos + 2] << 8, pos + 3
    if first == 0xFD:
        return int.from_bytes(data[pos + 1 : pos + 4], "little"), pos + 4
    if first == 0xFE:
        return int.from_bytes(data[pos + 1 : pos + 9], "little"), pos + 9
    raise DecodeError(f"bad length-encoded integer 0x{first:02x} at {pos}")


def python_encoding(collation: int | None) -> str | None:
    """The Python codec of a MySQL collation id; None for binary (bytes)."""
    if collation is None:
        return "utf-8"
    if collation == _BINARY_COLLATION:
        return None
    try:
        import pymysql.charset

        name = pymysql.charset.charset_by_id(collation).name
    except (KeyError, ImportError):
        return "utf-8"  # newer collations (MariaDB uca1400, MySQL 8 ids) are utf8mb4
    return _CODECS.get(name, "utf-8")


# MySQL's latin1 is cp1252; utf8mb3/utf8mb4 are UTF-8.
_CODECS = {
    "latin1": "cp1252",
    "ascii": "ascii",
    "utf8": "utf-8",
    "utf8mb3": "utf-8",
    "utf8mb4": "utf-8",
    "latin2": "iso8859-2",
    "cp1250": "cp1250",
    "cp1251": "cp1251",
    "cp1256": "cp1256",
    "cp1257": "cp1257",
    "greek": "iso8859-7",
    "hebrew": "iso8859-8",
    "latin5": "iso8859-9",
    "latin7": "iso8859-13",
    "koi8r": "koi8-r",
    "koi8u": "koi8-u",
    "sjis": "shift_jis",
    "cp932": "cp932",
    "ujis": "euc-jp",
    "eucjpms": "euc-jp",
    "euckr": "euc-kr",
    "gb2312": "gb2312",
    "gbk": "gbk",
    "gb18030": "gb18030",
    "big5": "big5",
    "utf16": "utf-16-be",
    "utf16le": "utf-16-le",
    "utf32": "utf-32-be",
    "ucs2": "utf-16-be",
    "tis620": "tis-620",
    "cp850": "cp850",
    "cp852": "cp852",
    "cp866": "cp866",
    "macroman": "mac-roman",
}


class Column:
    """One column of a TABLE_MAP, with everything the optional metadata says about it."""

    __slots__ = (
        "name", "type", "real_type", "meta", "unsigned", "collation", "labels",
        "nullable", "json_text", "geometry_type",
    )  # fmt: skip

    def __init__(self, type_code: int, meta: int, nullable: bool):
        self.type = type_code
        self.real_type = type_code
        self.meta = meta
        self.nullable = nullable
        self.name = ""
        self.unsigned = False
        self.collation: int | None = None
        self.labels: tuple[str, ...] = ()
        self.json_text = False  # MariaDB JSON: a LONGTEXT holding JSON text
        self.geometry_type = 0  # spatial columns: 0 GEOMETRY, 1 POINT, 2 LINESTRING, ...

    def __repr__(self) -> str:
        return f"Column({self.name!r}, type={self.real_type}, meta={self.meta})"


class TableMap:
    """A parsed TABLE_MAP event: the table and its columns as the binlog describes them."""

    __slots__ = ("table_id", "schema", "table", "columns", "primary_key", "key")

    def __init__(
        self,
        table_id: int,
        schema: str,
        table: str,
        columns: list[Column],
        primary_key: tuple[int, ...],
        key: bytes,
    ):
        self.table_id = table_id
        self.schema = schema
        self.table = table
        self.columns = columns
        self.primary_key = primary_key
        self.key = key  # the bytes after the table id: identifies this table version


def _column_meta(types: bytes, meta: bytes) -> list[tuple[int, int, int]]:
    """(type, real type, metadata) per column from the TABLE_MAP metadata block."""
    out = []
    pos = 0
    for t in types:
        m = 0
        real = t
        if t in (T_VARCHAR, T_VAR_STRING, T_BIT):
            m = meta[pos] | meta[pos + 1] << 8
            if t == T_BIT:
                m = meta[pos + 1] * 8 + meta[pos]  # (bits % 8, whole bytes)
            pos += 2
        elif t == T_NEWDECIMAL:
            m = meta[pos] << 8 | meta[pos + 1]  # precision, scale
            pos += 2
        elif t in (T_BLOB, T_GEOMETRY, T_JSON, T_FLOAT, T_DOUBLE, T_TIMESTAMP2,
                   T_DATETIME2, T_TIME2, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):  # fmt: skip
            m = meta[pos]
            pos += 1
        elif t in (T_STRING, T_ENUM, T_SET):
            b0, b1 = meta[pos], meta[pos + 1]
            pos += 2
            if b0 in (T_ENUM, T_SET):
                real = b0
                m = b1  # pack length
            else:
                real = T_STRING
                # The max length's high bits hide in the type byte (for > 255 chars).
                m = b1 | (((b0 & 0x30) ^ 0x30) << 4)
        out.append((t, real, m))
    return out


def parse_table_map(body: bytes, is_mariadb: bool = True) -> TableMap:
    """Parse a TABLE_MAP event body (after the 19-byte header, without checksum)."""
    table_id = int.from_bytes(body[0:6], "little")
    pos = 8  # table id (6), flags (2)
    n = body[pos]
    schema = body[pos + 1 : pos + 1 + n].decode()
    pos += n + 2
    n = body[pos]
    table = body[pos + 1 : pos + 1 + n].decode()
    pos += n + 2
    count, pos = _lenenc(body, pos)
    types = body[pos : pos + count]
    pos += count
    meta_len, pos = _lenenc(body, pos)
    metas = _column_meta(types, body[pos : pos + meta_len])
    pos += meta_len
    null_bits = int.from_bytes(body[pos : pos + (count + 7) // 8], "little")
    pos += (count + 7) // 8
    columns = [Column(real, m, bool(null_bits >> i & 1)) for i, (_, real, m) in enumerate(metas)]
    primary_key = _optional_metadata(body, pos, columns, is_mariadb)
    return TableMap(table_id, schema, table, columns, primary_key, bytes(body[6:]))


def _optional_metadata(
    body: bytes, pos: int, columns: list[Column], is_mariadb: bool
) -> tuple[int, ...]:
    numeric = _NUMERIC | {T_YEAR} if is_mariadb else _NUMERIC
    character = _CHARACTER | {T_GEOMETRY} if is_mariadb else _CHARACTER
    numeric_cols = [c for c in columns if c.real_type in numeric]
    char_cols = [c for c in columns if c.real_type in character]
    enum_set_cols = [c for c in columns if c.real_type in (T_ENUM, T_SET)]
    primary_key: list[int] = []
    raw_labels: dict[int, list[bytes]] = {}  # id(column) -> labels, decoded once charsets are known
    names_seen = False
    end = len(body)
    while pos < end:
        kind = body[pos]
        length, pos = _lenenc(body, pos + 1)
        stop = pos + length
        if kind == _SIGNEDNESS:
            bits = int.from_bytes(body[pos:stop], "big")
            width = length * 8
            for i, c in enumerate(numeric_cols):
                c.unsigned = bool(bits >> (width - 1 - i) & 1)
        elif kind in (_DEFAULT_CHARSET, _ENUM_AND_SET_DEFAULT_CHARSET):
            targets = char_cols if kind == _DEFAULT_CHARSET else enum_set_cols
            default, p = _lenenc(body, pos)
            for c in targets:
                c.collation = default
            while p < stop:
                index, p = _lenenc(body, p)
                collation, p = _lenenc(body, p)
                if index < len(targets):
                    targets[index].collation = collation
        elif kind in (_COLUMN_CHARSET, _ENUM_AND_SET_COLUMN_CHARSET):
            targets = char_cols if kind == _COLUMN_CHARSET else enum_set_cols
            p = pos
            for c in targets:
                if p >= stop:
                    break
                c.collation, p = _lenenc(body, p)
        elif kind == _COLUMN_NAME:
            p = pos
            for c in columns:
                n, p = _lenenc(body, p)
                c.name = body[p : p + n].decode()
                p += n
            names_seen = True
        elif kind in (_SET_STR_VALUE, _ENUM_STR_VALUE):
            wanted = T_SET if kind == _SET_STR_VALUE else T_ENUM
            targets = [c for c in columns if c.real_type == wanted]
            p = pos
            for c in targets:
                count, p = _lenenc(body, p)
                labels = raw_labels[id(c)] = []
                for _ in range(count):
                    n, p = _lenenc(body, p)
                    labels.append(body[p : p + n])
                    p += n
        elif kind == _GEOMETRY_TYPE:
            p = pos
            for c in columns:
                if c.real_type == T_GEOMETRY and p < stop:
                    c.geometry_type, p = _lenenc(body, p)
        elif kind == _SIMPLE_PRIMARY_KEY:
            p = pos
            while p < stop:
                index, p = _lenenc(body, p)
                primary_key.append(index)
        elif kind == _PRIMARY_KEY_WITH_PREFIX:
            p = pos
            while p < stop:
                index, p = _lenenc(body, p)
                _prefix, p = _lenenc(body, p)
                primary_key.append(index)
        pos = stop
    if not names_seen:
        raise DecodeError(
            "the TABLE_MAP event carries no column names: set binlog_row_metadata=FULL "
            "(SET GLOBAL binlog_row_metadata = 'FULL', and in the server's option file)"
        )
    for c in enum_set_cols:
        enc = python_encoding(c.collation) or "utf-8"
        c.labels = tuple(raw.decode(enc, "replace") for raw in raw_labels.get(id(c), ()))
    return tuple(primary_key)


# -- per-column readers ----------------------------------------------------------


def _fixed(fmt: str) -> Reader:
    s = struct.Struct(fmt)
    unpack_from = s.unpack_from
    size = s.size

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return unpack_from(data, pos)[0], pos + size

    return read


def _int24(unsigned: bool) -> Reader:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        return int.from_bytes(data[pos : pos + 3], "little", signed=not unsigned), pos + 3

    return read


_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def decimal_reader(precision: int, scale: int) -> Reader:
    """DECIMAL: packed base-10^9 groups, big-endian, sign in the top bit (inverted)."""
    return _decimal(precision, scale, Decimal)


def _big_endian(offset: int, width: int) -> str:
    """Python text of the big-endian unsigned int in data[pos + offset:][:width]:
    byte by byte, cheaper than int.from_bytes on a slice for up to 4 bytes."""
    if width > 4:
        return f'int.from_bytes(data[pos + {offset}:pos + {offset + width}], "big")'
    return " | ".join(f"data[pos + {offset + i}] << {8 * (width - 1 - i)}"
                      for i in range(width)).replace(" << 0", "")  # fmt: skip


def _decimal(precision: int, scale: int, make: Callable[[str], Any]) -> Reader:
    """A reader generated for one (precision, scale) (see _decimal_lines)."""
    lines = ["def read(data, pos):", *_decimal_lines(precision, scale, "text", "    "),
             "    return make(text), pos"]  # fmt: skip
    env: dict[str, Any] = {"make": make, "_DIGITS": _DIGITS}
    exec("\n".join(lines), env)  # noqa: S102 (generated from the column's precision only)
    read: Reader = env["read"]
    return read


# The text of every fraction of up to 3 digits, by number of digits (the generated
# DECIMAL code looks them up: cheaper than formatting them with leading zeros).
_DIGITS = {n: [f"{i:0{n}d}" for i in range(10**n)] for n in (1, 2, 3)}


def _decimal_lines(precision: int, scale: int, target: str, indent: str) -> list[str]:
    """Code that sets `target` to the plain text of the DECIMAL(precision, scale) at
    data[pos] and moves pos past it: each base-10^9 group read from its own bytes as a
    small int, straight-line code for each sign (`_DIGITS` in its namespace)."""
    intg = precision - scale
    intg0, intg0x = divmod(intg, 9)
    frac0, frac0x = divmod(scale, 9)
    # (width in bytes, multiplier) of each group, most significant first: the
    # integer part's leading partial group, its full groups, then the fraction's
    # full groups and its trailing partial one (multipliers place it in `scale` digits).
    int_widths = ([_DIG2BYTES[intg0x]] if intg0x else []) + [4] * intg0
    frac_widths = [4] * frac0 + ([_DIG2BYTES[frac0x]] if frac0x else [])
    frac_digits = [9] * frac0 + ([frac0x] if frac0x else [])
    size = sum(int_widths) + sum(frac_widths)
    lines = []
    for negative in (False, True):
        lines.append(f"{indent}{'else' if negative else 'if data[pos] & 0x80'}:")
        offset = 0
        for k, width in enumerate(int_widths + frac_widths):
            flip = (1 << (width * 8)) - 1 if negative else 0
            if k == 0:
                flip ^= 1 << (width * 8 - 1)  # the sign bit, stored inverted
            value = _big_endian(offset, width)
            lines.append(f"{indent}    g{k} = " + (f"({value}) ^ {flip}" if flip else value))
            offset += width
        whole = "0"
        for k in range(len(int_widths)):
            whole = f"g{k}" if whole == "0" else f"({whole}) * 1000000000 + g{k}"
        left = scale
        frac_terms = []
        for k, digits in enumerate(frac_digits):
            left -= digits
            frac_terms.append(f"g{len(int_widths) + k}" + (f" * {10**left}" if left else ""))
        sign = "-" if negative else ""
        if scale in _DIGITS:
            text = f'f"{sign}{{{whole}}}.{{_DIGITS[{scale}][{frac_terms[0]}]}}"'
        elif scale:
            text = f'"{sign}%d.%0{scale}d" % ({whole}, {" + ".join(frac_terms)})'
        else:
            text = f'"{sign}%d" % ({whole},)'
        lines.append(f"{indent}    {target} = {text}")
    lines.append(f"{indent}pos += {size}")
    return lines


def _bit(meta: int) -> Reader:
    nbytes = (meta + 7) // 8
    if meta == 1:

        def read_bool(data: bytes, pos: int) -> tuple[Any, int]:
            return data[pos] != 0, pos + 1

        return read_bool

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + nbytes
        return data[pos:end][::-1], end  # Debezium's Bits: little-endian bytes

    return read


def _year(data: bytes, pos: int) -> tuple[Any, int]:
    v = data[pos]
    return (v + 1900 if v else 0), pos + 1


def _date(data: bytes, pos: int) -> tuple[Any, int]:
    v = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
    day, month, year = v & 31, v >> 5 & 15, v >> 9
    try:
        return dt.date(year, month, day), pos + 3
    except ValueError:
        return f"{year:04d}-{month:02d}-{day:02d}", pos + 3


def _frac_reader(fsp: int) -> tuple[int, int]:
    """(bytes of the fraction, multiplier to microseconds) for a fractional precision."""
    nbytes = (fsp + 1) // 2
    return nbytes, (1, 10000, 100, 1)[nbytes]


def _datetime2(fsp: int) -> Reader:
    nfrac, mult = _frac_reader(fsp)
    size = 5 + nfrac

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        packed = int.from_bytes(data[pos : pos + 5], "big") - 0x8000000000
        us = int.from_bytes(data[pos + 5 : end], "big") * mult if nfrac else 0
        ymd = packed >> 17
        ym = ymd >> 5
        hms = packed & 0x1FFFF
        try:
            return dt.datetime(ym // 13, ym % 13, ymd & 31, hms >> 12, hms >> 6 & 63,
                               hms & 63, us), end  # fmt: skip
        except ValueError:  # zero dates: MySQL's text form
            text = (f"{ym // 13:04d}-{ym % 13:02d}-{ymd & 31:02d} "
                    f"{hms >> 12:02d}:{hms >> 6 & 63:02d}:{hms & 63:02d}")  # fmt: skip
            return (f"{text}.{us:06d}"[: 20 + fsp] if fsp else text), end

    return read


def _timestamp2(fsp: int) -> Reader:
    nfrac, mult = _frac_reader(fsp)
    size = 4 + nfrac
    timedelta = dt.timedelta

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        seconds = int.from_bytes(data[pos : pos + 4], "big")
        us = int.from_bytes(data[pos + 4 : end], "big") * mult if nfrac else 0
        if not seconds and not us:
            return "0000-00-00 00:00:00", end
        return _EPOCH_UTC + timedelta(seconds=seconds, microseconds=us), end

    return read


def _time_value(negative: bool, hms: int, us: int) -> Any:
    hour, minute, second = hms >> 12 & 0x3FF, hms >> 6 & 63, hms & 63
    if not negative and hour < 24:
        return dt.time(hour, minute, second, us)
    # A duration rather than a time of day (-838:59:59 .. 838:59:59).
    span = dt.timedelta(hours=hour, minutes=minute, seconds=second, microseconds=us)
    return -span if negative else span


def _time2(fsp: int) -> Reader:
    nfrac, mult = _frac_reader(fsp)
    size = 3 + nfrac
    offset = 0x800000 << (8 * nfrac)
    frac_bits = 8 * nfrac
    frac_mask = (1 << frac_bits) - 1

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + size
        v = int.from_bytes(data[pos:end], "big") - offset
        negative = v < 0
        if negative:
            v = -v
        return _time_value(negative, v >> frac_bits, (v & frac_mask) * mult), end

    return read


def _time_old(data: bytes, pos: int) -> tuple[Any, int]:
    v = int.from_bytes(data[pos : pos + 3], "little", signed=True)
    negative = v < 0
    v = abs(v)
    hms = (v // 10000) << 12 | (v // 100 % 100) << 6 | v % 100
    return _time_value(negative, hms, 0), pos + 3


def _timestamp_old(data: bytes, pos: int) -> tuple[Any, int]:
    seconds = int.from_bytes(data[pos : pos + 4], "little")
    if not seconds:
        return "0000-00-00 00:00:00", pos + 4
    return dt.datetime.fromtimestamp(seconds, _UTC), pos + 4


def _datetime_old(data: bytes, pos: int) -> tuple[Any, int]:
    v = int.from_bytes(data[pos : pos + 8], "little")
    d, t = divmod(v, 1_000_000)
    try:
        return dt.datetime(d // 10000, d // 100 % 100, d % 100, t // 10000, t // 100 % 100,
                           t % 100), pos + 8  # fmt: skip
    except ValueError:
        return f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d} 00:00:00", pos + 8


def _length_prefixed(prefix: int, encoding: str | None) -> Reader:
    """A value preceded by its length in `prefix` little-endian bytes."""
    if prefix == 1:
        if encoding is None:

            def read_b1(data: bytes, pos: int) -> tuple[Any, int]:
                end = pos + 1 + data[pos]
                return data[pos + 1 : end], end

            return read_b1

        def read_s1(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + 1 + data[pos]
            return data[pos + 1 : end].decode(encoding), end

        return read_s1
    if prefix == 2:
        if encoding is None:

            def read_b2(data: bytes, pos: int) -> tuple[Any, int]:
                end = pos + 2 + (data[pos] | data[pos + 1] << 8)
                return data[pos + 2 : end], end

            return read_b2

        def read_s2(data: bytes, pos: int) -> tuple[Any, int]:
            end = pos + 2 + (data[pos] | data[pos + 1] << 8)
            return data[pos + 2 : end].decode(encoding), end

        return read_s2

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        start = pos + prefix
        end = start + int.from_bytes(data[pos:start], "little")
        raw = data[start:end]
        return (raw if encoding is None else raw.decode(encoding)), end

    return read


def _padded(reader: Reader, length: int) -> Reader:
    """BINARY(n): the binlog drops trailing zero bytes; give the value as stored."""

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        raw, end = reader(data, pos)
        return raw.ljust(length, b"\0"), end

    return read


def _enum(pack: int, labels: Sequence[str]) -> Reader:
    table = ("",) + tuple(labels)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        index = data[pos] if pack == 1 else data[pos] | data[pos + 1] << 8
        return (table[index] if index < len(table) else ""), pos + pack

    return read


def _set(pack: int, labels: Sequence[str]) -> Reader:
    def read(data: bytes, pos: int) -> tuple[Any, int]:
        end = pos + pack
        bits = int.from_bytes(data[pos:end], "little")
        return ",".join(label for i, label in enumerate(labels) if bits >> i & 1), end

    return read


def _geometry(prefix: int) -> Reader:
    inner = _length_prefixed(prefix, None)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        raw, end = inner(data, pos)
        return geometry_value(raw), end

    return read


def geometry_value(raw: bytes) -> Geometry:
    """MySQL's internal spatial value (4-byte little-endian SRID, then WKB) -> Geometry."""
    if len(raw) < 4:
        return Geometry(bytes(raw), 0)
    return Geometry(bytes(raw[4:]), int.from_bytes(raw[:4], "little"))


def _json_binary(prefix: int) -> Reader:
    inner = _length_prefixed(prefix, None)

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        raw, end = inner(data, pos)
        return (parse_json_binary(raw) if raw else None), end

    return read


def _json_text(reader: Reader) -> Reader:
    loads = json.loads

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        text, end = reader(data, pos)
        try:
            return loads(text), end
        except ValueError:
            return text, end  # not JSON after all: keep the server's text

    return read


def column_reader(c: Column) -> tuple[Reader, str]:
    """The reader of a column's values and its type name for `Change.columns`."""
    t, m, u = c.real_type, c.meta, c.unsigned
    if t == T_TINY:
        return _fixed("<B" if u else "<b"), "int2"
    if t == T_SHORT:
        return _fixed("<H" if u else "<h"), "int4" if u else "int2"
    if t == T_INT24:
        return _int24(u), "int4"
    if t == T_LONG:
        return _fixed("<I" if u else "<i"), "int8" if u else "int4"
    if t == T_LONGLONG:
        return _fixed("<Q" if u else "<q"), "int8"
    if t == T_FLOAT:
        return _fixed("<f"), "float4"
    if t == T_DOUBLE:
        return _fixed("<d"), "float8"
    if t == T_NEWDECIMAL:
        precision, scale = m >> 8, m & 0xFF
        return decimal_reader(precision, scale), f"numeric({precision},{scale})"
    if t == T_YEAR:
        return _year, "int2"
    if t in (T_DATE, T_NEWDATE):
        return _date, "date"
    if t == T_TIME2:
        return _time2(m), "time"
    if t == T_TIME:
        return _time_old, "time"
    if t == T_DATETIME2:
        return _datetime2(m), f"timestamp({m})"
    if t == T_DATETIME:
        return _datetime_old, "timestamp(0)"
    if t == T_TIMESTAMP2:
        return _timestamp2(m), f"timestamptz({m})"
    if t == T_TIMESTAMP:
        return _timestamp_old, "timestamptz(0)"
    if t == T_BIT:
        return _bit(m), "bool" if m == 1 else "bytea"
    if t == T_ENUM:
        return _enum(m, c.labels), "enum"
    if t == T_SET:
        return _set(m, c.labels), "set"
    if t in (T_VARCHAR, T_VAR_STRING, T_STRING):
        enc = python_encoding(c.collation)
        reader = _length_prefixed(1 if m < 256 else 2, enc)
        if enc is None:
            return (_padded(reader, m) if t == T_STRING else reader), "bytea"
        return reader, "bpchar" if t == T_STRING else "varchar"
    if t in (T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):
        enc = python_encoding(c.collation)
        reader = _length_prefixed(m, enc)
        if enc is None:
            return reader, "bytea"
        if c.json_text:
            return _json_text(reader), "json"
        return reader, "text"
    if t == T_JSON:
        return _json_binary(m), "json"
    if t == T_GEOMETRY:
        return _geometry(m), "point" if c.geometry_type == 1 else "geometry"
    raise DecodeError(f"column {c.name!r} has binlog type {t}, which this decoder does not know")


# -- row images -----------------------------------------------------------------


def fixed_format(c: Column) -> str | None:
    """The struct code of a fixed-width column (so runs of them unpack at once), or None."""
    codes = {T_TINY: "bB", T_SHORT: "hH", T_LONG: "iI", T_LONGLONG: "qQ", T_FLOAT: "ff",
             T_DOUBLE: "dd"}  # fmt: skip
    pair = codes.get(c.real_type)
    return None if pair is None else pair[1 if c.unsigned else 0]


class _Plan:
    """How to read one row image: the present columns, its null-bitmap size, and a
    function compiled for images without NULLs (the common case)."""

    __slots__ = ("columns", "nbytes", "mask", "fast", "json")

    def __init__(self, columns: list[tuple[str, Reader, str | None]]):
        self.columns = tuple((name, read) for name, read, _ in columns)
        self.nbytes = (len(columns) + 7) // 8
        # The servers set the bitmap's padding bits (past the last column): not NULLs.
        self.mask = (1 << len(columns)) - 1
        self.fast = _compile(columns)
        self.json: JsonImage | None = None  # see TableDecoder.keyed_rows


def _unpack_run(run: list[tuple[int, str]], env: dict[str, Any], lines: list[str]) -> None:
    """Generated code for a run of fixed-width columns (index, struct code): one
    struct unpacks them all into v<index>; the run is emptied."""
    if not run:
        return
    st = struct.Struct("<" + "".join(code for _, code in run))
    env[f"S{run[0][0]}"] = st.unpack_from
    lines.append(f"    {', '.join(f'v{k}' for k, _ in run)}, = S{run[0][0]}(data, pos)")
    lines.append(f"    pos += {st.size}")
    run.clear()


def _compile(columns: list[tuple[str, Reader, str | None]]) -> Callable[[bytes, int], Any]:
    """`image(data, pos) -> (row, pos)` for a row image without NULLs: readers called
    in line, runs of fixed-width columns unpacked by one struct, the row built as a
    dict display. Names and readers are bound through the namespace, never quoted."""
    env: dict[str, Any] = {}
    lines = ["def image(data, pos):"]
    run: list[tuple[int, str]] = []

    def flush() -> None:
        _unpack_run(run, env, lines)

    for k, (name, read, code) in enumerate(columns):
        env[f"N{k}"] = name
        if code is not None:
            run.append((k, code))
            continue
        flush()
        env[f"R{k}"] = read
        lines.append(f"    v{k}, pos = R{k}(data, pos)")
    flush()
    lines.append("    return {" + ", ".join(f"N{k}: v{k}" for k in range(len(columns)))
                 + "}, pos")  # fmt: skip
    exec("\n".join(lines), env)  # noqa: S102 (generated from column indexes only)
    return env["image"]


# -> (the image as the format's JSON object, its key columns, next pos), or None
# where the general path must decide.
JsonImage = Callable[[bytes, int], tuple[RenderedRow, Row | None, int] | None]
_INTEGER_CODES = frozenset("bBhHiIqQ")


class _JsonColumn:
    """A column as the JSON image compiler sees it: how to read it and render it."""

    __slots__ = ("name", "meta", "read", "code", "convert", "shortcut", "kind", "prefix",
                 "encoding")  # fmt: skip

    def __init__(self, c: Column, type_name: str, convert: Any, shortcut: Any):
        self.name = c.name
        self.meta = c.meta
        self.read, _ = column_reader(c)
        self.code = fixed_format(c)
        self.convert = convert
        self.shortcut = None
        self.prefix = 0  # text read in line: the length prefix's bytes (1 or 2)
        self.encoding = python_encoding(c.collation)
        if convert is None and self.code in _INTEGER_CODES:
            self.kind = "int"  # its text is its JSON
        elif convert is None and type_name in ("varchar", "text", "bpchar"):
            self.kind = "str"  # escaped as a JSON string
            if c.real_type in (T_VARCHAR, T_VAR_STRING, T_STRING):
                self.prefix = 1 if c.meta < 256 else 2
            elif c.meta in (1, 2):
                self.prefix = c.meta
        elif getattr(convert, EPOCH_UNIT, None) in (1, 1000) and c.real_type == T_DATETIME2:
            self.kind = "epoch"  # its count since the epoch, from the packed fields
        elif shortcut is not None and c.real_type == T_NEWDECIMAL:
            # The format's shortcut from numeric text, which a DECIMAL's plain text is.
            self.kind = "decimal"  # its text read in line
            self.shortcut = shortcut
        else:
            self.kind = "value"  # encode(convert(value)), as the format does


# Per unit (see EPOCH_UNIT): a DATETIME2's five bytes up to the second -> its count
# of units since 1970-01-01 (rows written together share their second).
_SECOND_COUNTS: dict[int, dict[bytes, int]] = {}
_SECOND_COUNTS_MAX = 100_000


def _second_counts(unit: int) -> dict[bytes, int]:
    return _SECOND_COUNTS.setdefault(unit, {})


def _second_count(packed: bytes, unit: int) -> int | None:
    """Units since 1970-01-01 of a DATETIME2's first five bytes (date and time to
    the second); None for an impossible time (not written by servers); ValueError
    for zero or impossible dates. Remembered."""
    # 40 bits: sign, year * 13 + month (17), day (5) | hour (5), minute, second (6 each)
    ymd = (packed[0] << 16 | packed[1] << 8 | packed[2]) >> 1
    hms = (packed[2] & 1) << 16 | packed[3] << 8 | packed[4]
    hour, minute, second = hms >> 12, hms >> 6 & 63, hms & 63
    if hour > 23 or minute > 59 or second > 59:
        return None
    if not ymd & 0x400000:
        raise ValueError("a negative DATETIME2")  # not written by servers: the general path
    ym = (ymd & 0x3FFFFF) >> 5
    days = dt.date(ym // 13, ym % 13, ymd & 31).toordinal() - _EPOCH_ORDINAL
    count = (days * 86_400 + hour * 3600 + minute * 60 + second) * (1_000_000 // unit)
    counts = _second_counts(unit)
    if len(counts) >= _SECOND_COUNTS_MAX:
        counts.clear()
    counts[bytes(packed)] = count
    return count


def _compile_json(
    columns: list[_JsonColumn], key_names: tuple[str, ...], encode: Callable[[Any], str]
) -> JsonImage | None:
    """`image(data, pos)` for a row image (`pos` at its null bitmap) without NULLs,
    rendering it as the format's JSON object text, column by column exactly what
    the format makes of the decoded value: `encode(convert(value))`, with the
    value's own text where that is its JSON (integers), JSON string escaping
    for text, the format's numeric shortcut for DECIMAL, and for DATETIME the
    count since the epoch its converter gives (`EPOCH_UNIT`), computed from the
    packed fields. Any exception (a value the format refuses, a malformed
    image) gives None, as do impossible times and zero dates: the general path
    then decides and reports as usual."""
    names = [c.name for c in columns]
    if any(k not in names for k in key_names):
        return None
    env: dict[str, Any] = {"_esc": encode_basestring, "_enc": encode, "_Rendered": RenderedRow,
                           "_Decimal": Decimal, "_second_count": _second_count,
                           "_DIGITS": _DIGITS}  # fmt: skip
    lines = ["def image(data, pos):", "  try:"]
    # Images with NULLs (bits past the last column are padding) take the general path.
    nbytes = (len(columns) + 7) // 8
    for i in range(nbytes):
        mask = ((1 << len(columns)) - 1) >> (8 * i) & 0xFF
        lines.append(f"    if data[pos + {i}] & {mask}:")
        lines.append("        return None")
    lines.append(f"    pos += {nbytes}")
    parts: list[str] = []
    post: list[str] = []  # conversions, once every value is read (struct runs come late)
    run: list[tuple[int, str]] = []

    def flush() -> None:
        _unpack_run(run, env, lines)

    for k, c in enumerate(columns):
        env[f"P{k}"] = ("{" if k == 0 else ",") + encode(c.name) + ":"
        env[f"C{k}"] = c.convert
        if c.code is not None:
            run.append((k, c.code))
        elif c.kind == "epoch" and c.name not in key_names:
            flush()
            nfrac, mult = _frac_reader(c.meta)
            unit = getattr(c.convert, EPOCH_UNIT)
            env[f"D{k}"] = _second_counts(unit)
            lines += [
                "    packed = data[pos:pos + 5]",
                f"    v{k} = D{k}.get(packed)",
                f"    if v{k} is None:",
                # Impossible times and zero dates: the general path's text.
                f"        v{k} = _second_count(packed, {unit})",
                f"        if v{k} is None:",
                "            return None",
            ]
            if nfrac:
                lines += [
                    f"    us = ({_big_endian(5, nfrac)})" + (f" * {mult}" if mult != 1 else ""),
                    "    if us > 999999:",
                    "        return None",
                    f"    v{k} += " + ("us" if unit == 1 else f"us // {unit}"),
                ]
            lines.append(f"    pos += {5 + nfrac}")
        elif c.kind == "decimal":
            flush()
            lines += _decimal_lines(c.meta >> 8, c.meta & 0xFF, f"v{k}", "    ")
        elif c.prefix:
            flush()
            env[f"E{k}"] = c.encoding
            length = "data[pos]" if c.prefix == 1 else "(data[pos] | data[pos + 1] << 8)"
            lines += [
                f"    end = pos + {c.prefix} + {length}",
                f"    v{k} = data[pos + {c.prefix}:end].decode(E{k})",
                "    pos = end",
            ]
        else:
            flush()
            env[f"R{k}"] = c.read
            lines.append(f"    v{k}, pos = R{k}(data, pos)")
        if c.kind == "int" or (c.kind == "epoch" and c.name not in key_names):
            parts.append(f"{{P{k}}}{{v{k}}}")
        elif c.kind == "str":
            parts.append(f"{{P{k}}}{{_esc(v{k})}}")
        elif c.kind == "decimal":
            env[f"H{k}"] = c.shortcut
            lines += [
                f"    f{k} = H{k}(v{k}.encode())",
                f"    if f{k} is None:",
                f"        f{k} = _enc(C{k}(_Decimal(v{k})))",
            ]
            parts.append(f"{{P{k}}}{{f{k}}}")
        elif c.convert is None:
            parts.append(f"{{P{k}}}{{_enc(v{k})}}")
        else:
            # A reader may give None for a present value (JSON null): the format
            # converts only values, as in its own row loop.
            post.append(f"    f{k} = 'null' if v{k} is None else _enc(C{k}(v{k}))")
            parts.append(f"{{P{k}}}{{f{k}}}")
    flush()
    lines += post
    key = "None"
    if key_names:
        items = []
        for name in key_names:
            k = names.index(name)
            env[f"N{k}"] = name
            items.append(f"N{k}: _Decimal(v{k})" if columns[k].kind == "decimal" else f"N{k}: v{k}")
        key = "{" + ", ".join(items) + "}"
    row = "f'" + "".join(parts) + "}}'" if columns else "'{}'"
    lines += [
        "    if pos > len(data):",  # a truncated image: the general path reports it
        "        return None",
        f"    return _Rendered({row}), {key}, pos",
        "  except Exception:",
        "    return None",
    ]
    exec("\n".join(lines), env)  # noqa: S102 (generated from column indexes only)
    image: JsonImage = env["image"]
    return _accelerated(columns, key_names, encode, image) or image


def _accelerated(
    columns: list[_JsonColumn],
    key_names: tuple[str, ...],
    encode: Callable[[Any], str],
    image: JsonImage,
) -> JsonImage | None:
    """The C reader of the same images (accelerator.Image: connectors/accel/
    mysql_image.c), where the accelerator is built and takes every column of the
    table; it hands every image it does not take (a NULL, a refused DECIMAL
    text, an impossible DATETIME) to `image`."""
    if accelerator is None or not columns:
        return None
    program = []
    for k, c in enumerate(columns):
        prefix = (("{" if k == 0 else ",") + encode(c.name) + ":").encode()
        is_key = c.name in key_names
        if c.kind == "int" and c.code is not None:
            program.append((accelerator.INT, prefix, ord(c.code), 0))
        elif c.kind == "str" and c.prefix and c.encoding in ("utf-8", "ascii"):
            if is_key and c.encoding != "utf-8":
                return None
            program.append((accelerator.STR, prefix, c.prefix, int(c.encoding == "utf-8")))
        elif is_key:
            return None  # keys are integers or text here (a DECIMAL key is a Decimal)
        elif c.kind == "decimal" and getattr(c.shortcut, QUOTES_PLAIN_NUMERIC, False):
            program.append((accelerator.DECIMAL, prefix, c.meta >> 8, c.meta & 0xFF))
        elif c.kind == "epoch":
            program.append((accelerator.EPOCH, prefix, getattr(c.convert, EPOCH_UNIT), c.meta))
        else:
            return None
    names = [c.name for c in columns]
    keys = tuple((names.index(name), name) for name in key_names)
    try:
        made: JsonImage = accelerator.Image(tuple(program), keys, RenderedRow, image)
    except ValueError:  # metadata servers do not write (DECIMAL scale > 30, ...)
        return None
    return made


class TableDecoder:
    """Decodes the row events of one table version; built once per distinct TABLE_MAP.

    With `json_values` (a pipeline whose only reader of the rows is its format,
    see cdc.model.RenderedRow) it also renders new row images straight into the
    format's JSON: `keyed_rows()`.
    """

    def __init__(self, table_map: TableMap, json_values: JsonValues | None = None):
        self.schema = table_map.schema
        self.table = table_map.table
        self.table_map = table_map
        cols = table_map.columns
        built = [column_reader(c) for c in cols]
        self.readers = [r for r, _ in built]
        self.formats = [fixed_format(c) for c in cols]
        self.names = [c.name for c in cols]
        self.columns: dict[str, str] = {
            c.name: name for c, (_, name) in zip(cols, built, strict=True)
        }
        self.key_names = tuple(cols[i].name for i in table_map.primary_key)
        self._plans: dict[bytes, _Plan] = {}
        self._json: list[_JsonColumn] | None = None
        if json_values is not None:
            converters, shortcuts, encode = json_values(self.columns)
            self._encode = encode
            self._json = [
                _JsonColumn(c, type_name, convert, shortcut)
                for c, type_name, convert, shortcut in zip(
                    cols, self.columns.values(), converters, shortcuts, strict=True
                )
            ]

    def _plan(self, bitmap: bytes) -> _Plan:
        """The plan for a columns-present bitmap (all columns, with binlog_row_image=FULL)."""
        plan = self._plans.get(bitmap)
        if plan is None:
            bits = int.from_bytes(bitmap, "little")
            present = [i for i in range(len(self.names)) if bits >> i & 1]
            plan = _Plan([(self.names[i], self.readers[i], self.formats[i]) for i in present])
            # Only full images render: the format writes null for absent columns.
            if self._json is not None and len(present) == len(self.names):
                plan.json = _compile_json(
                    [self._json[i] for i in present], self.key_names, self._encode
                )
            self._plans[bytes(bitmap)] = plan
        return plan

    def full_image(self) -> Any | None:
        """The C reader (accelerator.Image) of this table's full row images, where
        the accelerator is built and reads every column (see cdc.model.RowRecords);
        None otherwise."""
        if accelerator is None or self._json is None:
            return None
        full = ((1 << len(self.names)) - 1).to_bytes((len(self.names) + 7) // 8, "little")
        image = self._plan(full).json
        return image if type(image) is accelerator.Image else None

    def _event_start(
        self, body: bytes, event_type: int, post_header: int
    ) -> tuple[_Plan, int, int]:
        """A row event body's plan for its columns-present bitmap, where its first
        image starts, and the bitmaps' size in bytes."""
        pos = post_header
        if event_type in V2_EVENTS:
            pos += body[pos] | body[pos + 1] << 8
        count, pos = _lenenc(body, pos)
        nbytes = (count + 7) // 8
        return self._plan(body[pos : pos + nbytes]), pos + nbytes, nbytes

    def keyed_rows(
        self, body: bytes, event_type: int, post_header: int = 8
    ) -> list[tuple[Row | None, Row | RenderedRow | None, Row | None]]:
        """(before, after, key) of every row of a WRITE/UPDATE/DELETE_ROWS event body.

        `after` is a `RenderedRow` where this decoder renders JSON and the image
        holds no NULL (the common case); `key` holds the primary key's columns
        of the new image (the old one for deletes), None without a primary key.
        """
        plan, pos, nbytes = self._event_start(body, event_type, post_header)
        end = len(body)
        names = self.key_names
        out: list[tuple[Row | None, Row | RenderedRow | None, Row | None]] = []
        append = out.append
        if event_type in DELETE_EVENTS:
            while pos < end:
                row, pos = _image(body, pos, plan)
                append((row, None, {k: row[k] for k in names} if names else None))
            return out
        before = None
        new = plan
        update = event_type in UPDATE_EVENTS
        if update:
            new = self._plan(body[pos : pos + nbytes])
            pos += nbytes
        rendered = new.json
        while pos < end:
            if update:
                before, pos = _image(body, pos, plan)
            if rendered is not None:
                made = rendered(body, pos)
                if made is not None:
                    after, key, pos = made
                    append((before, after, key))
                    continue
            row, pos = _image(body, pos, new)
            append((before, row, {k: row[k] for k in names} if names else None))
        return out


def _image(data: bytes, pos: int, plan: _Plan) -> tuple[dict[str, Any], int]:
    start = pos + plan.nbytes
    nulls = int.from_bytes(data[pos:start], "little") & plan.mask
    if not nulls:
        return plan.fast(data, start)
    pos = start
    row: dict[str, Any] = {}
    for name, read in plan.columns:
        if nulls & 1:
            row[name] = None
        else:
            row[name], pos = read(data, pos)
        nulls >>= 1
    return row, pos


_MAX_REFUSED = 10_000  # remembered refusals; forgotten all at once past this


class RowsDecoder:
    """TABLE_MAP and row events of one binlog stream -> decoded rows.

    `json_columns(schema, table)` (optional) names the columns of a MariaDB
    table that hold JSON text (MariaDB's JSON is LONGTEXT; the binlog cannot
    tell). It is called once per table version.
    """

    def __init__(
        self,
        is_mariadb: bool = True,
        json_columns: Callable[[str, str], set[str]] | None = None,
        json_values: JsonValues | None = None,
    ):
        self.is_mariadb = is_mariadb
        self.json_columns = json_columns
        self.json_values = json_values  # see TableDecoder
        self._by_bytes: dict[bytes, TableDecoder] = {}
        self._refused: set[bytes] = set()  # TABLE_MAPs of tables `wanted` refused
        self._by_id: dict[bytes, TableDecoder | None] = {}  # by the 6 table id bytes

    def table_map(
        self, body: bytes, wanted: Callable[[str, str], bool] | None = None
    ) -> TableDecoder | None:
        """Register a TABLE_MAP event body; return the decoder for its table id.

        With `wanted`, a table it refuses is not even parsed: its rows are
        skipped (`decoder()` gives None for them). `wanted` must answer the same
        on every call: its answers are remembered.
        """
        table_id = body[0:6]  # as bytes: only ever a dict key
        # Every statement logs its TABLE_MAP again: the same bytes after the table
        # id mean the same table version, already decided and parsed once.
        key = bytes(body[6:])
        decoder = self._by_bytes.get(key)
        if decoder is None:
            if key in self._refused:
                self._by_id[table_id] = None
                return None
            if wanted is not None:
                n = body[8]
                schema = body[9 : 9 + n].decode()
                table = body[11 + n : 11 + n + body[10 + n]].decode()
                if not wanted(schema, table):
                    if len(self._refused) >= _MAX_REFUSED:
                        self._refused.clear()
                    self._refused.add(key)
                    self._by_id[table_id] = None
                    return None
            tm = parse_table_map(body, self.is_mariadb)
            if self.json_columns is not None and self.is_mariadb:
                wanted_json = self.json_columns(tm.schema, tm.table)
                for c in tm.columns:
                    if c.name in wanted_json and c.real_type == T_BLOB:
                        c.json_text = True
            decoder = TableDecoder(tm, self.json_values)
            self._by_bytes[key] = decoder
        self._by_id[table_id] = decoder
        return decoder

    def decoder(self, body: bytes) -> TableDecoder | None:
        """The decoder for a row event body (None: a table `wanted` refused)."""
        try:
            return self._by_id[body[0:6]]
        except KeyError:
            raise DecodeError(
                f"row event for table id {int.from_bytes(body[0:6], 'little')} without a "
                "TABLE_MAP before it"
            ) from None

    def forget_ids(self) -> None:
        """Table ids are only valid until the next binlog file: drop them (decoders stay)."""
        self._by_id.clear()
