"""One pipeline's runtime: source -> mapper chain -> format -> Kafka, with checkpoints.

Everything runs on one thread, in one loop:

    read a burst of changes -> map, render, produce each (delivery callbacks
    count down the transaction's pending events) -> poll delivery reports ->
    move the safe position -> confirm it to the source -> let the source send
    keepalives

While the producer's queue is full, `KafkaSink.send` keeps calling the
source's `tick` so the database never sees a silent client.

Error policies (`on_error`: fail | skip | dead_letter, per pipeline and per
mapper) cover three kinds of per-change failure: a mapper raising (handled in
the chain, by the mapper's policy), the format failing to render, and the
broker refusing one message for what it is (its size: MSG_SIZE_TOO_LARGE, or
its content), either when it is produced or in its delivery report (those two
by the pipeline's policy). `skip` counts the change as done; `dead_letter`
publishes a record about it (`dead_letter_record`) to the dead-letter topic,
in the same transaction's bookkeeping, so the checkpoint waits for that
record's acknowledgement; a dead-letter record that cannot be published stops
the pipeline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message

from .checkpoint import Checkpointer, Refusal, Tracked, Txn
from .deadletter import (
    MESSAGE_REFUSALS,
    dead_letter_record,
    format_traceback,
    header_text,
    plain,
    refusal_code,
)
from .errors import CdcError, MapperError, SinkError, SourceError
from .jsonenc import dumps, encode, loads_or_text
from .metrics import PipelineMetrics
from .model import (
    EVENT_ID_HEADER,
    Change,
    Commit,
    RenderedRow,
    RowRecords,
    event_id,
    format_position,
)
from .offsets import OffsetStore
from .render import EventRenderer, Headers, Renderer
from .sink import ANY_PARTITION, KafkaSink
from .source import Source

log = logging.getLogger("cdc.pipeline")

SAVE_INTERVAL = 1.0  # seconds between offset store writes while the position moves
SERVICE_EVERY = 1000  # changes between delivery polls / keepalives inside a burst
# Seconds a read waits for the source: while events wait for the broker, delivery
# reports (and so acknowledgements) are taken up at least this often.
READ_TIMEOUT = 0.1
IN_FLIGHT_READ_TIMEOUT = 0.005
# Seconds between updates of the Prometheus metrics: a loop that handles one small
# transaction per turn must not pay for several locked counter updates each time.
METRICS_INTERVAL = 0.1

ON_ERROR = ("fail", "skip", "dead_letter")

# Messages at least this big keep their change for a dead-letter record in case the
# broker refuses them (its limit is unknown here); smaller ones cost nothing extra
# and, if refused, are reported from what the delivery report carries.
TRACK_MIN_BYTES = 16 * 1024

# Distinct errors remembered for "log once"; past this the memory is cleared.
SEEN_ERRORS_MAX = 10_000


class _Stopped(Exception):
    """Raised inside a blocked send when the pipeline is told to stop."""


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
        on_error: str = "fail",
        dead_letter_topic: str | None = None,
        dead_letter_render: Renderer | None = None,
        max_message_bytes: int = 1_000_000,
    ):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self.name = name
        self.source = source
        self.chain = chain
        self.sink = sink
        self.store = store
        self.renderer = EventRenderer(render, topic_template, key_template, name)
        self.flush_timeout = flush_timeout
        # Error policy of the format and the broker (mappers carry their own).
        self.on_error = on_error
        self.dead_letter_topic = dead_letter_topic
        self._dead_letter_render = dead_letter_render
        self._max_message_bytes = max_message_bytes
        # Only when refusals are survivable do big messages keep their change.
        self._track_min = TRACK_MIN_BYTES if on_error != "fail" else None
        self._seen_errors: set[tuple[str, str, str]] = set()
        if on_error != "fail":
            self.renderer.on_failure = self._render_failed
        if chain:
            chain.on_failure = self._mapper_failed
        self.metrics = metrics or PipelineMetrics(name)
        self.checkpointer = Checkpointer()
        self.running = False
        self.last_loop = time.monotonic()
        self._txn: Txn | None = None
        # changes, events, transactions since the last metrics update: plain
        # ints on the hot path, added to the Prometheus counters per burst.
        self.counts = [0, 0, 0]
        self._last_save = 0.0
        self._metrics_at = 0.0
        self._saved_position: Any = None
        self._stop: threading.Event | None = None
        self._draining = False
        self._source_lost = False  # the source failed: drain without calling it
        sink.wait_hook = self._while_blocked
        # Looked up once: these run for every change.
        self._mapped = bool(chain)
        self._render = self.renderer.render
        self._render_change = self.renderer.render_change
        self._emit = self._produce

    # -- lifecycle ------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Stream until `stop` is set or something fails; always checkpoint what is acked."""
        self._stop = stop
        try:
            stored = self.store.load()
            # The producer connects in the background while the source opens.
            self.sink.start()
            self.source.open(stored)
            if stored is None and self.source.start_position is not None:
                # Remember where a first run starts before anything else: killed
                # before its first acknowledgement, it must not restart "now".
                # (Not an acknowledgement: the same position acked later is saved again.)
                self._write_offsets(self.source.start_position)
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
        checkpointer = self.checkpointer
        process = self._process
        counter = 0
        while not stop.is_set():
            item: Change | Commit | RowRecords | None = None
            timeout = READ_TIMEOUT if checkpointer.idle else IN_FLIGHT_READ_TIMEOUT
            for item in source.read(timeout):
                if type(item) is Change:
                    process(item)
                    counter += 1
                elif type(item) is Commit:
                    self._commit(item)
                    continue
                else:
                    assert type(item) is RowRecords
                    counter += self._process_records(item)
                if counter >= SERVICE_EVERY:
                    counter = 0
                    self._service(between_bursts=False)
                    if stop.is_set():
                        return  # mid-transaction: it stays unconfirmed and is replayed
            sink.poll(0)
            self._service()
            if item is None and checkpointer.idle:  # all quiet: publish the metrics now
                self._update_metrics()
            self.last_loop = time.monotonic()
            if source.finished and checkpointer.idle:
                log.info("source finished (snapshot only) and everything is acknowledged")
                return

    def _service(self, between_bursts: bool = True) -> None:
        """Poll deliveries, move and confirm the safe position, keep the source alive.

        Inside a burst the source is never told it is idle: it may have read (and
        noted keepalives) past the items not processed yet.
        """
        self.sink.poll(0)
        checkpointer = self.checkpointer
        if checkpointer.refused:
            self._handle_refused(checkpointer.take_refused())
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
        self.source.tick(between_bursts and checkpointer.idle)
        now = time.monotonic()
        if now - self._metrics_at >= METRICS_INTERVAL:
            self._metrics_at = now
            self._update_metrics()

    def _update_metrics(self) -> None:
        changes, events, transactions = self.counts
        self.counts = [0, 0, 0]
        metrics = self.metrics
        metrics.changes.inc(changes)
        metrics.events.inc(events)
        metrics.transactions.inc(transactions)
        acked, latencies = self.checkpointer.take_stats()
        if acked:
            metrics.transactions_acked.inc(acked)
            metrics.latency.observe_all(latencies)
        metrics.in_flight.set(self.checkpointer.in_flight)

    def _while_blocked(self) -> None:
        """Called by the sink while it waits for the broker: keep the source's server happy.

        Also gives up the wait when the pipeline is told to stop (outside the
        drain): with message.timeout.ms=0 the queue never empties while the
        broker is away, and SIGTERM must still end the process.
        """
        now = time.monotonic()
        self.last_loop = now  # waiting for the broker is not a stall
        if not self._draining and self._stop is not None and self._stop.is_set():
            raise _Stopped()
        if now - self._metrics_at >= METRICS_INTERVAL:  # in flight grows while we wait
            self._metrics_at = now
            self._update_metrics()
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
        """Record an acknowledged position (once per position)."""
        if position == self._saved_position:
            return
        self._write_offsets(position)
        self._saved_position = position
        self._last_save = time.monotonic()

    def _write_offsets(self, position: Any) -> None:
        offsets = self.source.position_to_store(position)
        offsets["pipeline"] = self.name
        offsets["saved_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.store.save(offsets)

    def _drain(self) -> None:
        """Wait for in-flight events, checkpoint what the broker acknowledged, close."""
        self._draining = True
        try:
            left = self.sink.flush(self.flush_timeout)
            if self.checkpointer.refused and self.on_error != "fail":
                # Refused while draining: settle them by the policy, then wait again.
                try:
                    self._handle_refused(self.checkpointer.take_refused())
                    left = self.sink.flush(self.flush_timeout)
                except CdcError as e:
                    log.error("pipeline %s: while draining: %s", self.name, e)
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
        earlier = commit.earlier_commit_ts
        self.checkpointer.commit(txn, commit.position, commit.commit_ts, earlier)
        self._txn = None
        self.counts[2] += 1 + len(earlier)

    def _process(self, change: Change) -> None:
        txn = self._txn
        if txn is None:
            txn = self._txn = self.checkpointer.begin()
        self.counts[0] += 1
        if self._mapped:
            self._render(change, self.chain.apply(change), self._emit)
        else:
            self._render_change(change, self._emit)

    def _process_records(self, item: RowRecords) -> int:
        """Produce the records a source rendered whole (a pipeline without mappers
        whose error policy is `fail`: nothing here can be skipped); how many."""
        txn = self._txn
        if txn is None:
            txn = self._txn = self.checkpointer.begin()
        records = item.records
        # Counted before they are handed over: a report that comes while send()
        # waits for room in the queue must find them counted.
        txn.pending += len(records)
        callback = txn.on_delivery
        produce = self.sink.producer_produce()
        for topic, key, value, headers in records:
            try:  # positional: see cdc.sink.ANY_PARTITION
                produce(topic, value, key, ANY_PARTITION, callback, None, 0, headers)
            except (BufferError, KafkaException):
                # The queue is full (send waits, keeping the source alive), or
                # the producer refused the message (send raises why).
                self.sink.send(topic, key, value, headers, callback)
        counts = self.counts
        counts[0] += item.rows
        counts[1] += len(records)
        return len(records)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers,
        change: Change,
    ) -> None:
        txn = self._txn
        assert txn is not None
        callback: Callable[[Any, Any], None] = txn.on_delivery
        if self._track_min is not None and value is not None and len(value) >= self._track_min:
            callback = Tracked(txn, change)
        try:
            self.sink.send(topic, key, value, headers, callback)
        except SinkError as e:
            code = refusal_code(e) if self.on_error != "fail" else None
            if code is None:
                raise
            # Refused on the spot (e.g. bigger than message.max.bytes): never in flight.
            cause = e.__cause__
            assert isinstance(cause, KafkaException)
            err: KafkaError = cause.args[0]
            self._policy(
                txn, "broker", None, err.name(), err.str(), format_traceback(cause),
                change, headers, topic,
            )  # fmt: skip
            return
        # Counted once handed over: reports only arrive from poll(), on this thread.
        txn.pending += 1
        self.counts[1] += 1

    # -- error policies ---------------------------------------------------------------

    def _mapper_failed(self, error: MapperError, policy: str) -> None:
        txn = self._txn
        assert txn is not None and isinstance(error.change, Change)
        cause = error.cause
        self._apply(
            policy, txn, "mapper", error.mapper, type(cause).__name__, str(cause),
            format_traceback(cause), error.change, event_id(error.change), None,
        )  # fmt: skip

    def _render_failed(self, change: Change, error: Exception, n: int) -> None:
        txn = self._txn
        assert txn is not None
        self._apply(
            self.on_error, txn, "format", None, type(error).__name__, str(error),
            format_traceback(error), change, event_id(change, n), None,
        )  # fmt: skip

    def _policy(
        self,
        txn: Txn,
        stage: str,
        mapper: str | None,
        error_type: str,
        error_message: str,
        trace: str | None,
        change: Change,
        headers: Headers,
        topic: str,
    ) -> None:
        eid = next((v if isinstance(v, str) else v.decode()
                    for k, v in headers if k == EVENT_ID_HEADER and v), "")  # fmt: skip
        self._apply(self.on_error, txn, stage, mapper, error_type, error_message, trace,
                    change, eid or event_id(change), topic)  # fmt: skip

    def _handle_refused(self, refused: list[Refusal]) -> None:
        """Settle messages the broker refused, by the pipeline's policy."""
        for r in refused:
            code = r.error.code()
            if self.on_error == "fail" or code not in MESSAGE_REFUSALS:
                raise SinkError(
                    f"the broker refused a message for topic {r.message.topic()!r}: "
                    f"{r.error.str()}; the checkpoint stays before it"
                )
            msg = r.message
            eid = header_text(msg, EVENT_ID_HEADER) or ""
            # Without the change (small messages keep none), the record carries the message.
            self._apply(self.on_error, r.txn, "broker", None, r.error.name(), r.error.str(),
                        None, r.change, eid, msg.topic(),
                        msg if r.change is None else None)  # fmt: skip
            r.txn.settle()

    def _apply(
        self,
        policy: str,
        txn: Txn,
        stage: str,
        mapper: str | None,
        error_type: str,
        error_message: str,
        trace: str | None,
        change: Change | None,
        eid: str,
        topic: str | None,
        refused: Message | None = None,
    ) -> None:
        """Skip or dead-letter one failure: log it once per kind, count it, move on."""
        where = mapper if mapper is not None else stage
        seen = (where, error_type, error_message)
        first = seen not in self._seen_errors
        if first:
            if len(self._seen_errors) >= SEEN_ERRORS_MAX:
                self._seen_errors.clear()
            self._seen_errors.add(seen)
        if policy == "skip":
            self.metrics.skipped(where, error_type)
            if first:
                log.warning(
                    "pipeline %s: skipping a change (event %s) that failed in %s: %s: %s; "
                    "further changes failing the same way are skipped silently "
                    "(cdc_skipped_total)",
                    self.name, eid, where, error_type, error_message,
                )
            return
        assert policy == "dead_letter"
        self.metrics.dead_lettered(where, error_type)
        if first:
            log.warning(
                "pipeline %s: a change (event %s) failed in %s: %s: %s; sent to %s; further "
                "changes failing the same way are sent there silently (cdc_dead_letter_total)",
                self.name, eid, where, error_type, error_message, self.dead_letter_topic,
            )
        message = None
        if refused is not None:
            message = {"key": loads_or_text(refused.key()),
                       "value": loads_or_text(refused.value())}  # fmt: skip
        record = dead_letter_record(
            pipeline=self.name, event_id=eid, stage=stage, error_type=error_type,
            error_message=error_message, traceback=trace, mapper=mapper,
            change=self._change_json(change) if change is not None else None,
            topic=topic, message=message,
        )  # fmt: skip
        if refused is not None:
            key = refused.key()
        else:
            assert change is not None
            key = encode(change.key)
        self._send_dead_letter(txn, key, self._fit(record), eid)

    def _change_json(self, change: Change) -> Any:
        """The change in the `json` format (or as close as it can get, if that fails too).

        A row the decoder rendered itself (a pipeline without mappers) has no
        Python values to render again: its `after` is shown as the sink's
        format encoded it, in the plain form.
        """
        rendered = type(change.after) is RenderedRow
        render = self._dead_letter_render
        if render is None:
            from mappers.formats import make_format

            render = self._dead_letter_render = make_format("json", server_name=self.name).render
        try:
            records = [] if rendered else render(change)
            if records and records[0][2] is not None:
                return json.loads(records[0][2])
        except Exception:  # noqa: S110 - the reason it failed is already in the record
            pass
        after = json.loads(change.after) if rendered else plain(change.after)  # type: ignore[arg-type]
        return {
            "op": change.op, "database": change.database, "schema": change.schema,
            "table": change.table, "key": plain(change.key), "before": plain(change.before),
            "after": after, "position": format_position(change.position),
        }  # fmt: skip

    def _fit(self, record: dict[str, Any]) -> bytes:
        """The record's bytes, cut down if it would not fit message.max.bytes itself."""
        data = dumps(record)
        budget = self._max_message_bytes - 512 - len(record.get("event_id") or "")
        if len(data) <= budget:
            return data
        change = record.get("change")
        if isinstance(change, dict):
            cut: list[str] = []
            for image in ("before", "after"):
                row = change.get(image)
                if isinstance(row, dict):
                    for column, value in row.items():
                        text = json.dumps(value, default=str)
                        if len(text) > 256:
                            row[column] = text[:200] + "..."
                            cut.append(f"{image}.{column}")
            record["truncated"] = {"columns": cut, "original_bytes": len(data)}
            data = dumps(record)
        if len(data) > budget:
            record["truncated"] = {"original_bytes": len(data)}
            record["change"] = None
            record.pop("message", None)
            record["traceback"] = (record.get("traceback") or "")[-2000:] or None
            data = dumps(record)
        return data

    def _send_dead_letter(self, txn: Txn, key: bytes | None, value: bytes, eid: str) -> None:
        topic = self.dead_letter_topic
        if topic is None:
            raise SinkError("on_error: dead_letter needs a dead_letter_topic")
        headers: Headers = [(EVENT_ID_HEADER, f"{eid}/dlq".encode())]
        try:
            self.sink.send(topic, key, value, headers, txn.on_dead_letter_delivery)
        except SinkError as e:
            raise SinkError(
                f"cannot publish to the dead-letter topic {topic!r}: {e}; "
                "the checkpoint stays before the failed change"
            ) from e
        txn.pending += 1
        self.counts[1] += 1
