"""The daemon under test: `cdc run` on a generated config, watched through its /metrics.

    daemon = Daemon(workdir, "bench_pg_small", source={...}, bootstrap=broker.bootstrap)
    daemon.start()                 # spawns `python -m cdc run CONFIG`
    daemon.wait_ready()            # /readyz answers 200: the pipeline is streaming
    final = daemon.wait_for(lambda s: ...)   # poll /metrics until the condition holds
    daemon.stop()

Times are wall-clock (time.time()) so that they compare with the daemon's own
`cdc_acked_timestamp_seconds`, which says when the acknowledged position last
moved: the end of a drain is read from it instead of from the poll that noticed it.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bench.promtext import Samples, parse
from tests.integration.services import free_port, log_tail, run_daemon, stop_daemon

READY_POLL = 0.01  # seconds between /readyz probes while the daemon starts
# Seconds between /metrics scrapes while waiting for a condition. A scrape costs the
# daemon about 0.75 ms of CPU (its GIL); precision does not depend on it, since the end
# of a drain is read from the daemon's own cdc_acked_timestamp_seconds.
METRICS_POLL = 0.05
PROGRESS_EVERY = 5.0  # seconds between progress lines


class BenchError(RuntimeError):
    """A scenario could not be measured (the message says why)."""


def read_status_kib(pid: int, field: str) -> int | None:
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...), or None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (all its threads), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is the state (field 3 of stat); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Daemon:
    """One `cdc run` process with one pipeline named `name`."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        source: dict[str, Any],
        bootstrap: str,
        topic: str = "{database}.{schema}.{table}",
        sink: dict[str, Any] | None = None,
    ):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.offsets_path = self.workdir / f"{name}.offsets"
        self.config_path = self.workdir / f"{name}.yaml"
        self.log_path = self.workdir / f"{name}.log"
        config = {
            "version": 1,
            "http": {"listen": f"127.0.0.1:{self.port}"},
            "log": {"level": "info", "format": "text"},
            "pipelines": [
                {
                    "name": name,
                    "source": source,
                    "sink": {
                        "type": "kafka",
                        "topic": topic,
                        "format": "debezium",
                        "properties": {"bootstrap.servers": bootstrap},
                        **(sink or {}),
                    },
                    "offsets": {"store": "file", "path": str(self.offsets_path)},
                }
            ],
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.proc: Any = None
        self.t_spawn = 0.0
        self.t_up = 0.0
        self.rss_samples: list[tuple[float, int]] = []  # (time, VmRSS kB)

    # -- lifecycle -----------------------------------------------------------------------

    def write_offsets(self, offsets: dict[str, Any]) -> None:
        """Start from a given source position (MySQL: where the binlog range begins)."""
        self.offsets_path.write_text(json.dumps(dict(offsets, pipeline=self.name)) + "\n")

    def start(self) -> None:
        self.t_spawn = time.time()
        self.proc = run_daemon(self.config_path, log_path=self.log_path)

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"the daemon exited with code {self.proc.returncode}; {self.log_path}:\n"
                f"{log_tail(self.log_path)}"
            )

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def wait_ready(self, timeout: float = 60.0) -> float:
        """Wait until /readyz says the pipeline streams; return that time (and keep it)."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                status, _ = self._get("/readyz", timeout=1.0)
                if status == 200:
                    self.t_up = time.time()
                    return self.t_up
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise BenchError(
                    f"the daemon was not ready after {timeout:.0f}s; {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            time.sleep(READY_POLL)

    def scrape(self) -> Samples:
        status, body = self._get("/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        return parse(body.decode())

    def sample_rss(self) -> int | None:
        kib = read_status_kib(self.proc.pid, "VmRSS") if self.proc is not None else None
        if kib is not None:
            self.rss_samples.append((time.time(), kib))
        return kib

    def peak_rss_kib(self) -> int | None:
        """The process's high-water mark (VmHWM), read now."""
        return read_status_kib(self.proc.pid, "VmHWM") if self.proc is not None else None

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.proc.pid) if self.proc is not None else None

    def metric(self, samples: Samples, name: str) -> float | None:
        return samples.value(name, pipeline=self.name)

    def wait_for(
        self,
        done: Callable[[Samples], bool],
        timeout: float,
        progress: Callable[[Samples], str] | None = None,
        poll: float = METRICS_POLL,
    ) -> Samples:
        """Scrape /metrics every `poll` s until `done(samples)`; return that scrape."""
        deadline = time.monotonic() + timeout
        next_progress = time.monotonic() + PROGRESS_EVERY
        while True:
            self._check_alive()
            samples = self.scrape()
            self.sample_rss()
            if done(samples):
                return samples
            now = time.monotonic()
            if now > deadline:
                raise BenchError(
                    f"condition not reached after {timeout:.0f}s; {self.log_path}:\n"
                    f"{log_tail(self.log_path, 10)}"
                )
            if progress is not None and now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                print(f"      {progress(samples)}", flush=True)
            time.sleep(poll)

    def all_acked(self, samples: Samples, transactions: int, rows: int) -> bool:
        """Whether `transactions` (holding `rows` changes) are all acknowledged.

        By cdc_transactions_acked_total where the daemon has it; otherwise every change
        read and nothing in flight (the in-flight gauge counts produced, unacknowledged
        events).
        """
        acked = self.metric(samples, "cdc_transactions_acked_total")
        if acked is not None:
            return acked >= transactions
        changes = self.metric(samples, "cdc_changes_total") or 0
        return changes >= rows and self.metric(samples, "cdc_events_in_flight") == 0

    def acked_at(self, samples: Samples) -> float | None:
        """When the acknowledged position last moved (the daemon's clock, time.time())."""
        return self.metric(samples, "cdc_acked_timestamp_seconds")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        code = stop_daemon(self.proc, signal.SIGTERM, timeout=60)
        self.proc = None
        return code
