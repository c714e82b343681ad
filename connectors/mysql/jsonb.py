"""MySQL's binary JSON format (sql-common/json_binary.cc) -> Python values.

MySQL 5.7+ stores JSON columns in the binlog in this binary form; MariaDB
stores JSON as text and never uses it.

>>> parse_json_binary(bytes.fromhex("0c03616263"))
'abc'
"""

from __future__ import annotations

import base64
import struct
from typing import Any

from cdc.errors import DecodeError

# Column type codes of opaque values (MySQL field_types.h).
_T_TIMESTAMP, _T_DATE, _T_TIME, _T_DATETIME, _T_NEWDECIMAL = 7, 10, 11, 12, 246
_J_SMALL_OBJ, _J_LARGE_OBJ, _J_SMALL_ARR, _J_LARGE_ARR = 0, 1, 2, 3
_J_LITERAL, _J_INT16, _J_UINT16, _J_INT32, _J_UINT32 = 4, 5, 6, 7, 8
_J_INT64, _J_UINT64, _J_DOUBLE, _J_STRING, _J_OPAQUE = 9, 10, 11, 12, 15


def parse_json_binary(data: bytes) -> Any:
    """A MySQL 5.7+/8 binary JSON value -> Python (dict, list, str, int, float, ...)."""
    return _json_value(data[0], data, 1)


def _json_varlen(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _json_value(kind: int, data: bytes, pos: int) -> Any:
    if kind in (_J_SMALL_OBJ, _J_LARGE_OBJ, _J_SMALL_ARR, _J_LARGE_ARR):
        return _json_container(data, pos, kind in (_J_LARGE_OBJ, _J_LARGE_ARR),
                               kind in (_J_SMALL_OBJ, _J_LARGE_OBJ))  # fmt: skip
    if kind == _J_LITERAL:
        return {0: None, 1: True, 2: False}[data[pos]]
    if kind == _J_INT16:
        return struct.unpack_from("<h", data, pos)[0]
    if kind == _J_UINT16:
        return struct.unpack_from("<H", data, pos)[0]
    if kind == _J_INT32:
        return struct.unpack_from("<i", data, pos)[0]
    if kind == _J_UINT32:
        return struct.unpack_from("<I", data, pos)[0]
    if kind == _J_INT64:
        return struct.unpack_from("<q", data, pos)[0]
    if kind == _J_UINT64:
        return struct.unpack_from("<Q", data, pos)[0]
    if kind == _J_DOUBLE:
        return struct.unpack_from("<d", data, pos)[0]
    if kind == _J_STRING:
        n, pos = _json_varlen(data, pos)
        return data[pos : pos + n].decode()
    if kind == _J_OPAQUE:
        field_type = data[pos]
        n, pos = _json_varlen(data, pos + 1)
        return _json_opaque(field_type, data[pos : pos + n])
    raise DecodeError(f"unknown binary JSON type {kind}")


def _json_container(data: bytes, start: int, large: bool, is_object: bool) -> Any:
    fmt, width = ("<I", 4) if large else ("<H", 2)
    count = struct.unpack_from(fmt, data, start)[0]
    entry = 1 + width
    key_entry = width + 2
    header = start + 2 * width
    values_at = header + (count * key_entry if is_object else 0)
    items = []
    for i in range(count):
        p = values_at + i * entry
        kind = data[p]
        inline = kind in (_J_LITERAL, _J_INT16, _J_UINT16) or (
            large and kind in (_J_INT32, _J_UINT32)
        )
        if inline:
            items.append(_json_value(kind, data, p + 1))
        else:
            offset = struct.unpack_from(fmt, data, p + 1)[0]
            items.append(_json_value(kind, data, start + offset))
    if not is_object:
        return items
    out = {}
    for i in range(count):
        p = header + i * key_entry
        offset = struct.unpack_from(fmt, data, p)[0]
        length = struct.unpack_from("<H", data, p + width)[0]
        out[data[start + offset : start + offset + length].decode()] = items[i]
    return out


def _json_opaque(field_type: int, raw: bytes) -> Any:
    """Opaque JSON scalars (DECIMAL, dates, times, blobs) as their JSON text forms."""
    if field_type == _T_NEWDECIMAL:
        from .rows import decimal_reader

        precision, scale = raw[0], raw[1]
        return decimal_reader(precision, scale)(raw, 2)[0]
    if field_type in (_T_DATE, _T_DATETIME, _T_TIMESTAMP, _T_TIME):
        v = int.from_bytes(raw[:8], "little", signed=True)
        negative = v < 0
        v = abs(v)
        us = v % (1 << 24)
        ymdhms = v >> 24
        if field_type == _T_TIME:
            hms = ymdhms & 0xFFFFFF
            hour, minute, second = hms >> 12 & 0x3FF, hms >> 6 & 63, hms & 63
            text = f"{'-' if negative else ''}{hour:02d}:{minute:02d}:{second:02d}"
            return f"{text}.{us:06d}" if us else text
        ymd = ymdhms >> 17
        ym = ymd >> 5
        hms = ymdhms & 0x1FFFF
        date = f"{ym // 13:04d}-{ym % 13:02d}-{ymd & 31:02d}"
        if field_type == _T_DATE:
            return date
        text = f"{date} {hms >> 12:02d}:{hms >> 6 & 63:02d}:{hms & 63:02d}"
        return f"{text}.{us:06d}" if us else text
    return "base64:type" + str(field_type) + ":" + base64.b64encode(raw).decode()
