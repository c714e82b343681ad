"""Fixtures that start real services: PostgreSQL, MariaDB and the Tansu Kafka broker.

Servers are session-scoped (started once, on first use, on free ports under one
temporary directory) and stopped at the end of the run, also when it fails or is
interrupted. Their logs stay in that directory when a test failed (the path is
printed), or always with CDC_TEST_KEEP=1.

    def test_something(pg_db, kafka_broker, cdc_daemon, tmp_path):
        config = tmp_path / "cdc.yaml"
        config.write_text(...)  # with pg_db and kafka_broker.bootstrap in it
        proc = cdc_daemon(config)
        msgs = read_topic(kafka_broker.bootstrap, "shop.public.orders", expect=3)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.services import (
    DatabaseDsn,
    KafkaBroker,
    MariaDBServer,
    PostgresServer,
    log_tail,
    make_base_dir,
    run_daemon,
    stop_daemon,
    unique_name,
)

_timings: dict[str, float] = {}


@pytest.fixture(scope="session")
def services_dir(request: pytest.FixtureRequest) -> Iterator[Path]:
    """The run's temporary directory: pg/, mariadb/, kafka/ hold each server's files."""
    base = make_base_dir()
    yield base
    keep = os.environ.get("CDC_TEST_KEEP") == "1" or request.session.testsfailed > 0
    if not keep:
        shutil.rmtree(base, ignore_errors=True)
        return
    # Keep the logs, drop the bulky data directories.
    for data in (base / "pg" / "data", base / "mariadb" / "data"):
        shutil.rmtree(data, ignore_errors=True)
    print(f"\nservice logs kept in {base}")


def _timed(name: str, start: Callable[[], None]) -> None:
    t0 = time.monotonic()
    start()
    _timings[name] = time.monotonic() - t0


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _timings:
        terminalreporter.write_line(
            "service start-up: "
            + ", ".join(f"{name} {secs:.2f}s" for name, secs in _timings.items())
        )


@pytest.fixture(scope="session")
def pg_server(services_dir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL server (highest installed version), wal_level=logical.

    .dsn(dbname='postgres', user='postgres'), .port, .create_database(name),
    .drop_database(name), .execute(sql, params, dbname), .connect(dbname),
    .bin('pg_recvlogical'), .log_path, .stop()/.start()/.restart().
    """
    server = PostgresServer(services_dir / "pg")
    _timed("postgresql", server.start)
    yield server
    try:
        server.stop(mode="immediate")
    finally:
        server.kill()


@pytest.fixture
def pg_db(pg_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[DatabaseDsn]:
    """A fresh database for this test; its DSN (a str with `.name`).

    Dropped at teardown together with its replication slots.
    """
    if not pg_server.running:  # a test stopped it and failed before starting it again
        pg_server.start()
    dsn = pg_server.create_database(unique_name(request.node.name))
    yield dsn
    if not pg_server.running:
        pg_server.start()
    pg_server.drop_database(dsn.name)


@pytest.fixture(scope="session")
def kafka_broker(services_dir: Path) -> Iterator[KafkaBroker]:
    """The Tansu broker: .bootstrap ('127.0.0.1:PORT'), .freeze()/.thaw(), .log_path."""
    broker = KafkaBroker(services_dir / "kafka")
    _timed("tansu", broker.start)
    yield broker
    broker.stop()


@pytest.fixture(autouse=True)
def _thaw_broker(request: pytest.FixtureRequest) -> Iterator[None]:
    # A test that fails while the broker is frozen must not hang every later test.
    yield
    if "kafka_broker" in request.fixturenames:
        broker: KafkaBroker = request.getfixturevalue("kafka_broker")
        if broker.frozen:
            broker.thaw()


@pytest.fixture(scope="session")
def mariadb_server(services_dir: Path) -> Iterator[MariaDBServer]:
    """A MariaDB server with ROW binlog, FULL row image and metadata; started on first use.

    .dsn(db=''), .port, .execute(sql, params, db), .connect(db), .variables(*names),
    .create_database(name), .drop_database(name), .log_path (error log),
    .stop()/.start()/.restart().
    """
    server = MariaDBServer(services_dir / "mariadb")
    _timed("mariadb", server.start)
    yield server
    try:
        server.stop()
    finally:
        server.kill()


@pytest.fixture
def mariadb_db(
    mariadb_server: MariaDBServer, request: pytest.FixtureRequest
) -> Iterator[DatabaseDsn]:
    """A fresh MariaDB database for this test; its DSN (a str with `.name`)."""
    if not mariadb_server.running:
        mariadb_server.start()
    dsn = mariadb_server.create_database(unique_name(request.node.name))
    yield dsn
    if mariadb_server.running:
        mariadb_server.drop_database(dsn.name)


@pytest.fixture
def cdc_daemon(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Factory: cdc_daemon(config_path, env=None, args=()) -> Popen of `python -m cdc run`.

    Output goes to tmp_path/cdc-N.log (`proc.log_path`). Daemons still running at
    teardown get SIGTERM (then SIGKILL); when the test failed, their log tails are printed.
    """
    procs: list[subprocess.Popen[bytes]] = []

    def start(
        config_path: str | os.PathLike[str],
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        log = tmp_path / f"cdc-{len(procs) + 1}.log"
        proc = run_daemon(config_path, env=env, log_path=log, args=args)
        procs.append(proc)
        return proc

    yield start
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    for proc in procs:
        try:
            stop_daemon(proc, signal.SIGTERM, timeout=15)
        except Exception as exc:  # keep tearing down the others
            print(f"\n{exc}")
        if failed:
            print(f"\n--- {proc.log_path} ---\n{log_tail(proc.log_path, 60)}")  # type: ignore[attr-defined]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets fixtures see whether the test body failed (request.node.rep_call).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
