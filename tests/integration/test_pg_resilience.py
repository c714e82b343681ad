"""The daemon as a process under crashes, signals, broker outages, idleness and bad mappers.

Real PostgreSQL, real broker, `python -m cdc run` as a subprocess. The rules checked
come from the design's "Delivery and checkpoints" and "Pitfalls":

- nothing committed is ever lost, whatever moment the daemon is killed at; a replay
  carries the same `cdc-event-id` as the first copy;
- the slot's confirmed_flush_lsn (and the offsets file) only move past transactions
  whose every event the broker acknowledged;
- standby status keeps flowing while the broker is gone and while the database is
  idle, so the walsender is never killed by wal_sender_timeout and WAL is not pinned;
- a dropped slot is reported, never silently recreated.

Set CDC_TEST_SEED to replay the random kill schedule of the crash test.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.postgres.lsn import format_lsn, parse_lsn
from tests.integration.pipeline_helpers import event_id, pipeline_name, value_of, write_config
from tests.integration.services import (
    DatabaseDsn,
    KafkaBroker,
    PostgresServer,
    read_topic,
    stop_daemon,
    wait_until,
)

Daemon = Callable[..., subprocess.Popen[bytes]]

TABLE_DDL = "CREATE TABLE items (id int PRIMARY KEY, pad text NOT NULL DEFAULT '')"


# --- helpers --------------------------------------------------------------------------------


def slot_state(pg: PostgresServer, slot: str) -> tuple[int | None, int] | None:
    """(active_pid, confirmed_flush_lsn) of `slot`, None when it does not exist."""
    rows = pg.execute(
        "SELECT active_pid, confirmed_flush_lsn::text FROM pg_replication_slots"
        " WHERE slot_name = %s",
        [slot],
    )
    if not rows:
        return None
    pid, confirmed = rows[0]
    return pid, parse_lsn(confirmed) if confirmed else 0


def confirmed_lsn(pg: PostgresServer, slot: str) -> int:
    state = slot_state(pg, slot)
    assert state is not None, f"slot {slot} does not exist"
    return state[1]


def current_lsn(pg: PostgresServer) -> int:
    """The WAL insert position: the end of every record written so far.

    (pg_current_wal_lsn() is the write position, which lags behind it with
    synchronous_commit=off.)
    """
    return parse_lsn(pg.execute("SELECT pg_current_wal_insert_lsn()::text")[0][0])


def commit_position(msg: Any) -> int:
    """The commit LSN a message came from: the first part of its cdc-event-id."""
    return int(event_id(msg).split("/")[0], 16)


def inserted_rows(messages: list[Any]) -> list[tuple[int, Any]]:
    """(row id, message) of every insert event, in (partition, offset) order."""
    rows = []
    for msg in messages:
        value = value_of(msg)
        if value is not None and value["op"] == "c":
            rows.append((value["after"]["id"], msg))
    return rows


def wait_streaming(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Wait until the daemon logged that it streams its slot (fail if it exits first)."""

    def streaming() -> bool:
        if proc.poll() is not None:
            raise AssertionError(
                f"daemon exited ({proc.returncode}) before streaming:\n{daemon_log(proc)}"
            )
        return "streaming slot" in daemon_log(proc)

    wait_until(streaming, timeout=timeout, what="the daemon to stream its slot")


def daemon_log(proc: subprocess.Popen[bytes]) -> str:
    return Path(proc.log_path).read_text(errors="replace")  # type: ignore[attr-defined]


def wait_caught_up(pg: PostgresServer, slot: str, timeout: float = 60.0) -> int:
    """Wait until the slot confirmed everything written so far; return that WAL position."""
    target = current_lsn(pg)
    wait_until(
        lambda: confirmed_lsn(pg, slot) >= target,
        timeout=timeout,
        interval=0.1,
        what=f"slot {slot} to confirm {format_lsn(target)}",
    )
    return target


