"""The MySQL/MariaDB source end to end: real MariaDB (binlog ROW/FULL/FULL), real broker,
the pipeline run in-process (`pipeline_helpers.run_pipeline`)."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.errors import PositionLostError, SourceSetupError
from tests.integration.pipeline_helpers import (
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
)
from tests.integration.services import create_topics, wait_until

REFERENCE = Path(__file__).parents[1] / "data" / "reference"


def write_mysql_config(tmp_path: Path, dsn: str, bootstrap: str, **source: Any) -> Path:
    """One mysql pipeline (snapshot: never, debezium format, topic {database}.{table})."""
    name = f"m_{uuid.uuid4().hex[:10]}"
    sink = source.pop("sink", {})
    pipeline = {
        "name": name,
        "source": {"type": "mysql", "dsn": str(dsn), "server_id": 4000 + uuid.uuid4().int % 1000,
                   "snapshot": "never", "heartbeat_interval": "2s", **source},
        "sink": {"type": "kafka", "format": "debezium", "topic": "{database}.{table}",
                 "properties": {"bootstrap.servers": bootstrap}, **sink},
        "offsets": {"store": "file", "path": str(tmp_path / f"{name}.offsets")},
    }  # fmt: skip
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "http": {"enabled": False},
                                    "log": {"level": "info", "format": "text"},
                                    "pipelines": [pipeline]}, sort_keys=False))  # fmt: skip
    return path


def drain(src: Any, seconds: float) -> list[Any]:
    """Everything a MysqlSource gives in `seconds` (Changes and Commits)."""
    out: list[Any] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.extend(src.read(0.2))
    return out


def run_sql(server: Any, db: str, script: str) -> None:
    """Each ;-terminated statement of `script` in one session (UTC time zone)."""
    conn = server.connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            for statement in script.split(";\n"):
                if statement.strip():
                    cur.execute(statement)
    finally:
        conn.close()


ALL_TYPES = """
CREATE TABLE alltypes (
 id int primary key,
 c_ti tinyint, c_tiu tinyint unsigned, c_si smallint, c_siu smallint unsigned,
 c_mi mediumint, c_miu mediumint unsigned, c_i int, c_iu int unsigned,
 c_bi bigint, c_biu bigint unsigned,
 c_dec decimal(12,2), c_decb decimal(65,30), c_f float, c_d double,
 c_date date, c_time time, c_time6 time(6), c_dt datetime, c_dt3 datetime(3),
 c_dt6 datetime(6), c_ts timestamp null, c_ts6 timestamp(6) null, c_year year,
 c_ch char(5), c_vc varchar(40), c_vcl varchar(300) character set latin1, c_txt text,
 c_bin binary(4), c_vbin varbinary(10), c_blob blob,
 c_json json, c_enum enum('sad','ok','happy'), c_set set('a','b','c','d'),
 c_bit1 bit(1), c_bit3 bit(3), c_bit16 bit(16), c_geo geometry
) engine=InnoDB
"""

ALL_TYPES_ROW = """
INSERT INTO alltypes VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215,
 -2147483648, 4294967295, -9223372036854775808, 18446744073709551615, 12345.67,
 -12345678901234567890123456789012345.123456789012345678901234567891, 1.5, -2.25e100,
 '2024-02-29', '-838:59:59', '23:59:59.999999', '2024-02-29 13:14:15',
 '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15',
 '2024-02-29 13:14:15.123456', 2024, 'ab', 'héllo "quoted" 😀', 'café', 'long text',
 x'01020000', x'00ff', x'deadbeef', '{"k": [1, 2.5, "x"], "n": null}', 'happy', 'a,c',
 b'1', b'101', b'0000000100000010', ST_GeomFromText('POINT(1 2)'))
