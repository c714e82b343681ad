"""latency: commit → broker acknowledgement under a steady write rate on PostgreSQL.

`pgbench` writes at a fixed rate (``--rate``, default 5,000 transactions/s, one
INSERTed row per transaction, 4 client connections, ``synchronous_commit = on``
for its sessions so a commit is in the WAL the walsender reads as soon as it
returns) while the daemon streams the table into a fresh broker (pre-created
slot, the topic created with one partition). Two such runs, one after the other
on the same slot:

1. for the scenario's duration (60 s), nobody consuming: the daemon's histogram
   ``cdc_commit_to_ack_seconds`` is scraped when the warm-up ends and after the
   last acknowledgement; percentiles of the difference are interpolated inside
   its buckets (so they are only as fine as the buckets), its max is the upper
   bound of the highest bucket used. The daemon's RSS is sampled every 0.5 s.
2. for CONSUMER_SECONDS (20 s), with a confluent-kafka consumer (a thread here,
   reading the topic by assign() from offset 0, one poll() per message) noting
   when each message arrives; the Debezium envelope's ``source.ts_us`` is the
   commit time, so arrival − commit is exact per message (same machine, same
   clock).

They are separate because serving a consumer costs Tansu CPU that grows with
the partition's size (measured: 0.2 of a core at the start, 0.6 after 60 s at
5k messages/s, against 0.06 with no consumer): with a consumer attached for the
whole minute the two cores saturate and every latency, the daemon's included,
measures the broker. The first 10% of each run (2–10 s) is warm-up, left out.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Context, say, topic_message_count
from bench.daemon import BenchError, Daemon, process_cpu_seconds
from bench.pg import RSS_LIMIT_MB, SMALL_COLUMNS, SMALL_DDL
from bench.promtext import (
    Samples,
    bucket_delta,
    histogram_count,
    histogram_max_bound,
    histogram_quantile,
    summarize,
)
from bench.report import Figure, Target

P50_TARGET_MS = 10.0
P99_TARGET_MS = 50.0
HISTOGRAM = "cdc_commit_to_ack_seconds"
CLIENTS = 4
TABLE = "bench_latency"
CONSUMER_SECONDS = 20  # the run with a consumer attached (see latency())


def commit_us(value: bytes) -> int:
    """source.ts_us of a Debezium envelope (the commit time, µs), cheaply.

    The first "ts_us" after "source" is the source block's (the envelope's own
    ts_us, the processing time, comes after the block); json.loads is the fallback.
    """
    start = value.find(b'"ts_us":', value.find(b'"source":'))
    if start >= 0:
        start += 8
        end = start
        while value[end : end + 1].isdigit():
            end += 1
        if end > start:
            return int(value[start:end])
    return int(json.loads(value)["source"]["ts_us"])


class ArrivalRecorder(threading.Thread):
    """Consumes a topic from offset 0; keeps (commit µs, arrival s) pairs."""

    def __init__(self, bootstrap: str, topic: str):
        super().__init__(name="latency-consumer", daemon=True)
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 5,
            "fetch.min.bytes": 1,
        })  # fmt: skip
        self.arrivals: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        from confluent_kafka import TopicPartition

        try:
            self.consumer.assign([TopicPartition(self.topic, 0, 0)])
            # poll(), not consume(n, timeout): consume waits for n messages or the
            # timeout, which would add up to the timeout to every arrival time.
            poll = self.consumer.poll
            append = self.arrivals.append
            while not self.stop.is_set():
                msg = poll(0.05)
                if msg is None or msg.error() is not None:
                    continue
                now = time.time()
                value = msg.value()
                if value:
                    append((commit_us(value), now))
        except BaseException as e:  # handed to the main thread
            self.error = e
        finally:
            self.consumer.close()


def _pgbench(ctx: Context, db: str, seconds: int, script: str) -> dict[str, Any]:
    pg = ctx.services.pg
    env = dict(os.environ, PGOPTIONS="-c synchronous_commit=on")
    cmd = [pg.bin("pgbench"), "-n", "-c", str(CLIENTS), "-j", "1", "-R", str(ctx.rate),
           "-T", str(seconds), "-f", script, "-h", "127.0.0.1", "-p", str(pg.port),
           "-U", "postgres", db]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False,
                          timeout=seconds + 120)  # fmt: skip
    if proc.returncode != 0:
        raise BenchError(f"pgbench failed ({proc.returncode}): {proc.stderr.strip()}")
    out = proc.stdout
    processed = re.search(r"number of transactions actually processed: (\d+)", out)
    tps = re.search(r"tps = ([\d.]+)", out)
    lag = re.search(r"rate limit schedule lag: avg ([\d.]+) \(max ([\d.]+)\)", out)
    return {
        "transactions": int(processed.group(1)) if processed else None,
        "tps": float(tps.group(1)) if tps else None,
        "schedule_lag_avg_ms": float(lag.group(1)) if lag else None,
        "schedule_lag_max_ms": float(lag.group(2)) if lag else None,
        "output": out[-1500:],
    }


def _per_second(arrivals: list[tuple[int, float]], t0: float) -> list[list[float]]:
    """[second since the writer started, messages, p50 ms, max ms] by commit second."""
    by_second: dict[int, list[float]] = {}
    for ts, received in arrivals:
        by_second.setdefault(int(ts / 1e6 - t0), []).append((received - ts / 1e6) * 1000)
    out = []
    for second in sorted(by_second):
        values = sorted(by_second[second])
        out.append([second, len(values), round(values[len(values) // 2], 2),
                    round(values[-1], 2)])  # fmt: skip
    return out


@dataclass
class Phase:
    """What one steady-load run measured (see `_steady_run`)."""

    seconds: int
    warmup: float
    pgbench: dict[str, Any]
    buckets: list[tuple[float, float]]  # the histogram over the window
    arrivals: list[tuple[int, float]]  # (commit µs, arrival s), [] without a consumer
    t_write: float
    t_window: float
    rss_mb: list[float]
    daemon_share: float  # of one core, over the window
    broker_share: float
    published: int


def _steady_run(ctx: Context, db: str, seconds: int, script: Path, name: str,
                consumer: bool) -> Phase:  # fmt: skip
    """The daemon on the slot, pgbench at ctx.rate for `seconds`, optionally a consumer."""
    pg = ctx.services.pg
    warmup = min(10.0, max(2.0, seconds * 0.1))
    topic = f"{db}.public.{TABLE}"
    workdir = ctx.services.workdir(name)
    with ctx.services.broker(topics=(topic,)) as broker:
        daemon = Daemon(
            workdir, name, bootstrap=broker.bootstrap,
            source={"type": "postgres", "dsn": pg.dsn(db), "slot": "bench_latency",
                    "publication": "bench_latency", "create": False,
                    "tables": [f"public.{TABLE}"], "snapshot": "never"},
        )  # fmt: skip
        recorder = ArrivalRecorder(broker.bootstrap, topic) if consumer else None

        def broker_cpu() -> float:
            return (process_cpu_seconds(broker.pid) if broker.pid else None) or 0.0

        daemon.start()
        try:
            daemon.wait_ready()
            if recorder is not None:
                recorder.start()
            say(f"latency: pgbench writing {ctx.rate:,} txn/s (1 row each, {CLIENTS} "
                f"connections) for {seconds} s, {'with' if consumer else 'no'} consumer; "
                f"warm-up {warmup:.0f} s ...")  # fmt: skip
            result: dict[str, Any] = {}
            writer = threading.Thread(
                target=lambda: result.update(_pgbench(ctx, db, seconds, str(script))),
                name="pgbench", daemon=True,
            )  # fmt: skip
            t_write = time.time()
            writer.start()
            before: Samples | None = None
            t_window = cpu_window = broker_window = 0.0
            rss: list[float] = []
            next_line = t_write + 10
            while writer.is_alive():
                writer.join(0.5)
                now = time.time()
                if before is None and now - t_write >= warmup:
                    before = daemon.scrape()
                    t_window = now
                    cpu_window = daemon.cpu_seconds() or 0.0
                    broker_window = broker_cpu()
                if before is not None:
                    kib = daemon.sample_rss()
                    if kib is not None:
                        rss.append(kib / 1024)
                if now >= next_line:
                    next_line = now + 10
                    s = daemon.scrape()
                    received = (f", consumer received {len(recorder.arrivals):,}"
                                if recorder is not None else "")  # fmt: skip
                    say(f"latency: {now - t_write:.0f} s, daemon read "
                        f"{daemon.metric(s, 'cdc_changes_total') or 0:,.0f} changes"
                        f"{received}")  # fmt: skip
            window_s = time.time() - t_window
            daemon_share = ((daemon.cpu_seconds() or 0.0) - cpu_window) / window_s
            broker_share = (broker_cpu() - broker_window) / window_s
            if not result:
                raise BenchError("pgbench did not report (see above)")
            if before is None:
                raise BenchError("the run was shorter than its warm-up")
            total = int(result["transactions"] or 0)
            say(f"latency: pgbench done: {total:,} transactions, {result['tps']:,.0f} txn/s; "
                "waiting for the last acknowledgement ...")  # fmt: skip
            # A new process: its counters hold this run's transactions only (the earlier
            # run on this slot confirmed all of its own before it stopped).
            after = daemon.wait_for(lambda s: daemon.all_acked(s, total, total), timeout=120)
            deadline = time.monotonic() + 60
            while recorder is not None and len(recorder.arrivals) < total:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        finally:
            if recorder is not None:
                recorder.stop.set()
            daemon.stop()
        if recorder is not None:
            recorder.join(10)
            if recorder.error is not None:
                raise BenchError(f"the consumer failed: {recorder.error}")
        published = topic_message_count(broker.bootstrap, topic)
    buckets = bucket_delta(after.buckets(HISTOGRAM, pipeline=name),
                           before.buckets(HISTOGRAM, pipeline=name))  # fmt: skip
    return Phase(seconds, warmup, result, buckets,
                 recorder.arrivals if recorder is not None else [], t_write, t_window, rss,
                 daemon_share, broker_share, published)  # fmt: skip


def latency(ctx: Context) -> None:
    seconds = ctx.amount("latency")
    consumer_seconds = max(5, min(seconds, CONSUMER_SECONDS))
    pg = ctx.services.pg
    db = "bench_latency"
    pg.drop_database(db)
    pg.create_database(db)
    pg.execute(SMALL_DDL.format(table=TABLE), dbname=db)
    pg.execute(f"CREATE PUBLICATION bench_latency FOR TABLE {TABLE}", dbname=db)
    pg.execute("SELECT pg_create_logical_replication_slot('bench_latency', 'pgoutput')",
               dbname=db)  # fmt: skip
    script = ctx.services.workdir("latency") / "insert.sql"
    script.write_text(
        "\\set r random(1, 100000000)\n"
        f"INSERT INTO {TABLE} ({SMALL_COLUMNS}) VALUES "
        "(:r, 'customer ' || :r, (:r % 100000) / 100.0, now(), :r % 2 = 0);\n"
    )
    ack = _steady_run(ctx, db, seconds, script, "latency", consumer=False)
    received = _steady_run(ctx, db, consumer_seconds, script, "latency_consumer", consumer=True)
    pg.drop_database(db)

    buckets = ack.buckets
    have_histogram = bool(buckets)
    window_start_us = received.t_window * 1e6
    arrivals = [(recv - ts / 1e6) * 1000 for ts, recv in received.arrivals
                if ts >= window_start_us]  # fmt: skip
    consumer = summarize(arrivals)
    ctx.figure(Figure("latency", "writer rate achieved (pgbench)", ack.pgbench["tps"], "txn/s",
                      baseline=float(ctx.rate), baseline_name="asked"))  # fmt: skip

    def quantile_ms(q: float) -> float | None:
        value = histogram_quantile(q, buckets) if have_histogram else None
        return None if value is None else value * 1000

    note = "" if have_histogram else f"daemon has no {HISTOGRAM}"
    ctx.figure(Figure("latency", "commit → broker ack p50, bucket-interpolated",
                      quantile_ms(0.5), "ms", target=Target("max", P50_TARGET_MS),
                      note=note))  # fmt: skip
    ctx.figure(Figure("latency", "commit → broker ack p95, bucket-interpolated",
                      quantile_ms(0.95), "ms", note=note))  # fmt: skip
    ctx.figure(Figure("latency", "commit → broker ack p99, bucket-interpolated",
                      quantile_ms(0.99), "ms", target=Target("max", P99_TARGET_MS),
                      note=note))  # fmt: skip
    top = histogram_max_bound(buckets) if have_histogram else None
    ctx.figure(Figure("latency", "commit → broker ack max (≤ bucket bound)",
                      None if top is None else top * 1000, "ms", note=note))  # fmt: skip
    steady = sorted(ack.rss_mb)
    ctx.figure(Figure("latency", "daemon RSS at steady state (median of samples)",
                      steady[len(steady) // 2] if steady else None, "MB",
                      target=Target("max", RSS_LIMIT_MB)))  # fmt: skip
    for key in ("p50", "p95", "p99", "max"):
        ctx.figure(Figure("latency", f"commit → consumer receipt {key}, exact "
                          f"({consumer_seconds} s run)", consumer[key], "ms"))  # fmt: skip

    def lag(phase: Phase) -> str:
        return (f"mean {phase.pgbench.get('schedule_lag_avg_ms')} ms, max "
                f"{phase.pgbench.get('schedule_lag_max_ms')} ms")  # fmt: skip

    ctx.notes.add("latency", (
        f"pgbench -R {ctx.rate} -c {CLIENTS}, one INSERTed row per transaction (pg_small's "
        "table), synchronous_commit=on in the writer's sessions. Two runs on the same slot, "
        "each with a fresh daemon and broker, figures after a warm-up of 10% (2–10 s): "
        f"(1) {seconds} s with no consumer: the daemon's commit → broker ack histogram "
        f"({histogram_count(buckets):,.0f} observations), its RSS and CPU "
        f"({ack.daemon_share:.0%} of one core; the broker {ack.broker_share:.0%}); "
        f"pgbench's schedule lag {lag(ack)}. "
        f"(2) {consumer_seconds} s with a confluent-kafka consumer on the topic: receipt = "
        "time.time() when poll() returned the message minus the envelope's source.ts_us "
        f"(the commit time), exact per message ({int(consumer['n'] or 0):,} messages). "
        "Separate because Tansu's fetch path costs CPU that grows with the partition's "
        f"size (here the broker used {received.broker_share:.0%} of a core, the daemon "
        f"{received.daemon_share:.0%}; pgbench's schedule lag {lag(received)}): on 2 cores a "
        "consumer attached for 60 s saturates the machine and inflates every latency. "
        "A writer late by much more than a few ms was itself short of CPU. Per-second "
        "p50/max of the consumer-side latency: latest.json, "
        "details.latency.consumer_ms_per_second."
    ))  # fmt: skip
    ctx.details["latency"] = {
        "rate_asked": ctx.rate,
        "ack_run": {
            "seconds": seconds, "warmup_seconds": ack.warmup, "pgbench": ack.pgbench,
            "published": ack.published, "histogram_buckets_window": buckets,
            "rss_mb_samples": ack.rss_mb, "daemon_cpu_share": ack.daemon_share,
            "broker_cpu_share": ack.broker_share,
        },
        "consumer_run": {
            "seconds": consumer_seconds, "warmup_seconds": received.warmup,
            "pgbench": received.pgbench, "published": received.published,
            "received": len(received.arrivals), "consumer_ms": consumer,
            "histogram_buckets_window": received.buckets,
            "daemon_cpu_share": received.daemon_share,
            "broker_cpu_share": received.broker_share,
        },
        "consumer_ms_per_second": _per_second(received.arrivals, received.t_write),
    }  # fmt: skip
