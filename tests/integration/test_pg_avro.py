"""format: avro through the real pipeline: PostgreSQL -> Avro in the broker -> AvroDeserializer.

No real Schema Registry can run here (Karapace is not on PyPI, Confluent's
needs Maven Central, and there is no Docker), so the registry is
tests/schema_registry_stub.py: the Confluent REST subset the serde uses, over
HTTP, without compatibility checks. The daemon and the test's
AvroDeserializer both talk to it through confluent-kafka's real client.
"""

from __future__ import annotations

import json
import struct
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from cdc.errors import SinkUnavailable
from tests.integration.pipeline_helpers import (
    execute_each,
    run_pipeline,
    wait_for_events,
    write_config,
)
from tests.integration.services import read_topic, wait_until
from tests.schema_registry_stub import RegistryStub

AUTH = ("cdc", "s3cret")


@pytest.fixture
def registry():
    with RegistryStub(auth=AUTH) as stub:
        yield stub


def avro_config(tmp_path, pg_db, bootstrap, registry, **overrides: Any):
    return write_config(
        tmp_path, pg_db, bootstrap,
        sink={"format": "avro", "topic": "{pipeline}.{table}",
              "schema_registry": {"url": registry.url, "basic_auth_user_info": ":".join(AUTH),
                                  "timeout": "2s", "properties": {"max.retries": 0}}},
        **overrides,
    )  # fmt: skip


class Decoder:
    def __init__(self, registry: RegistryStub):
        client = SchemaRegistryClient({"url": registry.url,
                                       "basic.auth.user.info": ":".join(AUTH)})  # fmt: skip
        self.deserializer = AvroDeserializer(client)

    def key(self, msg: Any) -> Any:
        return self.deserializer(msg.key(), SerializationContext(msg.topic(), MessageField.KEY))

    def value(self, msg: Any) -> Any:
        return self.deserializer(msg.value(),
                                 SerializationContext(msg.topic(), MessageField.VALUE))


def schema_id(data: bytes) -> int:
    assert data[0] == 0, "Confluent wire format: magic byte 0"
    return int(struct.unpack(">I", data[1:5])[0])