def read_offsets(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class Writer(threading.Thread):
    """Commits numbered rows into `items` until stopped or `duration` ends.

    Transactions are single-row or multi-row, a few large enough to be streamed by
    the server (logical_decoding_work_mem is 64kB in the test server) and spilled by
    the daemon; a few are rolled back and must never show up.
    """

    def __init__(
        self,
        dsn: str,
        rng: random.Random,
        duration: float,
        pause: tuple[float, float] = (0.05, 0.1),
        big_share: float = 0.02,
        rollback_share: float = 0.03,
    ):
        super().__init__(name="row-writer", daemon=True)
        self.dsn = dsn
        self.rng = rng
        self.duration = duration
        self.pause = pause
        self.big_share = big_share
        self.rollback_share = rollback_share
        self.committed: list[int] = []
        self.rolled_back: list[int] = []
        self.transactions = 0
        self.error: BaseException | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        rng = self.rng
        next_id = 1
        deadline = time.monotonic() + self.duration
        try:
            with psycopg.connect(self.dsn) as conn:
                while not self.halt.is_set() and time.monotonic() < deadline:
                    draw = rng.random()
                    if draw < self.big_share:
                        count, pad = 300, 300  # ~100 kB: streamed in chunks, spilled
                    elif draw < 0.5:
                        count, pad = 1, 10
                    else:
                        count, pad = rng.randint(2, 40), 10
                    first, next_id = next_id, next_id + count
                    conn.execute(
                        "INSERT INTO items SELECT g, repeat('x', %s)"
                        " FROM generate_series(%s::int, %s::int) g",
                        (pad, first, first + count - 1),
                    )
                    ids = range(first, first + count)
                    if rng.random() < self.rollback_share:
                        conn.rollback()
                        self.rolled_back.extend(ids)
                    else:
                        conn.commit()
                        self.committed.extend(ids)
                        self.transactions += 1
                    time.sleep(rng.uniform(*self.pause))
        except BaseException as exc:  # handed to the test by finish()
            self.error = exc

    def finish(self, timeout: float = 30.0, halt: bool = True) -> list[int]:
        """Wait for the thread (stopping it first unless `halt` is false); return the
        committed ids."""
        if halt:
            self.halt.set()
        self.join(timeout)
        assert not self.is_alive(), "writer did not stop"
        if self.error is not None:
            raise self.error
        return self.committed


@pytest.fixture
def items_db(pg_db: DatabaseDsn) -> DatabaseDsn:
    with psycopg.connect(pg_db, autocommit=True) as conn:
        conn.execute(TABLE_DDL)
    return pg_db


@pytest.fixture
def short_wal_sender_timeout(pg_server: PostgresServer) -> Iterator[None]:
    """wal_sender_timeout = 3s on the (shared) test server for this test only."""
    pg_server.execute("ALTER SYSTEM SET wal_sender_timeout = '3s'")
    pg_server.execute("SELECT pg_reload_conf()")
    wait_until(
        lambda: pg_server.execute("SHOW wal_sender_timeout")[0][0] == "3s",
        timeout=10,
        what="wal_sender_timeout=3s",
    )
    try:
        yield
    finally:
        pg_server.execute("ALTER SYSTEM RESET wal_sender_timeout")
        pg_server.execute("SELECT pg_reload_conf()")


def topic_of(db: DatabaseDsn) -> str:
    return f"{db.name}.public.items"


def walsender(pg: PostgresServer, application_name: str) -> list[tuple[int, str]]:
    """(pid, state) of the walsenders serving `application_name`."""
    return [
        (pid, state)
        for pid, state in pg.execute(
            "SELECT pid, state FROM pg_stat_replication WHERE application_name = %s",
            [application_name],
        )
    ]


# --- crash safety ---------------------------------------------------------------------------


def test_kill_9_at_random_moments_loses_no_committed_row(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    seed = int(os.environ.get("CDC_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncrash schedule seed: CDC_TEST_SEED={seed}")
    rng = random.Random(seed)
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={
            "tables": ["public.items"],
            "heartbeat_interval": "1s",
            "status_interval": "1s",
            "spill_threshold": "16kB",
            "spill_dir": str(spill_dir),
        },
    )
    slot = f"cdc_{pipeline_name(config)}"
    offsets = tmp_path / f"{pipeline_name(config)}.offsets"

    proc = cdc_daemon(config)
    wait_streaming(proc)
    writer = Writer(items_db, random.Random(rng.random()), duration=16.0)
    writer.start()
    kills = rng.randint(4, 5)
    # What killed daemons left behind, noted while no daemon runs: a live one's
    # offsets temp file exists for a moment during each save.
    stale_spill: set[Path] = set()
    stale_tmp: set[Path] = set()
    for n in range(kills):
        time.sleep(rng.uniform(0.5, 2.8))
        rows_so_far = len(writer.committed)
        assert stop_daemon(proc, signal.SIGKILL, timeout=10) == -signal.SIGKILL
        print(f"kill -9 #{n + 1} after {rows_so_far} committed rows")
        stale_spill |= set(spill_dir.iterdir())
        stale_tmp |= set(tmp_path.glob(".offsets-*"))
        proc = cdc_daemon(config)
        wait_streaming(proc)

    # The last daemon survives: let it catch up, then stop it cleanly.
    committed = writer.finish(halt=False)
    assert writer.transactions > 100 and len(committed) > 1000, "the writer wrote too little"
    wait_caught_up(pg_server, slot)
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0, daemon_log(proc)

    rows = inserted_rows(
        read_topic(kafka_broker.bootstrap, topic_of(items_db), idle=1.5, timeout=60)
    )
    seen = Counter(row_id for row_id, _ in rows)
    missing = sorted(set(committed) - set(seen))
    assert not missing, f"{len(missing)} committed rows never arrived, first {missing[:20]}"
    assert set(seen) == set(committed), "rows arrived that were rolled back or never written"
    assert not set(seen) & set(writer.rolled_back)

    duplicates = {row_id: n for row_id, n in seen.items() if n > 1}
    print(
        f"{len(committed)} rows in {writer.transactions} transactions, {kills} kills: "
        f"{len(rows)} events, {len(duplicates)} rows duplicated "
        f"({sum(duplicates.values()) - len(duplicates)} extra copies)"
    )
    if duplicates:
        print("duplicated row ids (copies):", dict(sorted(duplicates.items())[:50]))
    ids_by_row: dict[int, set[str]] = defaultdict(set)
    for row_id, msg in rows:
        ids_by_row[row_id].add(event_id(msg))
    changed = {r: ids for r, ids in ids_by_row.items() if len(ids) > 1}
    assert not changed, f"a replayed row got a different cdc-event-id: {changed}"
    assert len({next(iter(ids)) for ids in ids_by_row.values()}) == len(ids_by_row)

    # The offsets file is whole and agrees with the slot; the clean run left no temp files.
    state = read_offsets(offsets)
    assert state["slot"] == slot
    assert parse_lsn(state["lsn"]) == confirmed_lsn(pg_server, slot)
    assert set(tmp_path.glob(".offsets-*")) == stale_tmp
    assert set(spill_dir.iterdir()) <= stale_spill, "the clean run left spill files behind"
    if stale_spill or stale_tmp:
        print(f"left by killed daemons: {sorted(p.name for p in stale_spill | stale_tmp)}")


def test_restart_removes_spill_files_of_a_killed_daemon(
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"], "spill_threshold": "16kB", "spill_dir": str(spill_dir)},
    )
    proc = cdc_daemon(config)
    wait_streaming(proc)
    with psycopg.connect(items_db) as conn:
        # Streamed to the daemon in 64kB chunks before the commit: it spills them.
        conn.execute("INSERT INTO items SELECT g, repeat('x', 300) FROM generate_series(1, 2000) g")
        wait_until(lambda: list(spill_dir.iterdir()), timeout=15, what="a spill file")
        assert stop_daemon(proc, signal.SIGKILL) == -signal.SIGKILL
        stale = set(spill_dir.iterdir())
        conn.commit()
    proc = cdc_daemon(config)
    wait_streaming(proc)
    rows = read_topic(kafka_broker.bootstrap, topic_of(items_db), expect=2000, timeout=30)
    assert len(inserted_rows(rows)) == 2000
    assert stop_daemon(proc) == 0
    assert not set(spill_dir.iterdir()) & stale, f"stale spill files: {sorted(stale)}"


# --- SIGTERM --------------------------------------------------------------------------------


def test_sigterm_acknowledges_in_flight_events_and_restart_does_not_repeat_them(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    # A long linger keeps events in the producer's queue when SIGTERM arrives.
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"]},
        sink={"properties": {"linger.ms": "1000"}},
    )
    slot = f"cdc_{pipeline_name(config)}"
    offsets = tmp_path / f"{pipeline_name(config)}.offsets"
    topic = topic_of(items_db)
    proc = cdc_daemon(config)
    wait_streaming(proc)
    start = confirmed_lsn(pg_server, slot)

    def write(first_id: int, last_id: int) -> None:
        with psycopg.connect(items_db, autocommit=True) as conn:
            for first in range(first_id, last_id, 20):
                conn.execute(
                    "INSERT INTO items SELECT g FROM generate_series(%s::int, %s::int) g",
                    (first, first + 19),
                )
                time.sleep(0.02)

    # 20-row transactions for ~2 s; SIGTERM arrives in the middle of them.
    writer = threading.Thread(target=write, args=(1, 2001))
    writer.start()
    time.sleep(1.0)
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    log = daemon_log(proc)
    assert "received SIGTERM: draining and checkpointing" in log
    assert "still unacknowledged" not in log

    writer.join(30)
    assert not writer.is_alive()
    first_run = inserted_rows(read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=30))
    acked = confirmed_lsn(pg_server, slot)
    assert acked > start, "SIGTERM confirmed nothing: the in-flight events were dropped"
    stored = read_offsets(offsets)
    assert stored["lsn"] == format_lsn(acked)
    assert stored["slot"] == slot and stored["pipeline"] == pipeline_name(config)
    confirmed_rows = {row_id for row_id, msg in first_run if commit_position(msg) < acked}
    # Whole transactions of 20 rows: every row of a confirmed transaction is in the topic.
    assert confirmed_rows and len(confirmed_rows) % 20 == 0
    assert confirmed_rows == set(range(1, len(confirmed_rows) + 1))
    assert len(confirmed_rows) < 2000, "SIGTERM came after the last write: nothing was cut"

    proc = cdc_daemon(config)
    wait_streaming(proc)
    write(2001, 2101)
    wait_caught_up(pg_server, slot)
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    rows = inserted_rows(read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=30))
    seen = Counter(row_id for row_id, _ in rows)
    assert set(seen) == set(range(1, 2101))
    repeated = sorted(r for r in confirmed_rows if seen[r] != 1)
    assert not repeated, f"rows of acknowledged transactions delivered again: {repeated[:20]}"
    print(
        f"\nSIGTERM confirmed {len(confirmed_rows)} of 2000 rows at {format_lsn(acked)}; "
        f"{sum(seen.values()) - len(seen)} unconfirmed events replayed after the restart"
    )


