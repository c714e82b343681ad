"""The `outbox` built-in mapper on a MySQL/MariaDB source, through the real pipeline
(real MariaDB binlog, real broker, pipeline in-process)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml

from tests.integration.pipeline_helpers import (
    event_id,
    header,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
)
from tests.integration.services import read_topic
from tests.integration.test_mysql_source import run_sql, write_mysql_config


def outbox_config(tmp_path: Path, dsn: str, bootstrap: str, mappers: list[dict[str, Any]],
                  **source: Any) -> Path:  # fmt: skip
    """A mysql pipeline (json format, topic {database}.{table}) with these mappers."""
    path = write_mysql_config(tmp_path, dsn, bootstrap, sink={"format": "json"}, **source)
    document = yaml.safe_load(path.read_text())
    document["pipelines"][0]["mappers"] = mappers
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def test_outbox_with_json_columns_snapshot_and_stream(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    bootstrap = kafka_broker.bootstrap
    db = mariadb_db.name
    early, placed, listed = (str(uuid.uuid4()) for _ in range(3))
    run_sql(mariadb_server, db, f"""
CREATE TABLE orders (id int PRIMARY KEY, status varchar(20));
CREATE TABLE outbox (id char(36) PRIMARY KEY, aggregate_type varchar(255) NOT NULL,
  aggregate_id varchar(255) NOT NULL, type varchar(255) NOT NULL, payload JSON,
  headers JSON);
INSERT INTO outbox VALUES ('{early}', 'customer', '3', 'CustomerRegistered',
  '{{"id": 3, "name": "Acme"}}', NULL)""")  # fmt: skip
    config = outbox_config(
        tmp_path, mariadb_db, bootstrap, snapshot="initial",
        mappers=[{"type": "outbox", "table": f"{db}.outbox",
                  "topic": f"{db}.events.{{aggregate_type}}"}],
    )  # fmt: skip
    with run_pipeline(config):
        run_sql(mariadb_server, db, f"""
BEGIN;
INSERT INTO orders VALUES (7, 'new');
INSERT INTO outbox VALUES ('{placed}', 'order', '7', 'OrderPlaced',
  '{{"order_id": 7, "total": 12.50, "lines": [{{"sku": "BOLT", "qty": 100}}]}}',
  '{{"trace-id": "t-1", "tenant": 42}}');
COMMIT;
UPDATE outbox SET type = 'changed' WHERE id = '{placed}';
DELETE FROM outbox;
INSERT INTO outbox VALUES ('{listed}', 'order', '8', 'OrderLinesListed',
  '[1, 2, 3]', NULL)""")  # fmt: skip
        orders = wait_for_events(bootstrap, f"{db}.events.order", 2, settle=1.0)
        customers = wait_for_events(bootstrap, f"{db}.events.customer", 1)
        rows = wait_for_events(bootstrap, f"{db}.orders", 1)
    # The snapshot read of the outbox table is an event too.
    [registered] = customers
    assert key_of(registered) == 3 and registered.key() == b"3"
    assert value_of(registered) == {"id": 3, "name": "Acme"}
    assert event_id(registered) == early
    assert header(registered, "event-type") == "CustomerRegistered"

    by_id = {event_id(m): m for m in orders}
    assert set(by_id) == {placed, listed}
    order = by_id[placed]
    assert order.key() == b"7"
    assert value_of(order) == {"order_id": 7, "total": 12.50,
                               "lines": [{"sku": "BOLT", "qty": 100}]}  # fmt: skip
    assert header(order, "event-type") == "OrderPlaced"
    assert header(order, "trace-id") == "t-1" and header(order, "tenant") == "42"
    assert value_of(by_id[listed]) == [1, 2, 3]
    assert header(by_id[listed], "event-type") == "OrderLinesListed"
    # Other tables pass through in the sink's format; the outbox table itself never does.
    assert value_of(rows[0])["after"] == {"id": 7, "status": "new"}
    assert read_topic(bootstrap, f"{db}.outbox", timeout=2, idle=1.0) == []


def test_outbox_with_text_columns_and_renamed_fields(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    bootstrap = kafka_broker.bootstrap
    db = mariadb_db.name
    run_sql(mariadb_server, db, """
CREATE TABLE events_out (seq bigint AUTO_INCREMENT PRIMARY KEY, aggregatetype varchar(64),
  aggregateid bigint, event_type varchar(64), body LONGTEXT, meta TEXT,
  created timestamp(6) DEFAULT CURRENT_TIMESTAMP(6))""")  # fmt: skip
    config = outbox_config(
        tmp_path, mariadb_db, bootstrap,
        mappers=[{"type": "outbox", "table": f"{db}.events_out",
                  "topic": f"{db}.{{type}}",
                  "columns": {"id": "seq", "aggregate_type": "aggregatetype",
                              "aggregate_id": "aggregateid", "type": "event_type",
                              "payload": "body", "headers": "meta"}}],
    )  # fmt: skip
    with run_pipeline(config):
        run_sql(mariadb_server, db, """
INSERT INTO events_out (aggregatetype, aggregateid, event_type, body, meta)
  VALUES ('invoice', 900, 'InvoiceSent', '{"invoice": 900, "amount": "19.99"}',
          '{"source": "billing"}');
INSERT INTO events_out (aggregatetype, aggregateid, event_type, body, meta)
  VALUES ('invoice', 901, 'InvoiceSent', 'not json: a plain text body', NULL)""")  # fmt: skip
        messages = wait_for_events(bootstrap, f"{db}.InvoiceSent", 2, settle=1.0)
    by_key = {m.key(): m for m in messages}
    assert set(by_key) == {b"900", b"901"}
    sent = by_key[b"900"]
    assert value_of(sent) == {"invoice": 900, "amount": "19.99"}  # text parsed as JSON
    assert event_id(sent) == "1"  # the row's id (the auto-increment seq)
    assert header(sent, "source") == "billing"
    assert header(sent, "event-type") == "InvoiceSent"
    plain = by_key[b"901"]
    assert event_id(plain) == "2"
    assert plain.value() == b"not json: a plain text body"  # a text payload: its text
