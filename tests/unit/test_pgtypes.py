"""Text-format value converters of the PostgreSQL connector."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from cdc.model import Interval
from connectors.postgres.types import (
    ARRAY_ELEMENT,
    BUILTIN_TYPES,
    converter_for,
    parse_array,
    type_name,
)

OID = {name: oid for oid, name in BUILTIN_TYPES.items()}


def conv(type_name: str, text: str | bytes) -> object:
    value = text.encode() if isinstance(text, str) else text
    return converter_for(OID[type_name], -1)(value)


@pytest.mark.parametrize(
    "typ, text, expected",
    [
        ("int2", "32767", 32767),
        ("int2", "-32768", -32768),
        ("int4", "123456", 123456),
        ("int8", "9223372036854775807", 9223372036854775807),
        ("oid", "4294967295", 4294967295),
        ("numeric", "12345.67", Decimal("12345.67")),
        ("numeric", "-0.000000000000000000001", Decimal("-1E-21")),
        ("float4", "3.14", 3.14),
        ("float8", "2.718281828459045", 2.718281828459045),
        ("float8", "-Infinity", -math.inf),
        ("float8", "Infinity", math.inf),
        ("bool", "t", True),
        ("bool", "f", False),
        ("text", 'héllo "quoted" \\ backslash', 'héllo "quoted" \\ backslash'),
        ("varchar", "varchar value", "varchar value"),
        ("bpchar", "ab ", "ab "),  # blank-padded as the server sends it
        ("name", "pg_class", "pg_class"),
        ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        ("inet", "192.168.0.1/24", "192.168.0.1/24"),
        ("money", "$1,234.56", "$1,234.56"),
        ("xml", "<a>1</a>", "<a>1</a>"),
        ("int4range", "[1,5)", "[1,5)"),
        ("date", "2024-02-29", date(2024, 2, 29)),
        ("time", "13:14:15.123456", time(13, 14, 15, 123456)),
        ("time", "00:00:00", time(0, 0)),
        ("timetz", "12:00:00+05:30", time(12, tzinfo=timezone(timedelta(hours=5, minutes=30)))),
        ("timestamp", "2024-02-29 13:14:15.123456", datetime(2024, 2, 29, 13, 14, 15, 123456)),
        ("timestamp", "2024-02-29 13:14:15.5", datetime(2024, 2, 29, 13, 14, 15, 500000)),
        (
            "timestamptz",
            "2024-02-29 11:14:15.123456+00",
            datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=UTC),
        ),
        ("timestamptz", "2024-02-29 13:14:15+02", datetime(2024, 2, 29, 11, 14, 15, tzinfo=UTC)),
        ("timestamptz", "2024-02-29 16:44:15+05:30", datetime(2024, 2, 29, 11, 14, 15, tzinfo=UTC)),
        ("timestamptz", "2000-01-01 00:00:00-03", datetime(2000, 1, 1, 3, tzinfo=UTC)),
        ("json", '{"k": [1, 2.5, "x"], "n": null}', {"k": [1, 2.5, "x"], "n": None}),
        ("jsonb", '"just a string"', "just a string"),
        ("jsonb", "[]", []),
        ("bytea", "\\xdeadbeef00", b"\xde\xad\xbe\xef\x00"),
        ("bytea", "\\x", b""),
        ("bytea", "a\\\\b\\000", b"a\\b\x00"),  # bytea_output=escape
    ],
)
def test_scalar(typ: str, text: str, expected: object) -> None:
    value = conv(typ, text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, datetime | time):
        assert getattr(value, "tzinfo", None) == expected.tzinfo


def test_timestamptz_is_utc_aware() -> None:
    value = conv("timestamptz", "2024-02-29 13:14:15.123456+02")
    assert isinstance(value, datetime)
    assert value.tzinfo is UTC
    assert value.isoformat() == "2024-02-29T11:14:15.123456+00:00"


def test_numeric_specials_stay_decimal() -> None:
    nan = conv("numeric", "NaN")
    assert isinstance(nan, Decimal) and nan.is_nan()
    assert conv("numeric", "Infinity") == Decimal("Infinity")
    assert conv("numeric", "-Infinity") == Decimal("-Infinity")


def test_float_nan() -> None:
    value = conv("float4", "NaN")
    assert isinstance(value, float) and math.isnan(value)


@pytest.mark.parametrize(
    "typ, text",
    [
        ("date", "infinity"),
        ("date", "-infinity"),
        ("date", "0044-03-15 BC"),
        ("date", "10000-01-01"),
        ("time", "24:00:00"),
        ("timestamp", "infinity"),
        ("timestamp", "0001-01-01 00:00:00 BC"),
        ("timestamp", "12345-06-07 00:00:00"),
        ("timestamptz", "infinity"),
        ("timestamptz", "-infinity"),
        ("timestamptz", "0044-03-15 12:00:00+00 BC"),
        ("timestamptz", "9999-12-31 23:00:00-05"),  # past datetime.max once in UTC
        ("interval", "infinity"),
    ],
)
def test_unrepresentable_values_stay_text(typ: str, text: str) -> None:
    assert conv(typ, text) == text


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1 year 2 mons 3 days 04:05:06.789", Interval(14, 3, 14_706_789_000)),
        ("-1 days +02:00:00", Interval(0, -1, 7_200_000_000)),
        ("00:00:00.5", Interval(0, 0, 500_000)),
        ("1 mon -3 days", Interval(1, -3, 0)),
        ("-1 years -2 mons +3 days -04:05:06.5", Interval(-14, 3, -14_706_500_000)),
        ("-00:00:00.000001", Interval(0, 0, -1)),
        ("00:00:00", Interval(0, 0, 0)),
        ("2 years", Interval(24, 0, 0)),
        ("1 day", Interval(0, 1, 0)),
        ("838:59:59", Interval(0, 0, 3_020_399_000_000)),
    ],
)
def test_interval(text: str, expected: Interval) -> None:
    assert conv("interval", text) == expected


@pytest.mark.parametrize(
    "typ, text, expected",
    [
        ("_text", '{a,"b c",NULL}', ["a", "b c", None]),
        ("_int4", "{1,2,NULL,4}", [1, 2, None, 4]),
        ("_int4", "{}", []),
        ("_int4", "{{1,2},{3,4}}", [[1, 2], [3, 4]]),
        ("_int4", "[0:1]={1,2}", [1, 2]),
        ("_int4", "[1:2][2:3]={{1,2},{3,4}}", [[1, 2], [3, 4]]),
        ("_text", '{"NULL",NULL,""}', ["NULL", None, ""]),
        ("_text", '{"a\\\\b","q\\"q","x,y","{z}"}', ["a\\b", 'q"q', "x,y", "{z}"]),
        ("_text", '{{"a b",c},{NULL,"d"}}', [["a b", "c"], [None, "d"]]),
        ("_text", "{{}}", [[]]),
        ("_numeric", "{1.5,-Infinity}", [Decimal("1.5"), Decimal("-Infinity")]),
        ("_bool", "{t,f,NULL}", [True, False, None]),
        ("_float8", "{1.5,-Infinity}", [1.5, -math.inf]),
        ("_date", "{2024-02-29,infinity}", [date(2024, 2, 29), "infinity"]),
        (
            "_timestamptz",
            '{"2020-01-01 00:00:00+00"}',
            [datetime(2020, 1, 1, tzinfo=UTC)],
        ),
        ("_interval", '{"1 mon -3 days"}', [Interval(1, -3, 0)]),
        ("_bytea", '{"\\\\xde"}', [b"\xde"]),
        ("_json", '{"{\\"a\\": 1}",NULL}', [{"a": 1}, None]),
        (
            "_uuid",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"],
        ),
        ("_box", "{(1,1),(0,0);(2,2),(1,1)}", ["(1,1),(0,0)", "(2,2),(1,1)"]),
    ],
)
def test_array(typ: str, text: str, expected: list[object]) -> None:
    assert conv(typ, text) == expected


def test_numeric_array_elements_are_decimal() -> None:
    value = conv("_numeric", "{12345.67}")
    assert isinstance(value, list) and type(value[0]) is Decimal


def test_parse_array_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        parse_array("{1,2")
    with pytest.raises(ValueError):
        parse_array('{"a"x}')
    assert conv("_int4", "not an array") == "not an array"


def test_array_element_mapping() -> None:
    assert ARRAY_ELEMENT[1009] == 25
    assert ARRAY_ELEMENT[1007] == 23
    assert ARRAY_ELEMENT[1185] == 1184
    assert 22 not in ARRAY_ELEMENT  # int2vector is not an array in text form
    assert conv("int2vector", "1 2") == "1 2"


def test_type_names() -> None:
    assert type_name(23) == "int4"
    assert type_name(1700) == "numeric"
    assert type_name(1184) == "timestamptz"
    assert type_name(1009) == "_text"
    assert type_name(16390) == "oid:16390"
    assert type_name(16390, {16390: "mood"}) == "mood"


def test_custom_types() -> None:
    custom = {16390: "mood", 16391: "_mood", 16392: "positive_int"}
    assert converter_for(16390, -1, custom)(b"happy") == "happy"
    assert converter_for(16392, -1, custom)(b"42") == "42"  # domains stay text
    assert converter_for(16391, -1, custom)(b"{sad,NULL}") == ["sad", None]
    assert converter_for(99999, -1)(b"whatever") == "whatever"
