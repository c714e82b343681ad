"""Example mapper: row changes of the B2B shop become business events.

`orders` rows turn into OrderCreated / OrderApproved / OrderRejected /
OrderStatusChanged (topic ``shop.order-events``); a change of a customer's
``credit_reserved`` into CreditReserved / CreditReleased (``shop.credit-events``).
Every other change (customers created, renamed, read by the snapshot) passes
on as a Change and is published in the sink's format.

Values carry ``at_us``, the commit time in µs, so a consumer reading several
topics can tell which of two updates of the same customer is newer.

Used by examples/orders/cdc.yaml (and config/examples/orders.yaml)::

    mappers:
      - {type: python, path: "shop_events:order_events"}
"""

from __future__ import annotations

from cdc.model import DELETE, INSERT, UPDATE, Change, Event

ORDER_TOPIC = "shop.order-events"
CREDIT_TOPIC = "shop.credit-events"
STATUS_EVENTS = {"approved": "OrderApproved", "rejected": "OrderRejected"}


def order_events(change: Change) -> Change | Event | None:
    if change.table == "orders":
        return _order_event(change)
    if change.table == "customers" and change.op == UPDATE:
        return _credit_event(change)
    return change


def _order_event(change: Change) -> Event | None:
    row = change.after
    if change.op == INSERT and row is not None:
        kind = "OrderCreated"
    elif change.op == UPDATE and row is not None:
        before = change.before or {}
        if "status" in before and before["status"] == row["status"]:
            return None  # no business meaning: e.g. a note was edited
        kind = STATUS_EVENTS.get(row["status"], "OrderStatusChanged")
    elif change.op == DELETE:
        kind, row = "OrderDeleted", change.before
    else:
        return None  # snapshot reads of orders: the events were published when they happened
    assert row is not None
    return Event(
        topic=ORDER_TOPIC,
        key=str(row["id"]),
        value={
            "type": kind,
            "order_id": row["id"],
            "customer_id": row.get("customer_id"),
            "status": row.get("status"),
            "amount": row.get("amount"),
            "at_us": change.commit_ts,
        },
        headers=[("event-type", kind.encode())],
    )


def _credit_event(change: Change) -> Change | Event:
    before, after = change.before or {}, change.after or {}
    if "credit_reserved" not in before or "credit_reserved" not in after:
        return change  # no old image (REPLICA IDENTITY FULL is off): publish the row change
    delta = after["credit_reserved"] - before["credit_reserved"]
    if not delta:
        return change  # e.g. renamed, or a new credit limit: a plain customer update
    kind = "CreditReserved" if delta > 0 else "CreditReleased"
    return Event(
        topic=CREDIT_TOPIC,
        key=str(after["id"]),
        value={"type": kind, "customer_id": after["id"], "amount": abs(delta),
               "reserved_total": after["credit_reserved"], "limit": after["credit_limit"],
               "at_us": change.commit_ts},
        headers=[("event-type", kind.encode())],
    )
