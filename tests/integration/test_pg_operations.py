"""Row operations end to end: PostgreSQL -> daemon (in-process) -> Tansu broker.

Several tests run two pipelines (two slots) on one database at once, each
with its own topic template ``{pipeline}.{table}``, to compare two formats
or settings over the very same transactions.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.integration.pipeline_helpers import (
    event_id,
    execute_each,
    key_of,
    run_pipeline,
    value_of,
    wait_for_events,
    write_config,
)
from tests.integration.services import create_topics, read_topic

PER_PIPELINE = "{pipeline}.{table}"
PLACEHOLDER = "__debezium_unavailable_value"


def config_for(tmp_path: Path, pg_db: str, broker: Any, **sink: Any) -> Path:
    """A pipeline whose topics are `<pipeline>.<table>`, with `sink` settings."""
    return write_config(tmp_path, pg_db, broker.bootstrap, sink={"topic": PER_PIPELINE, **sink})


def ops(messages: list[Any]) -> list[str | None]:
    """The `op` of each message (None for a tombstone)."""
    return [None if value_of(m) is None else value_of(m)["op"] for m in messages]


def pg_db_connection(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def without_tombstones(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.value() is not None]


# --- TOAST, replica identity ---------------------------------------------------------------


def test_unchanged_toast_in_json_and_debezium(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    big = "".join(f"{i:08x}" for i in range(3000))  # 24 kB, stored out of line
    execute_each(pg_db, [
        "create table docs (id int primary key, n int, body text)",
        "alter table docs alter column body set storage external",
    ])
    json_cfg = config_for(tmp_path, pg_db, kafka_broker, format="json")
    dbz_cfg = config_for(tmp_path, pg_db, kafka_broker)
    with run_pipeline(json_cfg) as js, run_pipeline(dbz_cfg) as dbz:
        execute_each(pg_db, [
            f"insert into docs values (1, 0, '{big}')",
            "update docs set n = 1 where id = 1",
        ])
        insert, update = wait_for_events(kafka_broker.bootstrap, f"{js.name}.docs", 2)
        dbz_insert, dbz_update = wait_for_events(kafka_broker.bootstrap, f"{dbz.name}.docs", 2)

    assert value_of(insert)["after"] == {"id": 1, "n": 0, "body": big}
    assert value_of(insert)["unchanged"] == []
    updated = value_of(update)
    assert updated["op"] == "update"
    assert updated["after"] == {"id": 1, "n": 1}  # absent, never null
    assert updated["unchanged"] == ["body"]
    assert value_of(dbz_insert)["after"]["body"] == big
    assert value_of(dbz_update)["after"] == {"id": 1, "n": 1, "body": PLACEHOLDER}


def test_delete_under_replica_identity_default(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, ["create table items (id int primary key, name text, qty int)"])
    json_cfg = config_for(tmp_path, pg_db, kafka_broker, format="json")
    dbz_cfg = config_for(tmp_path, pg_db, kafka_broker)
    with run_pipeline(json_cfg) as js, run_pipeline(dbz_cfg) as dbz:
        execute_each(pg_db, [
            "insert into items values (7, 'bolt', 3)",
            "update items set qty = 4 where id = 7",
            "delete from items where id = 7",
        ])
        json_msgs = wait_for_events(kafka_broker.bootstrap, f"{js.name}.items", 4)
        dbz_msgs = wait_for_events(kafka_broker.bootstrap, f"{dbz.name}.items", 4)

    assert ops(json_msgs) == ["insert", "update", "delete", None]
    assert ops(dbz_msgs) == ["c", "u", "d", None]
    assert {json.dumps(key_of(m)) for m in json_msgs + dbz_msgs} == {'{"id": 7}'}
    # DEFAULT identity: an update has no before; a delete's before is the key.
    assert value_of(json_msgs[1])["before"] is None
    assert value_of(json_msgs[2])["before"] == {"id": 7}
    assert value_of(json_msgs[2])["after"] is None
    assert value_of(dbz_msgs[1])["before"] is None
    assert value_of(dbz_msgs[2])["before"] == {"id": 7, "name": None, "qty": None}
    assert value_of(dbz_msgs[2])["after"] is None


def test_replica_identity_full_update_and_delete(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, [
        "create table accounts (region text, id int, owner text, balance numeric(10,2),"
        " primary key (region, id))",
        "alter table accounts replica identity full",
    ])
    json_cfg = config_for(tmp_path, pg_db, kafka_broker, format="json")
    dbz_cfg = config_for(tmp_path, pg_db, kafka_broker)
    with run_pipeline(json_cfg) as js, run_pipeline(dbz_cfg) as dbz:
        execute_each(pg_db, [
            "insert into accounts values ('eu', 1, 'ann', 10.50)",
            "update accounts set balance = 20 where id = 1",
            "delete from accounts where id = 1",
        ])
        json_msgs = wait_for_events(kafka_broker.bootstrap, f"{js.name}.accounts", 4)
        dbz_msgs = wait_for_events(kafka_broker.bootstrap, f"{dbz.name}.accounts", 4)

    old = {"region": "eu", "id": 1, "owner": "ann", "balance": "10.50"}
    new = {**old, "balance": "20.00"}
    # The Kafka key is the primary key, not the whole identity row.
    assert [key_of(m) for m in json_msgs + dbz_msgs] == [{"region": "eu", "id": 1}] * 8
    assert ops(json_msgs) == ["insert", "update", "delete", None]
    _, update, delete, _ = (value_of(m) for m in json_msgs)
    assert (update["before"], update["after"]) == (old, new)
    assert (delete["before"], delete["after"]) == (new, None)
    assert update["key"] == delete["key"] == {"region": "eu", "id": 1}
    assert ops(dbz_msgs) == ["c", "u", "d", None]
    _, dbz_update, dbz_delete, _ = (value_of(m) for m in dbz_msgs)
    assert (dbz_update["before"], dbz_update["after"]) == (old, new)
    assert (dbz_delete["before"], dbz_delete["after"]) == (new, None)


# --- truncate, logical messages ------------------------------------------------------------


def test_truncate_skipped_by_default_published_when_enabled(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, ["create table logs (id int primary key)"])
    default_cfg = config_for(tmp_path, pg_db, kafka_broker)
    enabled_cfg = config_for(tmp_path, pg_db, kafka_broker, truncate=True)
    with run_pipeline(default_cfg) as default, run_pipeline(enabled_cfg) as enabled:
        execute_each(pg_db, [
            "insert into logs values (1)",
            "truncate logs",
            "insert into logs values (2)",  # a fence: it comes after the truncate
        ])
        skipped = wait_for_events(kafka_broker.bootstrap, f"{default.name}.logs", 2, settle=1)
        published = wait_for_events(kafka_broker.bootstrap, f"{enabled.name}.logs", 3)

    assert sorted(value_of(m)["after"]["id"] for m in skipped) == [1, 2]
    [truncate] = [m for m in published if value_of(m)["op"] == "t"]
    assert key_of(truncate) is None
    value = value_of(truncate)
    assert (value["before"], value["after"]) == (None, None)
    assert (value["source"]["table"], value["source"]["schema"]) == ("logs", "public")


def test_logical_messages_transactional_and_not(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, ["create table fence (id int primary key)"])
    config = config_for(tmp_path, pg_db, kafka_broker, format="json")
    with run_pipeline(config) as running, pg_db_connection(pg_db) as conn:
        with conn.transaction():
            conn.execute("select pg_logical_emit_message(true, 'tx', 'committed')")
        with conn.transaction(force_rollback=True):
            conn.execute("select pg_logical_emit_message(true, 'tx', 'rolled back')")
            # Non-transactional: decoded at once, whatever becomes of the transaction.
            conn.execute("select pg_logical_emit_message(false, 'nontx', 'kept')")
        conn.execute("select pg_logical_emit_message(false, 'nontx', convert_to('é', 'UTF8'))")
        conn.execute("insert into fence values (1)")
        wait_for_events(kafka_broker.bootstrap, f"{running.name}.fence", 1)
        messages = wait_for_events(kafka_broker.bootstrap, f"{running.name}.message", 3, settle=1)

    got = sorted(
        (key_of(m)["prefix"], base64.b64decode(value_of(m)["after"]["content"]),
         value_of(m)["after"]["transactional"], value_of(m)["op"])
        for m in messages
    )
    assert got == [
        ("nontx", b"kept", False, "message"),
        ("nontx", "é".encode(), False, "message"),
        ("tx", b"committed", True, "message"),
    ]


# --- big, aborted and interleaved transactions ---------------------------------------------


@pytest.mark.slow
def test_200k_row_transaction_arrives_whole_and_in_order(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    rows = 200_000
    execute_each(pg_db, ["create table big (id int primary key, payload text)"])
    create_topics(kafka_broker.bootstrap, [f"{pg_db.name}.public.big"], partitions=1)
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap,
        source={"spill_threshold": "1MB", "spill_dir": str(tmp_path / "spill")},
    )
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    with run_pipeline(config), files_seen(spill_dir) as spill_files:
        execute_each(pg_db, [
            f"insert into big select g, md5(g::text) from generate_series(1, {rows}) g"
        ])
        messages = wait_for_events(
            kafka_broker.bootstrap, f"{pg_db.name}.public.big", rows, timeout=120
        )

    assert spill_files, "the streamed transaction never spilled past 1MB"
    assert list(spill_dir.iterdir()) == []  # and its spill file is gone

    assert [key_of(m)["id"] for m in messages] == list(range(1, rows + 1))
    assert {m.partition() for m in messages} == {0}
    ids = [event_id(m) for m in messages]
    assert len(set(ids)) == rows
    commit = ids[0].split("/")[0]  # one transaction: one commit position, index 0..n-1
    assert ids[-1] == f"{commit}/{rows - 1}"
    last = value_of(messages[-1])
    assert last["after"] == {"id": rows, "payload": _md5(rows)}
    assert last["op"] == "c"


@contextmanager
def files_seen(directory: Path) -> Iterator[set[str]]:
    """Names of the files that appear in `directory` while the block runs (polled)."""
    seen: set[str] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.wait(0.01):
            seen.update(os.listdir(directory))

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def _md5(n: int) -> str:
    return hashlib.md5(str(n).encode()).hexdigest()


def test_rolled_back_work_is_never_published(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, ["create table t (id int primary key)"])
    config = write_config(tmp_path, pg_db, kafka_broker.bootstrap, sink={"format": "json"})
    topic = f"{pg_db.name}.public.t"
    with run_pipeline(config), pg_db_connection(pg_db) as conn:
        with conn.transaction(force_rollback=True):  # small
            conn.execute("insert into t values (-1)")
        with conn.transaction(force_rollback=True):  # streamed (> logical_decoding_work_mem)
            conn.execute("insert into t select -g from generate_series(2, 30000) g")
        with conn.transaction():  # a rolled-back savepoint in a small transaction
            conn.execute("insert into t values (1)")
            with pytest.raises(RuntimeError), conn.transaction():
                conn.execute("insert into t values (-30001)")
                raise RuntimeError("roll back to the savepoint")
            conn.execute("insert into t values (2)")
        with conn.transaction():  # ... and in a streamed one: Stream Abort with a subxid
            conn.execute("insert into t select g from generate_series(3, 10002) g")
            with pytest.raises(RuntimeError), conn.transaction():
                conn.execute("insert into t select -g from generate_series(30002, 40001) g")
                raise RuntimeError("roll back to the savepoint")
            conn.execute("insert into t values (10003)")
        expected = list(range(1, 10004))
        messages = wait_for_events(
            kafka_broker.bootstrap, topic, len(expected), timeout=60, settle=1
        )

    ids = [value_of(m)["after"]["id"] for m in messages]
    assert sorted(ids) == expected
    assert min(ids) > 0


def test_per_key_order_over_10k_updates(pg_db: Any, kafka_broker: Any, tmp_path: Path) -> None:
    keys, updates = 50, 10_000
    execute_each(pg_db, [
        "create table counters (id int primary key, counter int not null)",
        f"insert into counters select g, 0 from generate_series(1, {keys}) g",
    ])
    config = write_config(tmp_path, pg_db, kafka_broker.bootstrap, sink={"format": "json"})
    topic = f"{pg_db.name}.public.counters"
    with run_pipeline(config):
        # Small transactions (1-5 updates), random keys, counter = global sequence number.
        execute_each(pg_db, [f"""
            do $$
            declare k int;
            begin
              perform setseed(0.42);
              for i in 1..{updates} loop
                k := 1 + floor(random() * {keys})::int;  -- once, not per row of the scan
                update counters set counter = i where id = k;
                if random() < 0.3 then commit; end if;
              end loop;
            end $$
        """])
        messages = wait_for_events(kafka_broker.bootstrap, topic, updates, timeout=60, settle=1)

    per_key: dict[int, list[int]] = collections.defaultdict(list)
    for msg in messages:  # sorted by (partition, offset): each key lives in one partition
        value = value_of(msg)
        assert value["op"] == "update"
        per_key[key_of(msg)["id"]].append(value["after"]["counter"])
    for key, counters in per_key.items():
        assert all(a < b for a, b in zip(counters, counters[1:], strict=False)), key
    assert sorted(c for counters in per_key.values() for c in counters) == list(
        range(1, updates + 1)
    )
    assert len({m.partition() for m in messages}) > 1  # Tansu's 4 auto-created partitions


# --- publication scope, schema changes -----------------------------------------------------


def test_exclude_tables_and_all_tables_publication(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, [
        "create table kept (id int primary key)",
        "create table dropped (id int primary key)",
    ])
    config = write_config(
        tmp_path, pg_db, kafka_broker.bootstrap, source={"exclude_tables": ["public.dropped"]}
    )
    with run_pipeline(config) as running:
        execute_each(pg_db, [
            "insert into dropped values (1)",
            "create table later (id int primary key)",  # FOR ALL TABLES covers new tables
            "insert into later values (2)",
            "insert into kept values (3)",
        ])
        [kept] = wait_for_events(kafka_broker.bootstrap, f"{pg_db.name}.public.kept", 1)
        [later] = wait_for_events(kafka_broker.bootstrap, f"{pg_db.name}.public.later", 1)
        publication = running.config.source.publication  # type: ignore[union-attr]

    assert value_of(kept)["after"] == {"id": 3}
    assert value_of(later)["after"] == {"id": 2}
    assert read_topic(kafka_broker.bootstrap, f"{pg_db.name}.public.dropped", idle=1) == []
    with pg_db_connection(pg_db) as conn:
        row = conn.execute(
            "select puballtables from pg_publication where pubname = %s", [publication]
        ).fetchone()
    assert row == (True,)


def test_add_and_drop_column_mid_stream(pg_db: Any, kafka_broker: Any, tmp_path: Path) -> None:
    execute_each(pg_db, ["create table evolving (id int primary key, a text)"])
    config = write_config(tmp_path, pg_db, kafka_broker.bootstrap)
    with run_pipeline(config):
        execute_each(pg_db, [
            "insert into evolving values (1, 'one')",
            "alter table evolving add column b int default 7",
            "insert into evolving values (2, 'two', 22)",
            "update evolving set a = 'uno' where id = 1",
            "alter table evolving drop column a",
            "insert into evolving values (3, 33)",
        ])
        messages = wait_for_events(kafka_broker.bootstrap, f"{pg_db.name}.public.evolving", 4)

    rows = sorted(
        (value_of(m)["source"]["lsn"], value_of(m)["after"]) for m in messages
    )
    assert [after for _, after in rows] == [
        {"id": 1, "a": "one"},
        {"id": 2, "a": "two", "b": 22},
        {"id": 1, "a": "uno", "b": 7},
        {"id": 3, "b": 33},
    ]


# --- event ids -----------------------------------------------------------------------------


def test_event_ids_are_the_same_on_another_slot(
    pg_db: Any, kafka_broker: Any, tmp_path: Path
) -> None:
    execute_each(pg_db, ["create table orders (id int primary key, status text)"])
    first = config_for(tmp_path, pg_db, kafka_broker, format="json")
    second = config_for(tmp_path, pg_db, kafka_broker, format="json")
    with run_pipeline(second):
        pass  # creates its slot now, streams the transactions below later
    with run_pipeline(first) as one:
        execute_each(pg_db, [
            "insert into orders values (1, 'new'), (2, 'new')",
            "update orders set status = 'paid' where id = 1",
            "delete from orders where id = 2",
        ])
        early = wait_for_events(kafka_broker.bootstrap, f"{one.name}.orders", 5)
    with run_pipeline(second) as two:
        late = wait_for_events(kafka_broker.bootstrap, f"{two.name}.orders", 5)

    def ids_by_record(messages: list[Any]) -> dict[tuple[bytes, bytes | None], str]:
        return {(m.key(), m.value()): event_id(m) for m in messages}

    # Same WAL, same records byte for byte (the json format has no wall-clock
    # field), same ids.
    assert ids_by_record(early) == ids_by_record(late)
    assert len(set(ids_by_record(early).values())) == 5
    for msg in without_tombstones(early):
        assert event_id(msg).startswith(value_of(msg)["position"] + "/")
