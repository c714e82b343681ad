"""Statements inside a binlog transaction that are not its end, and XA."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cdc.config import MysqlSourceConfig
from cdc.errors import SourceError
from cdc.model import Change, Commit
from connectors.mysql.source import MysqlSource
from tests.integration.test_mysql_source import drain


def source(dsn: Any) -> MysqlSource:
    config = MysqlSourceConfig(dsn=str(dsn), server_id=5000 + uuid.uuid4().int % 1000,
                               snapshot="never", tables=None, exclude_tables=())  # fmt: skip
    return MysqlSource(config, name=f"tx_{uuid.uuid4().hex[:6]}")


def test_rollback_to_savepoint_does_not_end_the_transaction(mariadb_server, mariadb_db):
    """A mixed-engine transaction logs ROLLBACK TO: it must not become a Commit, or its
    GTID would be confirmed half way and the rest skipped after a restart."""
    db = mariadb_db.name
    mariadb_server.execute(f"CREATE TABLE {db}.t (id int PRIMARY KEY) ENGINE=InnoDB")
    mariadb_server.execute(f"CREATE TABLE {db}.m (id int PRIMARY KEY) ENGINE=MyISAM")
    src = source(mariadb_db)
    src.open(None)
    try:
        conn = mariadb_server.connect(db)
        with conn.cursor() as cur:
            for sql in ("BEGIN", "INSERT INTO t VALUES (1)", "SAVEPOINT s1",
                        "INSERT INTO m VALUES (1)", "INSERT INTO t VALUES (2)",
                        "ROLLBACK TO SAVEPOINT s1", "INSERT INTO t VALUES (3)", "COMMIT"):
                cur.execute(sql)
        conn.close()
        items = drain(src, 3.0)
    finally:
        src.close()
    # MariaDB logs the MyISAM row as a group of its own (its own GTID); the InnoDB
    # rows stay one transaction with one Commit, after its last row.
    commits = [i for i in items if type(i) is Commit]
    gtids = [c.position[2] for c in commits]
    assert len(gtids) == len(set(gtids)) == 2
    innodb = [i for i in items if type(i) is Change and i.table == "t"]
    assert len({c.position for c in innodb}) == 1
    assert 3 in {c.after["id"] for c in innodb if c.after}
    last_t = max(items.index(c) for c in innodb)
    assert type(items[last_t + 1]) is Commit


def test_xa_transactions_are_refused_not_published(mariadb_server, mariadb_db):
    db = mariadb_db.name
    mariadb_server.execute(f"CREATE TABLE {db}.t (id int PRIMARY KEY) ENGINE=InnoDB")
    src = source(mariadb_db)
    src.open(None)
    try:
        conn = mariadb_server.connect(db)
        with conn.cursor() as cur:
            for sql in ("XA START 'x1'", "INSERT INTO t VALUES (1)", "XA END 'x1'",
                        "XA PREPARE 'x1'", "XA ROLLBACK 'x1'"):
                cur.execute(sql)
        conn.close()
        with pytest.raises(SourceError, match="XA transactions are not supported"):
            items = drain(src, 3.0)
            assert not [i for i in items if type(i) is Change], "an XA row was published"
    finally:
        src.close()


def test_the_documented_grants_are_enough_to_start(mariadb_server, mariadb_db):
    user = f"cdc_{uuid.uuid4().hex[:6]}"
    mariadb_server.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
    mariadb_server.execute(
        f"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO '{user}'@'%'"
    )
    try:
        src = source(f"mysql://{user}:pw@127.0.0.1:{mariadb_server.port}/{mariadb_db.name}")
        src.open(None)
        src.close()
    finally:
        mariadb_server.execute(f"DROP USER '{user}'@'%'")
