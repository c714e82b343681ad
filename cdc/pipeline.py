"""One pipeline's runtime: source -> mapper chain -> format -> Kafka, with checkpoints.

Everything runs on one thread, in one loop:

    read a burst of changes -> map, render, produce each (delivery callbacks
    count down the transaction's pending events) -> poll delivery reports ->
    move the safe position -> confirm it to the source -> let the source send
    keepalives

While the producer's queue is full, `KafkaSink.send` keeps calling the
source's `tick` so the database never sees a silent client.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .checkpoint import Checkpointer, Txn
from .errors import SinkError, SourceError
from .jsonenc import encode
from .metrics import PipelineMetrics
from .model import EVENT_ID_HEADER, Change, Commit, Event, event_id
from .offsets import OffsetStore
from .sink import KafkaSink
from .source import Source

log = logging.getLogger("cdc.pipeline")

SAVE_INTERVAL = 1.0  # seconds between offset store writes while the position moves
SERVICE_EVERY = 1000  # changes between delivery polls / keepalives inside a burst

Renderer = Callable[[Change], list[tuple[str | None, bytes | None, bytes | None]]]


class _Stopped(Exception):
    """Raised inside a blocked send when the pipeline is told to stop."""


class TopicNamer:
    """Fills the sink's topic template from a change's fields, cached per table and op."""

    FIELDS = ("database", "schema", "table", "op")

    def __init__(self, template: str, pipeline: str):
        self.template = template
        self.pipeline = pipeline
        self._cache: dict[tuple[str, str, str, str], str] = {}

    def __call__(self, change: Change) -> str:
        k = (change.database, change.schema, change.table, change.op)
        topic = self._cache.get(k)
        if topic is None:
            topic = self.template.format(
                database=change.database,
                schema=change.schema,
                table=change.table,
                op=change.op,
                pipeline=self.pipeline,
            )
            self._cache[k] = topic
        return topic


class KeyNamer:
    """Fills the sink's key template from a change's fields and primary-key columns."""

    def __init__(self, template: str, pipeline: str):
        self.template = template
        self.pipeline = pipeline

    def __call__(self, change: Change) -> bytes:
        fields = dict(change.key or {})
        fields.update(database=change.database, schema=change.schema, table=change.table,
                      op=change.op, pipeline=self.pipeline)  # fmt: skip
        try:
            return self.template.format_map(fields).encode()
        except (KeyError, IndexError, ValueError) as e:
            raise SinkError(
                f"sink.key template {self.template!r} does not fit {change.table_id} "
                f"(key columns: {', '.join(change.key or {}) or 'none'}): {e!r}"
            ) from e


class Pipeline:
    def __init__(
        self,
        name: str,
        source: Source,
        chain: Any,
        render: Renderer,
        sink: KafkaSink,
        store: OffsetStore,
        topic_template: str,
        key_template: str | None = None,
        flush_timeout: float = 30.0,
        metrics: PipelineMetrics | None = None,
    ):
        self.name = name
        self.source = source
        self.chain = chain
        self.render = render
        self.sink = sink
        self.store = store
        self.topic = TopicNamer(topic_template, name)
        self.key = KeyNamer(key_template, name) if key_template else None
        self.flush_timeout = flush_timeout
        self.metrics = metrics or PipelineMetrics(name)
        self.checkpointer = Checkpointer()
        self.running = False
        self.last_loop = time.monotonic()
        self._txn: Txn | None = None
        # changes, events, transactions since the last metrics update: plain
        # ints on the hot path, added to the Prometheus counters per burst.
        self.counts = [0, 0, 0]
        self._last_save = 0.0
        self._saved_position: Any = None
        self._stop: threading.Event | None = None
        self._draining = False
        self._source_lost = False  # the source failed: drain without calling it
        sink.wait_hook = self._while_blocked

    # -- lifecycle ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Stream until `stop` is set or something fails; always checkpoint what is acked."""
        self._stop = stop
        try:
            self.source.open(self.store.load())
            self.running = True
            self.metrics.up.set(1)
            self._loop(stop)
        except _Stopped:
            pass  # stopped while the broker was unreachable: the open transaction is replayed
        except SourceError:
            self._source_lost = True  # drain without talking to it
            raise
        finally:
            self.running = False
            self.metrics.up.set(0)
            self._drain()

    def _loop(self, stop: threading.Event) -> None:
        source = self.source
        sink = self.sink
        process = self._process
        counter = 0
        while not stop.is_set():
            for item in source.read(0.1):
                if type(item) is Change:
                    process(item)
                    counter += 1
                    if counter >= SERVICE_EVERY:
                        counter = 0
                        self._service()
                        if stop.is_set():
                            return  # mid-transaction: it stays unconfirmed and is replayed
                else:
                    assert type(item) is Commit
                    self._commit(item)
            sink.poll(0)
            self._service()
            self.last_loop = time.monotonic()
            if source.finished and self.checkpointer.idle:
                log.info("source finished (snapshot only) and everything is acknowledged")
                return

    def _service(self) -> None:
        """Poll deliveries, move and confirm the safe position, keep the source alive."""
        self.sink.poll(0)
        checkpointer = self.checkpointer
        if checkpointer.failure is not None:
            err, msg = checkpointer.failure
            raise SinkError(
                f"the broker refused a message for topic {msg.topic()!r}: {err.str()}; "
                "the checkpoint stays before it"
            )
        moved = checkpointer.advance()
        if moved is not None:
            self.source.ack(moved)
            self.metrics.acked_position(moved)
        acked = checkpointer.acked_position
        if acked != self._saved_position and time.monotonic() - self._last_save >= SAVE_INTERVAL:
            self._save(acked)
        self.source.tick(checkpointer.idle)
        self._update_metrics()

    def _update_metrics(self) -> None:
        changes, events, transactions = self.counts
        self.counts = [0, 0, 0]
        metrics = self.metrics
        metrics.changes.inc(changes)
        metrics.events.inc(events)
        metrics.transactions.inc(transactions)
        metrics.in_flight.set(self.checkpointer.in_flight)

    def _while_blocked(self) -> None:
        """Called by the sink while it waits for the broker: keep the source's server happy.

        Also gives up the wait when the pipeline is told to stop (outside the
        drain): with message.timeout.ms=0 the queue never empties while the
        broker is away, and SIGTERM must still end the process.
        """
        self.last_loop = time.monotonic()  # waiting for the broker is not a stall
        if not self._draining and self._stop is not None and self._stop.is_set():
            raise _Stopped()
        if self._source_lost:
            return
        moved = self.checkpointer.advance()
        if moved is not None:
            self.source.ack(moved)
        try:
            self.source.tick(False)
        except SourceError:
            self._source_lost = True
            if not self._draining:
                raise

    def _save(self, position: Any) -> None:
        if position == self._saved_position:
            return
        offsets = self.source.position_to_store(position)
        offsets["pipeline"] = self.name
        offsets["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.store.save(offsets)
        self._saved_position = position
        self._last_save = time.monotonic()

    def _drain(self) -> None:
        """Wait for in-flight events, checkpoint what the broker acknowledged, close."""
        self._draining = True
        try:
            left = self.sink.flush(self.flush_timeout)
            if left:
                log.warning(
                    "%d events still unacknowledged after %.0fs; they are replayed on restart",
                    left, self.flush_timeout,
                )
            self.checkpointer.advance()
            self._update_metrics()
            position = self.checkpointer.acked_position
            if position is not None:
                self.source.ack(position)
                self._save(position)
        finally:
            self.source.close()
            self.sink.close()
            if self.chain:
                self.chain.close()

    # -- per change -----------------------------------------------------------------

    def _commit(self, commit: Commit) -> None:
        txn = self._txn
        if txn is None:
            txn = self.checkpointer.begin()
        self.checkpointer.commit(txn, commit.position)
        self._txn = None
        self.counts[2] += 1

    def _process(self, change: Change) -> None:
        txn = self._txn
        if txn is None:
            txn = self._txn = self.checkpointer.begin()
        self.counts[0] += 1
        if self.chain:
            items = self.chain.apply(change)
        else:
            items = (change,)
        n = 0
        for item in items:
            if item.__class__ is Change:
                for topic, key, value in self.render(item):
                    if self.key is not None and key is not None:
                        key = self.key(item)
                    headers: list[tuple[str, str | bytes | None]] = [
                        (EVENT_ID_HEADER, event_id(item, n).encode())
                    ]
                    self._produce(topic or self.topic(item), key, value, headers, txn)
                    n += 1
            else:
                self._produce_event(item, change, n, txn)
                n += 1

    def _produce_event(self, event: Event, change: Change, n: int, txn: Txn) -> None:
        origin = event.change or change
        headers: list[tuple[str, str | bytes | None]] = list(event.headers)
        if not any(h[0] == EVENT_ID_HEADER for h in headers):
            headers.append((EVENT_ID_HEADER, event_id(origin, n).encode()))
        key = event.key
        if key is None:
            key = self.key(origin) if self.key is not None else origin.key
        topic = event.topic or self.topic(origin)
        self._produce(topic, encode(key), encode(event.value), headers, txn)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]],
        txn: Txn,
    ) -> None:
        self.sink.send(topic, key, value, headers, txn.on_delivery)
        # Counted once handed over: reports only arrive from poll(), on this thread.
        txn.pending += 1
        self.counts[1] += 1
