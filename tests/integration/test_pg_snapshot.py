"""The initial snapshot: rows present before the first start arrive as op "r"."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.integration.pipeline_helpers import (
    key_of,
    pipeline_name,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic, run_daemon, stop_daemon

# The table of Debezium's reference capture (a copy of ../shared/reference).
TYPES_SCHEMA = (
    Path(__file__).parent.parent / "data" / "reference" / "postgres-types_demo.sql"
).read_text()

ROW = """
    INSERT INTO types_demo VALUES (
      {id}, 32767, 123456, 9223372036854775807, 12345.67, 3.14, 2.718281828459045, true,
      'héllo "quoted" \\ backslash' || E'\\ttab\\nnewline', 'varchar value', 'ab',
      '2024-02-29', '13:14:15.123456', '2024-02-29 13:14:15.123456',
      '2024-02-29 13:14:15.123456+02', '1 year 2 months 3 days 04:05:06.789',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{{"k": [1, 2.5, "x"], "n": null}}',
      '{{"k": [1, 2.5, "x"], "n": null}}', '\\xdeadbeef00', '{{"a","b c",NULL}}',
      '{{1,2,NULL,4}}', 'happy', repeat('x', 3000))
"""


def _setup_types(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(TYPES_SCHEMA)
        conn.execute(ROW.format(id=1))
        conn.execute(ROW.format(id=3))


@pytest.mark.parametrize("fmt", ["debezium", "json"])
def test_snapshot_values_equal_streamed_values(tmp_path, pg_db, kafka_broker, fmt):
    """A row read by the snapshot renders exactly like the same row streamed."""
    _setup_types(pg_db)
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap,
        source={"snapshot": "initial", "tables": ["public.types_demo"]},
        sink={"format": fmt, "topic": "{pipeline}.{table}"},
    )
    topic = f"{pipeline_name(config)}.types_demo"
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute(ROW.format(id=2))
        messages = wait_for_events(kafka_broker.bootstrap, topic, 3)
    by_id = {key_of(m)["id"]: value_of(m) for m in messages}
    assert sorted(by_id) == [1, 2, 3]
    snap, streamed = by_id[1], by_id[2]
    if fmt == "debezium":
        assert (snap["op"], streamed["op"]) == ("r", "c")
        assert snap["source"]["snapshot"] == "true"
        assert streamed["source"]["snapshot"] == "false"
    else:
        assert (snap["op"], streamed["op"]) == ("read", "insert")
        assert snap["snapshot"] is True
    snap_after = dict(snap["after"], id=None)
    assert snap_after == dict(streamed["after"], id=None)
    assert "\t" in snap_after["c_text"] and "\n" in snap_after["c_text"]


def test_snapshot_modes_and_completion_is_remembered(tmp_path, pg_db, kafka_broker):
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, name text)")
        conn.execute("INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 12000) g")
    bootstrap = kafka_broker.bootstrap

    # never: only what is committed after the start
    never = write_config(tmp_path, pg_db, bootstrap, source={"snapshot": "never"},
                         sink={"topic": "{pipeline}.{table}"})
    with run_pipeline(never):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("INSERT INTO items VALUES (20001, 'new')")
        got = wait_for_events(bootstrap, f"{pipeline_name(never)}.items", 1, settle=1.0)
    assert key_of(got[0]) == {"id": 20001}

    # initial_only: the daemon reads the snapshot (more than one burst), then exits 0
    only = write_config(tmp_path, pg_db, bootstrap, source={"snapshot": "initial_only"},
                        sink={"topic": "{pipeline}.{table}"})
    proc = run_daemon(str(only), log_path=tmp_path / "only.log")
    assert proc.wait(60) == 0, (tmp_path / "only.log").read_text()
    rows = read_topic(bootstrap, f"{pipeline_name(only)}.items", expect=12001, timeout=30)
    assert sorted(key_of(m)["id"] for m in rows) == [*range(1, 12001), 20001]
    assert all(value_of(m)["op"] == "r" for m in rows)
    offsets = json.loads((tmp_path / f"{pipeline_name(only)}.offsets").read_text())
    assert offsets["snapshot_complete"] is True
    assert "lsn" not in offsets  # no slot to resume from
    with psycopg.connect(pg_db, autocommit=True) as conn:
        slots = conn.execute("SELECT slot_name FROM pg_replication_slots").fetchall()
    assert (f"cdc_{pipeline_name(only)}",) not in slots, "a snapshot-only run left a slot"
    # A second run owes nothing: it exits at once without reading again.
    proc = run_daemon(str(only), log_path=tmp_path / "only-2.log")
    assert proc.wait(30) == 0
    assert "snapshot already complete" in (tmp_path / "only-2.log").read_text()

    # initial, restarted after completion: the snapshot is not taken twice
    initial = write_config(tmp_path, pg_db, bootstrap, source={"snapshot": "initial"},
                           sink={"topic": "{pipeline}.{table}"})
    topic = f"{pipeline_name(initial)}.items"
    proc = run_daemon(str(initial), log_path=tmp_path / "initial-1.log")
    wait_for_events(bootstrap, topic, 12001, timeout=60)
    assert stop_daemon(proc) == 0
    proc = run_daemon(str(initial), log_path=tmp_path / "initial-2.log")
    try:
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("INSERT INTO items VALUES (20002, 'after restart')")
        messages = wait_for_events(bootstrap, topic, 12002, timeout=60, settle=1.0)
    finally:
        assert stop_daemon(proc) == 0
    ops = sorted((value_of(m)["op"], key_of(m)["id"]) for m in messages)
    assert ops[0] == ("c", 20002)
    assert [op for op, _ in ops[1:]] == ["r"] * 12001


def test_snapshot_publishes_what_the_publication_publishes(tmp_path, pg_db, kafka_broker):
    """Column lists, row filters and generated columns shape snapshot rows like streamed ones."""
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE acct (id int PRIMARY KEY, public bool, secret text,"
            " dbl int GENERATED ALWAYS AS (id * 2) STORED)"
        )
        conn.execute(
            "INSERT INTO acct (id, public, secret) VALUES (1, true, 's1'), (2, false, 's2')"
        )
        conn.execute("CREATE PUBLICATION pub_acct FOR TABLE acct (id, public) WHERE (public)")
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap,
        source={"snapshot": "initial", "publication": "pub_acct", "tables": ["public.acct"]},
        sink={"format": "json", "topic": "{pipeline}.{table}"},
    )
    topic = f"{pipeline_name(config)}.acct"
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO acct (id, public, secret) VALUES (3, true, 's3'), (4, false, 's4')"
            )
        messages = wait_for_events(kafka_broker.bootstrap, topic, 2, settle=1.0)
    rows = sorted((value_of(m)["op"], value_of(m)["after"]) for m in messages)
    assert rows == [
        ("insert", {"id": 3, "public": True}),
        ("read", {"id": 1, "public": True}),
    ]
