"""Every column type, end to end, against real Debezium 3.6.3 output.

The schema and statements of tests/data/reference/postgres-types_*.sql run on a real
server while the daemon streams them into the broker; each message must equal
Debezium's capture field for field, except what differs by design (timing
fields, source.version/name) or per server (source.db, txId, lsn, sequence:
their shapes are checked instead).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.pipeline_helpers import (
    execute_each,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"

CAPTURES: list[dict[str, Any]] = json.loads(
    (REFERENCE / "debezium-3.6.3-postgres-envelopes.json").read_text()
)
SCHEMA_SQL = (REFERENCE / "postgres-types_demo.sql").read_text()
TIMING = {"ts_ms", "ts_us", "ts_ns"}
PER_SERVER = {"db", "txId", "lsn", "sequence"}
PLACEHOLDER = "__debezium_unavailable_value"


def split_statements(sql: str) -> list[str]:
    """The statements of a script without `;` inside literals (true of the reference)."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


OPS = split_statements((REFERENCE / "postgres-types_ops.sql").read_text())


def capture(run: str, case: str) -> dict[str, Any]:
    [found] = [c for c in CAPTURES if c["run"] == run and c["case"] == case]
    return found


def comparable(value: dict[str, Any]) -> dict[str, Any]:
    """`value` without the fields that differ by design or per server."""
    out = {k: v for k, v in value.items() if k not in TIMING}
    out["source"] = {
        k: v
        for k, v in value["source"].items()
        if k not in TIMING | PER_SERVER | {"version", "name"}
    }
    return out


def assert_source_shape(source: dict[str, Any], database: str, pipeline: str) -> None:
    assert source["db"] == database
    assert source["name"] == pipeline
    assert type(source["txId"]) is int and source["txId"] > 0
    assert type(source["lsn"]) is int and source["lsn"] > 0
    sequence = json.loads(source["sequence"])
    assert isinstance(sequence, list) and len(sequence) == 2
    assert all(item is None or (type(item) is str and item.isdigit()) for item in sequence)
    assert sequence[1] == str(source["lsn"])
    for field in TIMING:
        assert type(source[field]) is int


def assert_matches(message: Any, expected: dict[str, Any], database: str, pipeline: str) -> None:
    """One message against one capture: topic, key, value (ordered fields), source shape."""
    # Ours `<database>.public.types_demo` / `<pipeline>.message`, Debezium's `dbz.…`.
    assert message.topic().split(".")[1:] == expected["topic"].split(".")[1:]
    assert key_of(message) == expected["key"]
    value, reference = value_of(message), expected["value"]
    if reference is None:
        assert value is None
        return
    assert list(comparable(value)) == list(comparable(reference))  # Debezium's field order
    assert comparable(value) == comparable(reference)
    assert_source_shape(value["source"], database, pipeline)


