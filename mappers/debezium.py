"""The ``debezium`` format: Debezium's JSON envelope without the schema block.

Reproduces Debezium 3.6.3's output (key/value JsonConverter,
``schemas.enable=false``) value for value, so consumers built for Debezium
(Flink ``debezium-json``, Materialize, ClickHouse, RisingWave, ksqlDB) read it
unchanged; ``shared/reference/`` holds the captures the tests compare with.
Only timing fields, ``source.version`` and ``source.name`` differ by design.

Value encodings (PostgreSQL, Debezium's defaults: ``time.precision.mode=
adaptive``, ``interval.handling.mode=numeric``, ``binary.handling.mode=bytes``):

=====================  =====================================================
int2/int4/int8         number
numeric(p,s)           ``decimal="string"``: Debezium's string mode
                       (``"12345.67"``; Java ``BigDecimal.toString``, so
                       ``1.000E-7`` for tiny values, ``NAN``/``POSITIVE_INFINITY``
                       for the special values). ``decimal="base64"``: base64 of
                       the unscaled big-endian two's-complement integer at the
                       column's scale (``"EtaH"``)
numeric (no typmod)    string mode as above; base64 mode: Debezium's
                       VariableScaleDecimal ``{"scale": s, "value": base64}``
                       with trailing zeros stripped. NaN/Infinity cannot be
                       expressed in base64 mode: rendering fails (Debezium
                       stops the connector), so ``on_error`` decides
float4                 the shortest decimal that round-trips through a 32-bit
                       float (0.1, not 0.10000000149011612)
float8                 number; NaN/Infinity as the strings Jackson writes
date                   days since the epoch
time(0-3) / time       ms / µs since midnight (``'24:00:00'`` = a full day)
timestamp(0-3) / -     epoch ms / epoch µs; ``±infinity`` as PgStatement's
                       DATE_POSITIVE/NEGATIVE_INFINITY
timestamptz(p)         ISO-8601 UTC with exactly p fraction digits (6 without
                       a typmod: ``"2024-02-29T11:14:15.000000Z"``, as
                       Debezium ≥ 2.2 prints, DBZ-5996/DBZ-6163); p = 0 prints
                       no fraction. ``infinity`` strings pass through
interval               µs, a month = 30.4375 days (computed exactly in
                       integers; Debezium's double arithmetic can differ by
                       1 µs on very long intervals)
time (MySQL)           µs (``io.debezium.time.MicroTime``, Debezium's
                       ``adaptive_time_microseconds``), whatever the fsp; a
                       TIME beyond a time of day (a timedelta: negative or
                       >= 24h) too, e.g. ``-838:59:59`` = -3020399000000
json/jsonb             the JSON text as a string: ``json.dumps`` with default
                       separators, which is jsonb's canonical text; a plain
                       json column's original whitespace is not preserved
bytea                  base64
geometry (MySQL)       ``io.debezium.data.geometry.Geometry``:
                       ``{"wkb": base64, "srid": n}``, srid null when 0
point (MySQL)          ``io.debezium.data.geometry.Point``:
                       ``{"x": x, "y": y, "wkb": base64, "srid": n}``
                       (other values of these names, e.g. PostGIS text, as str)
arrays (``_elem``)     JSON arrays, element by element
bool, text, varchar,   unchanged (bpchar keeps its blank padding, enums give
bpchar, uuid, enums    their label)
anything else          ``str(value)`` (the decoder already gives the server's
                       text form for types it does not know)
=====================  =====================================================

Unchanged TOAST columns (`Change.unchanged`) carry Debezium's placeholder:
``"__debezium_unavailable_value"``; for bytea its bytes in base64, for text,
varchar and json arrays ``[placeholder]``, for int4/int8/date arrays the list
of its byte values, as Debezium's UnchangedToastedPlaceholder does.

Source block conventions with the connectors:

- PostgreSQL: ``lsn`` is `Change.log_pos` (the change's LSN as an int);
  ``sequence`` is ``[last_commit_lsn, lsn]`` as strings, where
  ``last_commit_lsn`` comes from ``Change.source["last_commit_lsn"]`` (the
  commit LSN of the previous transaction) and is null when absent, as in
  Debezium's first event after a start.
- MySQL (``Change.source["connector"] == "mysql"``): ``log_pos`` is
  ``(file, pos, row)``; ``server_id``, ``gtid``, ``thread`` and ``query`` come
  from `Change.source`.

A schema change (op ``schema``, MySQL/MariaDB with ``schema_changes: true``)
becomes Debezium's schema change event on the topic ``<server_name>``
(Debezium's ``topic.prefix`` topic), key ``{"databaseName": db}``, value
``{"source", "ts_ms", "databaseName", "schemaName": null, "ddl",
"tableChanges"}``. Without a DDL parser, ``tableChanges`` is a subset of
Debezium's: ``[{"type": CREATE | ALTER | DROP, "id": "\"db\".\"table\"",
"table": null}]`` for a statement on a table, ``[]`` for one on a database.

An update that changes the primary key becomes, as in Debezium, a delete
with the old key (plus its tombstone) followed by a create with the new key;
Debezium's ``__debezium.oldkey``/``newkey`` headers are not produced (a
record here has no headers).
"""

