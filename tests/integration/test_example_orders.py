"""The B2B shop example (examples/orders/) end to end: config, schema, services, consumer.

`cdc run examples/orders/cdc.yaml` (two pipelines: mined rows with the shop
mapper and CloudEvents, and the outbox) against a real PostgreSQL and a broker
of its own (fixed topic names such as outbox.event.order must not mix with
other tests' events); the services' story; the consumer's jsonb view. Then
duplicates: a second consumer group re-reads every topic, and every message is
published a second time (as a daemon restart would) for the first group.
"""

from __future__ import annotations

import importlib.util
import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest

from tests.integration.services import (
    REPO_ROOT,
    KafkaBroker,
    PostgresServer,
    free_port,
    read_topic,
    unique_name,
    wait_until,
)

EXAMPLE = REPO_ROOT / "examples" / "orders"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"orders_example_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


services = load_example("services")
consumer = load_example("consumer")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path / "kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def view_db(pg_server: PostgresServer) -> Iterator[str]:
    dsn = pg_server.create_database(unique_name("customer_view"))
    yield dsn
    pg_server.drop_database(dsn.name)


def _ready(http: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{http}/readyz", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def _view(dsn: str) -> list[dict[str, Any]]:
    view = consumer.CustomerView(dsn)
    try:
        docs = view.customers()
        (processed,) = view.conn.execute("SELECT count(*) FROM processed_events").fetchone()
    finally:
        view.close()
    for doc in docs:
        doc.pop("credit_at_us", None)
    return [{"processed_events": processed}, *docs]


def _order(order_id: int, status: str, amount: str, lines: list[tuple[str, int, str]]) -> dict:
    return {"order_id": order_id, "status": status, "amount": amount,
            "lines": [{"sku": s, "qty": q, "price": p} for s, q, p in lines]}


EXPECTED_VIEW = [
    {"processed_events": 15},
    {"customer_id": 1, "name": "Acme GmbH", "credit_limit": "1000.00", "credit_reserved": "750.00",
     "recent_orders": [_order(3, "approved", "500.00", [("SPRING-7", 20, "25.00")]),
                       _order(1, "approved", "250.00",
                              [("BOLT-M8", 100, "1.50"), ("NUT-M8", 100, "1.00")])]},
    {"customer_id": 2, "name": "Globex Ltd", "credit_limit": "200.00", "credit_reserved": "0.00",
     "recent_orders": [_order(2, "rejected", "900.00", [("GEAR-40", 3, "300.00")])]},
    {"customer_id": 3, "name": "Initech", "credit_limit": "5000.00", "credit_reserved": "0.00",
     "recent_orders": []},
]


def test_example_story_builds_the_view_and_duplicates_change_nothing(
    pg_server, pg_db, view_db, broker, cdc_daemon, tmp_path
):
    with pg_server.connect(pg_db.name) as conn:
        conn.execute((EXAMPLE / "schema.sql").read_text())
    http = f"127.0.0.1:{free_port()}"
    cdc_daemon(EXAMPLE / "cdc.yaml", env={
        "PG_DSN": pg_db, "KAFKA_BOOTSTRAP": broker.bootstrap,
        "CDC_STATE_DIR": str(tmp_path), "CDC_HTTP_LISTEN": http,
    })
    wait_until(lambda: _ready(http), 60, what="both pipelines to stream")

    with pg_server.connect(pg_db.name) as conn:
        story = list(services.story(conn))
    assert len(story) == 11

    customers_topic = f"{pg_db.name}.public.customers"  # the sink's {database}.{schema}.{table}
    expected = {"shop.order-events": 6, "shop.credit-events": 2, customers_topic: 3,
                "outbox.event.order": 3, "outbox.event.customer": 1}
    published = {}
    for topic, n in expected.items():
        published[topic] = read_topic(broker.bootstrap, topic, expect=n, timeout=30)
        assert len(published[topic]) == n, topic

    # The customers' row changes are CloudEvents (structured); ids are the cdc-event-ids.
    for msg in published[customers_topic]:
        headers = dict(msg.headers())
        event = json.loads(msg.value())
        assert event["specversion"] == "1.0"
        assert event["id"] == headers["cdc-event-id"].decode()
        assert event["source"] == f"/cdc/shop_rows/{pg_db.name}/public/customers"
        assert event["type"] in ("cdc.customers.read", "cdc.customers.insert")

    topics = list(expected)
    first = consumer.consume(broker.bootstrap, view_db, group="view", topics=topics, idle=2)
    assert first == {"applied": 14, "duplicate": 0, "ignored": 1}  # CreditLimitExceeded
    assert _view(view_db) == EXPECTED_VIEW

    # Replay 1: another group reads every topic from the start.
    replay = consumer.consume(broker.bootstrap, view_db, group="replay", topics=topics, idle=2)
    assert replay == {"applied": 0, "duplicate": 15, "ignored": 0}
    assert _view(view_db) == EXPECTED_VIEW

    # Replay 2: the same messages published again (what a restarted daemon resends),
    # read by the first group past its committed offsets.
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for messages in published.values():
        for msg in messages:
            producer.produce(msg.topic(), msg.value(), msg.key(), headers=msg.headers())
    assert producer.flush(15) == 0
    resent = consumer.consume(broker.bootstrap, view_db, group="view", topics=topics, idle=2)
    assert resent == {"applied": 0, "duplicate": 15, "ignored": 0}
    assert _view(view_db) == EXPECTED_VIEW


def test_cloudevents_mapper_binary_mode_through_the_pipeline(pg_db, kafka_broker, tmp_path):
    """The `type: cloudevents` mapper in binary mode through the real pipeline."""
    from tests.integration.pipeline_helpers import header, run_pipeline, write_config

    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute((EXAMPLE / "schema.sql").read_text())
    topic = f"ce_{pg_db.name}"
    path = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap,
        source={"tables": ["public.customers"]},
        mappers=[{"type": "cloudevents", "mode": "binary", "type_prefix": "com.example.shop",
                  "source": "//shop.example.com/{database}/{table}", "topic": topic}],
    )
    with run_pipeline(path) as running, psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute("UPDATE customers SET name = 'Acme AG' WHERE id = 1")
        [msg] = read_topic(kafka_broker.bootstrap, topic, expect=1, timeout=30)
        running.check()
    assert header(msg, "ce_specversion") == "1.0"
    assert header(msg, "ce_type") == "com.example.shop.customers.update"
    assert header(msg, "ce_source") == f"//shop.example.com/{pg_db.name}/customers"
    assert header(msg, "ce_subject") == "1"
    assert header(msg, "ce_id") == header(msg, "cdc-event-id")
    assert header(msg, "content-type") == "application/json"
    assert (header(msg, "ce_time") or "").endswith("Z")
    data = json.loads(msg.value())  # binary mode: the value is the data alone
    assert data["op"] == "update" and data["after"]["name"] == "Acme AG"
    assert data["before"]["name"] == "Acme GmbH"  # REPLICA IDENTITY FULL
    assert json.loads(msg.key()) == {"id": 1}
