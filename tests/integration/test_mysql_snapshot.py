"""The MySQL/MariaDB initial snapshot: real MariaDB, real broker.

Delivery guarantee asserted here: exactly once across the snapshot/stream
boundary. The snapshot's rows are the state at the binlog position read in the
same consistent-snapshot session, and streaming starts at exactly that
position, so a row committed while the snapshot runs is either in the
snapshot or streamed, never both and never neither. (After a crash, replays
of unacknowledged transactions are at least once, as everywhere else.)
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

from tests.integration.pipeline_helpers import key_of, run_pipeline, value_of, wait_for_events
from tests.integration.services import create_topics, read_topic, wait_until
from tests.integration.test_mysql_source import (
    ALL_TYPES,
    ALL_TYPES_ROW,
    run_sql,
    write_mysql_config,
)

EXTRAS = """
CREATE TABLE extras (
 id int primary key, f float, d double, t3 time(3), tn time, dt2 datetime(2), ts3 timestamp(3) null,
 dz date, dtz datetime, tsz timestamp null, j json, ch char(3) character set latin1,
 bin binary(3), e enum('x','y'), s set('p','q'), b64 bit(64), vc varchar(300) character set ascii
) engine=InnoDB
"""


def extras_row(i: int) -> str:
    return (
        f"INSERT INTO extras VALUES ({i}, 1.2345678, 0.30000000000000004, '-01:02:03.5', "
        "'25:00:00', '2024-01-02 03:04:05.06', '2038-01-19 03:14:07.999', '0000-00-00', "
        "'0000-00-00 00:00:00', '0000-00-00 00:00:00', '[1, 2.5e300, {\"a\": \"é\"}]', 'é ', "
        "x'0100', 'y', 'q,p', b'1000000000000000000000000000000000000000000000000000000000000001', "
        "'plain')"
    )


def _rendered(message: Any) -> dict[str, Any]:
    value = value_of(message)
    after = dict(value["after"])
    after.pop("id")
    key = dict(value["key"])
    key.pop("id")
    return {"after": after, "key": key, "database": value["database"], "table": value["table"]}


def test_snapshot_values_equal_streamed_values(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, ALL_TYPES + ";\n" + EXTRAS)
    assert "VALUES (1," in ALL_TYPES_ROW

    def same_row(i: int) -> str:
        return ALL_TYPES_ROW.replace("VALUES (1,", f"VALUES ({i},")

    setup = "SET sql_mode = '';\n"  # zero dates
    run_sql(mariadb_server, db, setup + same_row(1) + ";\n"
            "INSERT INTO alltypes (id) VALUES (2);\n" + extras_row(1))  # fmt: skip
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="initial",
                                sink={"format": "json"})  # fmt: skip
    with run_pipeline(config):
        snap_all = wait_for_events(kafka_broker.bootstrap, f"{db}.alltypes", 2)
        snap_extras = wait_for_events(kafka_broker.bootstrap, f"{db}.extras", 1)
        run_sql(mariadb_server, db, setup + same_row(101) + ";\n"
                "INSERT INTO alltypes (id) VALUES (102);\n" + extras_row(101))  # fmt: skip
        all_messages = wait_for_events(kafka_broker.bootstrap, f"{db}.alltypes", 4)
        extras = wait_for_events(kafka_broker.bootstrap, f"{db}.extras", 2)
    by_id = {key_of(m)["id"]: m for m in all_messages}
    extra_by_id = {key_of(m)["id"]: m for m in extras}
    assert {value_of(m)["op"] for m in snap_all + snap_extras} == {"read"}
    assert all(value_of(m)["snapshot"] is True for m in snap_all + snap_extras)
    for snap, streamed in ((by_id[1], by_id[101]), (by_id[2], by_id[102]),
                           (extra_by_id[1], extra_by_id[101])):  # fmt: skip
        assert value_of(streamed)["op"] == "insert" and value_of(streamed)["snapshot"] is False
        assert _rendered(snap) == _rendered(streamed)
    # Spot checks that the comparison is not vacuous.
    extra = value_of(extra_by_id[1])["after"]
    assert extra["dz"] == "0000-00-00" and extra["tn"] == "25:00:00"
    assert extra["f"] != 1.2345678  # single precision, as the binlog carries it
    assert value_of(by_id[2])["after"]["c_vc"] is None


def test_initial_snapshot_then_restart_does_not_snapshot_twice(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, v text);\n"
            + ";\n".join(f"INSERT INTO t VALUES ({i}, 'old')" for i in range(1, 4)))  # fmt: skip
    topic = f"{db}.t"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="initial",
                                tables=[f"{db}.t"])  # fmt: skip
    with run_pipeline(config) as running:
        wait_for_events(kafka_broker.bootstrap, topic, 3)
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (4, 'streamed')")
        wait_for_events(kafka_broker.bootstrap, topic, 4)
    offsets = json.loads((tmp_path / f"{running.name}.offsets").read_text())
    assert offsets["snapshot_complete"] is True and offsets["gtid_set"]
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (5, 'while down')")
    with run_pipeline(config):
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (6, 'after restart')")
        messages = wait_for_events(kafka_broker.bootstrap, topic, 6, settle=3.0)
    values = [value_of(m) for m in messages]
    assert [v["after"]["id"] for v in values] == [1, 2, 3, 4, 5, 6]
    assert [v["source"]["snapshot"] for v in values] == ["true"] * 3 + ["false"] * 3
    assert [v["op"] for v in values] == ["r"] * 3 + ["c"] * 3


def test_initial_only_exits_0_after_the_snapshot(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, cdc_daemon
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key);\n"
            + ";\n".join(f"INSERT INTO t VALUES ({i})" for i in range(1, 51)))  # fmt: skip
    topic = f"{db}.t"
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                snapshot="initial_only", tables=[f"{db}.t"])  # fmt: skip
    proc = cdc_daemon(config)
    assert proc.wait(60) == 0, proc.log_path.read_text()
    messages = wait_for_events(kafka_broker.bootstrap, topic, 50, settle=1.0)
    assert sorted(key_of(m)["id"] for m in messages) == list(range(1, 51))
    assert {value_of(m)["op"] for m in messages} == {"r"}
    # Again: the snapshot is recorded as complete, so nothing more is published.
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (51)")
    proc = cdc_daemon(config)
    assert proc.wait(60) == 0, proc.log_path.read_text()
    assert "snapshot already complete" in proc.log_path.read_text()
    wait_for_events(kafka_broker.bootstrap, topic, 50, settle=2.0)


class Writer(threading.Thread):
    """Inserts numbered rows and updates earlier ones, one transaction each, until stopped."""

    def __init__(self, server: Any, db: str, first: int):
        super().__init__(daemon=True)
        self.server, self.db, self.next_id = server, db, first
        self.committed: list[int] = []
        self.updated: list[int] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = self.server.connect(self.db, autocommit=True)
        try:
            with conn.cursor() as cur:
                while not self.halt.is_set():
                    cur.execute("INSERT INTO t VALUES (%s, 'new')", (self.next_id,))
                    self.committed.append(self.next_id)
                    if self.next_id % 7 == 0:
                        cur.execute("UPDATE t SET v = %s WHERE id = %s",
                                    (f"u{self.next_id}", self.next_id % 1000 + 1))  # fmt: skip
                        self.updated.append(self.next_id % 1000 + 1)
                    self.next_id += 1
                    time.sleep(0.001)
        except BaseException as e:
            self.error = e
        finally:
            conn.close()

    def finish(self) -> None:
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error


def test_rows_committed_during_the_snapshot_arrive_exactly_once(
    tmp_path, mariadb_server, mariadb_db, kafka_broker
):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key, v varchar(20))")
    conn = mariadb_server.connect(db, autocommit=False)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO t VALUES (%s, 'old')", [(i,) for i in range(1, 20001)])
    conn.commit()
    conn.close()
    topic = f"{db}.t"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="initial",
                                tables=[f"{db}.t"], sink={"format": "json"})  # fmt: skip
    writer = Writer(mariadb_server, db, 100_001)
    writer.start()
    try:
        time.sleep(0.3)  # the writer is busy before, during and after the snapshot
        with run_pipeline(config):
            time.sleep(2.0)
            writer.finish()
            state = {int(i): v for i, v in mariadb_server.execute("SELECT id, v FROM t", db=db)}
            # Updates committed before the snapshot position are in the snapshot's rows,
            # so the number of events is not known in advance: wait for the final state.
            last: list[Any] = []

            def caught_up() -> bool:
                last[:] = read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=30)
                final = {}
                for m in last:
                    final[key_of(m)["id"]] = value_of(m)["after"]["v"]
                return final == state

            wait_until(caught_up, timeout=90, interval=1.0, what="the table's final state")
            time.sleep(2.0)
            messages = read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=30)
    finally:
        writer.halt.set()
    values = [value_of(m) for m in messages]
    created = Counter(v["key"]["id"] for v in values if v["op"] in ("read", "insert"))
    assert set(created) == set(range(1, 20001)) | set(writer.committed)
    assert set(created.values()) == {1}, "a row arrived twice"
    streamed_new = {v["key"]["id"] for v in values if v["op"] == "insert"}
    snapshotted_new = {v["key"]["id"] for v in values if v["op"] == "read"} - set(range(1, 20001))
    assert streamed_new, "no row was committed after the snapshot position"
    print(f"{len(snapshotted_new)} writer rows in the snapshot, {len(streamed_new)} streamed")
    updates = [v for v in values if v["op"] == "update"]
    assert len(updates) <= len(writer.updated)  # those before the snapshot are in its rows
    assert len(values) == len(created) + len(updates)


def test_always_snapshots_on_every_start(tmp_path, mariadb_server, mariadb_db, kafka_broker):
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key);\n"
            "INSERT INTO t VALUES (1), (2)")  # fmt: skip
    topic = f"{db}.t"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="always",
                                tables=[f"{db}.t"])  # fmt: skip
    with run_pipeline(config):
        wait_for_events(kafka_broker.bootstrap, topic, 2)
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (3)")
    with run_pipeline(config):
        run_sql(mariadb_server, db, "INSERT INTO t VALUES (4)")
        messages = wait_for_events(kafka_broker.bootstrap, topic, 6, settle=2.0)
    seen = [(value_of(m)["op"], key_of(m)["id"]) for m in messages]
    # Row 3, committed while stopped, is in the second snapshot, not streamed.
    assert seen == [("r", 1), ("r", 2), ("r", 1), ("r", 2), ("r", 3), ("c", 4)]
