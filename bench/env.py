"""The throwaway servers of one benchmark run, started on first use.

The server classes are the integration tests' (tests/integration/services.py);
only PostgreSQL gets different settings: logical_decoding_work_mem at
PostgreSQL's default (the tests shrink it to 64kB to stream early), and a
large max_wal_size so no checkpoint starts in the middle of a measurement.

A Kafka-protocol broker (Tansu, memory only) is started fresh for each daemon
run and stopped right after it, so it holds no CPU or memory while a baseline
runs and every run starts from an empty broker.
"""

from __future__ import annotations

import contextlib
import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.integration.services import (
    KafkaBroker,
    MariaDBServer,
    PostgresServer,
    create_topics,
    make_base_dir,
)

BENCH_PG_SETTINGS = {
    "logical_decoding_work_mem": "64MB",  # PostgreSQL's default
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",  # no background work between a baseline and the daemon's run
}


class Services:
    """PostgreSQL, MariaDB and brokers under one temporary directory."""

    def __init__(self, keep: bool = False):
        self.base = make_base_dir("cdc-bench-")
        self.keep = keep
        self._pg: PostgresServer | None = None
        self._mariadb: MariaDBServer | None = None
        self._brokers = itertools.count(1)

    @property
    def pg(self) -> PostgresServer:
        if self._pg is None:
            print("  starting PostgreSQL (initdb, wal_level=logical, fsync=off) ...", flush=True)
            self._pg = PostgresServer(self.base / "pg", settings=BENCH_PG_SETTINGS)
            self._pg.start()
        return self._pg

    @property
    def mariadb(self) -> MariaDBServer:
        if self._mariadb is None:
            print("  starting MariaDB (log_bin, ROW, FULL image and metadata) ...", flush=True)
            self._mariadb = MariaDBServer(self.base / "mariadb")
            self._mariadb.start()
        return self._mariadb

    @contextlib.contextmanager
    def broker(self, topics: tuple[str, ...] = ()) -> Iterator[KafkaBroker]:
        """A fresh Tansu broker for one daemon run; `topics` are created with 1 partition."""
        broker = KafkaBroker(self.base / f"tansu-{next(self._brokers)}")
        broker.start()
        try:
            if topics:
                create_topics(broker.bootstrap, topics, partitions=1)
            yield broker
        finally:
            broker.stop()

    def workdir(self, name: str) -> Path:
        path = self.base / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def server_versions(self) -> dict[str, Any]:
        versions: dict[str, Any] = {}
        if self._pg is not None:
            versions["PostgreSQL"] = self._pg.execute("SHOW server_version")[0][0]
        if self._mariadb is not None:
            versions["MariaDB"] = self._mariadb.execute("SELECT VERSION()")[0][0]
        return versions

    def close(self) -> None:
        for server in (self._pg, self._mariadb):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)
