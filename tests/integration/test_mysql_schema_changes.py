"""DDL as schema-change notices (source option `schema_changes: true`), real MariaDB and broker.

A statement on a captured table becomes an op "schema" change of its own
transaction, in binlog order between the row changes around it; the debezium
format publishes it as Debezium's schema change event on the topic named like
the pipeline.
"""

from __future__ import annotations

import uuid
from typing import Any

from cdc.config import MysqlSourceConfig
from cdc.model import Change, Commit
from connectors.mysql.source import MysqlSource
from tests.integration.pipeline_helpers import (
    event_id,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
)
from tests.integration.services import create_topics
from tests.integration.test_mysql_source import drain, run_sql, write_mysql_config


def test_ddl_between_rows_gives_notices_in_binlog_order(mariadb_server, mariadb_db):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, v int);\n"
                                "CREATE TABLE other (id int primary key)")  # fmt: skip
    config = MysqlSourceConfig(
        dsn=str(mariadb_db), server_id=5000 + uuid.uuid4().int % 1000, snapshot="never",
        tables=(f"{db}.t",), schema_changes=True,
    )  # fmt: skip
    src = MysqlSource(config, name="ddl")
    src.open(None)
    try:
        run_sql(mariadb_server, db, "\n".join([
            "INSERT INTO t VALUES (1, 10);",
            "ALTER TABLE t ADD COLUMN note varchar(20);",
            "ALTER TABLE other ADD COLUMN x int;",  # not captured: no notice
            "INSERT INTO t VALUES (2, 20, 'two');",
            "CREATE INDEX t_v ON t (v);",
            "CREATE TABLE t2 (id int primary key);",  # not captured either
            "DROP TABLE t2, t",
        ]))  # fmt: skip
        items = drain(src, 2.0)
    finally:
        src.close()
    changes = [(i.op, i.table, (i.after or {}).get("kind") if i.op == "schema" else i.after)
               for i in items if type(i) is Change]  # fmt: skip
    assert changes == [
        ("insert", "t", {"id": 1, "v": 10}),
        ("schema", "t", "ALTER TABLE"),
        ("insert", "t", {"id": 2, "v": 20, "note": "two"}),
        ("schema", "t", "CREATE INDEX"),
        ("schema", "t", "DROP TABLE"),
    ]
    notice = next(i for i in items if type(i) is Change and i.op == "schema")
    assert notice.after == {"ddl": "ALTER TABLE t ADD COLUMN note varchar(20)",
                            "kind": "ALTER TABLE", "default_database": db}  # fmt: skip
    assert notice.database == db and notice.source["gtid"].startswith("0-1-")
    # Every notice is a transaction of its own: a Commit right after it, and positions
    # (hence checkpoints) only move forward.
    for n, item in enumerate(items):
        if type(item) is Change and item.op == "schema":
            assert type(items[n + 1]) is Commit
    commits = [(c.position[0], c.position[1]) for c in items if type(c) is Commit]
    assert commits == sorted(commits) and len(set(commits)) == len(commits)
    assert len(commits) == 7  # one per statement, captured or not


def test_alter_table_mid_stream_publishes_a_debezium_schema_change_event(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, a varchar(10))")
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.t"], schema_changes=True)  # fmt: skip
    with run_pipeline(config) as running:
        rows_topic, schema_topic = f"{db}.t", running.name
        create_topics(kafka_broker.bootstrap, [rows_topic, schema_topic], partitions=1)
        run_sql(mariadb_server, db, "\n".join([
            "INSERT INTO t VALUES (1, 'one');",
            "ALTER TABLE t ADD COLUMN b int AFTER id;",
            "INSERT INTO t VALUES (2, 20, 'two')",
        ]))  # fmt: skip
        rows = wait_for_events(kafka_broker.bootstrap, rows_topic, 2)
        [notice] = wait_for_events(kafka_broker.bootstrap, schema_topic, 1, settle=1.0)
    assert key_of(notice) == {"databaseName": db}
    value = value_of(notice)
    assert list(value) == ["source", "ts_ms", "databaseName", "schemaName", "ddl",
                           "tableChanges"]  # fmt: skip
    assert value["ddl"] == "ALTER TABLE t ADD COLUMN b int AFTER id"
    assert value["databaseName"] == db and value["schemaName"] is None
    assert value["tableChanges"] == [{"type": "ALTER", "id": f'"{db}"."t"', "table": None}]
    source = value["source"]
    assert (source["connector"], source["db"], source["table"]) == ("mysql", db, "t")
    # In binlog order between the two rows, which are labelled by their own table version.
    before, after = (value_of(m) for m in rows)
    assert before["after"] == {"id": 1, "a": "one"}
    assert after["after"] == {"id": 2, "b": 20, "a": "two"}
    positions = [(v["source"]["file"], v["source"]["pos"]) for v in (before, value, after)]
    assert positions == sorted(positions) and len(set(positions)) == 3
    assert event_id(notice).endswith("/0")


def test_schema_changes_in_the_json_format(tmp_path, mariadb_server, mariadb_db, kafka_broker):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key)")
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.t"], schema_changes=True,
                                sink={"format": "json"})  # fmt: skip
    with run_pipeline(config) as running:
        create_topics(kafka_broker.bootstrap, [running.name], partitions=1)
        run_sql(mariadb_server, db, f"ALTER DATABASE `{db}` COMMENT 'shop';\n"
                                    "RENAME TABLE t TO t_old")  # fmt: skip
        messages = wait_for_events(kafka_broker.bootstrap, running.name, 2, settle=1.0)
    values: list[dict[str, Any]] = [value_of(m) for m in messages]
    assert [(v["op"], v["database"], v["table"], v["after"]["kind"]) for v in values] == [
        ("schema", db, "", "ALTER DATABASE"), ("schema", db, "t", "RENAME TABLE")]
    assert values[1]["after"]["ddl"] == "RENAME TABLE t TO t_old"
    assert [key_of(m) for m in messages] == [{"database": db}] * 2
