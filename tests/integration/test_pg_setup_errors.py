"""A PostgreSQL that is not set up for log mining is refused with the exact fix.

Each test runs `python -m cdc run` against a database with one setup problem and
checks: exit code 3 (SourceSetupError, cdc/errors.py), a message naming the
statement or setting that fixes it, and that nothing was created on the way
(no slot).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from cdc.errors import SourceSetupError
from tests.integration.pipeline_helpers import pipeline_name, write_config
from tests.integration.services import (
    DatabaseDsn,
    KafkaBroker,
    PostgresServer,
    ServiceError,
    wait_until,
)

Daemon = Callable[..., subprocess.Popen[bytes]]

SETUP_ERROR = SourceSetupError.exit_code
assert SETUP_ERROR == 3


def run_until_exit(cdc_daemon: Daemon, config: Path) -> tuple[int, str]:
    """Run the daemon on `config`; return its exit code and output."""
    proc = cdc_daemon(config)
    code = proc.wait(30)
    return code, Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def slots_of(pg: PostgresServer, db: DatabaseDsn) -> list[str]:
    return [
        r[0]
        for r in pg.execute(
            "SELECT slot_name FROM pg_replication_slots WHERE database = %s", [db.name]
        )
    ]


def test_table_without_primary_key_needs_replica_identity_full(
    pg_server: PostgresServer,
    pg_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    pg_server.execute("CREATE TABLE nopk (id int, v text)", dbname=pg_db.name)
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap, source={"tables": ["public.nopk"]}
    )
    code, log = run_until_exit(cdc_daemon, config)
    assert code == SETUP_ERROR, log
    assert "table public.nopk has no primary key" in log
    assert "ALTER TABLE public.nopk REPLICA IDENTITY FULL;" in log
    assert slots_of(pg_server, pg_db) == []


def test_slot_in_use_by_another_process_names_it(
    pg_server: PostgresServer,
    pg_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    pg_server.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname=pg_db.name)
    config = write_config(tmp_path, pg_db, kafka_broker.bootstrap, source={"tables": ["public.t"]})
    slot = publication = f"cdc_{pipeline_name(config)}"
    pg_server.execute(f"CREATE PUBLICATION {publication} FOR TABLE t", dbname=pg_db.name)
    pg_server.execute(
        "SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot], dbname=pg_db.name
    )
    holder = subprocess.Popen(
        [
            pg_server.bin("pg_recvlogical"),
            "--dbname",
            pg_db,
            "--slot",
            slot,
            "--start",
            "--no-loop",
            "-o",
            "proto_version=1",
            "-o",
            f"publication_names={publication}",
            "--file",
            "/dev/null",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        [(holder_pid,)] = wait_until(
            lambda: (
                holder.poll() is None
                and pg_server.execute(
                    "SELECT active_pid FROM pg_replication_slots"
                    " WHERE slot_name = %s AND active_pid IS NOT NULL",
                    [slot],
                )
            ),
            timeout=15,
            what="pg_recvlogical to hold the slot",
        )
        code, log = run_until_exit(cdc_daemon, config)
        assert code == SETUP_ERROR, log
        assert (
            f"replication slot {slot!r} is in use by another process (pid {holder_pid}): "
            "stop the other consumer or choose another source.slot"
        ) in log
        assert holder.poll() is None, "the daemon disturbed the other consumer"
        assert pg_server.execute(
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", [slot]
        ) == [(holder_pid,)]
    finally:
        holder.terminate()
        holder.wait(10)


@pytest.fixture
def login_only_role(pg_server: PostgresServer) -> Iterator[str]:
    role = f"nrepl_{uuid.uuid4().hex[:8]}"
    pg_server.execute(f"CREATE ROLE {role} LOGIN")
    yield role
    pg_server.execute(f"DROP ROLE IF EXISTS {role}")


def test_user_without_replication_gets_alter_role(
    pg_server: PostgresServer,
    pg_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
    login_only_role: str,
):
    pg_server.execute("CREATE TABLE t (id int PRIMARY KEY)", dbname=pg_db.name)
    dsn = pg_server.dsn(pg_db.name, user=login_only_role)
    config = write_config(tmp_path, dsn, kafka_broker.bootstrap, source={"tables": ["public.t"]})
    code, log = run_until_exit(cdc_daemon, config)
    assert code == SETUP_ERROR, log
    assert f"user {login_only_role!r} lacks the REPLICATION attribute" in log
    assert f"ALTER ROLE {login_only_role} WITH REPLICATION;" in log
    assert slots_of(pg_server, pg_db) == []


def test_publication_missing_a_table_without_create_gets_alter_publication(
    pg_server: PostgresServer,
    pg_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    for table in ("a", "b"):
        pg_server.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)", dbname=pg_db.name)
    pg_server.execute("CREATE PUBLICATION only_a FOR TABLE a", dbname=pg_db.name)
    config = write_config(
        tmp_path,
        pg_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.a", "public.b"], "publication": "only_a", "create": False},
    )
    code, log = run_until_exit(cdc_daemon, config)
    assert code == SETUP_ERROR, log
    assert (
        'publication \'only_a\' does not cover "public"."b": run '
        'ALTER PUBLICATION "only_a" ADD TABLE "public"."b"; or set source.create: true'
    ) in log
    assert pg_server.execute(
        "SELECT tablename FROM pg_publication_tables WHERE pubname = 'only_a'",
        dbname=pg_db.name,
    ) == [("a",)], "the publication was changed although create is false"
    assert slots_of(pg_server, pg_db) == []


def test_missing_table_is_named(
    pg_server: PostgresServer,
    pg_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    pg_server.execute("CREATE TABLE present (id int PRIMARY KEY)", dbname=pg_db.name)
    config = write_config(
        tmp_path,
        pg_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.present", "public.absent"]},
    )
    code, log = run_until_exit(cdc_daemon, config)
    assert code == SETUP_ERROR, log
    assert (
        f"tables not found in database {pg_db.name!r}: public.absent; "
        "fix source.tables or create them"
    ) in log
    assert pg_server.execute("SELECT count(*) FROM pg_publication", dbname=pg_db.name) == [(0,)]
    assert slots_of(pg_server, pg_db) == []


@pytest.fixture(scope="module")
def replica_level_server(services_dir: Path) -> Iterator[PostgresServer]:
    """A second, throwaway PostgreSQL with wal_level=replica (~1 s to initdb and start)."""
    server = PostgresServer(services_dir / "pg-wal-replica")
    try:
        server.init()
        with open(server.data_dir / "postgresql.conf", "a") as conf:
            conf.write("wal_level = replica\n")  # the last setting in the file wins
        server.start()
    except ServiceError as exc:
        server.kill()
        pytest.skip(f"cannot start a second PostgreSQL: {exc}")
    yield server
    try:
        server.stop(mode="immediate")
    finally:
        server.kill()


def test_wal_level_replica_gets_alter_system(
    replica_level_server: PostgresServer,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    assert replica_level_server.execute("SHOW wal_level") == [("replica",)]
    db = replica_level_server.create_database("shop")
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
    config = write_config(tmp_path, db, kafka_broker.bootstrap, source={"tables": ["public.t"]})
    code, log = run_until_exit(cdc_daemon, config)
    assert code == SETUP_ERROR, log
    assert (
        "wal_level is 'replica', logical decoding needs 'logical': run "
        "ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL"
    ) in log
    assert replica_level_server.execute("SELECT count(*) FROM pg_replication_slots") == [(0,)]
