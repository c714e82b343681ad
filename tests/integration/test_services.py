"""Smoke tests of the service fixtures: each server starts and is set up for CDC."""

from __future__ import annotations

import uuid

import psycopg
from confluent_kafka import Producer

from tests.integration.services import (
    DatabaseDsn,
    KafkaBroker,
    MariaDBServer,
    PostgresServer,
    create_topics,
    read_topic,
    stop_daemon,
    wait_until,
)


def test_postgres_is_set_up_for_logical_decoding(pg_server: PostgresServer, pg_db: DatabaseDsn):
    assert pg_db == f"postgresql://postgres@127.0.0.1:{pg_server.port}/{pg_db.name}"
    with psycopg.connect(pg_db, autocommit=True) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN"
                " ('wal_level', 'fsync', 'max_replication_slots', 'logical_decoding_work_mem')"
            ).fetchall()
        )
        assert settings == {
            "wal_level": "logical",
            "fsync": "off",
            "max_replication_slots": "20",
            "logical_decoding_work_mem": "64",
        }
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v text)")
        conn.execute("CREATE PUBLICATION smoke FOR TABLE t")
        conn.execute("SELECT pg_create_logical_replication_slot('smoke', 'pgoutput')")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        # synchronous_commit=off: the commit is decodable once the WAL writer flushed it.
        wait_until(
            lambda: conn.execute(
                "SELECT count(*) >= 4 FROM pg_logical_slot_peek_binary_changes('smoke', NULL,"
                " NULL, 'proto_version', '1', 'publication_names', 'smoke')"
            ).fetchone()[0],  # begin, relation, insert, commit
            timeout=5,
            what="the insert to be decodable",
        )
    # Teardown drops the slot with the database; a replication connection works too.
    with psycopg.connect(pg_db + "?replication=database", autocommit=True) as repl:
        assert repl.execute("IDENTIFY_SYSTEM").fetchone() is not None
    assert pg_server.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = 'smoke'") == [
        (1,)
    ]


def test_postgres_restart_keeps_port_and_data(pg_server: PostgresServer, pg_db: DatabaseDsn):
    pg_server.execute("CREATE TABLE kept (id int)", dbname=pg_db.name)
    port = pg_server.port
    pg_server.restart()
    assert pg_server.port == port
    assert pg_server.execute("SELECT count(*) FROM kept", dbname=pg_db.name) == [(0,)]


def test_mariadb_binlog_is_set_up_for_cdc(mariadb_server: MariaDBServer, mariadb_db: DatabaseDsn):
    assert mariadb_db == f"mysql://root@127.0.0.1:{mariadb_server.port}/{mariadb_db.name}"
    assert mariadb_server.variables(
        "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "server_id"
    ) == {
        "log_bin": "ON",
        "binlog_format": "ROW",
        "binlog_row_image": "FULL",
        "binlog_row_metadata": "FULL",
        "server_id": "1",
    }
    mariadb_server.execute("CREATE TABLE t (id int PRIMARY KEY)", db=mariadb_db.name)
    mariadb_server.execute("INSERT INTO t VALUES (1)", db=mariadb_db.name)
    assert mariadb_server.execute("SHOW BINARY LOGS")
    gtid = mariadb_server.execute("SELECT @@gtid_binlog_pos")[0][0]
    assert gtid.startswith("0-1-")


def test_kafka_round_trip_with_headers(kafka_broker: KafkaBroker):
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    producer = Producer(
        {
            "bootstrap.servers": kafka_broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
        }
    )
    reports: list[tuple[object, int]] = []
    for i in range(3):
        producer.produce(
            topic,
            key=b"k%d" % i,
            value=b"v%d" % i,
            headers=[("cdc-event-id", b"id-%d" % i)],
            on_delivery=lambda err, msg: reports.append((err, msg.offset())),
        )
    assert producer.flush(10) == 0
    assert reports == [(None, 0), (None, 1), (None, 2)]

    messages = read_topic(kafka_broker.bootstrap, topic, expect=3, timeout=15)
    assert [(m.key(), m.value(), m.headers()) for m in messages] == [
        (b"k%d" % i, b"v%d" % i, [("cdc-event-id", b"id-%d" % i)]) for i in range(3)
    ]


def test_kafka_auto_creates_topics_on_produce(kafka_broker: KafkaBroker):
    topic = f"auto-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "acks": "all"})
    producer.produce(topic, key=b"k", value=b"v")
    assert producer.flush(10) == 0
    assert len(read_topic(kafka_broker.bootstrap, topic, expect=1, timeout=10)) == 1


def test_read_topic_of_missing_topic_returns_nothing_after_idle(kafka_broker: KafkaBroker):
    assert read_topic(kafka_broker.bootstrap, "no-such-topic", idle=0.5, timeout=5) == []


def test_kafka_freeze_and_thaw(kafka_broker: KafkaBroker):
    topic = f"frozen-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic])
    producer = Producer({"bootstrap.servers": kafka_broker.bootstrap, "acks": "all"})
    with kafka_broker.frozen_for():
        producer.produce(topic, value=b"while frozen")
        assert producer.flush(1) == 1  # not acknowledged while the broker is stopped
    assert producer.flush(15) == 0
    assert len(read_topic(kafka_broker.bootstrap, topic, expect=1)) == 1


def test_cdc_daemon_helper_captures_output_and_exit_code(cdc_daemon, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("version: 1\npipelines: 42\n")
    proc = cdc_daemon(config)
    assert proc.wait(30) == 2  # bad configuration: refused before anything starts
    assert "bad.yaml" in proc.log_path.read_text()
    assert stop_daemon(proc) == 2
