"""on_error (fail | skip | dead_letter) decisions of the pipeline, with a fake sink."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from cdc.chain import LoadedMapper, MapperChain
from cdc.errors import MapperError, SinkError
from cdc.model import Change, Commit
from cdc.pipeline import TRACK_MIN_BYTES, Pipeline
from cdc.testing import change
from mappers.formats import make_format

DLQ = "cdc.dlq.test"


class FakeMessage:
    def __init__(self, topic: str, key: bytes | None, value: bytes | None, headers: Any):
        self._topic, self._key, self._value, self._headers = topic, key, value, headers

    def topic(self) -> str:
        return self._topic

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Any:
        return [(k, v.encode() if isinstance(v, str) else v) for k, v in self._headers]


class FakeSink:
    """send() queues; poll() reports each queued message, failing those in `refuse`.

    `refuse` maps a topic to the KafkaError its delivery reports carry;
    `limit` makes send() raise like produce() does for a message bigger than
    message.max.bytes.
    """

    def __init__(self, limit: int | None = None):
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.queue: list[tuple[FakeMessage, Any]] = []
        self.refuse: dict[str, KafkaError] = {}
        self.limit = limit
        self.wait_hook = None

    def start(self) -> None:
        pass

    def send(self, topic: str, key: Any, value: Any, headers: Any, on_delivery: Any) -> None:
        if self.limit is not None and value is not None and len(value) > self.limit:
            err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "Broker: Message size too large")
            try:
                raise KafkaException(err)
            except KafkaException as e:
                raise SinkError(f"cannot produce to {topic!r}: {e}") from e
        self.sent.append((topic, key, value, headers))
        self.queue.append((FakeMessage(topic, key, value, headers), on_delivery))

    def poll(self, timeout: float = 0.0) -> int:
        queue, self.queue = self.queue, []
        for msg, callback in queue:
            callback(self.refuse.get(msg.topic()), msg)
        return len(queue)

    def flush(self, timeout: float) -> int:
        self.poll()
        return 0

    def close(self) -> None:
        pass

    def topics(self) -> list[str]:
        return [s[0] for s in self.sent]


class FakeSource:
    finished = False
    start_position = None

    def __init__(self) -> None:
        self.acked: list[Any] = []

    def ack(self, position: Any) -> None:
        self.acked.append(position)

    def tick(self, idle: bool) -> None:
        pass

    def position_to_store(self, position: Any) -> dict[str, Any]:
        return {"position": position}


class FakeStore:
    def save(self, offsets: dict[str, Any]) -> None:
        pass


def poison(c: Change) -> Change:
    if c.after and c.after.get("poison"):
        raise ValueError(f"row {c.after['id']} is poison")
    return c


def make(on_error: str = "fail", mapper_on_error: str | None = None, sink: FakeSink | None = None,
         fmt: str = "json", max_message_bytes: int = 1_000_000) -> tuple[Pipeline, FakeSink]:
    chain = MapperChain([LoadedMapper("poison", poison, on_error=mapper_on_error or on_error)])
    sink = sink or FakeSink()
    p = Pipeline("p", FakeSource(), chain, make_format(fmt).render, sink, FakeStore(),  # type: ignore[arg-type]
                 "{schema}.{table}", on_error=on_error,
                 dead_letter_topic=DLQ if on_error == "dead_letter" or mapper_on_error else None,
                 max_message_bytes=max_message_bytes)
    return p, sink


def txn(p: Pipeline, *changes: Change, position: int) -> None:
    for c in changes:
        p._process(c)
    p._commit(Commit(position))


def row(i: int, **after: Any) -> Change:
    return change("t", after={"id": i, **after}, position=100 + i)


def dead_letters(sink: FakeSink) -> list[dict[str, Any]]:
    return [json.loads(v) for t, _, v, _ in sink.sent if t == DLQ and v is not None]


def test_fail_stops_at_the_failing_change_and_publishes_nothing_of_it():
    p, sink = make("fail")
    with pytest.raises(MapperError, match="row 2 is poison"):
        txn(p, row(1), row(2, poison=True), position=10)
    assert [json.loads(s[2])["after"]["id"] for s in sink.sent] == [1]


def test_skip_drops_the_change_logs_once_and_the_checkpoint_moves(caplog):
    p, sink = make("skip")
    with caplog.at_level(logging.WARNING, logger="cdc.pipeline"):
        again = change("t", after={"id": 2, "poison": True}, position=103)  # same error
        txn(p, row(1), row(2, poison=True), again, row(4), position=10)
    assert [json.loads(s[2])["after"]["id"] for s in sink.sent] == [1, 4]
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 1
    p._service()
    assert p.source.acked == [10]  # type: ignore[attr-defined]


def test_a_distinct_error_is_logged_again(caplog):
    p, _ = make("skip")
    with caplog.at_level(logging.WARNING, logger="cdc.pipeline"):
        txn(p, row(1, poison=True), row(2, poison=True), position=10)
    # the message names the row, so these are two distinct errors
    assert len([r for r in caplog.records if "skipping" in r.getMessage()]) == 2


def test_skip_counts_in_the_skipped_metric():
    from prometheus_client import REGISTRY

    p, _ = make("skip")
    before = REGISTRY.get_sample_value(
        "cdc_skipped_total", {"pipeline": "p", "mapper": "poison", "reason": "ValueError"}) or 0
    txn(p, row(1, poison=True), row(1, poison=True), position=10)
    after = REGISTRY.get_sample_value(
        "cdc_skipped_total", {"pipeline": "p", "mapper": "poison", "reason": "ValueError"})
    assert after == before + 2


def test_a_mapper_override_beats_the_pipeline_policy():
    p, sink = make("fail", mapper_on_error="skip")
    txn(p, row(1, poison=True), row(2), position=10)
    assert [json.loads(s[2])["after"]["id"] for s in sink.sent] == [2]


def test_dead_letter_publishes_the_change_with_the_error_and_waits_for_its_ack():
    p, sink = make("dead_letter")
    txn(p, row(1), row(2, poison=True), row(3), position=10)
    assert sink.topics() == ["public.t", DLQ, "public.t"]
    topic, key, value, headers = sink.sent[1]
    record = json.loads(value)
    assert record["stage"] == "mapper" and record["mapper"] == "poison"
    assert record["error_type"] == "ValueError"
    assert record["error_message"] == "row 2 is poison"
    assert "Traceback" in record["traceback"] and "in poison" in record["traceback"]
    assert record["pipeline"] == "p"
    assert record["change"]["after"] == {"id": 2, "poison": True}
    assert record["change"]["table"] == "t"
    assert record["event_id"] == "66/0"
    assert headers == [("cdc-event-id", b"66/0/dlq")]
    assert json.loads(key) == {"id": 2}
    # The dead-letter record is pending like any event: no checkpoint before its ack.
    assert p.checkpointer.advance() is None
    p._service()
    assert p.source.acked == [10]  # type: ignore[attr-defined]


def test_a_dead_letter_record_the_broker_refuses_is_fatal():
    p, sink = make("dead_letter")
    sink.refuse[DLQ] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    txn(p, row(1, poison=True), position=10)
    with pytest.raises(SinkError, match="refused"):
        p._service()
    assert p.source.acked == []  # type: ignore[attr-defined]


def test_a_serialization_error_goes_through_the_pipeline_policy():
    class Boom:
        pass

    for policy in ("fail", "skip", "dead_letter"):
        p, sink = make(policy)
        bad = row(1, odd=Boom())
        if policy == "fail":
            with pytest.raises(Exception, match="Boom|serializ|encode"):
                txn(p, bad, position=10)
            continue
        txn(p, bad, row(2), position=10)
        published = [json.loads(v)["after"]["id"] for t, _, v, _ in sink.sent if t != DLQ]
        assert published == [2]
        if policy == "dead_letter":
            (record,) = dead_letters(sink)
            assert record["stage"] == "format" and record["mapper"] is None
            assert record["change"]["after"]["id"] == 1
        p._service()
        assert p.source.acked == [10]  # type: ignore[attr-defined]


def test_a_message_too_large_for_produce_under_each_policy():
    big = "x" * 5000
    for policy in ("fail", "skip", "dead_letter"):
        p, sink = make(policy, sink=FakeSink(limit=2000), max_message_bytes=2000)
        if policy == "fail":
            with pytest.raises(SinkError, match="cannot produce"):
                txn(p, row(1, text=big), position=10)
            continue
        txn(p, row(1, text=big), row(2), position=10)
        assert [json.loads(v)["after"]["id"] for t, _, v, _ in sink.sent if t != DLQ] == [2]
        if policy == "dead_letter":
            (record,) = dead_letters(sink)
            assert record["stage"] == "broker"
            assert record["error_type"] == "MSG_SIZE_TOO_LARGE"
            assert record["event_id"] == "65/0"
            # cut down to fit the same limit: the long column is truncated
            assert record["truncated"]["columns"] == ["after.text"]
            assert len(sink.sent[0][2]) <= 2000
        p._service()
        assert p.source.acked == [10]  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [10, TRACK_MIN_BYTES + 10])
def test_a_delivery_report_refusal_under_dead_letter(size):
    p, sink = make("dead_letter")
    sink.refuse["public.t"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    txn(p, row(1, text="y" * size), position=10)
    p._service()  # the refusal arrives; the dead-letter record is produced
    (record,) = dead_letters(sink)
    assert record["stage"] == "broker" and record["error_type"] == "MSG_SIZE_TOO_LARGE"
    assert record["event_id"] == "65/0" and record["topic"] == "public.t"
    if size > TRACK_MIN_BYTES:  # big messages keep their change
        assert record["change"]["after"]["id"] == 1
    else:  # small ones are reported from the refused message itself
        assert record["change"] is None
        assert record["message"]["value"]["after"]["id"] == 1
    assert p.source.acked == []  # type: ignore[attr-defined]  # waits for the record's ack
    p._service()
    assert p.source.acked == [10]  # type: ignore[attr-defined]


def test_a_delivery_report_refusal_under_skip_and_fail():
    p, sink = make("skip")
    sink.refuse["public.t"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    txn(p, row(1), position=10)
    p._service()
    assert p.source.acked == [10]  # type: ignore[attr-defined]

    p, sink = make("fail")
    sink.refuse["public.t"] = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "too large")
    txn(p, row(1), position=10)
    with pytest.raises(SinkError, match="checkpoint stays before it"):
        p._service()
    assert p.source.acked == []  # type: ignore[attr-defined]


def test_broker_trouble_that_is_not_about_the_message_is_never_skipped():
    p, sink = make("skip")
    sink.refuse["public.t"] = KafkaError(KafkaError._MSG_TIMED_OUT, "timed out")
    txn(p, row(1), position=10)
    with pytest.raises(SinkError, match="timed out"):
        p._service()
    assert p.source.acked == []  # type: ignore[attr-defined]


def test_a_generator_mapper_failing_midway_drops_what_it_yielded():
    def gen(c: Change) -> Any:
        yield c
        raise RuntimeError("half way")

    failures: list[Any] = []
    chain = MapperChain([LoadedMapper("gen", gen, on_error="skip")],
                        on_failure=lambda e, policy: failures.append((e.mapper, policy)))
    assert chain.apply(row(1)) == []
    assert failures == [("gen", "skip")]


def test_the_source_is_never_told_idle_in_the_middle_of_a_burst():
    # A source may have read past the items of its burst (PostgreSQL notes the
    # keepalive's position while reading): "idle" mid-burst would let it confirm
    # that position before the rest of the burst is published.
    import threading

    from cdc.pipeline import SERVICE_EVERY

    class BurstSource(FakeSource):
        def __init__(self) -> None:
            super().__init__()
            self.ticks: list[tuple[int, bool]] = []
            self.bursts = 0
            self.done = 0

        def read(self, timeout: float) -> list[Any]:
            self.bursts += 1
            if self.bursts > 1:
                stop.set()
                return []
            items: list[Any] = []
            for i in range(SERVICE_EVERY + 10):  # one-row transactions
                items += [row(i), Commit(1000 + i)]
            return items

        def tick(self, idle: bool) -> None:
            self.ticks.append((self.bursts, idle))

    source = BurstSource()
    sink = FakeSink()
    p = Pipeline("p", source, None, make_format("json").render, sink, FakeStore(),  # type: ignore[arg-type]
                 "{schema}.{table}")  # fmt: skip
    stop = threading.Event()
    p._loop(stop)
    mid_burst = [idle for burst, idle in source.ticks if burst == 1][:-1]
    assert mid_burst and not any(mid_burst)
    assert source.ticks[-1][1] is True  # after the burst, all acknowledged: idle


def test_a_decoder_rendered_row_refused_by_the_broker_is_dead_lettered_as_rendered():
    # Without mappers the PostgreSQL decoder hands the format a RenderedRow; a
    # dead-letter record shows that row as the format encoded it.
    from cdc.model import RenderedRow

    sink = FakeSink(limit=2000)
    p = Pipeline("p", FakeSource(), None, make_format("debezium").render, sink, FakeStore(),  # type: ignore[arg-type]
                 "{schema}.{table}", on_error="dead_letter", dead_letter_topic=DLQ,
                 max_message_bytes=2000)  # fmt: skip
    c = row(1)
    c.columns = {"id": "int4", "day": "date", "text": "text"}
    c.after = RenderedRow('{"id":1,"day":19782,"text":"' + "x" * 3000 + '"}')  # type: ignore[assignment]
    txn(p, c, position=10)
    (record,) = dead_letters(sink)
    assert record["error_type"] == "MSG_SIZE_TOO_LARGE"
    assert record["change"]["after"]["id"] == 1 and record["change"]["after"]["day"] == 19782
    assert record["change"]["table"] == "t"


def test_in_flight_is_published_while_the_sink_waits_for_the_broker():
    p, sink = make("fail")
    p._process(row(1))
    p._process(row(2))
    p.metrics.in_flight.set(-1)  # the gauge is shared by every pipeline named "p"
    p._metrics_at = 0.0
    p._while_blocked()  # called by the sink between polls of a full queue
    assert p.metrics.in_flight._value.get() == 2
