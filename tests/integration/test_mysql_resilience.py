"""Crash safety of the MySQL/MariaDB source: `kill -9` of the daemon (a real
`python -m cdc run` process) at random moments under a writer loses no committed row.

Set CDC_TEST_SEED to replay the random kill schedule.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.integration.pipeline_helpers import key_of, value_of, wait_for_events
from tests.integration.services import create_topics, read_topic, stop_daemon, wait_until
from tests.integration.test_mysql_source import run_sql, write_mysql_config


class Writer(threading.Thread):
    """Commits numbered rows (1-5 per transaction, a few rolled back) until stopped."""

    def __init__(self, server: Any, db: str, rng: random.Random):
        super().__init__(name="mysql-writer", daemon=True)
        self.server, self.db, self.rng = server, db, rng
        self.committed: list[int] = []
        self.rolled_back: list[int] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        conn = self.server.connect(self.db, autocommit=False)
        next_id = 1
        try:
            with conn.cursor() as cur:
                while not self.halt.is_set():
                    ids = list(range(next_id, next_id + self.rng.randint(1, 5)))
                    next_id = ids[-1] + 1
                    for i in ids:
                        cur.execute("INSERT INTO items VALUES (%s, %s)", (i, "x" * (i % 50)))
                    if self.rng.random() < 0.05:
                        conn.rollback()
                        self.rolled_back += ids
                    else:
                        conn.commit()
                        self.committed += ids
                    time.sleep(self.rng.uniform(0.002, 0.01))
        except BaseException as e:  # reported by finish()
            self.error = e
        finally:
            conn.close()

    def finish(self) -> list[int]:
        self.halt.set()
        self.join(30)
        if self.error is not None:
            raise self.error
        return self.committed


def _wait_streaming(proc: Any, timeout: float = 30.0) -> None:
    log = Path(proc.log_path)

    def streaming() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited:\n{log.read_text(errors='replace')[-3000:]}")
        return log.exists() and "streaming the binlog" in log.read_text(errors="replace")

    wait_until(streaming, timeout=timeout, interval=0.1, what="the daemon to stream")


def test_kill_9_at_random_moments_loses_no_committed_row(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, cdc_daemon
):
    seed = int(os.environ.get("CDC_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\ncrash schedule seed: CDC_TEST_SEED={seed}")
    rng = random.Random(seed)
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE items (id int primary key, pad varchar(60))")
    topic = f"{db}.items"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap,
                                tables=[f"{db}.items"])  # fmt: skip
    proc = cdc_daemon(config)
    _wait_streaming(proc)
    writer = Writer(mariadb_server, db, random.Random(rng.random()))
    writer.start()
    kills = rng.randint(3, 4)
    for n in range(kills):
        time.sleep(rng.uniform(0.3, 2.0))
        so_far = len(writer.committed)
        assert stop_daemon(proc, signal.SIGKILL, timeout=10) == -signal.SIGKILL
        print(f"kill -9 #{n + 1} after {so_far} committed rows")
        proc = cdc_daemon(config)
        _wait_streaming(proc)
    time.sleep(0.5)
    committed = writer.finish()
    assert len(committed) > 300, "the writer wrote too little"

    def caught_up() -> list[Any]:
        messages = read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=10)
        return messages if {key_of(m)["id"] for m in messages} >= set(committed) else []

    try:
        messages = wait_until(caught_up, timeout=60, interval=0.5, what="every committed row")
    except TimeoutError:
        messages = read_topic(kafka_broker.bootstrap, topic, idle=1.0, timeout=10)
        missing = sorted(set(committed) - {key_of(m)["id"] for m in messages})
        raise AssertionError(
            f"{len(missing)} committed rows never arrived: {missing[:20]}"
        ) from None
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    seen = Counter(value_of(m)["after"]["id"] for m in messages)
    assert set(seen) == set(committed), "rows arrived that were rolled back or never written"
    extra = sum(seen.values()) - len(seen)
    print(f"{len(committed)} rows, {kills} kills: {len(messages)} events, {extra} replayed")


def test_mariadb_restart_while_streaming_reconnects_without_loss(
    tmp_path, mariadb_server, mariadb_db, kafka_broker, cdc_daemon
):
    """The daemon survives a MariaDB restart: the source raises ConnectionLost and the
    runtime reconnects with backoff, resuming by GTID in the server's new binlog file."""
    db = mariadb_db.name
    run_sql(mariadb_server, db, "CREATE TABLE t (id int primary key);\n"
            "INSERT INTO t VALUES (1), (2)")  # fmt: skip
    topic = f"{db}.t"
    create_topics(kafka_broker.bootstrap, [topic], partitions=1)
    config = write_mysql_config(tmp_path, mariadb_db, kafka_broker.bootstrap, snapshot="initial",
                                tables=[f"{db}.t"])  # fmt: skip
    proc = cdc_daemon(config)
    wait_for_events(kafka_broker.bootstrap, topic, 2)
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (3)")
    wait_for_events(kafka_broker.bootstrap, topic, 3)
    mariadb_server.restart()
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (4)")

    def all_there() -> bool:
        assert proc.poll() is None, proc.log_path.read_text()[-3000:]
        ids = {key_of(m)["id"] for m in read_topic(kafka_broker.bootstrap, topic, idle=0.5)}
        return ids >= {1, 2, 3, 4}

    wait_until(all_there, timeout=90, interval=1.0, what="row 4 after the restart")
    run_sql(mariadb_server, db, "INSERT INTO t VALUES (5)")
    wait_until(lambda: {key_of(m)["id"] for m in read_topic(kafka_broker.bootstrap, topic,
                                                             idle=0.5)} >= {5},
               timeout=30, interval=0.5, what="row 5")  # fmt: skip
    assert proc.poll() is None
    assert stop_daemon(proc, signal.SIGTERM, timeout=30) == 0
    assert "lost its source" in proc.log_path.read_text()
