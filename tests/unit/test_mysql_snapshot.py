"""Snapshot value conversions (text protocol bytes) against the binlog decoder's values."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal

from cdc.model import Geometry
from connectors.mysql import rows
from connectors.mysql.snapshot import column_converter


def convert(data_type: str, raw: bytes, column_type: str = "", precision: int | None = None,
            scale: int | None = None, fsp: int | None = None, collation: int | None = 45,
            json_text: bool = False) -> tuple[object, str]:  # fmt: skip
    fn, name, _ = column_converter(data_type, column_type or data_type, precision, scale, fsp,
                                   collation, json_text)  # fmt: skip
    return fn(raw), name


def test_integers_and_type_names_follow_the_binlog_decoder():
    assert convert("int", b"4294967295", "int(10) unsigned") == (4294967295, "int8")
    assert convert("int", b"-5", "int(11)") == (-5, "int4")
    assert convert("smallint", b"65535", "smallint unsigned") == (65535, "int4")
    assert convert("bigint", b"18446744073709551615", "bigint unsigned")[0] == 2**64 - 1
    assert convert("year", b"0000") == (0, "int2")
    assert convert("decimal", b"-0.01", precision=12, scale=2) == (Decimal("-0.01"),
                                                                     "numeric(12,2)")  # fmt: skip


def test_float_is_single_precision_like_the_binlog():
    binlog = struct.unpack("<f", struct.pack("<f", 1.2345678))[0]
    fn, name, expr = column_converter("float", "float", None, None, None, None, False)
    assert name == "float4" and expr == "CAST({} AS DOUBLE)"
    assert fn(b"1.2345677614212036") == binlog


def test_temporal_values_match_the_binlog_forms():
    hms = 1 << 12 | 2 << 6 | 3
    assert convert("time", b"-01:02:03.500", fsp=3)[0] == rows._time_value(True, hms, 500000)
    assert convert("time", b"-01:02:03.500", fsp=3)[0] == -dt.timedelta(
        hours=1, minutes=2, seconds=3, microseconds=500000)
    assert convert("time", b"25:00:00")[0] == dt.timedelta(hours=25)
    assert convert("time", b"-838:59:59")[0] == -dt.timedelta(hours=838, minutes=59, seconds=59)
    assert convert("time", b"23:59:59.999999", fsp=6)[0] == dt.time(23, 59, 59, 999999)
    assert convert("date", b"0000-00-00") == ("0000-00-00", "date")
    assert convert("datetime", b"2024-02-29 13:14:15.12", fsp=2) == (
        dt.datetime(2024, 2, 29, 13, 14, 15, 120000), "timestamp(2)")
    assert convert("datetime", b"0000-00-00 00:00:00.00", fsp=2)[0] == "0000-00-00 00:00:00.00"
    assert convert("timestamp", b"0000-00-00 00:00:00.000", fsp=3) == (
        "0000-00-00 00:00:00", "timestamptz(3)")
    assert convert("timestamp", b"2024-02-29 13:14:15")[0] == dt.datetime(
        2024, 2, 29, 13, 14, 15, tzinfo=dt.UTC)


def test_strings_bits_and_geometry():
    assert convert("varchar", "café".encode("cp1252"), collation=8) == ("café", "varchar")
    assert convert("char", b"ab", collation=45) == ("ab", "bpchar")
    assert convert("binary", b"\x01\x00", collation=63) == (b"\x01\x00", "bytea")
    assert convert("longtext", b'{"a": 1}', json_text=True) == ({"a": 1}, "json")
    assert convert("longtext", b"not json", json_text=True) == ("not json", "json")
    assert convert("bit", b"\x01", precision=1) == (True, "bool")
    assert convert("bit", b"\x02\x01", precision=16) == (b"\x01\x02", "bytea")
    assert convert("point", b"\0\0\0\0WKB") == (Geometry(b"WKB", 0), "point")
    assert convert("polygon", b"\xe6\x10\0\0WKB") == (Geometry(b"WKB", 4326), "geometry")
    assert convert("set", b"a,c", "set('a','b','c')") == ("a,c", "set")
