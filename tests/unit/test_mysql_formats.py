"""MySQL/MariaDB specifics in the formats and built-in mappers: TIME beyond a day,
spatial values, schema changes (op "schema")."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

import pytest

from cdc.jsonenc import dumps
from cdc.model import OPS, SCHEMA, Change, Geometry
from mappers.cloudevents import CloudEventsFormat
from mappers.columns import ColumnsMapper
from mappers.debezium import DebeziumFormat
from mappers.filter import FilterMapper
from mappers.json_format import JsonFormat
from mappers.rename import RenameMapper
from mappers.route import RouteMapper

SOURCE = {"connector": "mysql", "server_id": 1, "gtid": "0-1-9", "file": "binlog.000003"}
POINT_WKB = bytes.fromhex("0101000000000000000000f03f0000000000000040")  # POINT(1 2)
LINE_WKB = bytes.fromhex("010200000002000000" + "00" * 16 + "000000000000f03f" * 2)


def row(after: dict[str, Any], columns: dict[str, str]) -> Change:
    return Change("insert", "shop", "", "t", {"id": 1}, None, {"id": 1, **after},
                  {"id": "int4", **columns}, ("binlog.000003", 100), 9, 1_709_212_455_000_000,
                  0, log_pos=("binlog.000003", 180, 0), source=SOURCE)  # fmt: skip


def notice(table: str = "orders", kind: str = "ALTER TABLE",
           ddl: str = "ALTER TABLE orders ADD note text") -> Change:  # fmt: skip
    return Change(SCHEMA, "shop", "", table, None, None,
                  {"ddl": ddl, "kind": kind, "default_database": "shop"}, {},
                  ("binlog.000003", 400), 10, 1_709_212_456_000_000, 0,
                  log_pos=("binlog.000003", 442, 0), source=SOURCE)  # fmt: skip


def one(records: list[Any]) -> tuple[str | None, Any, Any]:
    [(topic, key, value)] = records
    return topic, json.loads(key) if key else key, json.loads(value)


# -- TIME ------------------------------------------------------------------------------


TIMES = [
    (dt.time(13, 14, 15, 500000), 47_655_500_000, "13:14:15.500000"),
    (-dt.timedelta(hours=838, minutes=59, seconds=59), -3_020_399_000_000, "-838:59:59"),
    (dt.timedelta(hours=24), 86_400_000_000, "24:00:00"),
    (dt.timedelta(hours=100, microseconds=500000), 360_000_500_000, "100:00:00.500000"),
    (-dt.timedelta(microseconds=1), -1, "-00:00:00.000001"),
]


@pytest.mark.parametrize(("value", "micros", "text"), TIMES)
def test_time_is_microtime_in_debezium_and_text_in_json(value, micros, text):
    # Debezium's MySQL connector: io.debezium.time.MicroTime, a signed duration in µs.
    _, _, envelope = one(DebeziumFormat().render(row({"c": value}, {"c": "time"})))
    assert envelope["after"]["c"] == micros
    _, _, flat = one(JsonFormat().render(row({"c": value}, {"c": "time"})))
    assert flat["after"]["c"] == text
    assert json.loads(dumps({"c": value}))["c"] == text  # what a mapper's Event gets


# -- spatial values --------------------------------------------------------------------


def test_geometry_is_debeziums_geometry_struct():
    columns = {"g": "geometry", "s": "geometry"}
    values = {"g": Geometry(LINE_WKB, 0), "s": Geometry(POINT_WKB, 4326)}
    _, _, envelope = one(DebeziumFormat().render(row(values, columns)))
    assert envelope["after"]["g"] == {"wkb": base64.b64encode(LINE_WKB).decode(), "srid": None}
    assert envelope["after"]["s"] == {"wkb": base64.b64encode(POINT_WKB).decode(), "srid": 4326}
    _, _, flat = one(JsonFormat().render(row(values, columns)))
    assert flat["after"]["g"] == {"wkb": base64.b64encode(LINE_WKB).decode(), "srid": 0}
    assert json.loads(dumps(values["s"])) == {"wkb": "AQEAAAAAAAAAAADwPwAAAAAAAABA",
                                              "srid": 4326}  # fmt: skip


def test_point_is_debeziums_point_struct():
    value = {"p": Geometry(POINT_WKB, 4326)}
    _, _, envelope = one(DebeziumFormat().render(row(value, {"p": "point"})))
    # Point's field order: x, y, wkb, srid.
    assert list(envelope["after"]["p"].items()) == [
        ("x", 1.0), ("y", 2.0), ("wkb", "AQEAAAAAAAAAAADwPwAAAAAAAABA"), ("srid", 4326)]
    with pytest.raises(ValueError, match="not a 2D point"):
        DebeziumFormat().render(row({"p": Geometry(LINE_WKB, 0)}, {"p": "point"}))


def test_postgresql_geometric_text_values_stay_text():
    # PostgreSQL's point and PostGIS' geometry arrive as the server's text.
    values = {"p": "(1,2)", "g": "0101000020E6100000000000000000F03F0000000000000040"}
    columns = {"p": "point", "g": "geometry"}
    _, _, envelope = one(DebeziumFormat().render(row(values, columns)))
    assert envelope["after"]["p"] == "(1,2)" and envelope["after"]["g"] == values["g"]
    _, _, flat = one(JsonFormat().render(row(values, columns)))
    assert flat["after"]["p"] == "(1,2)"


# -- schema changes --------------------------------------------------------------------


def test_schema_is_an_op():
    assert SCHEMA == "schema" and SCHEMA in OPS


def test_debezium_renders_a_schema_change_event():
    topic, key, value = one(DebeziumFormat(server_name="dbz").render(notice()))
    assert topic == "dbz"  # Debezium's schema change topic is the topic.prefix
    assert key == {"databaseName": "shop"}
    assert list(value) == ["source", "ts_ms", "databaseName", "schemaName", "ddl",
                           "tableChanges"]  # fmt: skip
    assert value["databaseName"] == "shop" and value["schemaName"] is None
    assert value["ddl"] == "ALTER TABLE orders ADD note text"
    assert value["tableChanges"] == [{"type": "ALTER", "id": '"shop"."orders"', "table": None}]
    source = value["source"]
    assert (source["connector"], source["db"], source["table"]) == ("mysql", "shop", "orders")
    assert (source["file"], source["pos"], source["row"], source["gtid"]) == (
        "binlog.000003", 442, 0, "0-1-9")
    assert source["ts_ms"] == 1_709_212_456_000 and source["snapshot"] == "false"


@pytest.mark.parametrize(("kind", "change_type"), [
    ("CREATE TABLE", "CREATE"), ("DROP TABLE", "DROP"), ("RENAME TABLE", "ALTER"),
    ("CREATE INDEX", "ALTER"), ("DROP INDEX", "ALTER")])  # fmt: skip
def test_debezium_table_change_types(kind, change_type):
    _, _, value = one(DebeziumFormat().render(notice(kind=kind)))
    assert value["tableChanges"][0]["type"] == change_type


def test_a_database_level_statement_names_no_table():
    change = notice(table="", kind="DROP DATABASE", ddl="DROP DATABASE shop")
    _, key, value = one(DebeziumFormat().render(change))
    assert key == {"databaseName": "shop"} and value["tableChanges"] == []
    assert value["source"]["table"] is None


def test_json_renders_a_schema_change_on_the_pipeline_topic():
    topic, key, value = one(JsonFormat(server_name="orders_mysql").render(notice()))
    assert topic == "orders_mysql" and key == {"database": "shop"}
    assert value["op"] == "schema" and (value["database"], value["table"]) == ("shop", "orders")
    assert value["after"] == {"ddl": "ALTER TABLE orders ADD note text", "kind": "ALTER TABLE",
                              "default_database": "shop"}  # fmt: skip
    assert value["before"] is None and value["position"] == "binlog.000003:400"


def test_cloudevents_types_a_schema_change():
    fmt = CloudEventsFormat(server_name="p")
    attrs = json.loads(fmt.render(notice())[0][2])
    assert (attrs["type"], attrs["source"], attrs["subject"]) == (
        "cdc.orders.schema", "/cdc/p/shop//orders", "shop.orders")
    attrs = json.loads(fmt.render(notice(table="", kind="CREATE DATABASE"))[0][2])
    assert (attrs["type"], attrs["source"], attrs["subject"]) == (
        "cdc.schema", "/cdc/p/shop", "shop")
    assert attrs["data"]["after"]["kind"] == "CREATE DATABASE"


def test_filter_keeps_or_drops_schema_changes_by_op_and_kind():
    assert FilterMapper({"ops": ["schema"]}).map(notice()) is not None
    assert FilterMapper({"ops": ["schema"], "action": "drop"}).map(notice()) is None
    assert FilterMapper({"ops": ["insert"]}).map(notice()) is None
    keep_drops = FilterMapper({"ops": ["schema"], "conditions": [
        {"column": "kind", "op": "in", "value": ["DROP TABLE", "DROP DATABASE"]}]})
    assert keep_drops.map(notice()) is None
    assert keep_drops.map(notice(kind="DROP TABLE")) is not None


def test_column_mappers_leave_the_statement_alone():
    change = notice()
    assert ColumnsMapper({"tables": {"shop.orders": {"include": ["id"]}}}).map(change) is change
    renamed = RenameMapper({"tables": {"shop.orders": "orders_v2"},
                            "columns": {"shop.orders": {"kind": "sort"}}}).map(change)
    assert renamed.table == "orders_v2" and renamed.after == change.after
    # A template naming columns has no row to read: the format's topic is kept.
    route = RouteMapper({"tables": {"shop.orders": {"topic": "x.{status}"}}})
    [event] = route.map(change)
    assert event.topic == "cdc"

