"""PostgreSQL drain scenarios: pg_small, pg_big and wide.

Each one writes its rows once, after creating two logical slots per repetition
at the same position (nothing is written between their creation), so both
readers decode exactly the same WAL range:

- the baseline: ``pg_recvlogical --start`` with the options the daemon sends
  (pgoutput proto_version, publication_names, messages, streaming) up to
  ``--endpos`` = the WAL insert position after the last commit, output to
  /dev/null. Timed as a whole process, start-up included.
- the daemon: ``cdc run`` on the other slot (``create: false``, ``snapshot:
  never``) into a fresh Tansu broker. Timed from /readyz answering 200 (the
  pipeline streams) to the moment the acknowledged position
  (``cdc_acked_position``) passed the last transaction's start, i.e. the last
  transaction's events are all acknowledged by the broker; also from the process
  start ("wall").

The baseline runs first, the daemon after it, never both at once. A
CHECKPOINT after writing keeps background writes out of both measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.common import (
    MB,
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
from bench.daemon import BenchError, Daemon
from bench.promtext import Samples
from bench.report import Figure, Target
from tests.integration.services import PostgresServer

# Design doc targets (../shared/design.md, "Performance targets").
SMALL_TXN_RATIO = 0.9
BIG_TXN_RATIO = 0.7
RSS_LIMIT_MB = 100.0

SMALL_COLUMNS = "account, name, amount, created, active"
SMALL_DDL = """
CREATE TABLE {table} (
    id bigserial PRIMARY KEY,
    account integer NOT NULL,
    name text NOT NULL,
    amount numeric(12,2) NOT NULL,
    created timestamptz NOT NULL,
    active boolean NOT NULL
)"""
# One row per value r of generate_series.
SMALL_VALUES = "r, 'customer ' || r, (r % 100000) / 100.0, now(), r % 2 = 0"

WIDE_DDL = """
CREATE TABLE {table} (
    id bigserial PRIMARY KEY,
    c_int integer, c_bigint bigint, c_smallint smallint,
    c_numeric numeric(18,4), c_numeric_big numeric(38,12), c_real real,
    c_double double precision, c_bool boolean,
    c_text text, c_varchar varchar(200), c_char char(12),
    c_date date, c_time time, c_timestamp timestamp, c_timestamptz timestamptz,
    c_interval interval, c_uuid uuid, c_jsonb jsonb, c_json json, c_bytea bytea,
    c_inet inet, c_int_array integer[], c_text_array text[], c_amount numeric(12,2),
    c_updated timestamptz, c_bigint2 bigint, c_code varchar(64), c_flag boolean,
    c_rank smallint
)"""
WIDE_COLUMNS = (
    "c_int, c_bigint, c_smallint, c_numeric, c_numeric_big, c_real, c_double, c_bool, "
    "c_text, c_varchar, c_char, c_date, c_time, c_timestamp, c_timestamptz, c_interval, "
    "c_uuid, c_jsonb, c_json, c_bytea, c_inet, c_int_array, c_text_array, c_amount, "
    "c_updated, c_bigint2, c_code, c_flag, c_rank"
)
# c_text: 32..128 md5 strings = 1,024..4,096 bytes of incompressible-ish hex;
# c_jsonb: a nested order document of about 450 bytes.
WIDE_VALUES = """
    r, r::bigint * 1000003, (r % 30000)::smallint,
    (r % 1000000) / 7.0, r * 3.14159265358979, r / 3.0, r / 7.0, r % 3 = 0,
    (SELECT string_agg(md5((r * 131 + g)::text), '') FROM generate_series(1, 32 + r % 97) g),
    'varchar value ' || md5(r::text), lpad((r % 1000000)::text, 12, '0'),
    date '2020-01-01' + r % 3000, time '00:00' + make_interval(secs => r % 86400),
    timestamp '2020-01-01' + make_interval(secs => r), now(),
    make_interval(days => r % 400, secs => r % 86400), md5(r::text)::uuid,
    jsonb_build_object(
        'order', r, 'status', 'pending',
        'customer', jsonb_build_object('id', r % 1000, 'name', 'customer ' || r,
                                       'tags', jsonb_build_array('b2b', 'eu', 'net30')),
        'lines', (SELECT jsonb_agg(jsonb_build_object('sku', 'SKU-' || (r + g),
                                                      'qty', g, 'price', g * 1.25))
                  FROM generate_series(1, 5) g),
        'note', md5(r::text)),
    json_build_object('k', r, 'v', md5(r::text)), decode(md5(r::text), 'hex'),
    '10.0.0.0'::inet + (r % 16777216), ARRAY[r, r + 1, r + 2],
    ARRAY['tag-' || r, 'tag-' || (r + 1)], (r % 100000) / 100.0,
    now(), r::bigint * 7, 'CODE-' || r, r % 2 = 1, (r % 100)::smallint
