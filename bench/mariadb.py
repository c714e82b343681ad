"""mariadb_small: small transactions on MariaDB, the daemon against two raw readers.

The binlog range is fixed before anything reads it: the position and GTID state
before the writes (SHOW MASTER STATUS, @@gtid_binlog_pos) and the position after.
Then, one after the other:

- ``mariadb-binlog --read-from-remote-server --verbose --base64-output=DECODE-ROWS``
  from the start to the stop position, to /dev/null: the server's own client,
  decoding every row's values to text (the baseline; whole process timed);
- pymysqlreplication's BinLogStreamReader over the same range, touching every
  value of every row (`bench.pyrepl_loop`, in its own process, timed inside);
- the daemon (source type mysql, ``snapshot: never``), started with an offsets
  file that holds the start position, into a fresh broker; timed from /readyz
  to the last acknowledgement, as for PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

from bench.common import (
    ROWS_PER_TXN,
    Context,
    Timed,
    cpu_note,
    fmt_rate,
    measure_drain,
    median,
    say,
    timed_run,
)
from bench.daemon import BenchError
from bench.pg import RSS_LIMIT_MB
from bench.report import Figure, Target
from tests.integration.services import REPO_ROOT, MariaDBServer

MARIADB_RATIO = 0.7  # design doc: ≥ 0.7 × mariadb-binlog

TABLE = "bench_small"
DDL = f"""
CREATE TABLE {TABLE} (
    id bigint AUTO_INCREMENT PRIMARY KEY,
    account int NOT NULL,
    name varchar(64) NOT NULL,
    amount decimal(12,2) NOT NULL,
    created datetime(6) NOT NULL,
    active tinyint(1) NOT NULL
)"""
# A transaction of three INSERTed rows per loop iteration (one Write_rows event each).
FILL = f"""
CREATE PROCEDURE fill(n INT)
BEGIN
  DECLARE i INT DEFAULT 0;
  WHILE i < n DO
    START TRANSACTION;
    INSERT INTO {TABLE} (account, name, amount, created, active) VALUES
      (i * 3, CONCAT('customer ', i * 3), (i * 3 % 100000) / 100, NOW(6), 1),
      (i * 3 + 1, CONCAT('customer ', i * 3 + 1), ((i * 3 + 1) % 100000) / 100, NOW(6), 0),
      (i * 3 + 2, CONCAT('customer ', i * 3 + 2), ((i * 3 + 2) % 100000) / 100, NOW(6), 1);
    COMMIT;
    SET i = i + 1;
  END WHILE;
END"""


def _master_status(m: MariaDBServer) -> tuple[str, int]:
    rows = m.execute("SHOW MASTER STATUS")
    if not rows:
        raise BenchError("SHOW MASTER STATUS returned nothing: is log_bin on?")
    return str(rows[0][0]), int(rows[0][1])


def _binlog_files(m: MariaDBServer, first: str, last: str) -> list[str]:
    names = [str(r[0]) for r in m.execute("SHOW BINARY LOGS")]
    return [n for n in names if first <= n <= last]


def mariadb_binlog(m: MariaDBServer, files: list[str], start: int, stop: int) -> Timed:
    """mariadb-binlog over the range into /dev/null; the process's wall and CPU seconds."""
    from tests.integration.services import _mariadb_program

    cmd = [_mariadb_program("mariadb-binlog", "mysqlbinlog"), "--read-from-remote-server",
           "--host=127.0.0.1", f"--port={m.port}", "--user=root",
           f"--start-position={start}", f"--stop-position={stop}",
           "--verbose", "--base64-output=DECODE-ROWS", *files]  # fmt: skip
    run = timed_run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=3600)
    if run.proc.returncode != 0:
        raise BenchError(
            f"mariadb-binlog failed ({run.proc.returncode}): {run.proc.stderr.strip()}"
        )
    return run


def pyrepl_loop(m: MariaDBServer, start: tuple[str, int], end: tuple[str, int]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.pyrepl_loop", f"--port={m.port}",
           f"--file={start[0]}", f"--pos={start[1]}",
           f"--end-file={end[0]}", f"--end-pos={end[1]}"]  # fmt: skip
    run = timed_run(cmd, capture_output=True, cwd=REPO_ROOT, timeout=3600)
    if run.proc.returncode != 0:
        raise BenchError(f"bench.pyrepl_loop failed: {run.proc.stderr.strip()[-2000:]}")
    return dict(json.loads(run.proc.stdout.strip().splitlines()[-1]), process_cpu_s=run.cpu)


def run_daemon_mysql(ctx: Context, db: str, start: tuple[str, int, str], rows: int,
                     txns: int, name: str) -> dict[str, Any]:  # fmt: skip
    """The daemon from `start` (an offsets file) until all `txns` are acknowledged."""
    source = {"type": "mysql", "dsn": ctx.services.mariadb.dsn(db), "server_id": 4242,
              "tables": [f"{db}.{TABLE}"], "snapshot": "never"}  # fmt: skip
    offsets = {"source": "mysql", "file": start[0], "pos": start[1], "gtid_set": start[2],
               "snapshot_complete": True}  # fmt: skip
    return measure_drain(ctx.services, name, source, f"{db}.{TABLE}", rows,
                         lambda daemon, s: daemon.all_acked(s, txns, rows),
                         topic_template="{database}.{table}", offsets=offsets)  # fmt: skip


