"""Where the MySQL/MariaDB source resumes, and what keeps that position valid.

Real MariaDB and broker. Covers: a quiet server (writes only to tables that are not
captured, a new binlog file) still moves the stored position, so purging old binlogs
while the pipeline idles loses nothing; restart by GTID state, by a stored position
without GTID state, and by plain file/position (the dump MySQL uses with
gtid_mode=OFF, run here against MariaDB); a server_id another replica uses.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import pytest

from cdc.config import MysqlSourceConfig
from cdc.errors import SlotInUse
from connectors.mysql.source import MysqlSource
from tests.integration.pipeline_helpers import key_of, run_pipeline, wait_for_events
from tests.integration.services import create_topics, read_topic, stop_daemon, wait_until
from tests.integration.test_mysql_source import run_sql, write_mysql_config


def stored(tmp_path: Path, name: str) -> dict[str, Any]:
    path = tmp_path / f"{name}.offsets"
    return json.loads(path.read_text()) if path.exists() else {}


def master_status(server: Any) -> tuple[str, int, str]:
    file, pos = server.execute("SHOW MASTER STATUS")[0][:2]
    gtid = server.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    return str(file), int(pos), str(gtid)


def purge_before(server: Any, file: str) -> None:
    """PURGE BINARY LOGS TO `file`; MariaDB keeps a binlog until its binlog checkpoint
    passes it, so retry until the older files are gone."""

    def purged() -> bool:
        server.execute(f"PURGE BINARY LOGS TO '{file}'")
        return min(str(r[0]) for r in server.execute("SHOW BINARY LOGS")) == file

    wait_until(purged, timeout=30, interval=0.5, what=f"binlogs before {file} to be purged")


def ids(bootstrap: str, topic: str, n: int) -> list[int]:
    return [key_of(m)["id"] for m in wait_for_events(bootstrap, topic, n, settle=2.0)]


def test_a_quiet_server_keeps_the_stored_position_fresh(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, monkeypatch
):
    """Only tables that are not captured change, then the server starts a new binlog file:
    the stored position follows the server's, so the old binlogs can be purged while the
    pipeline idles and a restart by file/position (no GTIDs to fall back on) still works."""
    monkeypatch.setattr(MysqlSource, "resume_by_gtid", False)
    db = mariadb_db.name
    other_db = f"{db}_other"
    mariadb_server.execute(f"DROP DATABASE IF EXISTS `{other_db}`")
    mariadb_server.execute(f"CREATE DATABASE `{other_db}`")
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key);\n"
                                "CREATE TABLE other (id int primary key)")  # fmt: skip
    mariadb_server.execute(f"CREATE TABLE `{other_db}`.x (id int primary key)")
    topic = f"{db}.t"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.t"], heartbeat_interval="1s")  # fmt: skip
    try:
        with run_pipeline(config) as running:
            name = running.name
            start = stored(tmp_path, name)
            run_sql(mariadb_server, db, "INSERT INTO other VALUES (1);\nINSERT INTO other "
                    f"VALUES (2);\nINSERT INTO `{other_db}`.x VALUES (1)")  # fmt: skip
            busy = master_status(mariadb_server)

            def caught_up(target: tuple[str, int, str]) -> bool:
                now = stored(tmp_path, name)
                return (now.get("file"), now.get("pos"), now.get("gtid_set")) == target

            wait_until(lambda: caught_up(busy), timeout=15, interval=0.2,
                       what="the stored position to pass the uncaptured writes")  # fmt: skip
            assert busy[2] != start["gtid_set"]
            # A new binlog file, and nothing captured in it: heartbeats carry the position.
            mariadb_server.execute("FLUSH BINARY LOGS")
            wait_until(lambda: caught_up(master_status(mariadb_server)), timeout=15, interval=0.2,
                       what="the stored position to follow into the new binlog")  # fmt: skip
            fresh = stored(tmp_path, name)
            assert fresh["file"] != start["file"]
        assert read_topic(kafka_broker.bootstrap, topic, idle=1.0) == []
        purge_before(mariadb_server, fresh["file"])
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (1)")
        with run_pipeline(config):
            run_sql(mariadb_server, db, "INSERT INTO t VALUES (2)")
            assert ids(kafka_broker.bootstrap, topic, 2) == [1, 2]
    finally:
        mariadb_server.execute(f"DROP DATABASE IF EXISTS `{other_db}`")


def _restart_without_loss(tmp_path: Path, server: Any, dsn: Any, bootstrap: str,
                          between: Any = None) -> tuple[dict[str, Any], str]:  # fmt: skip
    """Rows 0-2 in a first run, 3-5 while it is down, 6 in a second run: exactly 0..6."""
    db = dsn.name
    run_sql(server, db, "CREATE TABLE t (id int primary key)")
    topic = f"{db}.t"
    create_topics(bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, dsn, bootstrap, tables=[f"{db}.t"])
    with run_pipeline(config) as running:
        run_sql(server, db, ";\n".join(f"INSERT INTO t VALUES ({i})" for i in range(3)))
        wait_for_events(bootstrap, topic, 3)
    offsets = stored(tmp_path, running.name)
    run_sql(server, db, "INSERT INTO t VALUES (3);\nINSERT INTO t VALUES (4)")
    server.execute("FLUSH BINARY LOGS")  # the resume crosses into a newer binlog file
    run_sql(server, db, "INSERT INTO t VALUES (5)")
    if between is not None:
        between(tmp_path / f"{running.name}.offsets")
    with run_pipeline(config):
        run_sql(server, db, "INSERT INTO t VALUES (6)")
        assert ids(bootstrap, topic, 7) == list(range(7))
    return offsets, running.name


def test_restart_resumes_by_gtid_state(tmp_path, mariadb_server, mariadb_db, kafka_broker,
                                       caplog):  # fmt: skip
    caplog.set_level(logging.INFO, logger="cdc.mysql")
    offsets, _ = _restart_without_loss(tmp_path, mariadb_server, mariadb_db,
                                       kafka_broker.bootstrap)  # fmt: skip
    assert offsets["gtid_set"].startswith("0-1-")
    resumed = [r.getMessage() for r in caplog.records if "streaming the binlog" in r.getMessage()]
    assert len(resumed) == 2 and f"(by GTID state '{offsets['gtid_set']}')" in resumed[1]


def test_restart_resumes_by_file_and_position(tmp_path, mariadb_server, mariadb_db, kafka_broker,
                                              caplog, monkeypatch):  # fmt: skip
    """The plain COM_BINLOG_DUMP from file:pos (MySQL with gtid_mode=OFF), on MariaDB."""
    monkeypatch.setattr(MysqlSource, "resume_by_gtid", False)
    caplog.set_level(logging.INFO, logger="cdc.mysql")
    offsets, _ = _restart_without_loss(tmp_path, mariadb_server, mariadb_db,
                                       kafka_broker.bootstrap)  # fmt: skip
    resumed = [r.getMessage() for r in caplog.records if "streaming the binlog" in r.getMessage()]
    assert f"from {offsets['file']}:{offsets['pos']} (by file and position)" in resumed[1]


def test_a_stored_position_without_gtid_state_resumes_at_its_file_and_position(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, caplog
):
    """Offsets written without a GTID state (e.g. from a server without GTIDs): MariaDB
    turns file:pos into its GTID state (BINLOG_GTID_POS) and loses nothing."""
    caplog.set_level(logging.INFO, logger="cdc.mysql")

    def drop_gtid(path: Path) -> None:
        offsets = json.loads(path.read_text())
        offsets["gtid_set"] = ""
        path.write_text(json.dumps(offsets))

    offsets, _ = _restart_without_loss(tmp_path, mariadb_server, mariadb_db,
                                       kafka_broker.bootstrap, between=drop_gtid)  # fmt: skip
    resumed = [r.getMessage() for r in caplog.records if "streaming the binlog" in r.getMessage()]
    assert f"(by GTID state '{offsets['gtid_set']}')" in resumed[1]


# -- server_id -------------------------------------------------------------------------


def other_replica(server: Any, server_id: int) -> Any:
    """A registered replica (COM_REGISTER_SLAVE + binlog dump) using `server_id`."""
    from pymysqlreplication import BinLogStreamReader

    reader = BinLogStreamReader(
        connection_settings={"host": "127.0.0.1", "port": server.port, "user": "root",
                             "password": ""},
        server_id=server_id, blocking=True, report_slave="another-replica", is_mariadb=True,
        auto_position=master_status(server)[2],
    )  # fmt: skip
    reader._BinLogStreamReader__connect_to_stream()
    wait_until(lambda: server_id in {int(r[0]) for r in server.execute("SHOW SLAVE HOSTS")},
               timeout=10, interval=0.2, what="the other replica to register")  # fmt: skip
    return reader


def test_a_server_id_in_use_stops_the_daemon_with_a_clear_error(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, cdc_daemon
):
    server_id = 6000 + uuid.uuid4().int % 1000
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                server_id=server_id, heartbeat_interval="1s")  # fmt: skip
    reader = other_replica(mariadb_server, server_id)
    try:
        proc = cdc_daemon(config)
        code = proc.wait(60)
    finally:
        reader.close()
    log = proc.log_path.read_text()
    assert code == 3, log[-3000:]
    assert f"another replica is connected with server_id {server_id}" in log
    assert "give this pipeline a unique source.server_id" in log
    assert stop_daemon(proc) == 3


def test_a_replica_taking_over_our_server_id_ends_the_stream_with_a_clear_error(
    mariadb_server, mariadb_db
):
    """MariaDB ends the older of two dumps with one server_id (error 4052): that is a
    clash to report, not a lost connection to retry or a purged binlog."""
    server_id = 7000 + uuid.uuid4().int % 1000
    config = MysqlSourceConfig(dsn=str(mariadb_db), server_id=server_id, snapshot="never",
                               heartbeat_interval=1.0)  # fmt: skip
    ours = MysqlSource(config, name="first")
    ours.open(None)
    reader = None
    try:
        reader = other_replica(mariadb_server, server_id)
        with pytest.raises(SlotInUse, match=f"another replica connected with server_id "
                                            f"{server_id}.*unique source.server_id"):  # fmt: skip
            for _ in range(100):
                ours.read(0.1)
        ours.close()
        # Starting again finds the other replica registered under that id.
        again = MysqlSource(config, name="second")
        with pytest.raises(SlotInUse, match="another replica is connected"):
            again.open(None)
        again.close()
    finally:
        ours.close()
        if reader is not None:
            reader.close()