# --- broker outage --------------------------------------------------------------------------


def test_frozen_broker_keeps_walsender_alive_and_holds_the_slot(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
    short_wal_sender_timeout: None,
):
    # A small producer queue: during the outage send() blocks on backpressure, the
    # path where status updates must still flow.
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"], "status_interval": "1s", "heartbeat_interval": "1s"},
        sink={"properties": {"queue.buffering.max.messages": "50"}},
    )
    name = pipeline_name(config)
    slot = f"cdc_{name}"
    pg_log_start = pg_server.log_path.stat().st_size
    proc = cdc_daemon(config)
    wait_streaming(proc)
    writer = Writer(
        items_db,
        random.Random(7),
        duration=120.0,
        pause=(0.03, 0.06),
        big_share=0.0,
        rollback_share=0.0,
    )
    writer.start()
    wait_until(lambda: len(writer.committed) > 50, timeout=10)
    wait_caught_up(pg_server, slot, timeout=20)
    [(sender_pid, state)] = walsender(pg_server, f"cdc-{name}")
    assert state == "streaming"
    assert slot_state(pg_server, slot) == (sender_pid, confirmed_lsn(pg_server, slot))

    samples: list[tuple[int, list[tuple[int, str]]]] = []
    with kafka_broker.frozen_for():
        # Only transactions committed before this point can have been acknowledged.
        frozen_at = current_lsn(pg_server)
        rows_at_freeze = len(writer.committed)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            samples.append((confirmed_lsn(pg_server, slot), walsender(pg_server, f"cdc-{name}")))
            time.sleep(0.5)
        rows_while_frozen = len(writer.committed) - rows_at_freeze
        assert proc.poll() is None, daemon_log(proc)

    assert rows_while_frozen > 100, "the writer stalled during the outage"
    beyond = [format_lsn(c) for c, _ in samples if c > frozen_at]
    assert not beyond, (
        f"confirmed_flush_lsn moved past {format_lsn(frozen_at)} while the broker was frozen: "
        f"{beyond}"
    )
    assert {tuple(senders) for _, senders in samples} == {((sender_pid, "streaming"),)}

    committed = writer.finish()
    wait_caught_up(pg_server, slot, timeout=60)
    assert walsender(pg_server, f"cdc-{name}") == [(sender_pid, "streaming")]
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    rows = inserted_rows(
        read_topic(kafka_broker.bootstrap, topic_of(items_db), idle=1.0, timeout=60)
    )
    assert {row_id for row_id, _ in rows} == set(committed)
    assert "replication stream ended" not in daemon_log(proc)
    with open(pg_server.log_path, errors="replace") as f:
        f.seek(pg_log_start)
        assert "replication timeout" not in f.read()