def stored_count(bootstrap: str, topic: str) -> int:
    """How many records the broker holds for `topic` (high watermarks; counts tombstones)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        )
    finally:
        consumer.close()


@pytest.mark.parametrize(
    ("decimal", "run"), [("string", "decimal_string"), ("base64", "default")]
)
def test_types_demo_matches_debezium(
    decimal: str, run: str, pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    execute_each(pg_db, [SCHEMA_SQL])
    config = write_config(
        tmp_path, pg_db, bootstrap, sink={"decimal": decimal, "truncate": True}
    )
    table_topic = f"{pg_db.name}.public.types_demo"
    with run_pipeline(config) as running:
        execute_each(pg_db, OPS)
        # insert, update, delete (+ tombstone, if the broker hands it out), truncate
        rows = wait_for_events(bootstrap, table_topic, 4)
        [message] = wait_for_events(bootstrap, f"{running.name}.message", 1)
    rows = read_topic(bootstrap, table_topic, expect=5, timeout=3)
    database, pipeline = pg_db.name, running.name

    # Row events share the key {"id": 1}, so one partition holds them in order;
    # the truncate (null key) may sit on another.
    keyed = [m for m in rows if m.key() is not None]
    [truncate] = [m for m in rows if m.key() is None]
    cases = ["insert", "update_toast_unchanged", "delete", "delete_tombstone"]
    if len(keyed) == 3:  # Tansu stores the tombstone but does not hand it to consumers
        assert stored_count(bootstrap, table_topic) == 5
        cases.remove("delete_tombstone")
    assert len({m.partition() for m in keyed}) == 1
    assert len(keyed) == len(cases)
    for msg, case in zip(keyed, cases, strict=True):
        assert_matches(msg, capture(run, case), database, pipeline)
    assert_matches(truncate, capture("truncate_on", "truncate"), database, pipeline)
    assert_matches(message, capture(run, "message"), database, pipeline)

    assert value_of(keyed[1])["after"]["c_toast"] == PLACEHOLDER
    # One transaction per statement, in commit order.
    sources = [value_of(m)["source"] for m in (*keyed[:3], truncate, message)]
    assert [s["txId"] for s in sources] == sorted({s["txId"] for s in sources})
    assert [s["lsn"] for s in sources] == sorted({s["lsn"] for s in sources})


EXTRAS_SQL = """
create table extras (
  id          integer primary key,
  c_tstz      timestamptz,
  c_num       numeric(10,3),
  c_num_free  numeric,
  c_ts        timestamp,
  c_int2d     int[][],
  c_uuid_arr  uuid[],
  c_jsonb     jsonb,
  c_bytea     bytea
);
"""

EXTRAS_ROWS = [
    "insert into extras values (1, '2024-02-29 13:14:15+02', -12.5, 'NaN', 'infinity',"
    " '{{1,2},{3,NULL}}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11,NULL}',"
    """ '{"ключ": "значение ☃", "e": "é"}', '')""",
    "insert into extras (id) values (2)",
    "insert into extras values (3, '1999-12-31 23:59:59.5-05', -0.001, -123.4500, '-infinity',"
    " '{}', '{}', '[]', '\\x00ff')",
]

# What the debezium format makes of them (see mappers/debezium.py's table).
EXTRAS_EXPECTED: list[dict[str, Any]] = [
    {
        "id": 1,
        "c_tstz": "2024-02-29T11:14:15.000000Z",  # always 6 digits without a typmod
        "c_num": "-12.500",  # string mode, at the column's scale
        "c_num_free": "NAN",  # Debezium's SpecialValueDecimal name
        "c_ts": 9223372036825200000,  # PGStatement.DATE_POSITIVE_INFINITY
        "c_int2d": [[1, 2], [3, None]],
        "c_uuid_arr": ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", None],
        "c_jsonb": '{"e": "é", "ключ": "значение ☃"}',  # jsonb's canonical text
        "c_bytea": "",
    },
    {
        "id": 2, "c_tstz": None, "c_num": None, "c_num_free": None, "c_ts": None,
        "c_int2d": None, "c_uuid_arr": None, "c_jsonb": None, "c_bytea": None,
    },
    {
        "id": 3,
        "c_tstz": "2000-01-01T04:59:59.500000Z",
        "c_num": "-0.001",
        "c_num_free": "-123.4500",
        "c_ts": -9223372036832400000,  # PGStatement.DATE_NEGATIVE_INFINITY
        "c_int2d": [],
        "c_uuid_arr": [],
        "c_jsonb": "[]",
        "c_bytea": "AP8=",
    },
]


def test_types_beyond_the_reference(pg_db: Any, kafka_broker: Any, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    execute_each(pg_db, [EXTRAS_SQL])
    config = write_config(tmp_path, pg_db, bootstrap)
    with run_pipeline(config):
        execute_each(pg_db, EXTRAS_ROWS)
        messages = wait_for_events(bootstrap, f"{pg_db.name}.public.extras", 3)
    after = sorted((value_of(m)["after"] for m in messages), key=lambda row: row["id"])
    for got, expected in zip(after, EXTRAS_EXPECTED, strict=True):
        assert list(got) == list(expected)  # every column, in table order
        assert got == expected
    assert [key_of(m) for m in messages] == [
        {"id": value_of(m)["after"]["id"]} for m in messages
    ]


def test_domain_over_int_is_its_base_type(pg_db: Any, kafka_broker: Any, tmp_path: Path) -> None:
    bootstrap = kafka_broker.bootstrap
    execute_each(pg_db, [
        "create domain posint as integer check (value > 0)",
        "create table domains (id integer primary key, c_dom posint)",
    ])
    execute_each(pg_db, ["insert into domains values (1, 42)"])  # read by the snapshot
    config = write_config(tmp_path, pg_db, bootstrap, source={"snapshot": "initial"})
    with run_pipeline(config):
        execute_each(pg_db, ["insert into domains values (2, 43)"])  # streamed
        messages = wait_for_events(bootstrap, f"{pg_db.name}.public.domains", 2)
    assert sorted((value_of(m)["op"], value_of(m)["after"]["c_dom"]) for m in messages) == [
        ("c", 43), ("r", 42)
    ]
