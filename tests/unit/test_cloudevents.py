"""CloudEvents 1.0: the structured format and the mapper in both modes, against the spec.

Spec (cloudevents/spec v1.0.2): required context attributes id, source,
specversion, type — non-empty strings; source a URI-reference; time RFC 3339.
Kafka protocol binding: binary mode puts attributes in ``ce_<name>`` headers and
the data's media type in ``content-type``; structured mode uses
``application/cloudevents+json``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest

from cdc.model import DELETE, EVENT_ID_HEADER, INSERT, MESSAGE, UPDATE, Change, event_id
from mappers.cloudevents import CloudEventsFormat, CloudEventsMapper
from mappers.formats import make_format

REQUIRED = ("specversion", "id", "source", "type")
# RFC 3339 date-time, UTC with "Z".
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
# The spec's attribute naming rule: lower-case a-z and 0-9, at most 20 characters.
ATTRIBUTE_NAME = re.compile(r"^[a-z0-9]{1,20}$")

COLUMNS = {"id": "int4", "status": "text", "amount": "numeric(12,2)"}
COMMIT_TS = 1709205255123456  # 2024-02-29T11:14:15.123456Z


def change(**kw: Any) -> Change:
    base: dict[str, Any] = dict(
        op=INSERT, database="shop", schema="public", table="orders", key={"id": 7},
        before=None, after={"id": 7, "status": "new", "amount": Decimal("250.00")},
        columns=COLUMNS, position=0x16B3748, txid=731, commit_ts=COMMIT_TS, index=2,
    )
    base.update(kw)
    return Change(**base)


def assert_valid_event(attrs: dict[str, Any]) -> None:
    for name in REQUIRED:
        assert isinstance(attrs.get(name), str) and attrs[name], f"{name} missing or empty"
    assert attrs["specversion"] == "1.0"
    for name in attrs:
        if name != "data":
            assert ATTRIBUTE_NAME.match(name), name
    if "time" in attrs:
        assert RFC3339.match(attrs["time"]), attrs["time"]
        dt.datetime.fromisoformat(attrs["time"].replace("Z", "+00:00"))


def test_format_is_registered_and_structured():
    fmt = make_format("cloudevents", server_name="orders")
    [(topic, key, value)] = fmt.render(change())
    assert topic is None and key is not None and value is not None
    assert json.loads(key) == {"id": 7}
    event = json.loads(value)
    assert_valid_event(event)
    assert event == {
        "specversion": "1.0",
        "id": "16B3748/2",
        "source": "/cdc/orders/shop/public/orders",
        "type": "cdc.orders.insert",
        "subject": "7",
        "time": "2024-02-29T11:14:15.123456Z",
        "datacontenttype": "application/json",
        "data": {
            "op": "insert", "database": "shop", "schema": "public", "table": "orders",
            "key": {"id": 7}, "before": None,
            "after": {"id": 7, "status": "new", "amount": "250.00"},
            "unchanged": [], "position": "16B3748", "txid": 731,
            "commit_ts": "2024-02-29T11:14:15.123456Z", "snapshot": False,
        },
    }


def test_id_is_the_cdc_event_id_and_stable_on_replay():
    fmt = CloudEventsFormat()
    first = json.loads(fmt.render(change())[0][2] or b"")
    again = json.loads(fmt.render(change())[0][2] or b"")
    assert first["id"] == again["id"] == event_id(change())
    other = json.loads(fmt.render(change(index=3))[0][2] or b"")
    assert other["id"] != first["id"]


def test_type_prefix_source_template_and_ops():
    fmt = CloudEventsFormat(server_name="p", type_prefix="com.example.shop",
                            source="//shop.example.com/{schema}/{table}")
    before = {"id": 7, "status": "new", "amount": Decimal("1")}
    upd = json.loads(fmt.render(change(op=UPDATE, before=before))[0][2] or b"")
    assert upd["type"] == "com.example.shop.orders.update"
    assert upd["source"] == "//shop.example.com/public/orders"
    assert upd["data"]["before"]["status"] == "new"


def test_delete_gets_a_tombstone_unless_off():
    deleted = change(op=DELETE, before={"id": 7}, after=None)
    records = CloudEventsFormat().render(deleted)
    assert [r[2] is None for r in records] == [False, True]
    assert json.loads(records[0][2] or b"")["type"] == "cdc.orders.delete"
    assert len(CloudEventsFormat(tombstones=False).render(deleted)) == 1


def test_composite_key_subject_is_json_and_message_events():
    c = change(key={"order_id": 1, "line": 2}, columns={"order_id": "int4", "line": "int4"},
               after={"order_id": 1, "line": 2})
    event = json.loads(CloudEventsFormat().render(c)[0][2] or b"")
    assert event["subject"] == '{"order_id":1,"line":2}'
    msg = change(op=MESSAGE, schema="", table="", key=None, columns={},
                 after={"prefix": "audit", "content": b"hi", "transactional": True})
    [(topic, _key, value)] = CloudEventsFormat(server_name="orders").render(msg)
    event = json.loads(value or b"")
    assert_valid_event(event)
    assert topic == "orders.message"
    assert (event["type"], event["source"], event["subject"]) == (
        "cdc.message", "/cdc/orders/shop", "audit")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="source"):
        CloudEventsFormat(source="/x/{nope}")
    with pytest.raises(ValueError, match="mode"):
        CloudEventsMapper({"mode": "batched"})
    with pytest.raises(ValueError, match="unknown option"):
        CloudEventsMapper({"colour": "blue"})


def headers_of(event: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in event.headers}


def test_mapper_structured_mode():
    [event] = CloudEventsMapper({"_pipeline": "orders", "topic": "shop.ce"}).map(change())
    assert event.topic == "shop.ce" and json.loads(event.key) == {"id": 7}
    body = json.loads(event.value)
    assert_valid_event(body)
    headers = headers_of(event)
    assert headers["content-type"] == "application/cloudevents+json; charset=UTF-8"
    assert headers[EVENT_ID_HEADER] == body["id"] == "16B3748/2"
    assert body["data"]["after"]["amount"] == "250.00"


def test_mapper_binary_mode_kafka_binding():
    sink = SimpleNamespace(tombstones=True, truncate=False)
    mapper = CloudEventsMapper({"mode": "binary", "type_prefix": "com.example",
                                "_sink": sink, "_pipeline": "orders", "_type": "cloudevents"})
    [event] = mapper.map(change())
    headers = headers_of(event)
    attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
    assert_valid_event(attrs)
    assert attrs == {
        "specversion": "1.0", "id": "16B3748/2", "source": "/cdc/orders/shop/public/orders",
        "type": "com.example.orders.insert", "subject": "7",
        "time": "2024-02-29T11:14:15.123456Z",
    }
    # datacontenttype maps to the content-type header, not to ce_datacontenttype.
    assert headers["content-type"] == "application/json"
    assert headers[EVENT_ID_HEADER] == attrs["id"]
    data = json.loads(event.value)  # the value is the data alone
    assert data["op"] == "insert" and data["after"]["id"] == 7
    deleted = mapper.map(change(op=DELETE, before={"id": 7}, after=None))
    assert [e.value is None for e in deleted] == [False, True]
    assert headers_of(deleted[1])[EVENT_ID_HEADER] == "16B3748/2/1"