# --- idle database --------------------------------------------------------------------------


def test_idle_daemon_answers_keepalives_and_unpublished_writes_do_not_pin_wal(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
    short_wal_sender_timeout: None,
):
    # status_interval (10s) > wal_sender_timeout (3s) and no heartbeats: only the
    # answers to the server's keepalive requests keep the connection.
    with psycopg.connect(items_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE other (id int PRIMARY KEY)")
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"], "status_interval": "10s", "heartbeat_interval": "1h"},
    )
    name = pipeline_name(config)
    slot = f"cdc_{name}"
    proc = cdc_daemon(config)
    wait_streaming(proc)
    [(sender_pid, _)] = wait_until(lambda: walsender(pg_server, f"cdc-{name}"), timeout=10)

    time.sleep(10.0)
    assert proc.poll() is None, daemon_log(proc)
    assert walsender(pg_server, f"cdc-{name}") == [(sender_pid, "streaming")]

    before = confirmed_lsn(pg_server, slot)
    with psycopg.connect(items_db, autocommit=True) as conn:
        for i in range(50):
            conn.execute("INSERT INTO other VALUES (%s)", (i,))
    written = current_lsn(pg_server)
    assert written > before
    # Followed through keepalives alone: nothing of `other` is published.
    wait_until(
        lambda: confirmed_lsn(pg_server, slot) >= written,
        timeout=15,
        what=f"slot to follow WAL to {format_lsn(written)}",
    )
    assert walsender(pg_server, f"cdc-{name}") == [(sender_pid, "streaming")]
    assert stop_daemon(proc, signal.SIGTERM) == 0
    assert "replication stream ended" not in daemon_log(proc)
    assert (
        read_topic(kafka_broker.bootstrap, f"{items_db.name}.public.other", idle=0.5, timeout=5)
        == []
    )


