"""JSON encoding of values that mappers put into events.

Change values are Python objects (Decimal, datetime, bytes, Interval, ...);
this turns them into JSON the way a consumer expects: exact decimals as
strings, times as ISO-8601, bytes as base64, a MySQL TIME beyond a day
(timedelta) as MySQL's text ("-838:59:59"), a Geometry as {"wkb", "srid"}.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from typing import Any

from .model import Geometry, Interval


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
        return iso_duration(value)
    if isinstance(value, datetime.timedelta):
        return time_text(value)
    if isinstance(value, Geometry):
        return {"wkb": base64.b64encode(value.wkb).decode("ascii"), "srid": value.srid}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def time_text(value: datetime.timedelta) -> str:
    """MySQL's text of a TIME value that is a duration rather than a time of day.

    >>> time_text(-datetime.timedelta(hours=838, minutes=59, seconds=59))
    '-838:59:59'
    """
    micros = value // datetime.timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def iso_duration(value: Interval) -> str:
    """PostgreSQL's iso_8601 IntervalStyle text of an interval.

    >>> iso_duration(Interval(14, 3, 14_706_789_000))
    'P1Y2M3DT4H5M6.789S'
    """
    months, days, micros = value.months, value.days, value.microseconds
    years = abs(months) // 12 * (1 if months >= 0 else -1)
    months -= years * 12
    parts = ["P"]
    if years:
        parts.append(f"{years}Y")
    if months:
        parts.append(f"{months}M")
    if days:
        parts.append(f"{days}D")
    if micros:
        sign = "-" if micros < 0 else ""
        hours, rest = divmod(abs(micros), 3_600_000_000)
        minutes, rest = divmod(rest, 60_000_000)
        seconds, fraction = divmod(rest, 1_000_000)
        parts.append("T")
        if hours:
            parts.append(f"{sign}{hours}H")
        if minutes:
            parts.append(f"{sign}{minutes}M")
        if seconds or fraction:
            text = f"{seconds}.{fraction:06d}".rstrip("0").rstrip(".")
            parts.append(f"{sign}{text}S")
    if len(parts) == 1:
        return "PT0S"
    return "".join(parts)


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


def loads_or_text(data: bytes | None) -> Any:
    """Message bytes for people to read: JSON if they are JSON, else text, else
    {"base64": ...}."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}