"""


@dataclass
class Workload:
    """`txns` transactions of `per_txn` rows each, inserted with INSERT ... SELECT."""

    table: str
    ddl: str
    columns: str
    values: str  # a SELECT list over r
    txns: int
    per_txn: int

    @property
    def rows(self) -> int:
        return self.txns * self.per_txn

    def insert(self, first: str) -> str:
        return (
            f"INSERT INTO {self.table} ({self.columns}) SELECT {self.values} "
            f"FROM generate_series({first}, {first} + {self.per_txn - 1}) AS s(r)"
        )


@dataclass
class Written:
    rows: int
    txns: int
    start_lsn: int
    before_last: int  # WAL insert position right before the last transaction
    end_lsn: int  # WAL insert position after the last commit
    seconds: float


def lsn_number(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def _insert_lsn(conn: Any) -> int:
    return lsn_number(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def write_workload(pg: PostgresServer, db: str, work: Workload) -> Written:
    """All transactions but the last in one DO block (COMMIT per loop), then the last."""
    started = time.monotonic()
    with pg.connect(db) as conn:
        start = _insert_lsn(conn)
        if work.txns > 1:
            conn.execute(
                f"DO $$ BEGIN FOR i IN 0..{work.txns - 2} LOOP "
                f"{work.insert(f'i * {work.per_txn}')}; COMMIT; END LOOP; END $$"
            )
        before_last = _insert_lsn(conn)
        conn.execute(work.insert(str((work.txns - 1) * work.per_txn)))
        end = _insert_lsn(conn)
        # Both readers see only flushed WAL: wait for it, then keep the checkpointer quiet.
        while lsn_number(conn.execute("SELECT pg_current_wal_flush_lsn()::text")
                         .fetchone()[0]) < end:  # fmt: skip
            time.sleep(0.01)
        conn.execute("CHECKPOINT")
    return Written(work.rows, work.txns, start, before_last, end, time.monotonic() - started)


def proto_options(pg: PostgresServer, publication: str) -> dict[str, str]:
    """The START_REPLICATION options the daemon sends (see connectors/postgres/source.py)."""
    from connectors.postgres.source import _proto_version

    version = _proto_version(int(pg.execute("SHOW server_version_num")[0][0]))
    options = {"proto_version": str(version), "publication_names": publication,
               "messages": "true"}  # fmt: skip
    if version >= 2:
        options["streaming"] = "on"  # the daemon's default (source.streaming: true)
    return options


def pg_recvlogical(pg: PostgresServer, db: str, slot: str, options: dict[str, str],
                   endpos: int) -> Timed:  # fmt: skip
    """Drain `slot` up to `endpos` into /dev/null; the process's wall and CPU seconds."""
    cmd = [pg.bin("pg_recvlogical"), "-d", pg.dsn(db), "--slot", slot, "--start",
           "--no-loop", f"--endpos={endpos >> 32:X}/{endpos & 0xFFFFFFFF:X}",
           "-f", "/dev/null"]  # fmt: skip
    for key, value in options.items():
        cmd += ["-o", f"{key}={value}"]
    run = timed_run(cmd, capture_output=True, timeout=3600)
    if run.proc.returncode != 0:
        raise BenchError(
            f"pg_recvlogical failed ({run.proc.returncode}): {run.proc.stderr.strip()}"
        )
    return run


def run_daemon_pg(ctx: Context, db: str, slot: str, publication: str, table: str,
                  written: Written, name: str) -> dict[str, Any]:  # fmt: skip
    """Drain `slot` with the daemon; done when the last transaction is acknowledged."""

    def done(daemon: Daemon, s: Samples) -> bool:
        acked = daemon.metric(s, "cdc_acked_position")  # LSN of the last acked commit
        return acked is not None and acked > written.before_last

    source = {"type": "postgres", "dsn": ctx.services.pg.dsn(db), "slot": slot,
              "publication": publication, "create": False, "tables": [f"public.{table}"],
              "snapshot": "never", "spill_dir": str(ctx.services.workdir(name))}  # fmt: skip
    return measure_drain(ctx.services, name, source, f"{db}.public.{table}", written.rows,
                         done)  # fmt: skip