def test_heartbeats_advance_an_idle_slot(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"], "heartbeat_interval": "1s", "status_interval": "1s"},
    )
    slot = f"cdc_{pipeline_name(config)}"
    proc = cdc_daemon(config)
    wait_streaming(proc)
    start = confirmed_lsn(pg_server, slot)
    # Nothing is written by the test: heartbeats alone make WAL for the slot to follow.
    wait_until(lambda: current_lsn(pg_server) > start, timeout=10, what="a heartbeat")
    wait_until(
        lambda: confirmed_lsn(pg_server, slot) > start, timeout=10, what="the idle slot to advance"
    )
    assert stop_daemon(proc) == 0
    assert read_topic(kafka_broker.bootstrap, topic_of(items_db), idle=0.5, timeout=5) == []


# --- a failing mapper -----------------------------------------------------------------------

MAPPER = """\
def mapper(change):
    if change.after and change.after.get("id") == {poison}:
        raise ValueError("row {{}} is poison".format(change.after["id"]))
    return change
"""


def test_failing_mapper_stops_before_its_transaction_and_resumes_there_when_fixed(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    module = f"mapper_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MAPPER.format(poison=13))
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"]},
        mappers=[{"type": "python", "path": f"{module}:mapper"}],
    )
    slot = f"cdc_{pipeline_name(config)}"
    offsets = tmp_path / f"{pipeline_name(config)}.offsets"
    topic = topic_of(items_db)
    proc = cdc_daemon(config)
    wait_streaming(proc)

    with psycopg.connect(items_db, autocommit=True) as conn:
        for i in range(1, 11):
            conn.execute("INSERT INTO items (id) VALUES (%s)", (i,))
        before_failing = current_lsn(pg_server)
        with conn.transaction():
            conn.execute("INSERT INTO items (id) SELECT generate_series(11, 15)")
        for i in range(16, 21):
            conn.execute("INSERT INTO items (id) VALUES (%s)", (i,))

    assert proc.wait(30) == 1
    log = daemon_log(proc)
    assert f"mapper '{module}:mapper' failed: ValueError: row 13 is poison" in log
    confirmed = confirmed_lsn(pg_server, slot)
    assert confirmed <= before_failing
    assert parse_lsn(read_offsets(offsets)["lsn"]) == confirmed
    rows = inserted_rows(read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=20))
    delivered = {row_id for row_id, _ in rows}
    assert set(range(1, 11)) <= delivered
    assert not delivered & set(range(13, 21)), "events after the failing row were produced"
    first_ids = {row_id: event_id(msg) for row_id, msg in rows}

    (tmp_path / f"{module}.py").write_text(MAPPER.format(poison=-1))
    proc = cdc_daemon(config)
    wait_streaming(proc)
    rows = inserted_rows(
        read_topic(kafka_broker.bootstrap, topic, expect=len(rows) + 10, timeout=30)
    )
    assert stop_daemon(proc) == 0
    assert {row_id for row_id, _ in rows} == set(range(1, 21))
    assert Counter(row_id for row_id, _ in rows if row_id <= 10) == dict.fromkeys(range(1, 11), 1)
    for row_id, msg in rows:
        if row_id in first_ids:
            assert event_id(msg) == first_ids[row_id]
    assert confirmed_lsn(pg_server, slot) > before_failing


