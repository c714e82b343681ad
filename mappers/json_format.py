"""The ``json`` format: one flat JSON object per change, with natural values.

For consumers that do not speak Debezium::

    {"op": "update", "database": "shop", "schema": "public", "table": "orders",
     "key": {"id": 7}, "before": null, "after": {"id": 7, "status": "paid"},
     "unchanged": [], "position": "16B3748", "txid": 731,
     "commit_ts": "2024-02-29T11:14:15.123456Z", "snapshot": false}

``op`` is `Change.op` as is (insert, update, delete, truncate, message, read,
schema). Values: numbers stay numbers (NaN/±Infinity as the strings "NaN",
"Infinity", "-Infinity"); numeric as its exact plain string ("12345.67");
date, time and naive timestamp as ISO-8601 text (a MySQL TIME beyond a time of
day as MySQL's own text, "-838:59:59"); timestamptz as ISO-8601 UTC with "Z";
interval as an ISO-8601 duration ("P1Y2M3DT4H5M6.789S", PostgreSQL's
``IntervalStyle=iso_8601`` form); bytea base64; MySQL spatial values as
``{"wkb": base64, "srid": n}``; json/jsonb embedded as JSON; arrays element
by element; anything else as its text. Unchanged TOAST columns
are absent from ``after`` and listed in ``unchanged``. A logical message has
``after = {"prefix", "content" (base64), "transactional"}``, the key
``{"prefix": ...}`` and goes to ``<server_name>.message``, like the debezium
format. A schema change (op ``schema``) keeps its ``after`` (``ddl``, ``kind``,
``default_database``), has the key ``{"database": ...}`` and goes to the topic
``<server_name>``, like Debezium's schema change events.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from cdc.jsonenc import iso_duration, time_text
from cdc.model import (
    DELETE,
    MESSAGE,
    SCHEMA,
    TRUNCATE,
    Change,
    Geometry,
    Interval,
    format_position,
)
from mappers.formats import LayoutCache, Record, array_of, base64_text, split_type_name
from mappers.formats import to_json as _encode

Converter = Callable[[Any], Any]

_UTC = dt.UTC
_FLOAT_SPECIALS = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def _float(value: float) -> Any:
    if value - value == 0.0:
        return value
    return _FLOAT_SPECIALS[repr(float(value))]


def _decimal(value: Any) -> Any:
    if type(value) is not Decimal:
        return str(value)
    if value.is_finite():
        return format(value, "f")  # plain notation, never 1E+2
    return "NaN" if value.is_nan() else ("Infinity" if value > 0 else "-Infinity")


def _isoformat(value: Any) -> Any:
    if type(value) is str:
        return value
    return value.isoformat()


def _time(value: Any) -> Any:
    if type(value) is dt.timedelta:  # a MySQL TIME that is a duration
        return time_text(value)
    return _isoformat(value)


def _geometry(value: Any) -> Any:
    if type(value) is not Geometry:
        return str(value)  # PostGIS / PostgreSQL geometric types arrive as text
    return {"wkb": base64_text(value.wkb), "srid": value.srid}


def _timestamptz(value: Any) -> Any:
    if type(value) is str:
        return value
    tz = value.tzinfo
    if tz is not _UTC:
        value = value.replace(tzinfo=_UTC) if tz is None else value.astimezone(_UTC)
    text: str = value.isoformat(timespec="microseconds")
    return text[:-6] + "Z"


def _interval(value: Any) -> Any:
    return iso_duration(value) if type(value) is Interval else str(value)


_NATIVE_TYPES = frozenset(
    # JSON values already (json/jsonb values are parsed JSON: embedded as is).
    """int2 int4 int8 oid xid bool text varchar bpchar char name uuid citext json jsonb""".split()
)


def value_converter(type_name: str) -> Converter | None:
    """The converter for a column of `type_name` (None: the value is used as is)."""
    base, _, dims = split_type_name(type_name)
    if dims:
        return array_of(value_converter(base))
    if base in _NATIVE_TYPES:
        return None
    if base == "numeric":
        return _decimal
    if base in ("float4", "float8"):
        return _float
    if base == "time":
        return _time
    if base in ("date", "timestamp"):
        return _isoformat
    if base == "timestamptz":
        return _timestamptz
    if base == "interval":
        return _interval
    if base == "bytea":
        return base64_text
    if base in ("geometry", "point"):
        return _geometry
    return str


class _Table:
    __slots__ = ("columns", "converters")

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = columns  # keeps the dict alive, so its id() stays unique
        self.converters = {name: value_converter(t) for name, t in columns.items()}

    def row(self, values: dict[str, Any]) -> dict[str, Any]:
        """The values present, converted; unknown columns pass through as text."""
        converters = self.converters
        out: dict[str, Any] = {}
        for name, value in values.items():
            if value is not None:
                convert = converters.get(name, str)
                if convert is not None:
                    value = convert(value)
            out[name] = value
        return out


class JsonFormat:
    """Flat JSON; see the module docstring."""


    def __init__(
        self,
        *,
        decimal: str = "string",
        tombstones: bool = True,
        truncate: bool = False,
        server_name: str = "cdc",
    ) -> None:
        # `decimal` is accepted for a uniform factory; numeric is always a string here.
        self.tombstones = tombstones
        self.truncate = truncate
        self.message_topic = f"{server_name}.message"
        self.schema_topic = server_name
        self._tables = LayoutCache(_Table)

    def render(self, change: Change) -> list[Record]:
        op = change.op
        if op == TRUNCATE and not self.truncate:
            return []
        topic = None
        if op == MESSAGE:
            body = change.after or {}
            content = body.get("content") or b""
            if isinstance(content, str):
                content = content.encode()
            key: dict[str, Any] | None = {"prefix": body.get("prefix", "")}
            before = None
            after: dict[str, Any] | None = {
                "prefix": body.get("prefix", ""),
                "content": base64_text(content),
                "transactional": bool(body.get("transactional", False)),
            }
            topic = self.message_topic
        elif op == SCHEMA:
            key = {"database": change.database}
            before = None
            after = change.after
            topic = self.schema_topic
        else:
            table = self._tables.get(change.columns)
            key = None if change.key is None else table.row(change.key)
            before = None if change.before is None else table.row(change.before)
            after = None if change.after is None else table.row(change.after)
        key_bytes = None if key is None else _encode(key).encode()
        value = _encode(
            {
                "op": op,
                "database": change.database,
                "schema": change.schema,
                "table": change.table,
                "key": key,
                "before": before,
                "after": after,
                "unchanged": list(change.unchanged),
                "position": format_position(change.position),
                "txid": change.txid,
                "commit_ts": _commit_ts(change.commit_ts),
                "snapshot": change.snapshot,
            }
        ).encode()
        if op == DELETE and self.tombstones:
            return [(topic, key_bytes, value), (topic, key_bytes, None)]
        return [(topic, key_bytes, value)]



_EPOCH = dt.datetime(1970, 1, 1)


@functools.lru_cache(maxsize=64)  # every change of a transaction shares it
def _commit_ts(micros: int) -> str:
    moment = _EPOCH + dt.timedelta(microseconds=micros)
    return moment.isoformat(timespec="microseconds") + "Z"