def mariadb_small(ctx: Context) -> None:
    rows = ctx.amount("mariadb_small")
    txns = max(1, rows // ROWS_PER_TXN)
    rows = txns * ROWS_PER_TXN
    m = ctx.services.mariadb
    db = "bench_mariadb"
    m.drop_database(db)
    m.create_database(db)
    m.execute(DDL, db=db)
    m.execute(FILL, db=db)
    start_file, start_pos = _master_status(m)
    gtid = str(m.execute("SELECT @@GLOBAL.gtid_binlog_pos")[0][0] or "")
    say(f"mariadb_small: writing {rows:,} rows in {txns:,} transactions of {ROWS_PER_TXN} ...")
    started = time.monotonic()
    m.execute("CALL fill(%s)", [txns], db=db)
    write_s = time.monotonic() - started
    end_file, end_pos = _master_status(m)
    files = _binlog_files(m, start_file, end_file)
    say(f"mariadb_small: written in {write_s:.1f} s; binlog {start_file}:{start_pos} → "
        f"{end_file}:{end_pos}")  # fmt: skip

    baseline_s: list[float] = []
    baseline_cpu: list[float] = []
    loops: list[dict[str, Any]] = []
    daemon_runs: list[dict[str, Any]] = []
    for i in range(ctx.repeat):
        run = f" (run {i + 1}/{ctx.repeat})" if ctx.repeat > 1 else ""
        say(f"mariadb_small: mariadb-binlog --read-from-remote-server{run} ...")
        timed = mariadb_binlog(m, files, start_pos, end_pos)
        seconds = timed.seconds
        baseline_s.append(seconds)
        baseline_cpu.append(timed.cpu)
        say(f"mariadb_small: mariadb-binlog {fmt_rate(rows, seconds)}")
        if i == 0:  # slow, and only a point of comparison: once is enough
            say("mariadb_small: pymysqlreplication row loop ...")
            loop = pyrepl_loop(m, (start_file, start_pos), (end_file, end_pos))
            loops.append(loop)
            if loop["rows"] != rows:
                raise BenchError(f"pymysqlreplication read {loop['rows']} rows, expected {rows}")
            say(f"mariadb_small: pymysqlreplication {fmt_rate(rows, loop['seconds'])}")
        say(f"mariadb_small: daemon from {start_file}:{start_pos} into a fresh broker{run} ...")
        result = run_daemon_mysql(ctx, db, (start_file, start_pos, gtid), rows, txns,
                                  f"mariadb_small_{i}")  # fmt: skip
        daemon_runs.append(result)
        say(f"mariadb_small: daemon {fmt_rate(rows, result['up_s'])} from pipeline up; "
            f"{result['wall_s']:.2f} s with process start; peak RSS "
            f"{result['peak_rss_mb'] or 0:.0f} MB")  # fmt: skip
    m.drop_database(db)

    baseline = rows / median(baseline_s)
    loop_rate = rows / median([x["seconds"] for x in loops])
    daemon_rate = rows / median([d["up_s"] for d in daemon_runs])
    wall_rate = rows / median([d["wall_s"] for d in daemon_runs])
    peaks = [d["peak_rss_mb"] for d in daemon_runs if d["peak_rss_mb"] is not None]
    ctx.figure(Figure("mariadb_small", "rows/s, pipeline up → all acked", daemon_rate,
                      "rows/s", baseline=baseline, baseline_name="mariadb-binlog",
                      target=Target("ratio_min", MARIADB_RATIO)))  # fmt: skip
    ctx.figure(Figure("mariadb_small", "rows/s, incl. daemon start", wall_rate, "rows/s",
                      baseline=baseline, baseline_name="mariadb-binlog"))  # fmt: skip
    ctx.figure(Figure("mariadb_small", "rows/s, pipeline up → all acked", daemon_rate,
                      "rows/s", baseline=loop_rate,
                      baseline_name="pymysqlreplication row loop"))  # fmt: skip
    ctx.figure(Figure("mariadb_small", "pymysqlreplication row loop, rows/s", loop_rate,
                      "rows/s", baseline=baseline, baseline_name="mariadb-binlog"))  # fmt: skip
    ctx.figure(Figure("mariadb_small", "daemon peak RSS (VmHWM, highest run)",
                      max(peaks) if peaks else None, "MB",
                      target=Target("max", RSS_LIMIT_MB)))  # fmt: skip
    binlog_mb = (end_pos - start_pos) / 1e6 if start_file == end_file else None
    ctx.notes.add("mariadb_small", (
        f"{txns:,} transactions × {ROWS_PER_TXN} INSERTed rows (one Write_rows event each), "
        "6 columns (bigint, int, varchar, decimal, datetime(6), tinyint), written by a stored "
        "procedure; "
        + (f"{binlog_mb:,.0f} MB of binlog (with MariaDB's default Annotate_rows events). "
           if binlog_mb is not None else "")
        + "mariadb-binlog runs with --verbose --base64-output=DECODE-ROWS, so it decodes "
        "every row's values to text as the daemon does. "
        "The daemon's end: cdc_transactions_acked_total reaches the transaction count. "
        + cpu_note(rows, daemon_runs, "mariadb-binlog", baseline_cpu,
                   "the server's binlog dump thread")
    ))  # fmt: skip
    ctx.details["mariadb_small"] = {
        "rows": rows, "transactions": txns, "write_seconds": write_s,
        "binlog_start": [start_file, start_pos, gtid], "binlog_end": [end_file, end_pos],
        "baseline_seconds": baseline_s, "baseline_cpu_seconds": baseline_cpu,
        "pymysqlreplication_runs": loops,
        "daemon_runs": daemon_runs,
    }  # fmt: skip
