"""Example consumer: a pre-joined "customer with recent orders" view in PostgreSQL.

The read side of the shop (the seed article's second problem: a query that
needs data of two services). It reads the business events, the customers'
CloudEvents and the outbox events, and keeps one jsonb document per customer::

    {"customer_id": 1, "name": "Acme GmbH", "credit_limit": "1000.00",
     "credit_reserved": "750.00",
     "recent_orders": [{"order_id": 3, "status": "approved", "amount": "500.00",
                        "lines": [{"sku": "SPRING-7", "qty": 20, "price": "25.00"}]}, ...]}

Delivery is at least once, so the same event may come twice (a daemon restart,
a consumer crash before its offset commit). Every event carries a
deterministic id in the ``cdc-event-id`` header; it is inserted into
``processed_events`` (primary key) in the same transaction as the view update,
so a duplicate changes nothing. Events from different topics may arrive in any
order: order statuses only move forward, and credit totals are taken from the
newest commit time seen.

    python examples/orders/consumer.py --bootstrap 127.0.0.1:9092 \\
        --dsn postgresql://localhost/shop_view --idle 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

TOPICS = ["shop.order-events", "shop.credit-events", "shop.public.customers",
          "outbox.event.order"]
RECENT_ORDERS = 5
EVENT_ID_HEADER = "cdc-event-id"
_FINAL = ("approved", "rejected")

SCHEMA = """
CREATE TABLE IF NOT EXISTS customer_view (
    customer_id int PRIMARY KEY,
    doc         jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS processed_events (
    event_id     text PRIMARY KEY,
    topic        text NOT NULL,
    type         text,
    processed_at timestamptz NOT NULL DEFAULT now()
);
"""


class CustomerView:
    """Applies events to the view; one database transaction per event."""

    def __init__(self, dsn: str):
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.conn.execute(SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def apply(self, topic: str, event_id: str, value: dict[str, Any] | None) -> str:
        """Apply one event; returns "applied", "duplicate" or "ignored"."""
        kind, change = _interpret(topic, value)
        with self.conn.transaction():
            fresh = self.conn.execute(
                "INSERT INTO processed_events (event_id, topic, type) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (event_id, topic, kind),
            ).rowcount
            if not fresh:
                return "duplicate"
            if change is None:
                return "ignored"
            customer_id, update = change
            self.conn.execute(
                "INSERT INTO customer_view (customer_id, doc) VALUES (%s, %s) "
                "ON CONFLICT DO NOTHING",
                (customer_id, Jsonb({"customer_id": customer_id, "recent_orders": []})),
            )
            row = self.conn.execute(
                "SELECT doc FROM customer_view WHERE customer_id = %s FOR UPDATE",
                (customer_id,),
            ).fetchone()
            assert row is not None
            doc = row[0]
            update(doc)
            self.conn.execute(
                "UPDATE customer_view SET doc = %s, updated_at = now() WHERE customer_id = %s",
                (Jsonb(doc), customer_id),
            )
        return "applied"

    def customers(self) -> list[dict[str, Any]]:
        """The whole view, by customer id."""
        rows = self.conn.execute("SELECT doc FROM customer_view ORDER BY customer_id")
        return [row[0] for row in rows]


Update = Callable[[dict[str, Any]], None]


def _interpret(topic: str, value: dict[str, Any] | None) -> tuple[str | None,
                                                                   tuple[int, Update] | None]:
    """(event type, (customer id, how to change its document)) — None: not for this view."""
    if not isinstance(value, dict):
        return None, None  # a tombstone
    if value.get("specversion") == "1.0":  # a row change of customers, as a CloudEvent
        data = value.get("data") or {}
        row = data.get("after")
        kind = str(value.get("type"))
        if data.get("table") != "customers" or not row:
            return kind, None
        return kind, (row["id"], lambda doc: _customer(doc, row))
    kind = str(value.get("type"))
    if kind in ("OrderCreated", "OrderApproved", "OrderRejected", "OrderStatusChanged"):
        return kind, (value["customer_id"], lambda doc: _order(doc, value))
    if kind in ("CreditReserved", "CreditReleased"):
        return kind, (value["customer_id"], lambda doc: _credit(doc, value))
    if kind == "OrderPlaced":  # from the outbox: the lines no table holds
        return kind, (value["customer_id"], lambda doc: _order(doc, value))
    return kind, None


def _customer(doc: dict[str, Any], row: dict[str, Any]) -> None:
    doc["name"] = row.get("name")
    doc["credit_limit"] = row.get("credit_limit")
    doc.setdefault("credit_reserved", row.get("credit_reserved"))  # credit events own it


def _credit(doc: dict[str, Any], event: dict[str, Any]) -> None:
    at = int(event.get("at_us") or 0)
    if at >= int(doc.get("credit_at_us", 0)):
        doc["credit_reserved"] = event["reserved_total"]
        doc["credit_limit"] = event.get("limit", doc.get("credit_limit"))
        doc["credit_at_us"] = at


def _order(doc: dict[str, Any], event: dict[str, Any]) -> None:
    orders: list[dict[str, Any]] = doc.setdefault("recent_orders", [])
    order = next((o for o in orders if o["order_id"] == event["order_id"]), None)
    if order is None:
        order = {"order_id": event["order_id"]}
        orders.append(order)
    if event.get("amount") is not None:
        order["amount"] = event["amount"]
    if "lines" in event:
        order["lines"] = event["lines"]
    status = event.get("status")
    if status and order.get("status") not in _FINAL:  # statuses only move forward
        order["status"] = status
    orders.sort(key=lambda o: o["order_id"], reverse=True)
    del orders[RECENT_ORDERS:]


def consume(
    bootstrap: str,
    dsn: str,
    group: str = "customer-view",
    topics: Iterable[str] = TOPICS,
    idle: float = 5.0,
    timeout: float = 120.0,
    report: Callable[[str, str, str | None, str], None] | None = None,
) -> dict[str, int]:
    """Consume until nothing arrived for `idle` seconds (or `timeout`); return counts.

    A consumer group with manual offset commits: the offset is committed after
    the view's transaction, so a crash in between replays the event, and
    processed_events drops it. `report(topic, event_id, type, outcome)` sees each event.
    """
    from confluent_kafka import Consumer, KafkaError

    view = CustomerView(dsn)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,  # a short join (Tansu waits a session timeout)
        "topic.metadata.refresh.interval.ms": 1000,
    })
    counts = {"applied": 0, "duplicate": 0, "ignored": 0}
    assigned: list[bool] = []
    consumer.subscribe(list(topics), on_assign=lambda _c, _p: assigned.append(True))
    start = last = time.monotonic()
    try:
        while time.monotonic() - start < timeout:
            if assigned and time.monotonic() - last > idle:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() in (KafkaError._PARTITION_EOF, KafkaError.UNKNOWN_TOPIC_OR_PART):
                    continue
                raise RuntimeError(f"consumer: {err.str()}")
            topic = str(msg.topic())
            headers = dict(msg.headers() or [])
            raw_id = headers.get(EVENT_ID_HEADER)
            if isinstance(raw_id, bytes):
                raw_id = raw_id.decode()
            event_id = raw_id or f"{topic}/{msg.partition()}/{msg.offset()}"
            raw = msg.value()
            value = json.loads(raw) if raw else None
            outcome = view.apply(topic, event_id, value)
            consumer.commit(message=msg, asynchronous=False)
            counts[outcome] += 1
            if report is not None:
                kind = value.get("type") if isinstance(value, dict) else None
                report(topic, event_id, kind, outcome)
            last = time.monotonic()
    finally:
        consumer.close()
        view.close()
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True, help="database that holds the view")
    parser.add_argument("--group", default="customer-view")
    parser.add_argument("--idle", type=float, default=float("inf"),
                        help="stop after this many seconds without events")
    args = parser.parse_args(argv)
    counts = consume(args.bootstrap, args.dsn, args.group, idle=args.idle,
                     timeout=float("inf"),
                     report=lambda t, i, k, o: print(f"{o:<9} {t:<24} {k or '-':<22} {i}"))
    print(json.dumps(counts), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
