"""Converters from pgoutput text-format column values to Python values.

pgoutput sends every value in the type's text output form. The replication
session is opened with ``TimeZone=UTC``, ``DateStyle=ISO`` and
``IntervalStyle=postgres``, so the formats parsed here are those; offsets other
than ``+00`` are still handled.

Converters are looked up once per column when a Relation message arrives
(`converter_for`) and then applied to each value as a plain call, so the
common path is one C-implemented function call per value (``int``, ``float``,
``bytes.decode``, ``json.loads``, ``datetime.fromisoformat``...). Values that
Python cannot represent ('infinity' timestamps, BC dates, years past 9999, the
time '24:00:00') come back as the server's text, as the data model asks.

Type names (`type_name`, used for ``Change.columns``) are ``pg_type.typname``:
``int4``, ``numeric``, ``timestamptz``; arrays keep PostgreSQL's underscore
prefix: ``_text``, ``_int4``. Non-built-in types (enums, domains, extension
types) are named by the Type messages pgoutput sends before their first use;
pass those as the ``custom`` mapping {oid: typname}.

Example::

    >>> conv = converter_for(1700, -1)     # numeric
    >>> conv(b"12345.67")
    Decimal('12345.67')
    >>> converter_for(1007, -1)(b"{1,2,NULL,4}")   # int4[]
    [1, 2, None, 4]
    >>> type_name(1009)
    '_text'
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

from cdc.model import Interval

Converter = Callable[[bytes], Any]
TextParser = Callable[[str], Any]

# Built-in types a table column can have (pg_type rows with oid < 10000, base,
# range and multirange types and their arrays; catalog-internal types left out).
BUILTIN_TYPES: dict[int, str] = {
    16: "bool", 17: "bytea", 18: "char", 19: "name", 20: "int8", 21: "int2", 22: "int2vector",
    23: "int4", 24: "regproc", 25: "text", 26: "oid", 27: "tid", 28: "xid", 29: "cid",
    30: "oidvector", 114: "json", 142: "xml", 143: "_xml", 199: "_json", 271: "_xid8",
    600: "point", 601: "lseg", 602: "path", 603: "box", 604: "polygon", 628: "line",
    629: "_line", 650: "cidr", 651: "_cidr", 700: "float4", 701: "float8", 718: "circle",
    719: "_circle", 774: "macaddr8", 775: "_macaddr8", 790: "money", 791: "_money",
    829: "macaddr", 869: "inet", 1000: "_bool", 1001: "_bytea", 1002: "_char", 1003: "_name",
    1005: "_int2", 1006: "_int2vector", 1007: "_int4", 1008: "_regproc", 1009: "_text",
    1010: "_tid", 1011: "_xid", 1012: "_cid", 1013: "_oidvector", 1014: "_bpchar",
    1015: "_varchar", 1016: "_int8", 1017: "_point", 1018: "_lseg", 1019: "_path",
    1020: "_box", 1021: "_float4", 1022: "_float8", 1027: "_polygon", 1028: "_oid",
    1033: "aclitem", 1034: "_aclitem", 1040: "_macaddr", 1041: "_inet", 1042: "bpchar",
    1043: "varchar", 1082: "date", 1083: "time", 1114: "timestamp", 1115: "_timestamp",
    1182: "_date", 1183: "_time", 1184: "timestamptz", 1185: "_timestamptz",
    1186: "interval", 1187: "_interval", 1231: "_numeric", 1266: "timetz", 1270: "_timetz",
    1560: "bit", 1561: "_bit", 1562: "varbit", 1563: "_varbit", 1700: "numeric",
    1790: "refcursor", 2201: "_refcursor", 2202: "regprocedure", 2203: "regoper",
    2204: "regoperator", 2205: "regclass", 2206: "regtype", 2207: "_regprocedure",
    2208: "_regoper", 2209: "_regoperator", 2210: "_regclass", 2211: "_regtype",
    2949: "_txid_snapshot", 2950: "uuid", 2951: "_uuid", 2970: "txid_snapshot",
    3220: "pg_lsn", 3221: "_pg_lsn", 3614: "tsvector", 3615: "tsquery", 3643: "_tsvector",
    3645: "_tsquery", 3734: "regconfig", 3735: "_regconfig", 3769: "regdictionary",
    3770: "_regdictionary", 3802: "jsonb", 3807: "_jsonb", 3904: "int4range",
    3905: "_int4range", 3906: "numrange", 3907: "_numrange", 3908: "tsrange",
    3909: "_tsrange", 3910: "tstzrange", 3911: "_tstzrange", 3912: "daterange",
    3913: "_daterange", 3926: "int8range", 3927: "_int8range", 4072: "jsonpath",
    4073: "_jsonpath", 4089: "regnamespace", 4090: "_regnamespace", 4096: "regrole",
    4097: "_regrole", 4191: "regcollation", 4192: "_regcollation", 4451: "int4multirange",
    4532: "nummultirange", 4533: "tsmultirange", 4534: "tstzmultirange",
    4535: "datemultirange", 4536: "int8multirange", 5038: "pg_snapshot",
    5039: "_pg_snapshot", 5069: "xid8", 6150: "_int4multirange", 6151: "_nummultirange",
    6152: "_tsmultirange", 6153: "_tstzmultirange", 6155: "_datemultirange",
    6157: "_int8multirange",
}  # fmt: skip

_OID_BY_NAME = {name: oid for oid, name in BUILTIN_TYPES.items()}
# Array type -> element type, by PostgreSQL's naming rule (_elem). int2vector and
# oidvector are space-separated, not arrays in text form, and have no underscore.
ARRAY_ELEMENT: dict[int, int] = {
    oid: _OID_BY_NAME[name[1:]]
    for oid, name in BUILTIN_TYPES.items()
    if name.startswith("_") and name[1:] in _OID_BY_NAME
}
_BOX = 603  # the one built-in type whose array delimiter is ';' (its values contain ',')

_UTC = UTC


def numeric_precision_scale(type_modifier: int) -> tuple[int, int]:
    """A numeric(p, s) column's precision and scale from its typmod (at least 4).
    The scale is an 11-bit signed number (negative scales since PostgreSQL 15)."""
    mod = type_modifier - 4
    return (mod >> 16) & 0xFFFF, ((mod & 0x7FF) ^ 1024) - 1024


def type_name(oid: int, custom: Mapping[int, str] | None = None, type_modifier: int = -1) -> str:
    """The type's ``pg_type.typname`` ('int4', '_text'); ``oid:<n>`` when unknown.

    Where the column has a type modifier that formats need (a numeric's
    precision and scale, a time's fractional digits, a varchar's length) it is
    appended as format_type does: 'numeric(12,2)', 'timestamptz(3)', '_varchar(20)'.
    """
    name = BUILTIN_TYPES.get(oid)
    if name is None and custom is not None:
        name = custom.get(oid)
    if name is None:
        return f"oid:{oid}"
    if type_modifier >= 0:
        base = name.lstrip("_")
        if base == "numeric" and type_modifier >= 4:
            precision, scale = numeric_precision_scale(type_modifier)
            return f"{name}({precision},{scale})"
        if base in _PRECISION_TYPES:
            return f"{name}({type_modifier})"
        if base in _LENGTH_TYPES and type_modifier >= 4:
            return f"{name}({type_modifier - 4})"
    return name


# Types whose typmod is a fractional-second precision, or a length + 4 header.
_PRECISION_TYPES = frozenset({"time", "timetz", "timestamp", "timestamptz", "interval"})
_LENGTH_TYPES = frozenset({"varchar", "bpchar", "bit", "varbit"})


def converter_for(
    type_oid: int, type_modifier: int = -1, custom: Mapping[int, str] | None = None
) -> Converter:
    """A function turning one text-format value of this type into its Python value.

    `type_modifier` (atttypmod) does not change any conversion today; it is
    accepted so callers need not know that. `custom` maps the OIDs of
    non-built-in types to their names (from Type messages): those values stay
    str, except arrays of them (name '_x'), which become lists of str.
    """
    del type_modifier
    scalar = _SCALAR_CONVERTERS.get(type_oid)
    if scalar is not None:
        return scalar
    element = ARRAY_ELEMENT.get(type_oid)
    if element is not None:
        delimiter = ";" if element == _BOX else ","
        return array_converter(_TEXT_PARSERS.get(element, _identity), delimiter)
    if custom is not None and type_oid not in BUILTIN_TYPES:
        name = custom.get(type_oid, "")
        if name.startswith("_"):
            return array_converter(_identity, ",")
    return _text


# --- scalar parsers ---------------------------------------------------------
# Each has a str form (used for array elements) and, where the C function takes
# bytes directly (int, float, json.loads), a bytes form that skips the decode.


def _identity(text: str) -> str:
    return text


def _text(value: bytes) -> str:
    return value.decode()


TEXT_CONVERTER = _text  # what every type without a parser (text, varchar, uuid, ...) uses


def _bool_text(text: str) -> bool:
    return text == "t"


_BOOLS = {b"t": True, b"f": False}
BOOL_CONVERTER = _BOOLS.__getitem__  # the one bound method every bool column shares


def _date_text(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:  # 'infinity', BC dates, years past 9999
        return text


def _time_text(text: str) -> time | str:
    try:
        return time.fromisoformat(text)
    except ValueError:  # '24:00:00' is a valid PostgreSQL time
        return text


def _timestamp_text(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:  # 'infinity', BC, years past 9999
        return text


def _timestamptz_text(text: str) -> datetime | str:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    return _in_utc(value, text)


def _timestamptz(raw: bytes) -> datetime | str:
    # _decoded(_timestamptz_text) inlined: a common type, one call less per value.
    text = raw.decode()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return text
    if value.tzinfo is _UTC:  # the common case: the session runs with TimeZone=UTC
        return value
    return _in_utc(value, text)


def _in_utc(value: datetime, text: str) -> datetime | str:
    tz = value.tzinfo
    if tz is _UTC:
        return value
    if tz is None:
        return value.replace(tzinfo=_UTC)
    try:
        return value.astimezone(_UTC)
    except OverflowError:  # e.g. 9999-12-31 23:00-05 is past datetime.max in UTC
        return text


# IntervalStyle=postgres: '1 year 2 mons 3 days 04:05:06.789', '-1 days +02:00:00'.
# Each unit has its own sign; the clock part's sign covers the whole clock part.
_INTERVAL = re.compile(
    r"(?:([+-]?\d+) years? ?)?"
    r"(?:([+-]?\d+) mons? ?)?"
    r"(?:([+-]?\d+) days? ?)?"
    r"(?:([+-])?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?"
)


def _interval_text(text: str) -> Interval | str:
    match = _INTERVAL.fullmatch(text)
    if match is None or not text:  # 'infinity' (PostgreSQL 17), other styles
        return text
    years, mons, days, sign, hours, minutes, seconds, fraction = match.groups()
    months = int(years or 0) * 12 + int(mons or 0)
    micros = 0
    if hours is not None:
        micros = (int(hours) * 3600 + int(minutes) * 60 + int(seconds)) * 1_000_000
        if fraction:
            micros += int(fraction.ljust(6, "0"))
        if sign == "-":
            micros = -micros
    return Interval(months, int(days or 0), micros)


_BYTEA_ESCAPE = re.compile(rb"\\(\\|[0-3][0-7]{2})")


def _bytea(value: bytes) -> bytes:
    if value[:2] == b"\\x":  # bytea_output=hex, the default
        return binascii.a2b_hex(value[2:])
    # bytea_output=escape: printable bytes as is, '\\' and '\ooo' escapes
    return _BYTEA_ESCAPE.sub(
        lambda m: b"\\" if m.group(1) == b"\\" else bytes((int(m.group(1), 8),)), value
    )


def _bytea_text(text: str) -> bytes:
    return _bytea(text.encode())


def _numeric(value: bytes) -> Decimal:
    return Decimal(value.decode())  # 'NaN', 'Infinity', '-Infinity' included


def _decoded(parse: TextParser) -> Converter:
    def convert(value: bytes) -> Any:
        return parse(value.decode())

    convert.__name__ = parse.__name__.removesuffix("_text")
    return convert


_INT_OIDS = (20, 21, 23, 26)  # int8, int2, int4, oid
_FLOAT_OIDS = (700, 701)
_JSON_OIDS = (114, 3802)

# Element parsers for arrays (str in, value out). Types not listed stay str.
_TEXT_PARSERS: dict[int, TextParser] = {
    **{oid: int for oid in _INT_OIDS},
    **{oid: float for oid in _FLOAT_OIDS},  # float('NaN'), float('-Infinity') work
    **{oid: json.loads for oid in _JSON_OIDS},
    1700: Decimal,
    16: _bool_text,
    17: _bytea_text,
    1082: _date_text,
    1083: _time_text,
    1266: _time_text,  # timetz: an aware time
    1114: _timestamp_text,
    1184: _timestamptz_text,
    1186: _interval_text,
}

# Column converters (bytes in). int(), float() and json.loads() accept bytes, so
# the commonest types cost a single C call.
_SCALAR_CONVERTERS: dict[int, Converter] = {
    **{oid: _decoded(parse) for oid, parse in _TEXT_PARSERS.items()},
    **{oid: int for oid in _INT_OIDS},
    **{oid: float for oid in _FLOAT_OIDS},
    **{oid: json.loads for oid in _JSON_OIDS},
    1700: _numeric,
    1184: _timestamptz,
    16: BOOL_CONVERTER,
    17: _bytea,
}


# --- arrays -----------------------------------------------------------------


def array_converter(element: TextParser, delimiter: str = ",") -> Converter:
    """A converter for an array whose elements `element` parses from text."""

    def convert(value: bytes) -> list[Any] | str:
        text = value.decode()
        try:
            return parse_array(text, element, delimiter)
        except (ValueError, IndexError):  # not an array literal after all
            return text

    return convert


def parse_array(text: str, element: TextParser = _identity, delimiter: str = ",") -> list[Any]:
    """Parse PostgreSQL's array output ('{1,2,NULL}', '{{"a b",c},{d,e}}').

    Unquoted NULL is None; a quoted "NULL" is the string. Dimension
    decoration ('[0:1]={1,2}') is dropped: Python lists start at 0.
    """
    if text[0] == "[":
        text = text[text.index("=") + 1 :]
    if text[0] != "{" or text[-1] != "}":
        raise ValueError(f"not an array: {text!r}")
    inner = text[1:-1]
    if '"' not in inner and "{" not in inner and "\\" not in inner:
        # Fast path: a one-dimensional array of plain elements.
        if not inner:
            return []
        return [None if item == "NULL" else element(item) for item in inner.split(delimiter)]
    result, end = _parse_nested(text, 0, element, delimiter)
    if end != len(text):
        raise ValueError(f"trailing characters in array: {text!r}")
    return result


def _parse_nested(
    text: str, pos: int, element: TextParser, delimiter: str
) -> tuple[list[Any], int]:
    """Parse the '{...}' starting at `pos`; return it and the index after '}'."""
    items: list[Any] = []
    pos += 1  # '{'
    if text[pos] == "}":
        return items, pos + 1
    while True:
        char = text[pos]
        if char == "{":
            sub, pos = _parse_nested(text, pos, element, delimiter)
            items.append(sub)
        elif char == '"':
            value, pos = _parse_quoted(text, pos)
            items.append(element(value))
        else:
            end = pos
            while text[end] != delimiter and text[end] != "}":
                end += 1
            token = text[pos:end].strip()
            items.append(None if token.upper() == "NULL" else element(token))
            pos = end
        char = text[pos]
        pos += 1
        if char == "}":
            return items, pos
        if char != delimiter:
            raise ValueError(f"unexpected {char!r} in array at {pos - 1}")


def _parse_quoted(text: str, pos: int) -> tuple[str, int]:
    """Parse the quoted element at `pos`; return its value and the index after it."""
    parts = []
    pos += 1  # opening quote
    while True:
        quote = text.index('"', pos)
        backslash = text.find("\\", pos, quote)
        if backslash < 0:
            parts.append(text[pos:quote])
            return "".join(parts), quote + 1
        parts.append(text[pos:backslash])
        parts.append(text[backslash + 1])  # the escaped character, literally
        pos = backslash + 2