from __future__ import annotations

import binascii
import datetime as dt
import json
import struct
import time
from collections.abc import Callable
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from json.encoder import encode_basestring
from typing import Any

import cdc
from cdc.model import (
    DELETE,
    EPOCH_UNIT,
    INSERT,
    MESSAGE,
    QUOTES_PLAIN_NUMERIC,
    READ,
    SCHEMA,
    TRUNCATE,
    UPDATE,
    UTC_MICROS_TIMESTAMPTZ,
    Change,
    Geometry,
    Hole,
    Interval,
    RecordTemplate,
    RenderedRow,
)
from mappers.formats import LayoutCache, Record, array_of, base64_text, split_type_name
from mappers.formats import to_json as _encode

Converter = Callable[[Any], Any]

PLACEHOLDER = "__debezium_unavailable_value"

_OPS = {INSERT: "c", UPDATE: "u", DELETE: "d", READ: "r", TRUNCATE: "t", MESSAGE: "m"}

# jsonb's canonical text form: ", " and ": " separators, non-ASCII kept.
_json_text = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode

# Decimal arithmetic that never rounds (numeric has up to 131072 digits).
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

_EPOCH = dt.datetime(1970, 1, 1)
_UTC = dt.UTC
_TIMEDELTA = dt.timedelta
_ONE_US = dt.timedelta(microseconds=1)
_EPOCH_ORDINAL = 719163  # dt.date(1970, 1, 1).toordinal()
_US_PER_DAY = 86_400_000_000
_US_PER_MONTH = 2_629_800_000_000  # 30.4375 days: Debezium's DAYS_PER_MONTH_AVG
_PG_TS_POS_INFINITY = 9223372036825200000  # org.postgresql.PGStatement.DATE_POSITIVE_INFINITY
_PG_TS_NEG_INFINITY = -9223372036832400000
_FLOAT_SPECIALS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def package_version() -> str:
    """``cdc-<version>``, Debezium's ``source.version`` for our envelopes."""
    return f"cdc-{getattr(cdc, '__version__', '0.0.0')}"


# --- value converters -----------------------------------------------------
# Each takes a non-None value; None is handled by the row loop.


def _float8(value: float) -> Any:
    if value - value == 0.0:  # finite
        return value
    return _FLOAT_SPECIALS[repr(float(value))]


_pack_f32 = struct.Struct("<f")


def _float4(value: float) -> Any:
    if value - value != 0.0:
        return _FLOAT_SPECIALS[repr(float(value))]
    single = _pack_f32.unpack(_pack_f32.pack(value))[0]
    if single != value:
        # Not a float32 bit pattern: the decoder parsed PostgreSQL's shortest
        # text (e.g. 3.14) into a double, whose repr is that text already.
        return value
    for digits in range(1, 10):  # 9 significant digits always round-trip
        candidate = float(f"{value:.{digits}g}")
        if _pack_f32.unpack(_pack_f32.pack(candidate))[0] == single:
            return candidate
    return value


def _decimal_special(value: Decimal) -> str:
    # SpecialValueDecimal.toString(): the enum constant's name.
    if value.is_nan():
        return "NAN"
    return "POSITIVE_INFINITY" if value > 0 else "NEGATIVE_INFINITY"


def _decimal_string(value: Decimal) -> str:
    if value.is_finite():
        return str(value)  # same algorithm as Java's BigDecimal.toString()
    return _decimal_special(value)


def _unscaled_bytes(unscaled: int) -> str:
    # BigInteger.toByteArray(): minimal big-endian two's complement.
    length = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1
    return binascii.b2a_base64(unscaled.to_bytes(length, "big", signed=True), newline=False).decode(
        "ascii"
    )


def _decimal_string_scaled(scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Decimal) -> str:
        if value.is_finite():
            return str(value.quantize(quantum, context=_EXACT))
        return _decimal_special(value)

    return convert


def _decimal_base64_scaled(scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Decimal) -> str:
        if not value.is_finite():
            raise ValueError(
                f"numeric {value} cannot be expressed with decimal=base64; use decimal=string"
            )
        unscaled = int(value.quantize(quantum, context=_EXACT).scaleb(scale, context=_EXACT))
        return _unscaled_bytes(unscaled)

    return convert


def _decimal_variable_scale(value: Decimal) -> dict[str, Any]:
    # io.debezium.data.VariableScaleDecimal: trailing zeros stripped, scale >= 0.
    if not value.is_finite():
        raise ValueError(
            f"numeric {value} cannot be expressed with decimal=base64; use decimal=string"
        )
    normal = value.normalize(_EXACT)
    exponent = normal.as_tuple().exponent
    assert isinstance(exponent, int)
    scale = -exponent if exponent < 0 else 0
    return {"scale": scale, "value": _unscaled_bytes(int(normal.scaleb(scale, context=_EXACT)))}


def _date(value: Any) -> Any:
    if type(value) is str:  # 'infinity' and other values Python cannot hold
        return value
    return value.toordinal() - _EPOCH_ORDINAL


