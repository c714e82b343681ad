"""A first run records where it starts before reading anything."""

import threading
from typing import Any

from cdc.chain import MapperChain
from cdc.pipeline import Pipeline
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
