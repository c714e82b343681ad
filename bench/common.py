"""What every scenario shares: the run's context, progress lines, broker checks."""

from __future__ import annotations

import resource
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.daemon import BenchError, Daemon, process_cpu_seconds
from bench.env import Services
from bench.promtext import Samples
from bench.report import Figure, Notes

# Row counts (or, for latency, seconds) per scenario and size; --rows overrides them.
SIZES: dict[str, dict[str, int]] = {
    "full": {
        "pg_small": 300_000,  # 100k transactions of 3 rows
        "pg_big": 1_000_000,  # one transaction
        "mariadb_small": 300_000,  # 100k transactions of 3 rows
        "latency": 60,  # seconds of writing at --rate
        "wide": 60_000,  # 20k transactions of 3 rows, 30 columns
    },
    "small": {
        "pg_small": 30_000,
        "pg_big": 400_000,  # enough to exceed logical_decoding_work_mem (64MB)
        "mariadb_small": 30_000,
        "latency": 15,
        "wide": 6_000,
    },
}

ROWS_PER_TXN = 3  # the small-transaction scenarios (pg_small, mariadb_small, wide)
MB = 1_000_000


def say(message: str) -> None:
    """A progress line (flushed: `make bench` output is often piped)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@dataclass
class Context:
    services: Services
    size: str
    repeat: int = 1
    rows: dict[str, int] = field(default_factory=dict)
    rate: int = 5000
    figures: list[Figure] = field(default_factory=list)
    notes: Notes = field(default_factory=Notes)
    details: dict[str, Any] = field(default_factory=dict)

    def amount(self, scenario: str) -> int:
        """Rows (latency: seconds) for `scenario` at this size, or the --rows override."""
        return self.rows.get(scenario, SIZES[self.size][scenario])

    def figure(self, fig: Figure) -> Figure:
        self.figures.append(fig)
        return fig


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def topic_message_count(bootstrap: str, topic: str, idle: float = 1.0) -> int:
    """Messages in `topic`: per partition, the last offset + 1 (nothing is ever deleted).

    Tansu's high watermark lags behind the last record (it reported 29,731 for a
    partition whose last offset was 29,999), so the tail past the watermark is read
    until nothing arrives for `idle` seconds.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-count",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 50})  # fmt: skip
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        ends: dict[int, int] = {}
        start: list[TopicPartition] = []
        for partition in meta.partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            ends[partition] = high
            start.append(TopicPartition(topic, partition, max(0, high - 1)))
        consumer.assign(start)
        last = time.monotonic()
        while time.monotonic() - last < idle:
            for msg in consumer.consume(10_000, timeout=0.1):
                partition, offset = msg.partition(), msg.offset()
                if msg.error() is None and partition is not None and offset is not None:
                    ends[partition] = max(ends[partition], offset + 1)
                    last = time.monotonic()
        return sum(ends.values())
    finally:
        consumer.close()


def fmt_rate(rows: float, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s ({rows:,.0f} rows in {seconds:.2f} s)"


@dataclass
class Timed:
    seconds: float  # wall
    cpu: float  # user + system of the process and what it waited for
    proc: subprocess.CompletedProcess[str]


def timed_run(cmd: list[str], **kwargs: Any) -> Timed:
    """subprocess.run(cmd) with its wall time and CPU time (from the children's rusage)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, text=True, check=False, **kwargs)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timed(seconds, cpu, proc)


def cpu_note(rows: int, daemon_runs: list[dict[str, Any]], baseline: str,
             baseline_cpu: list[float], server: str) -> str:  # fmt: skip
    """One sentence on CPU use: the daemon's during its drain, the baseline's whole process.

    `server` names the server-side reader (the same work for both, not counted).
    """
    cpu = median([d["cpu_s"] for d in daemon_runs])
    busy = cpu / median([d["up_s"] for d in daemon_runs])
    broker = median([d["broker_cpu_s"] for d in daemon_runs])
    return (
        f"CPU (median): the daemon process {cpu:.2f} s during the drain "
        f"({cpu / rows * 1e6:.1f} µs/row, {busy:.0%} of one core), the broker {broker:.2f} s "
        f"on the same 2 cores, {baseline} {median(baseline_cpu):.2f} s "
        f"({server}: the same work for both, not counted)."
    )


def measure_drain(
    services: Services,
    name: str,
    source: dict[str, Any],
    topic: str,
    rows: int,
    done: Callable[[Daemon, Samples], bool],
    topic_template: str = "{database}.{schema}.{table}",
    offsets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the daemon on `source` into a fresh broker until `done`; timings, CPU, RSS.

    `topic` (created with one partition) must end up holding `rows` messages.
    "up_s" runs from /readyz to the daemon's last acknowledgement, "wall_s" from
    the process start; "cpu_s" and "broker_cpu_s" are the daemon's and the
    broker's CPU time from /readyz to the end.
    """
    workdir = services.workdir(name)
    with services.broker(topics=(topic,)) as broker:
        daemon = Daemon(workdir, name, source=source, bootstrap=broker.bootstrap,
                        topic=topic_template)  # fmt: skip
        if offsets is not None:
            daemon.write_offsets(offsets)

        def progress(s: Samples) -> str:
            changes = daemon.metric(s, "cdc_changes_total") or 0
            in_flight = daemon.metric(s, "cdc_events_in_flight") or 0
            return (f"daemon: {changes:,.0f} of {rows:,} changes read, "
                    f"{in_flight:,.0f} events in flight")  # fmt: skip

        def broker_cpu() -> float:
            return (process_cpu_seconds(broker.pid) if broker.pid else None) or 0.0

        daemon.start()
        try:
            daemon.wait_ready()
            cpu_up = daemon.cpu_seconds() or 0.0
            broker_up = broker_cpu()
            final = daemon.wait_for(lambda s: done(daemon, s), timeout=120 + rows / 2000,
                                    progress=progress)  # fmt: skip
            seen = time.time()
            cpu = (daemon.cpu_seconds() or 0.0) - cpu_up
            broker_cpu_s = broker_cpu() - broker_up
            end = daemon.acked_at(final) or seen
            hwm = daemon.peak_rss_kib()
            changes = daemon.metric(final, "cdc_changes_total")
            events = daemon.metric(final, "cdc_events_total")
        finally:
            code = daemon.stop()
        published = topic_message_count(broker.bootstrap, topic)
    if published < rows:
        raise BenchError(f"the broker holds {published} messages, expected {rows}")
    rss = [kib for _, kib in daemon.rss_samples]
    return {
        "up_s": end - daemon.t_up,
        "wall_s": end - daemon.t_spawn,
        "startup_s": daemon.t_up - daemon.t_spawn,
        "noticed_after_s": seen - end,
        "cpu_s": cpu,
        "startup_cpu_s": cpu_up,
        "broker_cpu_s": broker_cpu_s,
        "peak_rss_mb": hwm / 1024 if hwm else None,
        "max_sampled_rss_mb": max(rss) / 1024 if rss else None,
        "changes": changes,
        "events": events,
        "published": published,
        "exit_code": code,
        "log": str(daemon.log_path),
    }
