"""JSON encoding of values that mappers put into events.

Change values are Python objects (Decimal, datetime, bytes, Interval, ...);
this turns them into JSON the way a consumer expects: exact decimals as
strings, times as ISO-8601, bytes as base64.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from typing import Any

from .model import Interval


def json_default(value: Any) -> Any:
    """`default=` hook for json.dumps."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime):
        if value.tzinfo is not None and value.utcoffset() == datetime.timedelta(0):
            return value.replace(tzinfo=None).isoformat() + "Z"
        return value.isoformat()
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, Interval):
        return interval_iso(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def interval_iso(value: Interval) -> str:
    """ISO-8601 duration: Interval(14, 3, 14706789000) -> 'P1Y2M3DT4H5M6.789S'."""
    years, months = divmod(value.months, 12) if value.months >= 0 else (0, value.months)
    micros = value.microseconds
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    seconds, fraction = divmod(rest, 1_000_000)
    out = "P"
    if years:
        out += f"{years}Y"
    if months:
        out += f"{months}M"
    if value.days:
        out += f"{value.days}D"
    if hours or minutes or seconds or fraction:
        out += "T"
        if hours:
            out += f"{sign}{hours}H"
        if minutes:
            out += f"{sign}{minutes}M"
        if seconds or fraction:
            frac = f".{fraction:06d}".rstrip("0") if fraction else ""
            out += f"{sign}{seconds}{frac}S"
    return out if out != "P" else "PT0S"


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(
        value, ensure_ascii=False, separators=(",", ":"), default=json_default
    ).encode()


def encode(value: Any) -> bytes | None:
    """Kafka key/value bytes for what a mapper put in an Event."""
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return dumps(value)
