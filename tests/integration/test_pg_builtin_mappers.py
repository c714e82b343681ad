"""Built-in mappers (outbox, filter, columns, rename, route) through the real pipeline."""

from __future__ import annotations

import hashlib
import json
import uuid

import psycopg

from tests.integration.pipeline_helpers import (
    event_id,
    header,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic


def unique_name() -> str:
    return f"p_{uuid.uuid4().hex[:10]}"


def test_outbox_table_and_logical_messages(tmp_path, pg_db, kafka_broker):
    bootstrap = kafka_broker.bootstrap
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
        conn.execute(
            "CREATE TABLE outbox (id uuid PRIMARY KEY, aggregatetype text, aggregate_id text,"
            " type text, payload jsonb, headers jsonb)"
        )
    name = unique_name()
    config = write_config(
        tmp_path, pg_db, bootstrap, name=name,
        mappers=[{"type": "outbox", "table": "public.outbox",
                  "columns": {"aggregate_type": "aggregatetype"},
                  "topic": name + ".{aggregate_type}"}],
        sink={"format": "json", "topic": "{pipeline}.{table}"},
    )
    row_id = str(uuid.uuid4())
    message = {"id": "msg-1", "aggregate_type": "order", "aggregate_id": 8,
               "type": "OrderShipped", "payload": {"id": 8, "carrier": "ups"}}
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            with conn.transaction():
                conn.execute("INSERT INTO orders VALUES (7, 'new')")
                conn.execute(
                    "INSERT INTO outbox VALUES (%s, 'order', '7', 'OrderCreated',"
                    " '{\"id\": 7, \"total\": 12.5}', '{\"trace-id\": \"t-1\"}')",
                    (row_id,),
                )
            conn.execute("UPDATE outbox SET type = 'changed'")  # not published
            conn.execute("DELETE FROM outbox")  # the application cleans up: not published
            conn.execute("SELECT pg_logical_emit_message(true, 'outbox', %s)",
                         (json.dumps(message),))
            conn.execute("SELECT pg_logical_emit_message(true, 'other', 'ignored')")
        events = wait_for_events(bootstrap, f"{name}.order", 2, settle=1.0)
        orders = wait_for_events(bootstrap, f"{name}.orders", 1)
    created, shipped = events
    assert created.key() == b"7"
    assert value_of(created) == {"id": 7, "total": 12.5}
    assert event_id(created) == row_id
    assert header(created, "event-type") == "OrderCreated"
    assert header(created, "trace-id") == "t-1"
    assert shipped.key() == b"8"
    assert value_of(shipped) == {"id": 8, "carrier": "ups"}
    assert event_id(shipped) == "msg-1" and header(shipped, "event-type") == "OrderShipped"
    assert value_of(orders[0])["after"] == {"id": 7, "status": "new"}  # other tables pass
    assert read_topic(bootstrap, f"{name}.outbox", timeout=2, idle=1.0) == []


def test_filter_keeps_matching_rows(tmp_path, pg_db, kafka_broker):
    bootstrap = kafka_broker.bootstrap
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text, total numeric)")
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY)")
    name = unique_name()
    config = write_config(
        tmp_path, pg_db, bootstrap, name=name,
        mappers=[{"type": "filter", "tables": ["public.orders"], "ops": ["insert", "update"],
                  "conditions": [{"column": "status", "op": "in", "value": ["paid", "shipped"]},
                                 {"column": "total", "op": ">=", "value": 100}]}],
        sink={"format": "json", "topic": "{pipeline}.{table}"},
    )
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("INSERT INTO notes VALUES (1)")
            conn.execute("INSERT INTO orders VALUES (1, 'new', 500), (2, 'paid', 50),"
                         " (3, 'paid', 150)")
            conn.execute("UPDATE orders SET status = 'shipped' WHERE id = 3")
            conn.execute("DELETE FROM orders WHERE id = 3")
        messages = wait_for_events(bootstrap, f"{name}.orders", 2, settle=1.5)
    assert [(value_of(m)["op"], value_of(m)["after"]["status"]) for m in messages] == [
        ("insert", "paid"), ("update", "shipped")]
    assert all(value_of(m)["after"]["id"] == 3 for m in messages)
    assert read_topic(bootstrap, f"{name}.notes", timeout=2, idle=1.0) == []


def test_columns_exclude_mask_hash_truncate(tmp_path, pg_db, kafka_broker, monkeypatch):
    bootstrap = kafka_broker.bootstrap
    monkeypatch.setenv("CDC_TEST_SALT", "s3cret")
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, email text, phone text,"
                     " tax_id bigint, notes text, password text)")
    name = unique_name()
    config = write_config(
        tmp_path, pg_db, bootstrap, name=name,
        mappers=[{"type": "columns", "salt_env": "CDC_TEST_SALT", "tables": {
            "public.customers": {"exclude": ["password"], "mask": ["phone"],
                                 "hash": ["email", "tax_id"], "truncate": {"notes": 5}}}}],
        sink={"topic": "{pipeline}.{table}"},  # debezium envelope
    )
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("INSERT INTO customers VALUES (1, 'a@example.com', '555-1234',"
                         " 123456789, 'long notes here', 'hunter2')")
        [message] = wait_for_events(bootstrap, f"{name}.customers", 1)

    def sha(text: str) -> str:
        return hashlib.sha256(("s3cret" + text).encode()).hexdigest()

    assert value_of(message)["after"] == {
        "id": 1, "email": sha("a@example.com"), "phone": "****",
        "tax_id": sha("123456789"), "notes": "long ",
    }
    assert key_of(message) == {"id": 1}


def test_rename_then_route(tmp_path, pg_db, kafka_broker):
    bootstrap = kafka_broker.bootstrap
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, cust int, amt numeric(8,2))")
        # Deletes must carry the partitioning column, not just the primary key.
        conn.execute("ALTER TABLE orders REPLICA IDENTITY FULL")
    name = unique_name()
    config = write_config(
        tmp_path, pg_db, bootstrap, name=name,
        mappers=[
            {"type": "rename", "tables": {"public.orders": "orders_v2"},
             "columns": {"public.orders": {"cust": "customer_id", "amt": "amount"}}},
            {"type": "route", "tables": {"public.orders_v2": {
                "topic": "{pipeline}.routed.{table}", "partition_by": "customer_id"}}},
        ],
        sink={"format": "json"},
    )
    with run_pipeline(config):
        with psycopg.connect(pg_db, autocommit=True) as conn:
            conn.execute("INSERT INTO orders VALUES (1, 42, 9.50), (2, 42, 1.00)")
            conn.execute("DELETE FROM orders WHERE id = 1")
        messages = wait_for_events(bootstrap, f"{name}.routed.orders_v2", 4, settle=1.0)
    assert [m.key() for m in messages] == [b"42"] * 4
    assert len({m.partition() for m in messages}) == 1
    first = value_of(messages[0])
    assert first["after"] == {"id": 1, "customer_id": 42, "amount": "9.50"}
    assert first["table"] == "orders_v2"
    assert messages[3].value() is None  # the delete's tombstone, same key
