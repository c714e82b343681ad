"""The Kafka sink: a confluent-kafka producer that never blocks the source's keepalives.

`send()` hands a message to librdkafka. When its queue is full (the broker is
slow or gone) it waits in short polls, calling `wait_hook` between them so the
source keeps answering its server (PostgreSQL kills a walsender that is silent
for wal_sender_timeout).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from .errors import SinkError

log = logging.getLogger("cdc.sink")

DeliveryCallback = Callable[[Any, Any], None]

# The order of Producer.produce()'s arguments (confluent-kafka >= 1.0):
#   produce(topic, value, key, partition, callback, on_delivery, timestamp, headers)
# with ANY_PARTITION for the partitioner's choice and timestamp 0 for now
# (tests/unit/test_sink.py checks this order against the installed client).
ANY_PARTITION = -1


class KafkaSink:
    def __init__(self, properties: dict[str, str], wait_hook: Callable[[], None] | None = None):
        self._properties = dict(properties)
        self._producer: Producer | None = None  # created lazily: no network I/O in __init__
        self.wait_hook = wait_hook
        self.fatal: KafkaError | None = None

    def _error_cb(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("producer fatal error: %s", err.str())
        elif err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT):
            log.warning("broker connection problem: %s", err.str())
        else:
            log.info("producer: %s", err.str())

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            conf: dict[str, Any] = dict(self._properties)
            conf["error_cb"] = self._error_cb
            try:
                self._producer = Producer(conf)
            except KafkaException as e:
                raise SinkError(f"cannot create the Kafka producer: {e}") from e
        return self._producer

    def start(self) -> None:
        """Create the producer now: it connects to the broker in the background."""
        _ = self._producer if self._producer is not None else self.producer

    def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None,
        on_delivery: DeliveryCallback,
    ) -> None:
        producer = self._producer if self._producer is not None else self.producer
        while True:
            try:
                # positional: see ANY_PARTITION
                producer.produce(topic, value, key, ANY_PARTITION, on_delivery, None, 0, headers)
                return
            except BufferError:
                pass  # the local queue is full: wait for deliveries, keep the source alive
            except KafkaException as e:
                raise SinkError(f"cannot produce to {topic!r}: {e}") from e
            producer.poll(0.05)
            if self.fatal is not None:
                raise SinkError(f"producer failed: {self.fatal.str()}")
            if self.wait_hook is not None:
                self.wait_hook()

    def producer_produce(self) -> Callable[..., None]:
        """The producer's own produce(), for a hot loop that calls send() only where
        it raises (BufferError: the queue is full; KafkaException: refused). Call it
        with positional arguments, in the order given at ANY_PARTITION: its keyword
        parsing costs more than the rest of produce() together."""
        producer: Producer = self._producer if self._producer is not None else self.producer
        return producer.produce

    def poll(self, timeout: float = 0.0) -> int:
        if self._producer is None:
            return 0
        return self._producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Wait up to `timeout` for every queued message; return how many are left.

        Polls in short steps so `wait_hook` keeps running.
        """
        if self._producer is None:
            return 0
        deadline = time.monotonic() + timeout
        remaining = len(self._producer)
        while remaining and time.monotonic() < deadline:
            remaining = self._producer.flush(0.1)
            if self.wait_hook is not None:
                self.wait_hook()
        return remaining

    def close(self) -> None:
        self._producer = None