@dataclass
class DrainResult:
    written: Written
    baseline_s: list[float]
    baseline_cpu_s: list[float]
    daemon: list[dict[str, Any]]
    slot_stats: dict[str, Any]

    @property
    def baseline_rate(self) -> float:
        return self.written.rows / median(self.baseline_s)

    @property
    def daemon_rate(self) -> float:
        return self.written.rows / median([d["up_s"] for d in self.daemon])

    @property
    def daemon_wall_rate(self) -> float:
        return self.written.rows / median([d["wall_s"] for d in self.daemon])

    @property
    def peak_rss_mb(self) -> float | None:
        peaks = [d["peak_rss_mb"] for d in self.daemon if d["peak_rss_mb"] is not None]
        return max(peaks) if peaks else None


def drain_scenario(
    ctx: Context, scenario: str, work: Workload, after_write: Callable[[str], None] | None = None
) -> DrainResult:
    """Write `work` once and drain it `ctx.repeat` times with each reader, alternating.

    `after_write(db)` runs once the rows are written, before any drain.
    """
    pg = ctx.services.pg
    db = f"bench_{scenario}"
    pg.drop_database(db)
    pg.create_database(db)
    pg.execute(work.ddl.format(table=work.table), dbname=db)
    publication = f"bench_{scenario}"
    pg.execute(f"CREATE PUBLICATION {publication} FOR TABLE {work.table}", dbname=db)
    pairs = [(f"base_{i}", f"daemon_{i}") for i in range(ctx.repeat)]
    for base, mine in pairs:
        for slot in (base, mine):
            pg.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", [slot],
                       dbname=db)  # fmt: skip
    say(f"{scenario}: writing {work.rows:,} rows in {work.txns:,} transaction(s) of "
        f"{work.per_txn:,} rows ...")  # fmt: skip
    written = write_workload(pg, db, work)
    say(f"{scenario}: written in {written.seconds:.1f} s, "
        f"{(written.end_lsn - written.start_lsn) / MB:,.0f} MB of WAL")  # fmt: skip
    if after_write is not None:
        after_write(db)
    options = proto_options(pg, publication)
    baseline_s: list[float] = []
    baseline_cpu: list[float] = []
    daemon_runs: list[dict[str, Any]] = []
    slot_stats: dict[str, Any] = {}
    for i, (base, mine) in enumerate(pairs):
        run = f" (run {i + 1}/{ctx.repeat})" if ctx.repeat > 1 else ""
        say(f"{scenario}: pg_recvlogical draining slot {base}{run} ...")
        timed = pg_recvlogical(pg, db, base, options, written.end_lsn)
        seconds = timed.seconds
        baseline_s.append(seconds)
        baseline_cpu.append(timed.cpu)
        say(f"{scenario}: pg_recvlogical {fmt_rate(written.rows, seconds)}")
        if i == 0:
            slot_stats = _slot_stats(pg, db, base)
        say(f"{scenario}: daemon draining slot {mine} into a fresh broker{run} ...")
        result = run_daemon_pg(ctx, db, mine, publication, work.table, written,
                               f"{scenario}_{i}")  # fmt: skip
        daemon_runs.append(result)
        say(f"{scenario}: daemon {fmt_rate(written.rows, result['up_s'])} from pipeline up; "
            f"{result['wall_s']:.2f} s with process start; peak RSS "
            f"{result['peak_rss_mb'] or 0:.0f} MB")  # fmt: skip
    pg.drop_database(db)  # and its slots: the WAL they hold goes
    result_ = DrainResult(written, baseline_s, baseline_cpu, daemon_runs, slot_stats)
    ctx.details[scenario] = {
        "rows": written.rows,
        "transactions": written.txns,
        "rows_per_transaction": work.per_txn,
        "wal_bytes": written.end_lsn - written.start_lsn,
        "write_seconds": written.seconds,
        "pgoutput_options": options,
        "baseline_seconds": baseline_s,
        "baseline_cpu_seconds": baseline_cpu,
        "daemon_runs": daemon_runs,
        "baseline_slot_stats": slot_stats,
    }
    return result_


def _slot_stats(pg: PostgresServer, db: str, slot: str) -> dict[str, Any]:
    """pg_stat_replication_slots of the baseline's slot: was the transaction streamed?"""
    rows = pg.execute(
        "SELECT spill_txns, spill_bytes, stream_txns, stream_count, stream_bytes, total_txns,"
        " total_bytes FROM pg_stat_replication_slots WHERE slot_name = %s", [slot], dbname=db,
    )  # fmt: skip
    names = ("spill_txns", "spill_bytes", "stream_txns", "stream_count", "stream_bytes",
             "total_txns", "total_bytes")  # fmt: skip
    return dict(zip(names, rows[0], strict=True)) if rows else {}


