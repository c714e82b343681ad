"""The avro format: Debezium's Avro mapping, Confluent framing, caching, registry failures.

Serialization goes through confluent-kafka's AvroSerializer with its
in-process mock registry (``mock://``), or with its real HTTP client against
tests/schema_registry_stub.py where HTTP behaviour matters (errors, auth).
No real Schema Registry runs in these tests.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import struct
from decimal import Decimal
from typing import Any

import pytest
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cdc.errors import SinkError, SinkUnavailable
from cdc.model import Change, Interval
from cdc.render import EventRenderer
from mappers.avro_format import AvroFormat, avro_name, column_type, placeholder_for
from mappers.formats import make_format
from tests.schema_registry_stub import RegistryStub

UTC = dt.UTC
TS = 1709205255123456  # 2024-02-29T11:14:15.123456Z


# -- the type mapping ---------------------------------------------------------------------


def semantic(avro_type: str, name: str) -> dict[str, Any]:
    return {"type": avro_type, "connect.version": 1, "connect.name": name}


@pytest.mark.parametrize(("type_name", "schema"), [
    ("bool", "boolean"),
    ("int2", {"type": "int", "connect.type": "int16"}),
    ("int4", "int"),
    ("int8", "long"),
    ("oid", "long"),
    ("float4", "float"),
    ("float8", "double"),
    ("numeric", "string"),
    ("numeric(5,7)", "string"),  # scale > precision (PostgreSQL 15): not an Avro decimal
    ("text", "string"),
    ("varchar(20)", "string"),
    ("bpchar(3)", "string"),
    ("date", semantic("int", "io.debezium.time.Date")),
    ("time(3)", semantic("int", "io.debezium.time.Time")),
    ("time", semantic("long", "io.debezium.time.MicroTime")),
    ("time(6)", semantic("long", "io.debezium.time.MicroTime")),
    ("timestamp(0)", semantic("long", "io.debezium.time.Timestamp")),
    ("timestamp", semantic("long", "io.debezium.time.MicroTimestamp")),
    ("timestamptz", semantic("string", "io.debezium.time.ZonedTimestamp")),
    ("timetz", semantic("string", "io.debezium.time.ZonedTime")),
    ("interval", semantic("long", "io.debezium.time.MicroDuration")),
    ("json", semantic("string", "io.debezium.data.Json")),
    ("jsonb", semantic("string", "io.debezium.data.Json")),
    ("uuid", semantic("string", "io.debezium.data.Uuid")),
    ("xml", semantic("string", "io.debezium.data.Xml")),
    ("enum", semantic("string", "io.debezium.data.Enum")),
    ("bytea", "bytes"),
    ("_int4", {"type": "array", "items": ["null", "int"]}),
    ("_text", {"type": "array", "items": ["null", "string"]}),
    ("text[]", {"type": "array", "items": ["null", "string"]}),
    ("mood", "string"),  # a user enum or any other type: its text
    ("money", "string"),
])
def test_column_types_map_as_debezium_does(type_name, schema):
    assert column_type(type_name)[0] == schema


def test_numeric_with_a_scale_is_the_avro_decimal_type():
    schema, convert = column_type("numeric(12,2)")
    assert schema["type"] == "bytes" and schema["logicalType"] == "decimal"
    assert (schema["precision"], schema["scale"]) == (12, 2)
    assert schema["connect.name"] == "org.apache.kafka.connect.data.Decimal"
    assert schema["connect.parameters"] == {"scale": "2", "connect.decimal.precision": "12"}
    assert convert is not None and convert(Decimal("1.5")) == Decimal("1.50")
    assert str(convert(Decimal("1.5"))) == "1.50"  # the schema's scale, exactly
    with pytest.raises(ValueError, match="NaN cannot be written as an Avro decimal"):
        convert(Decimal("NaN"))


def test_array_of_decimals_keeps_the_element_typmod():
    schema, convert = column_type("_numeric(8,3)")
    assert schema["items"][1]["scale"] == 3
    assert convert is not None and convert([Decimal("1"), None]) == [Decimal("1.000"), None]


def test_placeholders_for_unchanged_toast():
    assert placeholder_for("string") == "__debezium_unavailable_value"
    assert placeholder_for(semantic("string", "io.debezium.data.Json")) == (
        "__debezium_unavailable_value")
    assert placeholder_for("bytes") == b"__debezium_unavailable_value"
    assert placeholder_for(column_type("_text")[0]) == ["__debezium_unavailable_value"]
    assert placeholder_for(column_type("_int4")[0]) == list(b"__debezium_unavailable_value")
    assert placeholder_for(column_type("numeric(5,2)")[0]) is None  # not expressible: null


def test_avro_names():
    assert avro_name("order-lines") == "order_lines"
    assert avro_name("2fa") == "_2fa"
    assert avro_name("größe") == "gr__e"
    assert avro_name("ok_Name1") == "ok_Name1"


# -- rendering through confluent-kafka's serializer (mock registry) ----------------------

COLUMNS = {
    "id": "int4", "amount": "numeric(12,2)", "ratio": "numeric", "created": "timestamp",
    "created_ms": "timestamp(3)", "paid_at": "timestamptz", "day": "date", "at": "time",
    "doc": "jsonb", "blob": "bytea", "tags": "_text", "score": "float8", "note": "text",
    "waited": "interval", "big": "int8", "flag": "bool", "small": "int2",
}
ROW = {
    "id": 7, "amount": Decimal("12345.67"), "ratio": Decimal("0.1250"),
    "created": dt.datetime(2024, 2, 29, 11, 14, 15, 123456),
    "created_ms": dt.datetime(2024, 2, 29, 11, 14, 15, 123000),
    "paid_at": dt.datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=UTC),
    "day": dt.date(2024, 2, 29), "at": dt.time(1, 2, 3, 4), "doc": {"a": [1, 2]},
    "blob": b"\x00\xff", "tags": ["x", None], "score": 2.5, "note": None,
    "waited": Interval(1, 2, 3), "big": 2**40, "flag": True, "small": -3,
}
EXPECTED_AFTER = {
    "id": 7, "amount": Decimal("12345.67"), "ratio": "0.1250", "created": 1709205255123456,
    "created_ms": 1709205255123, "paid_at": "2024-02-29T11:14:15.123456Z", "day": 19782,
    "at": 3723000004, "doc": '{"a": [1, 2]}', "blob": b"\x00\xff", "tags": ["x", None],
    "score": 2.5, "note": None, "waited": 2_629_800_000_000 + 2 * 86_400_000_000 + 3,
    "big": 2**40, "flag": True, "small": -3,
}


def make_change(op: str = "insert", *, after: dict[str, Any] | None = None,
                before: dict[str, Any] | None = None, key: dict[str, Any] | None = None,
                columns: dict[str, str] | None = None, table: str = "orders",
                **fields: Any) -> Change:  # fmt: skip
    columns = COLUMNS if columns is None else columns
    if after is None and op in ("insert", "update", "read"):
        after = dict(ROW)
    if key is None and op != "truncate":
        key = {"id": (after or before or {"id": 7})["id"]}
    return Change(op=op, database="shop", schema="public", table=table, key=key,
                  before=before, after=after, columns=columns,
                  position=fields.pop("position", 0x16B3748), txid=fields.pop("txid", 745),
                  commit_ts=TS, index=fields.pop("index", 0),
                  log_pos=fields.pop("log_pos", 0x16B3700), **fields)  # fmt: skip


def avro(name: str, **options: Any) -> AvroFormat:
    fmt = make_format("avro", server_name="dbz", topic="{database}.{schema}.{table}",
                      schema_registry={"url": f"mock://{name}"}, **options)  # fmt: skip
    assert isinstance(fmt, AvroFormat)
    return fmt


def decode(fmt: AvroFormat, topic: str, data: bytes | None, field: str = "value") -> Any:
    if data is None:
        return None
    ctx = SerializationContext(topic, MessageField.VALUE if field == "value" else MessageField.KEY)
    return AvroDeserializer(fmt.client)(data, ctx)


def test_insert_is_the_debezium_envelope_in_confluent_framing():
    fmt = avro("insert")
    [(topic, key, value)] = fmt.render(make_change())
    assert topic == "shop.public.orders"
    # Confluent wire format: magic byte 0, then the big-endian schema id.
    assert key is not None and value is not None
    assert key[0] == 0 and value[0] == 0
    client = fmt.client
    key_id = client.get_latest_version("shop.public.orders-key").schema_id
    value_id = client.get_latest_version("shop.public.orders-value").schema_id
    assert struct.unpack(">I", key[1:5])[0] == key_id
    assert struct.unpack(">I", value[1:5])[0] == value_id
    assert sorted(client.get_subjects()) == ["shop.public.orders-key", "shop.public.orders-value"]
    assert decode(fmt, topic, key, "key") == {"id": 7}
    envelope = decode(fmt, topic, value)
    assert envelope["before"] is None
    assert envelope["after"] == EXPECTED_AFTER
    assert envelope["op"] == "c" and envelope["transaction"] is None
    assert isinstance(envelope["ts_ms"], int)
    source = envelope["source"]
    assert source == {
        "version": "cdc-0.1.0", "connector": "postgresql", "name": "dbz",
        "ts_ms": TS // 1000, "snapshot": "false", "db": "shop",
        "sequence": '[null,"23803648"]', "ts_us": TS, "ts_ns": TS * 1000, "schema": "public",
        "table": "orders", "txId": 745, "lsn": 0x16B3700, "xmin": None, "origin": None,
        "origin_lsn": None,
    }


def test_registered_schemas_have_debezium_names_and_nullable_columns():
    fmt = avro("names")
    fmt.render(make_change())
    value = json.loads(fmt.client.get_latest_version("shop.public.orders-value").schema.schema_str)
    assert value["name"] == "Envelope" and value["namespace"] == "dbz.public.orders"
    assert value["connect.name"] == "dbz.public.orders.Envelope"
    before = value["fields"][0]
    assert before["name"] == "before" and before["type"][0] == "null"
    record = before["type"][1]
    assert record["name"] == "Value" and record["connect.name"] == "dbz.public.orders.Value"
    assert [f["name"] for f in record["fields"]] == list(COLUMNS)
    assert all(f["type"][0] == "null" and f["default"] is None for f in record["fields"])
    assert value["fields"][1] == {"name": "after", "type": ["null", "dbz.public.orders.Value"],
                                  "default": None}
    assert value["fields"][2]["type"]["name"] == "io.debezium.connector.postgresql.Source"
    key = json.loads(fmt.client.get_latest_version("shop.public.orders-key").schema.schema_str)
    assert key["name"] == "Key" and key["namespace"] == "dbz.public.orders"
    assert key["fields"] == [{"name": "id", "type": "int"}]  # primary-key columns are not null


def test_update_delete_tombstone_and_snapshot_read():
    fmt = avro("ops")
    [(_, _, update)] = fmt.render(make_change("update", after={**ROW, "note": "paid"}))
    assert decode(fmt, "t", update)["op"] == "u"
    assert decode(fmt, "t", update)["after"]["note"] == "paid"
    # A delete under REPLICA IDENTITY DEFAULT: before has the key, the rest null.
    records = fmt.render(make_change("delete", before={"id": 7}, after=None))
    assert [(t, k is not None, v is not None) for t, k, v in records] == [
        ("shop.public.orders", True, True), ("shop.public.orders", True, False)]
    deleted = decode(fmt, "t", records[0][2])
    assert deleted["op"] == "d" and deleted["after"] is None
    assert deleted["before"] == {name: (7 if name == "id" else None) for name in COLUMNS}
    assert records[0][1] == records[1][1]  # the tombstone has the same key
    [(_, _, read)] = fmt.render(make_change("read", snapshot=True))
    assert decode(fmt, "t", read)["op"] == "r"
    assert decode(fmt, "t", read)["source"]["snapshot"] == "true"
    assert fmt.render(make_change("delete", before={"id": 7}, after=None))  # cached path too
    no_tombstones = avro("ops2", tombstones=False)
    assert len(no_tombstones.render(make_change("delete", before={"id": 7}, after=None))) == 1


def test_primary_key_update_is_a_delete_and_a_create():
    fmt = avro("pk")
    records = fmt.render(make_change("update", before={**ROW, "id": 6}, after=dict(ROW),
                                     key={"id": 7}))  # fmt: skip
    assert [decode(fmt, "t", k, "key") for _, k, _ in records] == [{"id": 6}, {"id": 6},
                                                                   {"id": 7}]  # fmt: skip
    assert [None if v is None else decode(fmt, "t", v)["op"] for _, _, v in records] == [
        "d", None, "c"]


def test_unchanged_toast_columns_carry_the_placeholder():
    fmt = avro("toast")
    after = {k: v for k, v in ROW.items() if k not in ("doc", "blob", "tags")}
    [(_, _, value)] = fmt.render(make_change("update", after=after,
                                             unchanged=("doc", "blob", "tags")))  # fmt: skip
    got = decode(fmt, "t", value)["after"]
    assert got["doc"] == "__debezium_unavailable_value"
    assert got["blob"] == b"__debezium_unavailable_value"
    assert got["tags"] == ["__debezium_unavailable_value"]


def test_truncate_only_when_asked_and_messages_on_their_topic():
    assert avro("trunc0").render(make_change("truncate", after=None, key=None)) == []
    fmt = avro("trunc", truncate=True)
    [(topic, key, value)] = fmt.render(make_change("truncate", after=None, key=None))
    assert (topic, key) == ("shop.public.orders", None)
    assert decode(fmt, topic, value)["op"] == "t"
    message = Change(op="message", database="shop", schema="", table="", key=None, before=None,
                     after={"prefix": "audit", "content": b"hello", "transactional": True},
                     columns={}, position=1, txid=5, commit_ts=TS, index=0)  # fmt: skip
    [(topic, key, value)] = fmt.render(message)
    assert topic == "dbz.message"
    assert decode(fmt, topic, key, "key") == {"prefix": "audit"}
    body = decode(fmt, topic, value)
    assert body["op"] == "m" and body["message"] == {"prefix": "audit", "content": b"hello"}


def test_mysql_changes_get_the_mysql_source_block():
    fmt = avro("mysql")
    change = make_change(columns={"id": "int4", "price": "numeric(10,2)",
                                  "made": "timestamp(0)"},  # fmt: skip
                         after={"id": 1, "price": Decimal("9.90"),
                                "made": dt.datetime(2024, 1, 2, 3, 4, 5)},  # fmt: skip
                         log_pos=("binlog.000003", 1234, 0),
                         source={"connector": "mysql", "server_id": 1, "gtid": "0-1-9"})
    change.schema = ""
    [(topic, key, value)] = fmt.render(change)
    assert topic == "shop..orders"
    got = decode(fmt, topic, value)
    assert got["after"] == {"id": 1, "price": Decimal("9.90"), "made": 1704164645000}
    assert got["source"]["connector"] == "mysql"
    assert (got["source"]["file"], got["source"]["pos"], got["source"]["row"]) == (
        "binlog.000003", 1234, 0)
    assert got["source"]["gtid"] == "0-1-9" and got["source"]["server_id"] == 1
    schema = json.loads(fmt.client.get_latest_version(f"{topic}-value").schema.schema_str)
    assert schema["namespace"] == "dbz.shop.orders"  # database for MySQL
    assert schema["fields"][2]["type"]["name"] == "io.debezium.connector.mysql.Source"


def test_whole_row_keys_are_nullable():
    fmt = avro("wholerow")
    columns = {"a": "int4", "b": "text"}
    fmt.render(make_change(columns=columns, after={"a": 1, "b": None}, key={"a": 1, "b": None}))
    key = json.loads(fmt.client.get_latest_version("shop.public.orders-key").schema.schema_str)
    assert key["fields"] == [{"name": "a", "type": ["null", "int"], "default": None},
                             {"name": "b", "type": ["null", "string"], "default": None}]


class CountingClient:
    """Wraps a registry client and counts the calls that reach it."""

    def __init__(self, client: Any):
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if callable(attr):
            def counted(*args: Any, **kwargs: Any) -> Any:
                self.calls.append(name)
                return attr(*args, **kwargs)
            return counted
        return attr


def test_schemas_and_serializers_are_built_once_per_table_version():
    fmt = avro("cache")
    fmt.client = counting = CountingClient(fmt.client)
    columns = dict(COLUMNS)  # one table version = one columns dict, as the decoders share it
    for i in range(200):
        fmt.render(make_change(columns=columns, after={**ROW, "id": i}))
    layout = fmt._layouts.get(columns)
    assert len(layout.targets) == 1
    [target] = layout.targets.values()
    assert len(target.keys) == 1
    registrations = [c for c in counting.calls if c.startswith("register")]
    assert len(registrations) == 2  # the key schema and the value schema, once


def test_a_new_table_version_registers_a_new_schema_version():
    fmt = avro("evolve")
    fmt.render(make_change(columns={"id": "int4", "name": "text"}, after={"id": 1, "name": "a"}))
    added = {"id": "int4", "name": "text", "email": "varchar(100)"}
    [(topic, _, value)] = fmt.render(make_change(columns=added,
                                                 after={"id": 2, "name": "b", "email": "b@x"}))
    client = fmt.client
    assert sorted(client.get_versions(f"{topic}-value")) == [1, 2]
    assert client.get_versions(f"{topic}-key") == [1]  # the same key schema
    assert decode(fmt, topic, value)["after"] == {"id": 2, "name": "b", "email": "b@x"}
    latest = json.loads(client.get_latest_version(f"{topic}-value").schema.schema_str)
    assert [f["name"] for f in latest["fields"][0]["type"][1]["fields"]] == [
        "id", "name", "email"]


def test_topic_template_names_the_subjects_and_a_key_template_gives_a_text_key():
    fmt = make_format("avro", server_name="p", topic="cdc.{table}", key="{table}-{id}",
                      schema_registry={"url": "mock://keytemplate"})
    assert isinstance(fmt, AvroFormat)
    records = fmt.render(make_change())
    assert records[0][0] == "cdc.orders" and records[0][1] == b""  # the renderer fills it
    assert fmt.client.get_subjects() == ["cdc.orders-value"]
    out: list[Any] = []
    renderer = EventRenderer(fmt.render, "cdc.{table}", "{table}-{id}", "p")
    renderer.render(make_change(), [make_change()], lambda *record: out.append(record))
    assert out[0][0] == "cdc.orders" and out[0][1] == b"orders-7"


def test_a_value_that_does_not_fit_is_a_per_change_error_handled_by_on_error():
    fmt = avro("badvalue")
    bad = make_change(after={**ROW, "amount": Decimal("NaN")})
    with pytest.raises(ValueError, match="NaN cannot be written as an Avro decimal"):
        fmt.render(bad)
    wrong = make_change(columns={"id": "int4", "n": "int4"}, after={"id": 1, "n": "seven"})
    with pytest.raises(ValueError, match="cannot write the value of a public.orders change"):
        fmt.render(wrong)
    failures: list[Any] = []
    renderer = EventRenderer(fmt.render, "{table}", None, "p")
    renderer.on_failure = lambda change, error, n: failures.append(type(error).__name__)
    renderer.render(bad, [bad], lambda *record: None)
    assert failures == ["ValueError"]


# -- the registry over HTTP (confluent-kafka's real client against a stub server) ---------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_avro(url: str, **registry: Any) -> AvroFormat:
    fmt = make_format("avro", server_name="dbz", topic="{database}.{schema}.{table}",
                      schema_registry={"url": url, "timeout": 2,
                                       "properties": {"max.retries": 0}, **registry})
    assert isinstance(fmt, AvroFormat)
    return fmt


def test_an_unreachable_registry_is_not_a_per_change_error():
    fmt = http_avro(f"http://127.0.0.1:{closed_port()}")
    failures: list[Any] = []
    renderer = EventRenderer(fmt.render, "{table}", None, "p")
    renderer.on_failure = lambda change, error, n: failures.append(error)  # e.g. dead_letter
    with pytest.raises(SinkUnavailable, match=r"schema registry at http://127\.0\.0\.1:\d+ is "
                                              r"unreachable .* public\.orders"):
        renderer.render(make_change(), [make_change()], lambda *record: None)
    assert failures == []  # never skipped or dead-lettered


@pytest.mark.parametrize(("status", "error", "message"), [
    (503, SinkUnavailable, "answered HTTP 503"),
    (500, SinkUnavailable, "answered HTTP 500"),
    (429, SinkUnavailable, "answered HTTP 429"),
    (409, SinkError, "incompatible with the subject's earlier versions"),
    (422, SinkError, "the registry refused the schema"),
])
def test_registry_error_statuses(status, error, message):
    with RegistryStub() as registry:
        registry.fail_with = status
        fmt = http_avro(registry.url)
        with pytest.raises(error, match=message) as caught:
            fmt.render(make_change())
    assert isinstance(caught.value, SinkError)  # either way: not handled by on_error
    assert (type(caught.value) is SinkUnavailable) == (error is SinkUnavailable)


def test_basic_auth_and_the_real_http_client():
    with RegistryStub(auth=("sr", "s3cret")) as registry:
        fmt = http_avro(registry.url, basic_auth_user_info="sr:s3cret")
        [(topic, key, value)] = fmt.render(make_change())
        assert [v["name"] for v in registry.versions(f"{topic}-value")] == ["Envelope"]
        assert decode(fmt, topic, value)["after"] == EXPECTED_AFTER
        fmt.render(make_change())
        assert [r for r in registry.requests if r[0] == "POST"] == [
            ("POST", "/subjects/shop.public.orders-key/versions?normalize=False"),
            ("POST", "/subjects/shop.public.orders-value/versions?normalize=False"),
        ]  # once per subject, not per row
        wrong = http_avro(registry.url, basic_auth_user_info="sr:wrong")
        with pytest.raises(SinkError, match="HTTP 401.*basic_auth_user_info") as caught:
            wrong.render(make_change())
        assert type(caught.value) is SinkError


def test_auto_register_off_needs_the_schema_registered_beforehand():
    with RegistryStub() as registry:
        fmt = http_avro(registry.url, auto_register=False)
        with pytest.raises(SinkError, match="auto_register is false"):
            fmt.render(make_change())
        http_avro(registry.url).render(make_change())  # registered by someone else
        [(_, _, value)] = fmt.render(make_change())
        assert value is not None and value[0] == 0


def test_bad_client_settings_are_config_errors():
    from cdc.errors import ConfigError

    with pytest.raises(ConfigError, match="Unrecognized properties: no.such.setting"):
        http_avro("http://127.0.0.1:1", properties={"no.such.setting": 1})
    with pytest.raises(ConfigError, match="schema_registry"):
        make_format("avro")