def test_values_nulls_and_schema_evolution(tmp_path, pg_db, kafka_broker, registry):
    bootstrap = kafka_broker.bootstrap
    execute_each(pg_db, [
        "CREATE TABLE items (id int PRIMARY KEY, price numeric(10,2), ratio numeric,"
        " created timestamp, created_ms timestamp(3), paid timestamptz, day date, note text,"
        " doc jsonb, data bytea, tags text[], qty smallint, big bigint, ok boolean,"
        " waited interval)",
    ])  # fmt: skip
    config = avro_config(tmp_path, pg_db, bootstrap, registry)
    name = config.stem
    topic = f"{name}.items"
    with run_pipeline(config):
        execute_each(pg_db, [
            "INSERT INTO items VALUES (1, 12.5, 0.125, '2024-02-29 11:14:15.123456',"
            " '2024-02-29 11:14:15.123', '2024-02-29 11:14:15.5+02', '2024-02-29', 'first',"
            " '{\"a\": [1, 2]}', '\\x00ff', '{x,NULL}', -3, 1099511627776, true,"
            " '1 mon 2 days 00:00:00.000003')",
            "INSERT INTO items (id) VALUES (2)",
            "UPDATE items SET price = 13.75, note = NULL WHERE id = 1",
            "ALTER TABLE items ADD COLUMN email varchar(100)",
            "INSERT INTO items (id, price, email) VALUES (3, 1, 'c@example.com')",
            "DELETE FROM items WHERE id = 2",
        ])  # fmt: skip
        messages = wait_for_events(bootstrap, topic, 6, settle=1.0)  # 5 + the tombstone
    decode = Decoder(registry)
    [tombstone] = [m for m in messages if m.value() is None]
    assert decode.key(tombstone) == {"id": 2}
    by_op: dict[tuple[str, int], Any] = {}
    for msg in messages:
        if msg.value() is None:
            continue
        envelope = decode.value(msg)
        row = envelope["after"] or envelope["before"]
        by_op[(envelope["op"], row["id"])] = (msg, envelope)
        assert decode.key(msg) == {"id": row["id"]}
    assert sorted(by_op) == [("c", 1), ("c", 2), ("c", 3), ("d", 2), ("u", 1)]

    first = by_op[("c", 1)][1]
    assert first["after"] == {
        "id": 1, "price": Decimal("12.50"), "ratio": "0.125", "created": 1709205255123456,
        "created_ms": 1709205255123, "paid": "2024-02-29T09:14:15.500000Z", "day": 19782,
        "note": "first", "doc": '{"a": [1, 2]}', "data": b"\x00\xff", "tags": ["x", None],
        "qty": -3, "big": 1099511627776, "ok": True,
        "waited": 2_629_800_000_000 + 2 * 86_400_000_000 + 3,
    }
    assert first["before"] is None
    source = first["source"]
    assert (source["connector"], source["name"], source["schema"], source["table"],
            source["snapshot"]) == ("postgresql", name, "public", "items", "false")
    assert source["db"] == psycopg.connect(pg_db).info.dbname
    assert isinstance(source["lsn"], int) and isinstance(source["txId"], int)
    assert source["ts_us"] // 1000 == source["ts_ms"]

    nulls = by_op[("c", 2)][1]["after"]
    assert nulls["id"] == 2 and all(v is None for k, v in nulls.items() if k != "id")
    updated = by_op[("u", 1)][1]["after"]
    assert updated["price"] == Decimal("13.75") and updated["note"] is None
    deleted = by_op[("d", 2)][1]
    assert deleted["after"] is None and deleted["before"]["id"] == 2  # REPLICA IDENTITY DEFAULT
    assert deleted["before"]["price"] is None

    # ALTER TABLE ADD COLUMN: a second version of the value schema, used from then on.
    versions = registry.versions(f"{topic}-value")
    assert len(versions) == 2
    value_fields = [[f["name"] for f in v["fields"][0]["type"][1]["fields"]] for v in versions]
    assert value_fields[1] == value_fields[0] + ["email"]
    assert len(registry.versions(f"{topic}-key")) == 1
    added_msg, added = by_op[("c", 3)]
    assert added["after"]["email"] == "c@example.com"
    assert added["after"]["price"] == Decimal("1.00")
    ids = registry.subjects[f"{topic}-value"]
    assert schema_id(added_msg.value()) == ids[1]
    assert schema_id(by_op[("c", 1)][0].value()) == ids[0]
    assert schema_id(added_msg.key()) == registry.subjects[f"{topic}-key"][0]
    assert sorted(json.loads(registry.schemas[ids[1]])["fields"][0]["type"][1]["fields"][-1]
                  ["type"]) == sorted(["null", "string"])  # nullable, default null


def test_an_unreachable_registry_stops_without_losing_or_dead_lettering(
    tmp_path, pg_db, kafka_broker, registry
):
    bootstrap = kafka_broker.bootstrap
    execute_each(pg_db, ["CREATE TABLE t (id int PRIMARY KEY, v text)"])
    config = avro_config(tmp_path, pg_db, bootstrap, registry, on_error="dead_letter",
                         dead_letter_topic=f"dlq_{tmp_path.name[-20:]}")  # fmt: skip
    name = config.stem
    topic = f"{name}.t"
    dlq = f"dlq_{tmp_path.name[-20:]}"
    with pytest.raises(SinkUnavailable, match="schema registry at http://127.0.0.1:\\d+ is "
                                              "unreachable"):  # fmt: skip
        with run_pipeline(config) as running:
            execute_each(pg_db, ["INSERT INTO t VALUES (1, 'before the outage')"])
            wait_for_events(bootstrap, topic, 1)
            registry.stop()  # down: the new table version below cannot be registered
            execute_each(pg_db, ["ALTER TABLE t ADD COLUMN w int",
                                 "INSERT INTO t VALUES (2, 'during', 2)"])
            wait_until(lambda: not running.alive, timeout=30, what="the pipeline to stop")
    assert len(read_topic(bootstrap, topic, timeout=2, idle=1.0)) == 1
    assert read_topic(bootstrap, dlq, timeout=2, idle=1.0) == []  # not a per-change failure

    registry.start()  # back on the same port: the change was not checkpointed, so it comes
    with run_pipeline(config):
        messages = wait_for_events(bootstrap, topic, 2, settle=1.0)
    decode = Decoder(registry)
    assert [decode.value(m)["after"] for m in messages if decode.key(m) == {"id": 2}] == [
        {"id": 2, "v": "during", "w": 2}]
