"""cdc.sink: the positional order of Producer.produce() the pipeline's hot loop uses."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from cdc.sink import ANY_PARTITION


def test_produce_takes_its_arguments_in_the_order_the_pipeline_passes_them():
    # No broker: the message times out, and its report reaches the callback given
    # in the fifth place with the topic, value and key given in the first three.
    producer = Producer({"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 200,
                         "log_level": 0})  # fmt: skip
    reports: list[tuple[Any, Any]] = []
    headers = [("cdc-event-id", b"f:1/0")]
    producer.produce("t", b"value", b"key", ANY_PARTITION, lambda e, m: reports.append((e, m)),
                     None, 0, headers)  # fmt: skip
    deadline = time.monotonic() + 10
    while not reports and time.monotonic() < deadline:
        producer.poll(0.1)
    [(err, msg)] = reports
    assert err.code() == KafkaError._MSG_TIMED_OUT
    assert (msg.topic(), msg.value(), msg.key()) == ("t", b"value", b"key")
    # ... and the headers in the eighth: anything else there is refused as headers.
    with pytest.raises(TypeError, match="[Hh]eaders"):
        producer.produce("t", b"v", b"k", ANY_PARTITION, None, None, 0, 42)