def _time_us(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _US_PER_DAY if value.startswith("24:") else value
    if kind is _TIMEDELTA:  # a MySQL TIME that is a duration: MicroTime, signed
        return value // _ONE_US
    return (
        (value.hour * 60 + value.minute) * 60 + value.second
    ) * 1_000_000 + value.microsecond


def _time_ms(value: Any) -> Any:
    us = _time_us(value)
    return us // 1000 if type(us) is int else us


def _timestamp_us(value: Any) -> Any:
    if type(value) is str:
        if value == "infinity":
            return _PG_TS_POS_INFINITY
        if value == "-infinity":
            return _PG_TS_NEG_INFINITY
        return value
    if value.tzinfo is not None:  # e.g. a source that gives aware values
        value = value.astimezone(_UTC).replace(tzinfo=None)
    result: int = (value - _EPOCH) // _ONE_US
    return result


def _timestamp_ms(value: Any) -> Any:
    us = _timestamp_us(value)
    if type(us) is int and us not in (_PG_TS_POS_INFINITY, _PG_TS_NEG_INFINITY):
        return us // 1000
    return us


# Both map a naive datetime to a count since the epoch (see cdc.model.EPOCH_UNIT):
# a source holding a time's fields computes that number without a datetime.
setattr(_timestamp_us, EPOCH_UNIT, 1)  # noqa: B010
setattr(_timestamp_ms, EPOCH_UNIT, 1000)  # noqa: B010


def _zoned_timestamp(width: int) -> Converter:
    """io.debezium.time.ZonedTimestamp with a fixed fraction width (0: minimal)."""

    def convert(value: Any) -> Any:
        if type(value) is str:  # 'infinity' / '-infinity', as Debezium passes them
            return value
        tz = value.tzinfo
        if tz is not _UTC:
            value = value.replace(tzinfo=_UTC) if tz is None else value.astimezone(_UTC)
        if width == 6:  # the common case: timestamptz without a typmod
            if value.microsecond:
                return value.isoformat()[:-6] + "Z"  # ...T11:14:15.123456+00:00
            return value.isoformat()[:-6] + ".000000Z"
        text: str = value.isoformat(timespec="microseconds")
        if width > 6:
            return text[:-6] + "0" * (width - 6) + "Z"
        if width > 0:
            return text[: 20 + width] + "Z"
        fraction = text[20:26].rstrip("0")
        return f"{text[:19]}.{fraction}Z" if fraction else text[:19] + "Z"

    return convert


def _geometry(value: Any) -> Any:
    """io.debezium.data.geometry.Geometry: WKB and SRID (null when 0, as Debezium)."""
    if type(value) is not Geometry:
        return str(value)  # e.g. PostGIS values, which arrive as text
    return {"wkb": base64_text(value.wkb), "srid": value.srid or None}


_WKB_POINT_LE = struct.Struct("<Idd")
_WKB_POINT_BE = struct.Struct(">Idd")


def _point(value: Any) -> Any:
    """io.debezium.data.geometry.Point: x, y, then the Geometry fields."""
    if type(value) is not Geometry:
        return str(value)  # PostgreSQL's point type arrives as text
    wkb = value.wkb
    if len(wkb) != 21:
        raise ValueError(f"a POINT column holds a value that is not a 2D point ({len(wkb)} bytes)")
    kind, x, y = (_WKB_POINT_LE if wkb[0] else _WKB_POINT_BE).unpack_from(wkb, 1)
    if kind != 1:
        raise ValueError(f"a POINT column holds a WKB geometry of type {kind}")
    return {"x": x, "y": y, "wkb": base64_text(wkb), "srid": value.srid or None}


def _interval(value: Any) -> Any:
    if type(value) is Interval:
        return value.months * _US_PER_MONTH + value.days * _US_PER_DAY + value.microseconds
    return str(value)


_IDENTITY_TYPES = frozenset(
    """int2 int4 int8 oid xid bool text varchar bpchar char name uuid citext""".split()
)


def value_converter(type_name: str, decimal: str = "string") -> Converter | None:
    """The converter for a column of `type_name` (None: the value is used as is).

    >>> value_converter("numeric(12,2)", "base64")(Decimal("12345.67"))
    'EtaH'
    """
    base, mods, dims = split_type_name(type_name)
    if dims:
        return array_of(value_converter(base, decimal))
    if base in _IDENTITY_TYPES:
        return None
    if base == "numeric":
        if len(mods) == 2:
            scaled = _decimal_string_scaled if decimal == "string" else _decimal_base64_scaled
            return scaled(mods[1])
        return _decimal_string if decimal == "string" else _decimal_variable_scale
    if base == "float4":
        return _float4
    if base == "float8":
        return _float8
    if base == "date":
        return _date
    if base == "time":
        return _time_ms if mods and mods[0] <= 3 else _time_us
    if base == "timestamp":
        return _timestamp_ms if mods and mods[0] <= 3 else _timestamp_us
    if base == "timestamptz":
        return _zoned_timestamp(mods[0] if mods else 6)
    if base == "interval":
        return _interval
    if base in ("json", "jsonb"):
        return _json_text
    if base == "bytea":
        return base64_text
    if base == "geometry":
        return _geometry
    if base == "point":
        return _point
    return str


# PostgreSQL text -> this format's JSON text, for the commonest types whose text
# needs no parsing to get there; None where the value needs the general path.
TextShortcut = Callable[[bytes], str | None]
JsonValuePlan = tuple[list[Converter | None], list[TextShortcut | None], Callable[[Any], str]]


def _numeric_text(raw: bytes) -> str | None:
    # numeric(p,s) with s >= 0 is printed with exactly s decimals, which is what
    # the string mode gives for |value| >= 1 (smaller ones may take an exponent).
    first = raw[0]
    if 49 <= first <= 57 or (first == 45 and 49 <= raw[1] <= 57):
        return f'"{raw.decode()}"'
    return None


# The rule above, as a source may apply it itself (see cdc.model.QUOTES_PLAIN_NUMERIC).
setattr(_numeric_text, QUOTES_PLAIN_NUMERIC, True)  # noqa: B010


def _timestamptz6_text(raw: bytes) -> str | None:
    # '2024-03-01 11:14:15.1234+00' (TimeZone=UTC) -> "2024-03-01T11:14:15.123400Z";
    # other years (>9999, BC), 'infinity' and other zones take the general path.
    text = raw.decode()
    if len(text) < 22 or text[-3:] != "+00" or text[4] != "-" or text[10] != " ":
        return None
    if len(text) == 22:
        return f'"{text[:10]}T{text[11:19]}.000000Z"'
    return f'"{text[:10]}T{text[11:-3].ljust(15, "0")}Z"'


# The rule above, as a source may apply it itself (see cdc.model.UTC_MICROS_TIMESTAMPTZ).
setattr(_timestamptz6_text, UTC_MICROS_TIMESTAMPTZ, True)  # noqa: B010


def pg_text_shortcut(type_name: str, decimal: str = "string") -> TextShortcut | None:
    """The shortcut from a PostgreSQL text value of `type_name` to its JSON, if any."""
    base, mods, dims = split_type_name(type_name)
    if dims:
        return None
    if base == "numeric" and decimal == "string" and len(mods) == 2 and mods[1] >= 0:
        return _numeric_text
    if base == "timestamptz" and (not mods or mods[0] == 6):
        return _timestamptz6_text
    return None


def placeholder_for(type_name: str) -> Any:
    """What Debezium puts in place of an unchanged TOAST value of `type_name`."""
    base, _, dims = split_type_name(type_name)
    if dims:
        if base in ("text", "varchar", "json", "jsonb"):
            return [PLACEHOLDER]
        if base in ("int4", "int8", "date"):
            return list(PLACEHOLDER.encode())
        return PLACEHOLDER
    if base == "bytea":
        return base64_text(PLACEHOLDER.encode())
    return PLACEHOLDER


# --- envelope ----------------------------------------------------------------


class _Table:
    """Everything derived from one `Change.columns` dict, computed once."""

    __slots__ = ("columns", "converters", "converted", "nulls", "convert_plan", "key_prefixes")

    def __init__(self, columns: dict[str, str], decimal: str) -> None:
        self.columns = columns  # keeps the dict alive, so its id() stays unique
        self.converters = {name: value_converter(t, decimal) for name, t in columns.items()}
        self.convert_plan = tuple((n, c) for n, c in self.converters.items() if c is not None)
        self.converted = frozenset(n for n, _ in self.convert_plan)
        self.nulls = dict.fromkeys(columns)  # every column, in table order, null
        self.key_prefixes: dict[str, str] = {}  # '{"id":' by key column

    def row(self, values: dict[str, Any], replaced: dict[str, Any] | None = None) -> str:
        """JSON of every column in table order; null where `values` lacks it,
        the value from `replaced` (TOAST placeholders) where that has it."""
        # Copying the all-null row and updating it in place keeps the table's
        # column order and costs no Python-level work for the (usual) columns
        # whose values are JSON values already.
        out = self.nulls.copy()
        out.update(values)
        for name, convert in self.convert_plan:
            value = out[name]
            if value is not None:
                out[name] = convert(value)
        if replaced:
            out.update(replaced)
        return _encode(out)

    def int_key_prefix(self, name: str) -> str | None:
        """'{"<name>":' for a key of this one column, where no converter touches
        it (its integers are their own JSON); None where one does."""
        prefix = self.key_prefixes.get(name)
        if prefix is None and name not in self.converted:
            prefix = self.key_prefixes[name] = "{" + _encode(name) + ":"
        return prefix

    def key(self, key: dict[str, Any]) -> bytes:
        if len(key) == 1:
            # The usual single integer primary key: no encoder call.
            for name, value in key.items():
                if type(value) is int:
                    prefix = self.int_key_prefix(name)
                    if prefix is not None:
                        return f"{prefix}{value}}}".encode()
        if self.converted.isdisjoint(key):  # typical keys: ints, text, uuid
            return _encode(key).encode()
        converters = self.converters
        out: dict[str, Any] = {}
        for name, value in key.items():
            convert = converters.get(name)
            out[name] = value if value is None or convert is None else convert(value)
        return _encode(out).encode()


class _RowText:
    """The envelope text shared by the rendered rows of one transaction and table
    (see DebeziumFormat._render_rendered), and by those of one row event."""

    __slots__ = ("source", "columns", "commit_ts", "table", "up_to_file", "after_row",
                 "int_key", "file", "pos", "up_to_row")  # fmt: skip

    def __init__(self, change: Change, table: _Table, up_to_file: str, after_row: str) -> None:
        # Kept alive here, their identity cannot be reused by other dicts.
        self.source, self.columns, self.commit_ts = change.source, change.columns, change.commit_ts
        self.table = table
        # The source block up to its file's value, and after its row number.
        self.up_to_file, self.after_row = up_to_file, after_row
        # A key of one column no converter touches, whose integers are their own
        # JSON: (its name, the key's text up to the value).
        self.int_key: tuple[str, str] | None = None
        key = change.key
        if key and len(key) == 1:
            [name] = key
            prefix = table.int_key_prefix(name)
            if prefix is not None:
                self.int_key = (name, prefix)
        # The row event: its file and pos, and the block up to the row number.
        self.file: str | None = None
        self.pos: int | None = None
        self.up_to_row = ""


class DebeziumFormat:
    """Debezium JSON envelopes; see the module docstring for the encodings.

    >>> fmt = DebeziumFormat(server_name="dbz")
    >>> [(topic, key, value)] = fmt.render(insert_change)  # doctest: +SKIP
    """

    _MAX_CACHED = 4096  # table names kept; cleared beyond

    def __init__(
        self,
        *,
        decimal: str = "string",
        tombstones: bool = True,
        truncate: bool = False,
        server_name: str = "cdc",
    ) -> None:
        if decimal not in ("string", "base64"):
            raise ValueError(f"unknown decimal mode {decimal!r}: expected string or base64")
        self.decimal = decimal
        self.tombstones = tombstones
        self.truncate = truncate
        self.server_name = server_name
        self.message_topic = f"{server_name}.message"
        self.schema_topic = server_name  # Debezium's schema change topic: the topic.prefix
        self._version = package_version()
        self._tables = LayoutCache(lambda columns: _Table(columns, self.decimal))
        self._source_parts: dict[tuple[str, str, str], tuple[str, str]] = {}
        # The last change's source fields (as compared in _pg_source /
        # _mysql_source_json) and the source block parts made from them.
        self._memo: tuple[Any, str, str] = (None, "", "")
        self._mysql_memo: tuple[Any, dict[str, Any], str, str] = (None, {}, "", "")
        self._mysql_parts: dict[tuple[Any, ...], tuple[str, ...]] = {}
        # What the last rendered MySQL row's envelope was made from (_render_rendered).
        self._row_text: _RowText | None = None
        # The PostgreSQL source block up to its first varying field.
        self._pg_source_head = (
            '"source":{"version":' + _encode(self._version)
            + ',"connector":"postgresql","name":' + _encode(server_name) + ',"ts_ms":'
        )

    # The hot path: one call per row change.
    def render(self, change: Change) -> list[Record]:
        if type(change.after) is RenderedRow and type(change.log_pos) is tuple:
            made = self._render_rendered(change)
            if made is not None:
                return made
        op = change.op
        if op == MESSAGE:
            return self._render_message(change)
        if op == TRUNCATE:
            if not self.truncate:
                return []
            return [(None, None, self._envelope(change, "t", "null", "null"))]
        if op == SCHEMA:
            return self._render_schema(change)
        table = self._tables.get(change.columns)
        key = change.key
        key_bytes = None if key is None else table.key(key)
        before = change.before
        if op == UPDATE and before is not None and key and _key_changed(key, before):
            return self._render_key_change(change, table, key_bytes)
        value = self._envelope(
            change, _OPS[op], "null" if before is None else table.row(before),
            self._after_json(change, table),
        )
        if op == DELETE and self.tombstones:
            return [(None, key_bytes, value), (None, key_bytes, None)]
        return [(None, key_bytes, value)]

    def _row_event_text(self, change: Change) -> _RowText | None:
        """The envelope text around the rows of `change`'s row event (MySQL, no
        mapper has seen it), made once per transaction and table and once per
        event; None where the general path must decide (coordinates of
        unexpected types, a snapshot row, another connector).

        No mapper ran, so the source dict and the columns dict are the ones the
        decoder shares by every change of a transaction and of a table version:
        their identity (kept alive here, so never reused) stands for their content.
        """
        source, columns, log_pos = change.source, change.columns, change.log_pos
        memo = self._row_text
        if (memo is None or memo.source is not source or memo.columns is not columns
                or memo.commit_ts != change.commit_ts):  # fmt: skip
            parts = self._row_source_text(change)
            if parts is None:
                return None
            memo = self._row_text = _RowText(change, self._tables.get(columns), *parts)
        if memo.pos != log_pos[1] or memo.file != log_pos[0]:
            file, pos, row = log_pos
            if type(file) is not str or type(pos) is not int or type(row) is not int:
                return None
            memo.file, memo.pos = file, pos
            memo.up_to_row = f'{memo.up_to_file}{encode_basestring(file)},"pos":{pos},"row":'
        return memo

    def record_template(self, change: Change) -> RecordTemplate | None:
        """The value of every row change like `change` (same table and op, no
        mapper has seen it) as a template the source fills in per row
        (cdc.model.RecordFormat): the same bytes as render() gives, but for the
        time of rendering. None where the general path must decide (a snapshot
        row, another op)."""
        if change.op not in (INSERT, UPDATE, DELETE) or change.snapshot:
            return None
        tail = f'}},"transaction":null,"op":"{_OPS[change.op]}","ts_ms":'
        now = (Hole.NOW_MS, b',"ts_us":', Hole.NOW_US, b',"ts_ns":', Hole.NOW_NS, b"}")
        images = (b'{"before":', Hole.BEFORE, b',"after":', Hole.AFTER)
        if change.source.get("connector", "postgresql") == "mysql":
            before_ts, before_ts_us, before_server_id, after_row = self._mysql_source_parts(
                change, change.source
            )
            return (
                *images, f",{before_ts}".encode(), Hole.TS_MS, before_ts_us.encode(), Hole.TS_US,
                b',"ts_ns":', Hole.TS_NS, before_server_id.encode(), Hole.SERVER_ID,
                b',"gtid":', Hole.GTID, b',"file":', Hole.FILE, b',"pos":', Hole.POS,
                b',"row":', Hole.ROW, f"{after_row}{tail}".encode(), *now,
            )  # fmt: skip
        # PostgreSQL: as _pg_source, with the commit LSN before (a text of the
        # sequence: \"n\" or null), the xid and the change's LSN as holes.
        db_part, table_part = self._pg_names(change)
        return (
            *images, f",{self._pg_source_head}".encode(), Hole.TS_MS,
            f',"snapshot":"false"{db_part}"['.encode(), Hole.LAST_COMMIT, b',\\"', Hole.POS,
            b'\\"]","ts_us":', Hole.TS_US, b',"ts_ns":', Hole.TS_NS, table_part.encode(),
            Hole.TXID, b',"lsn":', Hole.POS,
            f',"xmin":null,"origin":null,"origin_lsn":null{tail}'.encode(), *now,
        )  # fmt: skip

    def _row_source_text(self, change: Change) -> tuple[str, str] | None:
        """The source block's text around a binlog row's file, pos and row (see
        _mysql_source_text), for rows no mapper has seen (_row_event_text); None
        for a snapshot row or another connector's."""
        if change.snapshot or change.source.get("connector") != "mysql":
            return None
        return self._mysql_source_text(change)

    def _render_rendered(self, change: Change) -> list[Record] | None:
        """A MySQL row the decoder rendered (no mapper has seen it): the envelope
        around it from text made once per row event (_row_event_text); None where
        the general path must decide (a primary-key update, coordinates of
        unexpected types)."""
        memo = self._row_event_text(change)
        if memo is None:
            return None
        log_pos = change.log_pos
        table = memo.table
        op = change.op
        key = change.key
        before = change.before
        if before is None:
            before_json = "null"
        elif op == UPDATE and (not key or not _key_changed(key, before)):
            before_json = table.row(before)
        else:
            return None
        now_ns = time.time_ns()
        value = (
            f'{{"before":{before_json},"after":{change.after},{memo.up_to_row}{log_pos[2]}'
            f'{memo.after_row}}},"transaction":null,"op":"{_OPS[op]}",'
            f'"ts_ms":{now_ns // 1_000_000},"ts_us":{now_ns // 1000},"ts_ns":{now_ns}}}'
        ).encode()
        int_key = memo.int_key
        if key is None:
            key_bytes = None
        elif int_key is not None and len(key) == 1 and type(v := key.get(int_key[0])) is int:
            key_bytes = f"{int_key[1]}{v}}}".encode()
        else:
            key_bytes = table.key(key)
        return [(None, key_bytes, value)]

    def json_values(self, columns: dict[str, str]) -> JsonValuePlan:
        """What a source needs to render rows itself (see RenderedRow and
        cdc.model.JsonValues): each column's value converter and text shortcut,
        in order, and the encoder."""
        converters = self._tables.get(columns).converters
        shortcuts = [pg_text_shortcut(t, self.decimal) for t in columns.values()]
        return list(converters.values()), shortcuts, _encode_value

    def _after_json(self, change: Change, table: _Table) -> str:
        after = change.after
        if type(after) is RenderedRow:
            return after
        if after is None:
            return "null"
        if change.unchanged:
            return table.row(after, self._placeholders(change))
        return table.row(after)

    @staticmethod
    def _placeholders(change: Change) -> dict[str, Any]:
        columns = change.columns
        return {name: placeholder_for(columns.get(name, "text")) for name in change.unchanged}

    def _render_key_change(
        self, change: Change, table: _Table, new_key: bytes | None
    ) -> list[Record]:
        # Debezium: a primary-key update is a delete of the old key (with its
        # tombstone) and a create of the new one.
        before = change.before or {}
        old_key = table.key({name: before.get(name) for name in change.key or {}})
        deleted = self._envelope(change, "d", table.row(before), "null")
        out: list[Record] = [(None, old_key, deleted)]
        if self.tombstones:
            out.append((None, old_key, None))
        out.append(
            (None, new_key, self._envelope(change, "c", "null", self._after_json(change, table)))
        )
        return out

    def _envelope(self, change: Change, op: str, before: str, after: str) -> bytes:
        """The value of a row event; `before`/`after` are JSON texts already."""
        now_ns = time.time_ns()
        extra = change.source
        if extra and extra.get("connector", "postgresql") == "mysql":
            source = self._mysql_source_json(change)
        else:
            source = self._pg_source(change)
        # Field order as Debezium's: before, after, source, transaction, op, ts_*.
        return (
            f'{{"before":{before},"after":{after},{source},"transaction":null,'
            f'"op":"{op}","ts_ms":{now_ns // 1_000_000},"ts_us":{now_ns // 1000},'
            f'"ts_ns":{now_ns}}}'
        ).encode()

    def _pg_source(self, change: Change) -> str:
        # All but the change's own LSN is the same for every change of a
        # transaction in one table: built once and reused while those fields
        # compare equal (a mapper may have changed any of them, so no identity
        # shortcut).
        last_commit = change.source.get("last_commit_lsn")
        memo_key = (change.commit_ts, change.txid, change.table, change.schema,
                    change.database, change.snapshot, last_commit)  # fmt: skip
        memo = self._memo
        if memo[0] == memo_key:
            head, tail = memo[1], memo[2]
        else:
            head, tail = self._pg_source_parts(change, last_commit)
            self._memo = (memo_key, head, tail)
        lsn = change.log_pos
        if lsn is None:
            return f'{head}null]",{tail}null,"xmin":null,"origin":null,"origin_lsn":null}}'
        return (
            f'{head}\\"{lsn}\\"]",{tail}{int(lsn)},"xmin":null,"origin":null,'
            '"origin_lsn":null}'
        )

    def _pg_names(self, change: Change) -> tuple[str, str]:
        """The PostgreSQL source block's text from `db` up to `sequence`'s value, and
        from `schema` up to `txId`'s value."""
        names = (change.database, change.schema, change.table)
        parts = self._source_parts.get(names)
        if parts is None:
            if len(self._source_parts) >= self._MAX_CACHED:
                self._source_parts.clear()
            parts = self._source_parts[names] = (
                ',"db":' + _encode(change.database) + ',"sequence":',
                ',"schema":' + _encode(change.schema) + ',"table":' + _encode(change.table)
                + ',"txId":',
            )
        return parts

    def _pg_source_parts(self, change: Change, last_commit: Any) -> tuple[str, str]:
        """The source block around the change's LSN: up to `sequence`'s second
        element, and from after `sequence` up to the `lsn` value."""
        db_part, table_part = self._pg_names(change)
        ts_us = change.commit_ts
        # sequence is a JSON string holding a JSON array: "[\"<last commit>\",\"<lsn>\"]"
        last = "null" if last_commit is None else f'\\"{last_commit}\\"'
        txid = "null" if change.txid is None else int(change.txid)
        snapshot = "true" if change.snapshot else "false"
        head = (
            f'{self._pg_source_head}{ts_us // 1000},"snapshot":"{snapshot}"{db_part}"[{last},'
        )
        tail = f'"ts_us":{ts_us},"ts_ns":{ts_us * 1000}{table_part}{txid},"lsn":'
        return head, tail

    def _render_message(self, change: Change) -> list[Record]:
        body = change.after or {}
        prefix = body.get("prefix", "")
        content = body.get("content") or b""
        if isinstance(content, str):
            content = content.encode()
        message = _encode({"prefix": prefix, "content": base64_text(content)})
        if change.source.get("connector", "postgresql") == "mysql":
            source = self._mysql_source_json(change)
        else:
            source = self._pg_source(change)
        # Debezium's order for messages: op, ts_ms, source, transaction, message.
        value = (
            f'{{"op":"m","ts_ms":{time.time_ns() // 1_000_000},{source},'
            f'"transaction":null,"message":{message}}}'
        ).encode()
        return [(self.message_topic, _encode({"prefix": prefix}).encode(), value)]

    def _mysql_source_json(self, change: Change) -> str:
        """`"source":{...}` of a MySQL change."""
        parts = self._mysql_source_head(change)
        if parts is None:  # a mapper put a list or dict there: no caching
            return '"source":' + _encode(self._mysql_source(change))
        head, tail = parts
        log_pos = change.log_pos
        if type(log_pos) is tuple:
            file, pos, row = log_pos
            if type(file) is str and type(pos) is int and type(row) is int:
                return f'{head}{encode_basestring(file)},"pos":{pos},"row":{row}{tail}}}'
        else:
            file, pos, row = None, None, 0
        return f'{head}{_encode(file)},"pos":{_encode(pos)},"row":{_encode(row)}{tail}}}'

    def _mysql_source_head(self, change: Change) -> tuple[str, str] | None:
        """The MySQL `"source":{...` text up to the file's value (ending in
        `"file":`) and after the row number's, without the closing brace; None
        where a mapper made a field unhashable. As `_pg_source`, the parts that
        are the same for every row of a transaction in one table are built
        once, and those the same for every transaction are kept per table."""
        extra = change.source
        memo_key = (change.commit_ts, change.database, change.table, change.snapshot)
        memo = self._mysql_memo
        # The source dict is compared by value (a mapper may have changed it in place).
        if memo[0] == memo_key and memo[1] == extra:
            return memo[2], memo[3]
        parts = self._mysql_source_text(change)
        if parts is not None:
            self._mysql_memo = (memo_key, dict(extra), *parts)
        return parts

    def _mysql_source_text(self, change: Change) -> tuple[str, str] | None:
        """`_mysql_source_head` without its memo."""
        extra = change.source
        ts_us = change.commit_ts
        server_id, gtid = extra.get("server_id", 0), extra.get("gtid")
        thread, query = extra.get("thread"), extra.get("query")
        # With the types: 1 and True compare (and hash) equal but encode apart.
        names = (change.database, change.table, change.snapshot, thread, query, type(thread),
                 type(query))  # fmt: skip
        try:
            parts = self._mysql_parts.get(names)
        except TypeError:
            return None
        if parts is None:
            if len(self._mysql_parts) >= self._MAX_CACHED:
                self._mysql_parts.clear()
            parts = self._mysql_parts[names] = self._mysql_source_parts(change, extra)
        before_ts, before_ts_us, before_server_id, tail = parts
        gtid_json = encode_basestring(gtid) if type(gtid) is str else _encode_value(gtid)
        server_id_json = str(server_id) if type(server_id) is int else _encode(server_id)
        if type(ts_us) is int:  # as the source gives it: its text is its JSON
            head = (f'{before_ts}{ts_us // 1000}{before_ts_us}{ts_us},"ts_ns":{ts_us * 1000}'
                    f'{before_server_id}{server_id_json},"gtid":{gtid_json},"file":')  # fmt: skip
        else:
            head = (
                f"{before_ts}{_encode_value(ts_us // 1000)}{before_ts_us}"
                f'{_encode_value(ts_us)},"ts_ns":{_encode_value(ts_us * 1000)}'
                f'{before_server_id}{server_id_json},"gtid":{gtid_json},"file":'
            )
        return head, tail

    def _render_schema(self, change: Change) -> list[Record]:
        """Debezium's schema change event (see the module docstring)."""
        body = change.after or {}
        database, table = change.database, change.table
        table_changes = []
        if table:
            kind = str(body.get("kind", ""))
            change_type = "CREATE" if kind == "CREATE TABLE" else (
                "DROP" if kind == "DROP TABLE" else "ALTER")
            table_changes.append({"type": change_type, "id": f'"{database}"."{table}"',
                                  "table": None})  # fmt: skip
        if change.source.get("connector", "postgresql") == "mysql":
            source = self._mysql_source(change)
            source["table"] = table or None
            source_json = '"source":' + _encode(source)
        else:
            source_json = self._pg_source(change)
        # Debezium's field order: source, ts_ms, databaseName, schemaName, ddl, tableChanges.
        value = (
            f'{{{source_json},"ts_ms":{time.time_ns() // 1_000_000},'
            f'"databaseName":{_encode(database)},"schemaName":null,'
            f'"ddl":{_encode(body.get("ddl"))},"tableChanges":{_encode(table_changes)}}}'
        ).encode()
        return [(self.schema_topic, _encode({"databaseName": database}).encode(), value)]

    def _mysql_source_parts(self, change: Change, extra: dict[str, Any]) -> tuple[str, ...]:
        """The MySQL source block's text around its per-transaction fields: before
        ts_ms, between it and ts_us, after ts_ns up to server_id's value, after
        row (see _mysql_source)."""
        return (
            f'"source":{{"version":{_encode(self._version)},"connector":"mysql",'
            f'"name":{_encode(self.server_name)},"ts_ms":',
            f',"snapshot":"{"true" if change.snapshot else "false"}",'
            f'"db":{_encode(change.database)},"sequence":null,"ts_us":',
            f',"table":{_encode(change.table)},"server_id":',
            f',"thread":{_encode(extra.get("thread"))},"query":{_encode(extra.get("query"))}',
        )

    def _mysql_source(self, change: Change) -> dict[str, Any]:
        ts_us = change.commit_ts
        extra = change.source
        log_pos = change.log_pos
        file, pos, row = log_pos if isinstance(log_pos, tuple) else (None, None, 0)
        return {
            "version": self._version,
            "connector": "mysql",
            "name": self.server_name,
            "ts_ms": ts_us // 1000,
            "snapshot": "true" if change.snapshot else "false",
            "db": change.database,
            "sequence": None,
            "ts_us": ts_us,
            "ts_ns": ts_us * 1000,
            "table": change.table,
            "server_id": extra.get("server_id", 0),
            "gtid": extra.get("gtid"),
            "file": file,
            "pos": pos,
            "row": row,
            "thread": extra.get("thread"),
            "query": extra.get("query"),
        }


def _encode_value(value: Any) -> str:
    """`_encode` of one value, with the common converted kinds (text, and the
    integers of the time types) done directly."""
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    return _encode(value)


def _key_changed(key: dict[str, Any], before: dict[str, Any]) -> bool:
    for name, value in key.items():
        old = before.get(name)
        if old is not None and old != value:
            return True
    return False
