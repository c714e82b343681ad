"""The flat ``json`` format."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest

from cdc.model import Change, Interval
from mappers.formats import make_format
from mappers.json_format import iso_duration

COLUMNS = {
    "id": "int4",
    "amount": "numeric(12,2)",
    "ratio": "float8",
    "day": "date",
    "at": "time",
    "local": "timestamp",
    "moment": "timestamptz",
    "span": "interval",
    "doc": "jsonb",
    "blob": "bytea",
    "tags": "_text",
    "note": "text",
}

ROW: dict[str, Any] = {
    "id": 7,
    "amount": Decimal("12345.67"),
    "ratio": float("nan"),
    "day": dt.date(2024, 2, 29),
    "at": dt.time(13, 14, 15, 123456),
    "local": dt.datetime(2024, 2, 29, 13, 14, 15),
    "moment": dt.datetime(2024, 2, 29, 13, 14, 15, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "span": Interval(14, 3, 14_706_789_000),
    "doc": {"k": [1, 2.5, "x"], "n": None},
    "blob": b"\xde\xad\xbe\xef\x00",
    "tags": ["a", None],
    "note": "héllo",
}


def make_change(op: str, **fields: Any) -> Change:
    values: dict[str, Any] = {
        "op": op,
        "database": "shop",
        "schema": "public",
        "table": "orders",
        "key": {"id": 7},
        "before": None,
        "after": dict(ROW),
        "columns": COLUMNS,
        "position": 0x16B3748,
        "txid": 731,
        "commit_ts": 1709212455123456,
        "index": 0,
    }
    values.update(fields)
    return Change(**values)


def render(change: Change, **options: Any) -> list[tuple[str | None, Any, Any]]:
    fmt = make_format("json", **options)
    return [
        (topic, json.loads(key) if key else None, json.loads(value) if value else None)
        for topic, key, value in fmt.render(change)
    ]


def test_insert_envelope_and_natural_values() -> None:
    [(topic, key, value)] = render(make_change("insert"))
    assert topic is None
    assert key == {"id": 7}
    assert list(value) == [
        "op", "database", "schema", "table", "key", "before", "after", "unchanged",
        "position", "txid", "commit_ts", "snapshot",
    ]
    assert value["op"] == "insert"
    assert value["position"] == "16B3748"
    assert value["commit_ts"] == "2024-02-29T13:14:15.123456Z"
    assert value["snapshot"] is False and value["before"] is None
    assert value["after"] == {
        "id": 7,
        "amount": "12345.67",
        "ratio": "NaN",
        "day": "2024-02-29",
        "at": "13:14:15.123456",
        "local": "2024-02-29T13:14:15",
        "moment": "2024-02-29T11:14:15.000005Z",
        "span": "P1Y2M3DT4H5M6.789S",
        "doc": {"k": [1, 2.5, "x"], "n": None},
        "blob": "3q2+7wA=",
        "tags": ["a", None],
        "note": "héllo",
    }


def test_unchanged_columns_are_listed_not_nulled() -> None:
    after = dict(ROW)
    del after["doc"]
    [(_, _, value)] = render(make_change("update", after=after, unchanged=("doc",)))
    assert "doc" not in value["after"] and value["unchanged"] == ["doc"]


def test_delete_with_and_without_tombstone() -> None:
    change = make_change("delete", before={"id": 7}, after=None)
    records = render(change)
    assert [(k, v is None) for _, k, v in records] == [({"id": 7}, False), ({"id": 7}, True)]
    assert records[0][2]["before"] == {"id": 7}
    assert len(render(change, tombstones=False)) == 1


def test_truncate_only_when_enabled() -> None:
    change = make_change("truncate", key=None, after=None)
    assert render(change) == []
    [(_, key, value)] = render(change, truncate=True)
    assert key is None and value["op"] == "truncate"


def test_message() -> None:
    body = {"prefix": "outbox", "content": b'{"a":1}', "transactional": True}
    change = make_change("message", schema="", table="", columns={}, key=None, after=body)
    [(topic, key, value)] = render(change, server_name="shop")
    assert topic == "shop.message" and key == {"prefix": "outbox"}
    assert value["after"] == {"prefix": "outbox", "content": "eyJhIjoxfQ==", "transactional": True}


def test_plain_decimal_text() -> None:
    change = make_change("insert", after={"id": 7, "amount": Decimal("1E+2")})
    [(_, _, value)] = render(change)
    assert value["after"]["amount"] == "100"


@pytest.mark.parametrize(
    ("interval", "text"),
    [
        (Interval(14, 3, 14_706_789_000), "P1Y2M3DT4H5M6.789S"),
        (Interval(0, 0, 0), "PT0S"),
        (Interval(-14, 0, 0), "P-1Y-2M"),
        (Interval(0, 1, -60_000_000), "P1DT-1M"),
        (Interval(0, 0, 500_000), "PT0.5S"),
    ],
)
def test_iso_duration(interval: Interval, text: str) -> None:
    assert iso_duration(interval) == text
