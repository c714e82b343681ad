"""The `outbox` built-in mapper on hand-made changes."""

import json

import pytest

from cdc.chain import instantiate
from cdc.errors import ConfigError
from cdc.model import DELETE, INSERT, MESSAGE, READ, TRUNCATE, UPDATE, Change, Event
from mappers import builtin_mapper
from mappers.outbox import OutboxMapper

COLUMNS = {"id": "uuid", "aggregate_type": "text", "aggregate_id": "text", "type": "text",
           "payload": "jsonb", "headers": "jsonb"}


def change(**kw):
    base = dict(op=INSERT, database="shop", schema="public", table="outbox",
                key={"id": "e1"}, before=None,
                after={"id": "e1", "aggregate_type": "order", "aggregate_id": "7",
                       "type": "OrderCreated", "payload": {"id": 7, "total": "12.50"},
                       "headers": {"trace": "abc", "n": 3}},
                columns=COLUMNS, position=0x10, txid=5, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def mapper(**options):
    return OutboxMapper({"table": "public.outbox", **options})


def headers(event):
    return {k: v.decode() for k, v in event.headers}


def test_insert_becomes_event_with_topic_key_value_and_headers():
    c = change()
    event = mapper().map(c)
    assert isinstance(event, Event)
    assert event.topic == "outbox.event.order"
    assert event.key == "7"
    assert event.value == {"id": 7, "total": "12.50"}
    assert headers(event) == {"cdc-event-id": "e1", "event-type": "OrderCreated",
                              "trace": "abc", "n": "3"}
    assert event.change is c


def test_snapshot_reads_are_events_too():
    assert isinstance(mapper().map(change(op=READ, snapshot=True)), Event)


@pytest.mark.parametrize("op", [UPDATE, DELETE, TRUNCATE])
def test_updates_deletes_truncates_of_the_outbox_produce_nothing(op):
    c = change(op=op, before={"id": "e1"}, after=None if op != UPDATE else change().after)
    assert mapper().map(c) is None


def test_other_tables_pass_through():
    c = change(table="orders")
    assert mapper().map(c) is c


def test_text_payload_parsed_when_json_else_kept():
    cols = {**COLUMNS, "payload": "text", "headers": "text"}
    after = {**change().after, "payload": '{"a": [1, 2]}', "headers": '{"h": "v"}'}
    event = mapper().map(change(after=after, columns=cols))
    assert event.value == {"a": [1, 2]} and headers(event)["h"] == "v"
    after["payload"] = "not json {"
    assert mapper().map(change(after=after, columns=cols)).value == "not json {"
    after["payload"] = b"\x00\x01"
    assert mapper().map(change(after=after, columns=cols)).value == b"\x00\x01"


def test_custom_columns_topic_and_no_headers_column():
    cols = {"event_id": "int8", "kind": "text", "agg": "text", "t": "text", "body": "json"}
    after = {"event_id": 42, "kind": "customer", "agg": 9, "t": "Created", "body": [1]}
    m = mapper(columns={"id": "event_id", "aggregate_type": "kind", "aggregate_id": "agg",
                        "type": "t", "payload": "body", "headers": "hdrs"},
               topic="{table}.{aggregate_type}.{type}")
    event = m.map(change(after=after, columns=cols))
    assert event.topic == "outbox.customer.Created"
    assert event.key == "9" and event.value == [1]
    assert headers(event) == {"cdc-event-id": "42", "event-type": "Created"}


def test_row_missing_a_column_is_a_mapper_error():
    after = {"id": "e1", "payload": {}}
    with pytest.raises(ValueError, match="lacks column.*aggregate_type"):
        mapper().map(change(after=after))


def test_mysql_table_matches_database_dot_table():
    c = change(database="shop", schema="", table="outbox")
    assert isinstance(OutboxMapper({"table": "shop.outbox"}).map(c), Event)


def message(prefix, content):
    return Change(op=MESSAGE, database="shop", schema="", table="", key=None, before=None,
                  after={"prefix": prefix, "content": content, "transactional": True},
                  columns={}, position=0x20, txid=6, commit_ts=0, index=0)


def test_logical_message_with_prefix_becomes_event():
    content = json.dumps({"id": "m1", "aggregate_type": "order", "aggregate_id": 7,
                          "type": "OrderShipped", "payload": {"id": 7},
                          "headers": {"x": "y"}}).encode()
    event = mapper().map(message("outbox", content))
    assert event.topic == "outbox.event.order" and event.key == "7"
    assert event.value == {"id": 7}
    assert headers(event) == {"cdc-event-id": "m1", "event-type": "OrderShipped", "x": "y"}


def test_logical_message_with_other_prefix_passes_and_prefix_is_configurable():
    c = message("audit", b"{}")
    assert mapper().map(c) is c
    content = b'{"aggregate_type": "a", "aggregate_id": "1", "type": "T", "payload": 1}'
    event = mapper(prefix="audit").map(message("audit", content))
    assert event.topic == "outbox.event.a"
    assert "cdc-event-id" not in headers(event)  # no id: the pipeline's own id is used


def test_bad_message_content_is_a_mapper_error():
    with pytest.raises(ValueError, match="not JSON"):
        mapper().map(message("outbox", b"nope"))
    with pytest.raises(ValueError, match="JSON object"):
        mapper().map(message("outbox", b"[1]"))


@pytest.mark.parametrize("options, message_", [
    ({}, "option 'table'"),
    ({"table": "outbox"}, "option 'table'"),
    ({"table": "public.outbox", "columns": {"bogus": "x"}}, "unknown field.*bogus"),
    ({"table": "public.outbox", "columns": {"id": 3}}, "columns.id"),
    ({"table": "public.outbox", "topic": "{nope}"}, "unknown template field"),
    ({"table": "public.outbox", "topic": "{"}, "option 'topic'"),
    ({"table": "public.outbox", "prefix": ""}, "option 'prefix'"),
    ({"table": "public.outbox", "tabel": "x"}, "unknown option.*tabel"),
])
def test_bad_options_are_refused(options, message_):
    with pytest.raises((ValueError, TypeError), match=message_):
        OutboxMapper(options)


def test_registry_and_config_error_wrapping():
    cls = builtin_mapper("outbox", "pipelines[0].mappers[0]")
    assert cls is OutboxMapper
    with pytest.raises(ConfigError, match="option 'table'") as info:
        instantiate(cls, {"_sink": None, "_type": "outbox", "_pipeline": "p"},
                    "outbox", "pipelines[0].mappers[0]")
    assert "pipelines[0].mappers[0]" in str(info.value)


def test_messages_use_the_default_field_names_even_with_columns_overridden():
    content = b'{"aggregate_type": "a", "aggregate_id": "1", "type": "T", "payload": 1}'
    event = mapper(columns={"aggregate_type": "kind"}).map(message("outbox", content))
    assert event.topic == "outbox.event.a"


def test_null_topic_field_is_a_mapper_error():
    after = {**change().after, "aggregate_type": None}
    with pytest.raises(ValueError, match="no aggregate_type for topic"):
        mapper().map(change(after=after))
    with pytest.raises(ValueError, match=r"\(message\) has no table"):
        mapper(topic="{table}").map(message("outbox", b'{"payload": 1}'))