# --- a dropped slot -------------------------------------------------------------------------


def test_dropped_slot_with_stored_position_is_refused_not_recreated(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    config = write_config(
        tmp_path, items_db, kafka_broker.bootstrap, source={"tables": ["public.items"]}
    )
    slot = f"cdc_{pipeline_name(config)}"
    offsets = tmp_path / f"{pipeline_name(config)}.offsets"
    proc = cdc_daemon(config)
    wait_streaming(proc)
    pg_server.execute("INSERT INTO items (id) VALUES (1)", dbname=items_db.name)
    read_topic(kafka_broker.bootstrap, topic_of(items_db), expect=1, timeout=20)
    wait_caught_up(pg_server, slot, timeout=20)
    assert stop_daemon(proc) == 0
    stored = offsets.read_text()
    lsn = json.loads(stored)["lsn"]

    pg_server.execute("SELECT pg_drop_replication_slot(%s)", [slot])
    proc = cdc_daemon(config)
    assert proc.wait(30) == 3
    log = daemon_log(proc)
    assert f"replication slot {slot!r} is gone" in log
    assert f"had confirmed {lsn}" in log
    assert "remove the offsets file" in log
    assert slot_state(pg_server, slot) is None, "the slot was recreated"
    assert offsets.read_text() == stored


def test_postgres_restart_mid_stream_reconnects_and_loses_nothing(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    """The server goes away under the daemon: it reconnects with backoff, no restart needed."""
    config = write_config(
        tmp_path, items_db, kafka_broker.bootstrap, source={"tables": ["public.items"]}
    )
    proc = cdc_daemon(config)
    wait_streaming(proc)
    pg_server.execute(
        "INSERT INTO items (id) SELECT g FROM generate_series(1, 500) g", dbname=items_db.name
    )
    pg_server.restart(mode="immediate")  # like a crash: no shutdown checkpoint
    pg_server.execute(
        "INSERT INTO items (id) SELECT g FROM generate_series(501, 1000) g", dbname=items_db.name
    )
    # The test server runs with synchronous_commit=off, so an immediate stop may
    # lose the server's own last commits: what survived in the table is the truth.
    survived = {r[0] for r in pg_server.execute("SELECT id FROM items", dbname=items_db.name)}
    assert set(range(501, 1001)) <= survived

    # Rows acknowledged before the crash but not yet confirmed to the slot come
    # again (at least once), so count ids, not messages.
    def published() -> set[int]:
        messages = read_topic(kafka_broker.bootstrap, topic_of(items_db), idle=1.0)
        return {value_of(m)["after"]["id"] for m in messages if m.value()}

    try:
        wait_until(lambda: published() >= survived, timeout=60, interval=0.5,
                   what="every surviving row in the topic")  # fmt: skip
    except TimeoutError:
        assert sorted(survived - published()) == [], daemon_log(proc)
    assert proc.poll() is None, f"the daemon exited:\n{daemon_log(proc)}"
    log = daemon_log(proc)
    assert "reconnecting in" in log
    assert log.count("streaming slot") >= 2
    assert stop_daemon(proc) == 0


def test_sigterm_while_the_broker_is_away_exits_and_loses_nothing(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    """A full producer queue with the broker gone must not make SIGTERM hang."""
    config = write_config(
        tmp_path,
        items_db,
        kafka_broker.bootstrap,
        source={"tables": ["public.items"]},
        sink={"flush_timeout": "2s", "properties": {"queue.buffering.max.messages": "20"}},
    )
    proc = cdc_daemon(config)
    wait_streaming(proc)
    with kafka_broker.frozen_for():
        pg_server.execute(
            "INSERT INTO items (id) SELECT g FROM generate_series(1, 300) g", dbname=items_db.name
        )
        time.sleep(2)  # the daemon is now blocked on the full queue
        started = time.monotonic()
        assert stop_daemon(proc, timeout=20) == 0
        assert time.monotonic() - started < 15
    assert "still unacknowledged" in daemon_log(proc)
    # Nothing was confirmed past the blocked transaction: a restart delivers it whole.
    proc = cdc_daemon(config)
    messages = read_topic(kafka_broker.bootstrap, topic_of(items_db), expect=300, timeout=60)
    assert {value_of(m)["after"]["id"] for m in messages if m.value()} == set(range(1, 301))
    assert stop_daemon(proc) == 0


def test_a_setup_error_found_while_running_is_not_retried(
    pg_server: PostgresServer,
    items_db: DatabaseDsn,
    kafka_broker: KafkaBroker,
    cdc_daemon: Daemon,
    tmp_path: Path,
):
    """Only lost connections are retried: a permission problem stops with exit 3."""
    role = f"r_{items_db.name[-12:]}"
    pg_server.execute(f"CREATE ROLE {role} LOGIN REPLICATION")
    pg_server.execute(f"GRANT CREATE ON DATABASE {items_db.name} TO {role}")
    pg_server.execute(f"ALTER TABLE items OWNER TO {role}", dbname=items_db.name)
    pg_server.execute("INSERT INTO items (id) VALUES (1)", dbname=items_db.name)
    pg_server.execute(f"REVOKE SELECT ON items FROM {role}", dbname=items_db.name)
    config = write_config(
        tmp_path,
        pg_server.dsn(items_db.name, user=role),
        kafka_broker.bootstrap,
        source={"tables": ["public.items"], "snapshot": "initial"},
    )
    proc = cdc_daemon(config)
    try:
        assert proc.wait(30) == 3
    finally:
        pg_server.execute("ALTER TABLE items OWNER TO postgres", dbname=items_db.name)
    log = daemon_log(proc)
    assert "permission denied" in log
    assert "reconnecting in" not in log
