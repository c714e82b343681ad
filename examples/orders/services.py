"""The two services of the shop, reduced to the SQL they run, and the demo's story.

Each service changes only its own table, in one local transaction; nothing
calls Kafka. The order service also writes an `outbox` row in the same
transaction (OrderPlaced, carrying the order lines, which no table holds); the
customer service writes one when a credit check fails (CreditLimitExceeded:
an event without any row change, which only an outbox can publish).

In production each service would react to the other's events; here `story()`
runs their steps in order::

    with psycopg.connect(dsn, autocommit=True) as conn:
        for line in story(conn):
            print(line)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any


def place_order(conn: Any, customer_id: int, lines: list[tuple[str, int, str]]) -> int:
    """Order service: a pending order and its OrderPlaced outbox event, atomically."""
    amount = sum(Decimal(price) * qty for _sku, qty, price in lines)
    with conn.transaction():
        (order_id,) = conn.execute(
            "INSERT INTO orders (customer_id, amount) VALUES (%s, %s) RETURNING id",
            (customer_id, amount),
        ).fetchone()
        payload = {
            "type": "OrderPlaced", "order_id": order_id, "customer_id": customer_id,
            "amount": str(amount),
            "lines": [{"sku": sku, "qty": qty, "price": price} for sku, qty, price in lines],
        }
        _outbox(conn, "order", order_id, "OrderPlaced", payload)
    return int(order_id)


def reserve_credit(conn: Any, order_id: int) -> bool:
    """Customer service: reserve the order's amount if it fits under the credit limit."""
    with conn.transaction():
        customer_id, amount = conn.execute(
            "SELECT customer_id, amount FROM orders WHERE id = %s", (order_id,)
        ).fetchone()  # in production: from the OrderCreated event
        reserved = conn.execute(
            "UPDATE customers SET credit_reserved = credit_reserved + %s "
            "WHERE id = %s AND credit_reserved + %s <= credit_limit RETURNING id",
            (amount, customer_id, amount),
        ).fetchone()
        if reserved is None:
            _outbox(conn, "customer", customer_id, "CreditLimitExceeded",
                    {"type": "CreditLimitExceeded", "customer_id": customer_id,
                     "order_id": order_id, "amount": str(amount)})
    return reserved is not None


def decide(conn: Any, order_id: int, approved: bool) -> None:
    """Order service: approve or reject the pending order."""
    if approved:
        conn.execute("UPDATE orders SET status = 'approved' WHERE id = %s", (order_id,))
    else:
        conn.execute("UPDATE orders SET status = 'rejected', note = 'credit limit exceeded' "
                     "WHERE id = %s", (order_id,))


def _outbox(conn: Any, aggregate_type: str, aggregate_id: int, kind: str,
            payload: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO outbox (aggregate_type, aggregate_id, type, payload) "
        "VALUES (%s, %s, %s, %s::jsonb)",
        (aggregate_type, str(aggregate_id), kind, json.dumps(payload)),
    )


# (customer, order lines as (sku, qty, unit price))
ORDERS = [
    (1, [("BOLT-M8", 100, "1.50"), ("NUT-M8", 100, "1.00")]),   # 250.00: fits Acme's 1000
    (2, [("GEAR-40", 3, "300.00")]),                          # 900.00: over Globex's 200
    (1, [("SPRING-7", 20, "25.00")]),                         # 500.00: Acme now at 750
]


def story(conn: Any) -> Iterator[str]:
    """Run the demo's business traffic on an autocommit connection; yield what happened."""
    for customer_id, lines in ORDERS:
        order_id = place_order(conn, customer_id, lines)
        yield f"order service:    order {order_id} placed for customer {customer_id} " \
              "(+ OrderPlaced in the outbox, same transaction)"
        ok = reserve_credit(conn, order_id)
        yield (f"customer service: credit reserved for order {order_id}" if ok else
               f"customer service: order {order_id} exceeds the credit limit "
               "(+ CreditLimitExceeded in the outbox)")
        decide(conn, order_id, ok)
        yield f"order service:    order {order_id} {'approved' if ok else 'rejected'}"
    conn.execute("UPDATE orders SET note = 'gift wrap' WHERE id = 1")
    yield "order service:    note added to order 1 (no business event)"
    conn.execute("INSERT INTO customers (id, name, credit_limit) VALUES (3, 'Initech', 5000)")
    yield "customer service: customer 3 created (a CloudEvent of the row change)"
