"""The `route` built-in mapper on hand-made changes."""

import json
from datetime import date
from decimal import Decimal

import pytest

from cdc.config import SinkConfig
from cdc.model import DELETE, INSERT, TRUNCATE, Change, Event
from mappers.route import RouteMapper


def change(**kw):
    base = dict(op=INSERT, database="shop", schema="public", table="orders",
                key={"id": 1}, before=None,
                after={"id": 1, "customer_id": 42, "tenant": "acme", "total": Decimal("9.50"),
                       "day": date(2024, 5, 1)},
                columns={"id": "int4", "customer_id": "int4", "tenant": "text",
                         "total": "numeric(10,2)", "day": "date"},
                position=0x10, txid=1, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def route(tables, sink=None, **sink_options):
    sink = sink or SinkConfig(**sink_options)
    return RouteMapper({"tables": tables, "_sink": sink, "_type": "route", "_pipeline": "p1"})


def test_topic_and_partition_by_render_through_the_sink_format():
    m = route({"public.orders": {"topic": "{pipeline}.{schema}.{table}.{op}",
                                 "partition_by": "customer_id"}}, format="json")
    c = change()
    [event] = m.map(c)
    assert isinstance(event, Event) and event.change is c
    assert event.topic == "p1.public.orders.insert"
    assert event.key == "42"
    value = json.loads(event.value)
    assert value["after"]["total"] == "9.50" and value["op"] == "insert"


def test_key_template_and_delete_tombstone_share_the_key():
    m = route({"orders": {"key": "{tenant}-{id}-{day}"}})
    deleted = change(op=DELETE, before=change().after, after=None)
    envelope, tombstone = m.map(deleted)
    assert envelope.key == tombstone.key == "acme-1-2024-05-01"
    assert envelope.topic is None  # no topic template: the sink's
    assert json.loads(envelope.value)["op"] == "d" and tombstone.value is None


def test_topic_only_keeps_the_format_key_unless_the_sink_has_a_key_template():
    [event] = route({"orders": {"topic": "t"}}).map(change())
    assert json.loads(event.key) == {"id": 1}
    [event] = route({"orders": {"topic": "t"}}, key="{id}").map(change())
    assert event.key is None  # the pipeline applies sink.key


def test_other_tables_pass_through_and_truncate_skips_column_templates():
    m = route({"public.orders": {"topic": "{table}.{tenant}"}}, truncate=True)
    c = change(table="customers")
    assert m.map(c) is c
    [event] = m.map(change(op=TRUNCATE, key=None, after=None))
    assert event.topic is None


def test_missing_column_is_a_mapper_error():
    m = route({"orders": {"partition_by": "region"}})
    with pytest.raises(ValueError, match="no column 'region'"):
        m.map(change())


@pytest.mark.parametrize("tables, message", [
    (None, "option 'tables'"),
    ({"orders": {}}, "tables.orders"),
    ({"orders": {"key": "{id}", "partition_by": "id"}}, "not both"),
    ({"orders": {"partition_by": 3}}, "tables.orders.partition_by"),
    ({"orders": {"topic": "{"}}, "tables.orders.topic"),
    ({"orders": {"topic": "{a.b}"}}, "tables.orders.topic"),
    ({"orders": {"topic": 5}}, "tables.orders.topic"),
    ({"orders": {"topc": "x"}}, "unknown option.*topc"),
])
def test_bad_options_are_refused(tables, message):
    with pytest.raises((ValueError, TypeError), match=message):
        route(tables)


def test_unknown_top_level_option_is_refused():
    with pytest.raises(ValueError, match="unknown option.*topic"):
        RouteMapper({"tables": {"t": {"topic": "x"}}, "topic": "y"})


def test_delete_without_the_column_hints_at_replica_identity():
    m = route({"orders": {"partition_by": "customer_id"}})
    with pytest.raises(ValueError, match="REPLICA IDENTITY FULL"):
        m.map(change(op=DELETE, before={"id": 1}, after=None))
