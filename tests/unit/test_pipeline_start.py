"""How a pipeline starts and waits: where a first run starts, the read timeouts."""

import threading
from typing import Any

from cdc.chain import MapperChain
from cdc.model import Commit
from cdc.pipeline import IN_FLIGHT_READ_TIMEOUT, READ_TIMEOUT, Pipeline
from cdc.testing import change
from mappers.formats import make_format
from tests.unit.test_error_policies import FakeSink


class StartingSource:
    """Opens at a position only it knows, then has nothing to read."""

    finished = True

    def __init__(self, start_position: Any) -> None:
        self.start_position = start_position
        self.opened_with: Any = "not opened"

    def open(self, stored: Any) -> None:
        self.opened_with = stored

    def read(self, timeout: float) -> list[Any]:
        return []

    def ack(self, position: Any) -> None:
        pass

    def tick(self, idle: bool) -> None:
        pass

    def position_to_store(self, position: Any) -> dict[str, Any]:
        return {"position": list(position)}

    def close(self) -> None:
        pass


class MemoryStore:
    def __init__(self, offsets: dict[str, Any] | None = None) -> None:
        self.offsets = offsets
        self.saves: list[dict[str, Any]] = []

    def load(self) -> dict[str, Any] | None:
        return self.offsets

    def save(self, offsets: dict[str, Any]) -> None:
        self.saves.append(offsets)
        self.offsets = offsets


def run(source: StartingSource, store: MemoryStore) -> None:
    p = Pipeline("p", source, MapperChain([]), make_format("json").render,  # type: ignore[arg-type]
                 FakeSink(), store, "{table}")  # type: ignore[arg-type]
    p.run(threading.Event())


def test_first_run_saves_its_start_position_at_once():
    store = MemoryStore()
    run(StartingSource(("binlog.000002", 4242, "0-1-7")), store)
    assert store.saves[0]["position"] == ["binlog.000002", 4242, "0-1-7"]


def test_nothing_saved_when_the_store_has_a_position_or_the_database_keeps_it():
    stored = MemoryStore({"position": ["binlog.000001", 4, ""]})
    source = StartingSource(("binlog.000002", 4242, ""))
    run(source, stored)
    assert source.opened_with == {"position": ["binlog.000001", 4, ""]}
    assert stored.saves == []
    slot_kept = MemoryStore()
    run(StartingSource(None), slot_kept)
    assert slot_kept.saves == []


class HeldSink(FakeSink):
    """Delivers nothing for the first `hold` polls; records when it was started."""

    def __init__(self, hold: int, events: list[str]) -> None:
        super().__init__()
        self.hold = hold
        self.events = events

    def start(self) -> None:
        self.events.append("sink started")

    def poll(self, timeout: float = 0.0) -> int:
        if self.hold:
            self.hold -= 1
            return 0
        return super().poll(timeout)


class OneTransaction(StartingSource):
    """One change and its commit, then nothing; records each read's timeout."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(None)
        self.events = events
        self.timeouts: list[float] = []
        self.items: list[Any] = [change("t", after={"id": 1}), Commit(("b.000001", 5))]

    def open(self, stored: Any) -> None:
        self.events.append("source opened")

    def read(self, timeout: float) -> list[Any]:
        self.timeouts.append(timeout)
        items, self.items = self.items, []
        return items


def test_reads_wait_briefly_while_events_await_the_broker():
    # Acknowledgements are taken up within IN_FLIGHT_READ_TIMEOUT, not after a
    # full read timeout on a quiet source; the producer connects before the source opens.
    events: list[str] = []
    source = OneTransaction(events)
    p = Pipeline("p", source, MapperChain([]), make_format("json").render,  # type: ignore[arg-type]
                 HeldSink(6, events), MemoryStore(), "{table}")  # type: ignore[arg-type]
    p.run(threading.Event())
    assert events == ["sink started", "source opened"]
    assert source.timeouts[0] == READ_TIMEOUT  # nothing in flight yet
    assert source.timeouts[1:] and set(source.timeouts[1:]) == {IN_FLIGHT_READ_TIMEOUT}
    assert p.checkpointer.acked_position == ("b.000001", 5)
