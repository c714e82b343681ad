"""Prometheus metrics and the /metrics, /healthz, /readyz HTTP endpoints."""

from __future__ import annotations

import bisect
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, generate_latest
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("cdc.http")

_CHANGES = Counter("cdc_changes_total", "Row changes read from the source", ["pipeline"])
_EVENTS = Counter("cdc_events_total", "Events handed to the producer", ["pipeline"])
_TXNS = Counter("cdc_transactions_total", "Source transactions completed", ["pipeline"])
_TXNS_ACKED = Counter("cdc_transactions_acked_total", "Source transactions whose events are "
                      "all acknowledged by the broker", ["pipeline"])
_IN_FLIGHT = Gauge("cdc_events_in_flight", "Events not yet acknowledged by the broker",
                   ["pipeline"])
_UP = Gauge("cdc_pipeline_up", "1 while the pipeline is streaming", ["pipeline"])
_ACKED = Gauge("cdc_acked_position", "Last source position whose events are all acknowledged "
               "(PostgreSQL: LSN as a number)", ["pipeline"])
_ACKED_AT = Gauge("cdc_acked_timestamp_seconds", "When the acknowledged position last moved",
                  ["pipeline"])
ERRORS = Counter("cdc_errors_total", "Errors by kind", ["pipeline", "kind"])
# `mapper` is the failing mapper's name, or "format" / "broker"; `reason` the error type
# (a Python exception name or the broker's error name, e.g. MSG_SIZE_TOO_LARGE).
_SKIPPED = Counter("cdc_skipped_total", "Changes dropped by on_error: skip",
                   ["pipeline", "mapper", "reason"])
_DEAD_LETTER = Counter("cdc_dead_letter_total", "Changes sent to the dead-letter topic",
                       ["pipeline", "mapper", "reason"])


class Latency:
    """A histogram of commit -> acknowledgement latency for one pipeline.

    Observed once per transaction on the hot path, so it is a plain list of
    bucket counts (a bisect and an add); Prometheus reads it through
    `LatencyCollector` when scraped.
    """

    BOUNDS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
              0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)  # fmt: skip

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.sum = 0.0

    def observe_all(self, values: Iterable[float]) -> None:
        counts = self.counts
        bounds = self.BOUNDS
        total = 0.0
        for v in values:
            if v < 0.0:  # the database's clock ahead of ours: count it as no delay
                v = 0.0
            counts[bisect.bisect_left(bounds, v)] += 1
            total += v
        self.sum += total


class LatencyCollector(Collector):
    def __init__(self) -> None:
        self.pipelines: dict[str, Latency] = {}

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            "cdc_commit_to_ack_seconds",
            "Time from a transaction's commit in the source (its commit timestamp) to the "
            "broker's acknowledgement of its last event",
            labels=["pipeline"],
        )
        for name, latency in list(self.pipelines.items()):
            counts = list(latency.counts)
            buckets = []
            running = 0
            for bound, n in zip((*Latency.BOUNDS, float("inf")), counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            family.add_metric([name], buckets, latency.sum)
        yield family


_LATENCY = LatencyCollector()
REGISTRY.register(_LATENCY)


class PipelineMetrics:
    def __init__(self, pipeline: str):
        self.changes = _CHANGES.labels(pipeline)
        self.events = _EVENTS.labels(pipeline)
        self.transactions = _TXNS.labels(pipeline)
        self.transactions_acked = _TXNS_ACKED.labels(pipeline)
        self.latency = _LATENCY.pipelines.setdefault(pipeline, Latency())
        self.in_flight = _IN_FLIGHT.labels(pipeline)
        self.up = _UP.labels(pipeline)
        self._acked = _ACKED.labels(pipeline)
        self._acked_at = _ACKED_AT.labels(pipeline)
        self.pipeline = pipeline

    def acked_position(self, position: Any) -> None:
        if isinstance(position, int):
            self._acked.set(position)
        self._acked_at.set(time.time())

    def error(self, kind: str) -> None:
        ERRORS.labels(self.pipeline, kind).inc()

    def skipped(self, where: str, reason: str) -> None:
        _SKIPPED.labels(self.pipeline, where, reason).inc()

    def dead_lettered(self, where: str, reason: str) -> None:
        _DEAD_LETTER.labels(self.pipeline, where, reason).inc()


Check = Callable[[], dict[str, Any]]


def serve(listen: str, health: Check, ready: Check) -> ThreadingHTTPServer:
    """Start the HTTP server on a daemon thread. `health`/`ready` return {"ok": bool, ...}."""
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?")[0]
            if path == "/metrics":
                self._send(200, generate_latest(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                state = (health if path == "/healthz" else ready)()
                code = 200 if state.get("ok") else 503
                self._send(code, json.dumps(state).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
