"""What the tests of whole records (cdc.model.RowRecords) share: a sink that
captures what a pipeline produces, a store that keeps nothing, the item loop,
and the comparison of a run with and without the whole-record path.

A source's items go through a real Pipeline (`feed`); the sink masks the time
of rendering, which is the one thing two runs may render differently.
"""

from __future__ import annotations

import re
from typing import Any

from cdc.model import Change, Commit, RecordFormat, RowRecords
from cdc.pipeline import Pipeline
from cdc.render import TopicNamer
from mappers.debezium import DebeziumFormat


def record_format(fmt: DebeziumFormat, topic: str = "{database}.{table}.{op}") -> RecordFormat:
    return RecordFormat(fmt.record_template, TopicNamer(topic, "p"), fmt.tombstones)


class Sink:
    wait_hook = None

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, Any, Any]] = []

    def start(self) -> None:
        pass

    def send(self, topic: str, key: Any, value: Any, headers: Any, callback: Any) -> None:
        if value is not None:  # the time of rendering differs between runs: a row's
            # value ends in it, a logical message's (PostgreSQL) begins with it
            value, n = re.subn(rb',"ts_ms":\d+,"ts_us":\d+,"ts_ns":\d+}$',
                               b',"ts_ms":T,"ts_us":T,"ts_ns":T}', value)  # fmt: skip
            if n == 0:
                value, n = re.subn(rb'^{"op":"m","ts_ms":(\d+|T),', b'{"op":"m","ts_ms":T,', value)
            assert n == 1, value
        self.sent.append((topic, key, value, headers))
        callback(None, None)

    def producer_produce(self) -> Any:
        def produce(topic: str, value: Any, key: Any, partition: int, callback: Any,
                    on_delivery: None, timestamp: int, headers: Any) -> None:  # fmt: skip
            assert partition == -1 and on_delivery is None and timestamp == 0
            self.send(topic, key, value, headers, callback)

        return produce

    def poll(self, timeout: float = 0) -> int:
        return 0


class Store:
    def load(self) -> None:
        return None

    def save(self, offsets: Any) -> None:
        pass


def pipeline(source: Any, fmt: DebeziumFormat, sink: Sink, topic: str) -> Pipeline:
    return Pipeline("p", source, None, fmt.render, sink, Store(), topic)  # type: ignore[arg-type]


def feed(pipeline: Pipeline, items: Any, kinds: set[type] | None = None) -> list[Commit]:
    """Every item through the pipeline as its loop would; the Commits, in order."""
    commits = []
    for item in items:
        if kinds is not None:
            kinds.add(type(item))
        if type(item) is Change:
            pipeline._process(item)
        elif type(item) is RowRecords:
            pipeline._process_records(item)
        else:
            assert type(item) is Commit
            pipeline._commit(item)
            commits.append(item)
    return commits


def outcome(pipeline: Pipeline, sink: Sink, commits: list[Commit], kinds: set[type]
            ) -> dict[str, Any]:  # fmt: skip
    """What a run made: records, acknowledged position, positions, commit times,
    transactions, item kinds and the pipeline's counts."""
    acked = pipeline.checkpointer.advance()
    transactions, _ = pipeline.checkpointer.take_stats()
    return {
        "sent": sink.sent,
        "acked": acked,
        "positions": [c.position for c in commits],
        "commit_times": [t for c in commits for t in (*c.earlier_commit_ts, c.commit_ts)],
        "transactions": transactions,
        "kinds": kinds,
        "counts": pipeline.counts,
    }


def assert_same(want: dict[str, Any], got: dict[str, Any]) -> None:
    """`got` (with whole records) made what `want` (the general path) made; whole
    transactions end in one Commit, so its positions are some of want's, in order."""
    assert RowRecords not in want["kinds"]
    for name in want:
        if name not in ("positions", "kinds"):
            assert got[name] == want[name], name
    positions = iter(want["positions"])
    assert all(p in positions for p in got["positions"])