def _throughput_figures(ctx: Context, scenario: str, result: DrainResult,
                        ratio_target: float | None, rss_target: bool) -> None:  # fmt: skip
    ctx.figure(Figure(
        scenario, "rows/s, pipeline up → all acked", result.daemon_rate, "rows/s",
        baseline=result.baseline_rate, baseline_name="pg_recvlogical",
        target=Target("ratio_min", ratio_target) if ratio_target else None,
    ))  # fmt: skip
    ctx.figure(Figure(
        scenario, "rows/s, incl. daemon start", result.daemon_wall_rate, "rows/s",
        baseline=result.baseline_rate, baseline_name="pg_recvlogical",
    ))  # fmt: skip
    ctx.figure(Figure(
        scenario, "daemon peak RSS (VmHWM, highest run)", result.peak_rss_mb, "MB",
        target=Target("max", RSS_LIMIT_MB) if rss_target else None,
    ))  # fmt: skip
    cpu = cpu_note(result.written.rows, result.daemon, "pg_recvlogical", result.baseline_cpu_s,
                   "the walsender's decoding")  # fmt: skip
    ctx.notes.add(scenario, cpu)


def pg_small(ctx: Context) -> None:
    rows = ctx.amount("pg_small")
    work = Workload("bench_small", SMALL_DDL, SMALL_COLUMNS, SMALL_VALUES,
                    txns=max(1, rows // ROWS_PER_TXN), per_txn=ROWS_PER_TXN)  # fmt: skip
    result = drain_scenario(ctx, "pg_small", work)
    ctx.notes.add("pg_small", (
        f"{work.txns:,} transactions × {work.per_txn} INSERTed rows, 6 columns "
        f"(bigserial, int, text, numeric, timestamptz, bool); "
        f"{ctx.details['pg_small']['wal_bytes'] / MB:,.0f} MB of WAL."
    ))  # fmt: skip
    _throughput_figures(ctx, "pg_small", result, SMALL_TXN_RATIO, rss_target=True)


def pg_big(ctx: Context) -> None:
    rows = ctx.amount("pg_big")
    work = Workload("bench_big", SMALL_DDL, SMALL_COLUMNS, SMALL_VALUES, txns=1, per_txn=rows)
    result = drain_scenario(ctx, "pg_big", work)
    stats = result.slot_stats
    streamed = (
        f"streamed by the server: {stats.get('stream_count', 0)} stream blocks, "
        f"{(stats.get('stream_bytes') or 0) / MB:,.0f} MB"
        if stats.get("stream_txns") else "NOT streamed by the server (raise the row count)"
    )  # fmt: skip
    ctx.notes.add("pg_big", (
        f"one INSERT ... SELECT of {rows:,} rows of the pg_small table in one transaction, "
        f"{streamed} (logical_decoding_work_mem = 64MB; pgoutput streaming=on; the daemon "
        "keeps streamed changes up to its spill_threshold, 16MB, in memory, then on disk)."
    ))  # fmt: skip
    _throughput_figures(ctx, "pg_big", result, BIG_TXN_RATIO, rss_target=True)


def wide(ctx: Context) -> None:
    rows = ctx.amount("wide")
    work = Workload("bench_wide", WIDE_DDL, WIDE_COLUMNS, WIDE_VALUES,
                    txns=max(1, rows // ROWS_PER_TXN), per_txn=ROWS_PER_TXN)  # fmt: skip
    sizes: list[int] = []

    def measure(db: str) -> None:  # bytes of the rows in text form, as pgoutput sends them
        sizes.append(int(ctx.services.pg.execute(
            f"SELECT sum(octet_length(t::text)) FROM {work.table} t", dbname=db)[0][0]))

    result = drain_scenario(ctx, "wide", work, after_write=measure)
    size = sizes[0]
    ctx.details["wide"]["row_text_bytes"] = size
    ctx.notes.add("wide", (
        f"{work.txns:,} transactions × {work.per_txn} rows of 30 columns (int, bigint, "
        "smallint, numeric ×3, real, double, bool ×2, text of 1–4 KB, varchar ×2, char, date, "
        "time, timestamp, timestamptz ×2, interval, uuid, jsonb (~450 B), json, bytea, inet, "
        f"int[], text[]); {size / work.rows / 1000:.1f} kB per row as text "
        "(octet_length(row::text), what pgoutput sends), "
        f"{ctx.details['wide']['wal_bytes'] / MB:,.0f} MB of WAL. No design target: the "
        "ratio shows the per-column cost next to pg_small's."
    ))  # fmt: skip
    _throughput_figures(ctx, "wide", result, None, rss_target=True)
    ctx.figure(Figure(
        "wide", "MB/s of row data, pipeline up → all acked",
        size / MB * result.daemon_rate / work.rows, "MB/s",
        baseline=size / MB * result.baseline_rate / work.rows, baseline_name="pg_recvlogical",
    ))  # fmt: skip

