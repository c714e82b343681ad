"""What a source connector must do for the pipeline runtime."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from .model import Change, Commit, RowRecords


class Source(Protocol):
    """A database log reader.

    The pipeline calls `open()` once, then loops over `read()`. Every change
    of a transaction comes before its `Commit`; transactions come in commit
    order. `ack(position)` tells the source that every event up to that
    `Commit.position` is acknowledged by the broker, so it may confirm it to
    the server (PostgreSQL slot) — never further.

    `tick(idle)` is called often, also while the sink is blocked on a full
    producer queue: the source sends its keepalives and status updates there.
    `idle` is True when no event is waiting for the broker and every item of
    the last `read()` has been processed (never in the middle of a burst),
    which lets a source confirm log positions that carried nothing for it.
    `read()` returns a burst: a list, or a lazy iterable (a big transaction
    read back from disk), consumed before the next `read()`. A source given a
    `record_format` (`RecordFormat`) by the runtime may give the records of
    row events, or of whole transactions, rendered whole (`RowRecords`) in
    place of their changes.
    """

    name: str
    finished: bool  # True when the source has nothing more to give (snapshot-only runs)
    # Where a first run started, when only the offset store will remember it (MySQL);
    # None when the database keeps the position itself (a PostgreSQL slot).
    start_position: Any

    def open(self, stored_position: Any | None) -> None: ...

    def read(self, timeout: float) -> Iterable[Change | Commit | RowRecords]: ...

    def ack(self, position: Any) -> None: ...

    def tick(self, idle: bool) -> None: ...

    def position_to_store(self, position: Any) -> dict[str, Any]: ...

    def close(self) -> None: ...


def snapshot_owed(mode: str, stored: dict[str, Any] | None) -> bool:
    """Whether a run in snapshot `mode` must read the tables, given the stored offsets.

    `always` does at every start; `initial` and `initial_only` until a snapshot
    was recorded complete (`snapshot_complete` in the offsets); `never` never.
    """
    if mode == "always":
        return True
    if mode == "never":
        return False
    return not (stored and stored.get("snapshot_complete"))
