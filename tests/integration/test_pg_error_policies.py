"""on_error through the real pipeline and broker: a mapper that raises, an oversize message."""

from __future__ import annotations

import psycopg
import pytest

from cdc.errors import SinkError
from tests.integration.pipeline_helpers import (
    event_id,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic, wait_until

MAPPER = """\
def mapper(change):
    if change.after and change.after.get("id") == 2:
        raise ValueError("row 2 is poison")
    return change
"""

SMALL_LIMIT = {"message.max.bytes": "2000"}


def current_lsn(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
        assert row is not None
        return int(row[0])


def setup_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int PRIMARY KEY, body text)")


def insert_rows(dsn: str, rows: list[tuple[int, str]]) -> int:
    """Insert each row in its own transaction; return the LSN before the last one."""
    before_last = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i, (row_id, body) in enumerate(rows):
            if i == len(rows) - 1:
                before_last = current_lsn(dsn)
            conn.execute("INSERT INTO items VALUES (%s, %s)", (row_id, body))
    return before_last


def ids(messages: list) -> list[int]:
    return [value_of(m)["after"]["id"] for m in messages if m.value()]


def wait_acked_past(running, lsn: int) -> None:
    wait_until(lambda: (running.pipeline.checkpointer.acked_position or 0) > lsn, timeout=30,
               what=f"the checkpoint to pass {lsn:X}")


def mapper_config(tmp_path, pg_db, bootstrap, policy: str):
    module = f"poison_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MAPPER)
    return write_config(
        tmp_path, pg_db, bootstrap, on_error=policy, dead_letter_topic=f"dlq.{module}",
        mappers=[{"type": "python", "path": f"{module}:mapper", "name": "poison"}],
        sink={"format": "json", "topic": "{pipeline}.{table}"},
    ), f"dlq.{module}"


def test_skip_drops_the_failing_change_and_moves_on(tmp_path, pg_db, kafka_broker):
    setup_table(pg_db)
    config, dlq = mapper_config(tmp_path, pg_db, kafka_broker.bootstrap, "skip")
    with run_pipeline(config) as running:
        last = insert_rows(pg_db, [(1, "a"), (2, "b"), (3, "c")])
        messages = wait_for_events(kafka_broker.bootstrap, f"{running.name}.items", 2,
                                   settle=1.0)
        wait_acked_past(running, last)
    assert ids(messages) == [1, 3]
    assert read_topic(kafka_broker.bootstrap, dlq, timeout=2, idle=1.0) == []


def test_dead_letter_publishes_the_failure_and_moves_on(tmp_path, pg_db, kafka_broker):
    setup_table(pg_db)
    config, dlq = mapper_config(tmp_path, pg_db, kafka_broker.bootstrap, "dead_letter")
    with run_pipeline(config) as running:
        last = insert_rows(pg_db, [(1, "a"), (2, "b"), (3, "c")])
        messages = wait_for_events(kafka_broker.bootstrap, f"{running.name}.items", 2,
                                   settle=1.0)
        [dead] = wait_for_events(kafka_broker.bootstrap, dlq, 1, settle=1.0)
        wait_acked_past(running, last)
    assert ids(messages) == [1, 3]
    record = value_of(dead)
    assert record["mapper"] == "poison" and record["stage"] == "mapper"
    assert record["pipeline"] == running.name
    assert record["error_type"] == "ValueError" and record["error_message"] == "row 2 is poison"
    assert "Traceback" in record["traceback"] and "raise ValueError" in record["traceback"]
    assert record["change"]["after"] == {"id": 2, "body": "b"}
    assert record["change"]["table"] == "items"
    assert key_of(dead) == {"id": 2}
    assert event_id(dead) == record["event_id"] + "/dlq"


def oversize_config(tmp_path, pg_db, bootstrap, policy: str):
    return write_config(
        tmp_path, pg_db, bootstrap, on_error=policy, dead_letter_topic=f"dlq.{tmp_path.name}",
        sink={"format": "debezium", "topic": "{pipeline}.{table}", "properties": SMALL_LIMIT},
    )


def test_an_oversize_message_under_fail_stops_before_it(tmp_path, pg_db, kafka_broker):
    setup_table(pg_db)
    config = oversize_config(tmp_path, pg_db, kafka_broker.bootstrap, "fail")
    with pytest.raises(SinkError, match="MSG_SIZE_TOO_LARGE|too large"):
        with run_pipeline(config) as running:
            insert_rows(pg_db, [(1, "a")])
            wait_for_events(kafka_broker.bootstrap, f"{running.name}.items", 1)
            wait_acked_past(running, 0)
            before_big = current_lsn(pg_db)
            insert_rows(pg_db, [(2, "x" * 5000), (3, "c")])
            wait_until(lambda: not running.alive, timeout=30, what="the pipeline to stop")
    assert running.pipeline.checkpointer.acked_position <= before_big  # not past row 1
    messages = read_topic(kafka_broker.bootstrap, f"{running.name}.items", timeout=3, idle=1.0)
    assert [value_of(m)["after"]["id"] for m in messages] == [1]


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_an_oversize_message_is_skipped_or_dead_lettered(tmp_path, pg_db, kafka_broker, policy):
    setup_table(pg_db)
    config = oversize_config(tmp_path, pg_db, kafka_broker.bootstrap, policy)
    dlq = f"dlq.{tmp_path.name}"
    with run_pipeline(config) as running:
        last = insert_rows(pg_db, [(1, "a"), (2, "x" * 5000), (3, "c")])
        messages = wait_for_events(kafka_broker.bootstrap, f"{running.name}.items", 2,
                                   settle=1.0)
        wait_acked_past(running, last)
        dead = read_topic(kafka_broker.bootstrap, dlq, timeout=5 if policy == "skip" else 30,
                          expect=1, idle=1.0 if policy == "skip" else 30)
    assert [value_of(m)["after"]["id"] for m in messages] == [1, 3]
    if policy == "skip":
        assert dead == []
        return
    [record_msg] = dead
    record = value_of(record_msg)
    assert record["stage"] == "broker" and record["error_type"] == "MSG_SIZE_TOO_LARGE"
    assert record["change"]["after"]["id"] == 2
    assert record["truncated"]["columns"] == ["after.body"]  # cut to fit the limit itself
    assert record["topic"] == f"{running.name}.items"
    assert key_of(record_msg) == {"id": 2}
    assert event_id(record_msg) == record["event_id"] + "/dlq"