"""

EXPECTED_AFTER = {
    "id": 1, "c_ti": -128, "c_tiu": 255, "c_si": -32768, "c_siu": 65535, "c_mi": -8388608,
    "c_miu": 16777215, "c_i": -2147483648, "c_iu": 4294967295,
    "c_bi": -9223372036854775808, "c_biu": 18446744073709551615, "c_dec": "12345.67",
    "c_decb": "-12345678901234567890123456789012345.123456789012345678901234567891",
    "c_f": 1.5, "c_d": -2.25e100, "c_date": 19782,
    "c_time": -3_020_399_000_000,  # MicroTime: a signed duration in µs, as Debezium's
    "c_time6": 86399999999, "c_dt": 1709212455000, "c_dt3": 1709212455123,
    "c_dt6": 1709212455123456, "c_ts": "2024-02-29T13:14:15Z",
    "c_ts6": "2024-02-29T13:14:15.123456Z", "c_year": 2024, "c_ch": "ab",
    "c_vc": 'héllo "quoted" 😀', "c_vcl": "café", "c_txt": "long text",
    "c_bin": base64.b64encode(b"\x01\x02\x00\x00").decode(),
    "c_vbin": base64.b64encode(b"\x00\xff").decode(),
    "c_blob": base64.b64encode(b"\xde\xad\xbe\xef").decode(),
    "c_json": '{"k": [1, 2.5, "x"], "n": null}', "c_enum": "happy", "c_set": "a,c",
    "c_bit1": True, "c_bit3": "BQ==", "c_bit16": base64.b64encode(b"\x02\x01").decode(),
    # io.debezium.data.geometry.Geometry: the WKB without MySQL's SRID prefix, srid null for 0.
    "c_geo": {"wkb": base64.b64encode(
        bytes.fromhex("0101000000000000000000f03f0000000000000040")).decode(), "srid": None},
}  # fmt: skip


def test_every_type_round_trips(tmp_path, mariadb_server, mariadb_db, kafka_broker):
    db = mariadb_db.name
    run_sql(mariadb_server, db, ALL_TYPES)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap)
    with run_pipeline(config):
        run_sql(mariadb_server, db, ALL_TYPES_ROW + ";\nINSERT INTO alltypes (id) VALUES (2);\n"
                "UPDATE alltypes SET c_vc = 'updated', c_dec = -0.01 WHERE id = 1;\n"
                "DELETE FROM alltypes WHERE id = 2")  # fmt: skip
        messages = wait_for_events(kafka_broker.bootstrap, f"{db}.alltypes", 5)
    # Keys spread over partitions: pick the records by what they are.
    by_kind = {(key_of(m)["id"], (value_of(m) or {}).get("op")): m for m in messages}
    insert, nulls, update = by_kind[(1, "c")], by_kind[(2, "c")], by_kind[(1, "u")]
    delete, tombstone = by_kind[(2, "d")], by_kind[(2, None)]
    assert key_of(insert) == {"id": 1}
    value = value_of(insert)
    assert value["op"] == "c" and value["before"] is None
    assert value["after"] == EXPECTED_AFTER
    assert value_of(nulls)["after"] == {"id": 2, **{k: None for k in EXPECTED_AFTER if k != "id"}}
    up = value_of(update)
    assert up["op"] == "u"
    assert up["before"] == EXPECTED_AFTER
    assert up["after"] == {**EXPECTED_AFTER, "c_vc": "updated", "c_dec": "-0.01"}
    gone = value_of(delete)
    assert gone["op"] == "d" and gone["after"] is None and gone["before"]["id"] == 2
    assert tombstone.value() in (None, b"")
    source = up["source"]
    assert source["connector"] == "mysql" and source["db"] == db
    assert source["table"] == "alltypes" and source["row"] == 0
    assert source["file"].startswith("binlog.") and source["pos"] > 0
    assert source["gtid"].startswith("0-1-")  # MariaDB's domain-server-sequence


def test_transactions_keep_commit_order_across_tables(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE a (id int primary key);\n"
                                "CREATE TABLE b (id int primary key)")  # fmt: skip
    create_topics(kafka_broker.bootstrap, [f"{db}.all"], partitions=1)  # one total order
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                sink={"topic": "{database}.all"})  # fmt: skip
    with run_pipeline(config):
        run_sql(mariadb_server, db, "BEGIN;\nINSERT INTO a VALUES (1);\nINSERT INTO b VALUES (1);\n"
                "INSERT INTO a VALUES (2);\nCOMMIT;\nINSERT INTO b VALUES (2)")  # fmt: skip
        messages = wait_for_events(kafka_broker.bootstrap, f"{db}.all", 4)
    seen = [(value_of(m)["source"]["table"], key_of(m)["id"]) for m in messages]
    assert seen == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    gtids = [value_of(m)["source"]["gtid"] for m in messages]
    assert gtids[0] == gtids[1] == gtids[2] != gtids[3]
    ids = [dict(m.headers())["cdc-event-id"].decode() for m in messages]
    assert ids[0].endswith("/0") and ids[1].endswith("/1") and ids[2].endswith("/2")


def test_restart_resumes_without_loss(tmp_path, mariadb_server, mariadb_db, kafka_broker):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, v text)")
    create_topics(kafka_broker.bootstrap, [f"{db}.t"], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.t"])  # fmt: skip
    topic = f"{db}.t"
    with run_pipeline(config) as running:
        run_sql(mariadb_server, db, ";\n".join(f"INSERT INTO t VALUES ({i}, 'x')"
                                                for i in range(3)))  # fmt: skip
        wait_for_events(kafka_broker.bootstrap, topic, 3)
    offsets = json.loads((tmp_path / f"{running.name}.offsets").read_text())
    assert offsets["file"].startswith("binlog.") and offsets["gtid_set"]
    # Written while the pipeline is down, plus a table it must not publish.
    run_sql(mariadb_server, db, ";\n".join(f"INSERT INTO t VALUES ({i}, 'y')"
                                            for i in range(3, 6))
            + ";\nCREATE TABLE other (id int primary key);\nINSERT INTO other VALUES (1)")
    with run_pipeline(config):
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (6, 'z')")
        messages = wait_for_events(kafka_broker.bootstrap, topic, 7, settle=2.0)
    assert [key_of(m)["id"] for m in messages] == list(range(7))


@pytest.mark.parametrize(
    "setting, bad, good",
    [("binlog_format", "STATEMENT", "ROW"), ("binlog_row_image", "MINIMAL", "FULL"),
     ("binlog_row_metadata", "MINIMAL", "FULL")],
)  # fmt: skip
def test_misconfigured_binlog_is_refused(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, setting, bad, good
):
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap)
    mariadb_server.execute(f"SET GLOBAL {setting} = '{bad}'")
    try:
        with pytest.raises(SourceSetupError) as failure, run_pipeline(config):
            pass
    finally:
        mariadb_server.execute(f"SET GLOBAL {setting} = '{good}'")
    message = str(failure.value)
    assert f"{setting} is '{bad}'" in message
    assert f"SET GLOBAL {setting} = '{good}'" in message


def test_purged_binlog_position_stops_with_a_clear_error(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key)")
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap)
    with run_pipeline(config) as running:
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (1)")
        wait_for_events(kafka_broker.bootstrap, f"{db}.t", 1)
    stored = json.loads((tmp_path / f"{running.name}.offsets").read_text())
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (2)")

    def purged() -> bool:
        # MariaDB keeps a binlog until its binlog checkpoint passes it: retry.
        mariadb_server.execute("FLUSH BINARY LOGS")
        current = mariadb_server.execute("SHOW MASTER STATUS")[0][0]
        mariadb_server.execute(f"PURGE BINARY LOGS TO '{current}'")
        return stored["file"] not in {r[0] for r in mariadb_server.execute("SHOW BINARY LOGS")}

    wait_until(purged, timeout=30, interval=0.5, what="the binlog to be purged")
    with pytest.raises(PositionLostError) as failure, run_pipeline(config):
        pass
    message = str(failure.value)
    assert "purged" in message and "re-snapshot" in message


def test_debezium_envelopes_match_the_reference(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, (REFERENCE / "mysql-schema.sql").read_text())
    create_topics(kafka_broker.bootstrap, [f"{db}.envtest"], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.envtest"], sink={"decimal": "base64"})  # fmt: skip
    with run_pipeline(config):
        run_sql(mariadb_server, db, (REFERENCE / "mysql-ops.sql").read_text())
        messages = wait_for_events(kafka_broker.bootstrap, f"{db}.envtest", 4)
    reference = json.loads((REFERENCE / "debezium-3.6.3-mysql-envelopes.json").read_text())
    expected = [r for r in reference if r["run"] == "default"]
    assert [r["case"] for r in expected] == ["insert", "update", "delete", "delete_tombstone"]
    for message, ref in zip(messages, expected, strict=True):
        assert key_of(message) == ref["key"], ref["case"]
        ours, theirs = value_of(message), ref["value"]
        if theirs is None:
            assert ours is None
            continue
        assert ours["op"] == theirs["op"]
        for image in ("before", "after"):
            if theirs[image] is None:
                assert ours[image] is None
                continue
            # Known difference: Debezium's default bigint.unsigned.handling.mode=long wraps
            # 18446744073709551615 to -1; we keep the exact value.
            assert ours[image].pop("c_ubig") == 18446744073709551615
            assert theirs[image].pop("c_ubig") == -1
            assert ours[image] == theirs[image], (ref["case"], image)
        for field in ("connector", "snapshot", "table", "row", "thread", "query", "sequence"):
            assert ours["source"][field] == theirs["source"][field], field
        assert ours["source"]["db"] == db
        assert set(ours["source"]) == set(theirs["source"])
        assert set(ours) == set(theirs)


def test_times_beyond_a_day_and_spatial_values_as_debezium_renders_them(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    """TIME as io.debezium.time.MicroTime (signed, up to ±838h); spatial columns as
    io.debezium.data.geometry.Geometry {wkb, srid} and POINT columns as ...Point
    {x, y, wkb, srid}: from the snapshot and from the binlog alike."""
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE st (id int primary key, t time(6), t0 time, "
            "p point, g geometry, ls linestring)")  # fmt: skip
    row = ("VALUES ({}, '-00:00:01.5', '838:59:59', ST_PointFromText('POINT(1.5 -2)', 4326), "
           "ST_GeomFromText('POLYGON((0 0,1 0,1 1,0 0))', 3857), "
           "ST_GeomFromText('LINESTRING(0 0,1 1)'))")  # fmt: skip
    run_sql(mariadb_server, db, f"INSERT INTO st {row.format(1)}")
    create_topics(kafka_broker.bootstrap, [f"{db}.st"], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="initial")
    with run_pipeline(config):
        wait_for_events(kafka_broker.bootstrap, f"{db}.st", 1)
        run_sql(mariadb_server, db, f"INSERT INTO st {row.format(2)}")
        snapshot, streamed = wait_for_events(kafka_broker.bootstrap, f"{db}.st", 2)
    wkb = {name: base64.b64encode(bytes(value)).decode() for name, value in zip(
        ("p", "g", "ls"), mariadb_server.execute(
            "SELECT ST_AsBinary(p), ST_AsBinary(g), ST_AsBinary(ls) FROM st WHERE id = 1",
            db=db)[0], strict=True)}  # fmt: skip
    expected = {
        "t": -1_500_000, "t0": 3_020_399_000_000,
        "p": {"x": 1.5, "y": -2.0, "wkb": wkb["p"], "srid": 4326},
        "g": {"wkb": wkb["g"], "srid": 3857},
        "ls": {"wkb": wkb["ls"], "srid": None},
    }
    assert value_of(snapshot)["op"] == "r" and value_of(streamed)["op"] == "c"
    for message, id_ in ((snapshot, 1), (streamed, 2)):
        assert value_of(message)["after"] == {"id": id_, **expected}


def test_alter_table_mid_stream_keeps_rows_labelled(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, a varchar(10), b int)")
    create_topics(kafka_broker.bootstrap, [f"{db}.t"], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap)
    with run_pipeline(config):
        run_sql(mariadb_server, db, "\n".join([
            "INSERT INTO t VALUES (1, 'one', 10);",
            "ALTER TABLE t ADD COLUMN c json AFTER id;",
            "INSERT INTO t VALUES (2, '[2]', 'two', 20);",
            "ALTER TABLE t DROP COLUMN a;",
            "INSERT INTO t VALUES (3, '{\"x\": 3}', 30);",
            "ALTER TABLE t MODIFY COLUMN b varchar(5);",
            "INSERT INTO t VALUES (4, NULL, 'four')",
        ]))  # fmt: skip
        messages = wait_for_events(kafka_broker.bootstrap, f"{db}.t", 4)
    assert [value_of(m)["after"] for m in messages] == [
        {"id": 1, "a": "one", "b": 10},
        {"id": 2, "c": "[2]", "a": "two", "b": 20},
        {"id": 3, "c": '{"x": 3}', "b": 30},
        {"id": 4, "c": None, "b": "four"},
    ]


def test_mysql_example_config_validates():
    import os
    import subprocess
    import sys

    root = Path(__file__).parents[2]
    env = dict(os.environ, MYSQL_DSN="mysql://cdc:secret@127.0.0.1:3306/shop")
    done = subprocess.run(
        [sys.executable, "-m", "cdc", "validate", "config/examples/mysql.yaml"],
        cwd=root, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shop_mysql" in done.stdout
