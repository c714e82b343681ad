"""A buffer for one streamed transaction that spills to disk past a size limit.

A streamed transaction (pgoutput protocol v2+) can be arbitrarily large and
only becomes real at Stream Commit, so its messages must be kept until then
without keeping them all in memory. `SpillBuffer` holds items in a list until
their approximate size passes `threshold`, then appends them to a temporary
file as pickled chunks, and replays everything in order at the end.

Example::

    buf = SpillBuffer(threshold=1 << 20)
    for item in items:
        buf.append(item, size=len(item))
    for item in buf.replay():   # disk chunks first, then what is in memory
        ...
    # replay() closes the buffer when it finishes; close() is idempotent
"""

from __future__ import annotations

import os
import pickle
import tempfile
import weakref
from collections.abc import Callable, Generator
from typing import Any, BinaryIO

# Items are pickled in chunks of about this many bytes, so neither writing nor
# reading back ever holds more than one chunk's pickle in memory at once.
_CHUNK_BYTES = 1 << 20


def remove_stale(directory: str | None, prefix: str) -> list[str]:
    """Delete spill files left by an earlier process (e.g. one killed with -9).

    Only call it while holding whatever `prefix` names (the replication slot):
    another live process could otherwise lose a file it is using.
    """
    directory = directory or tempfile.gettempdir()
    removed: list[str] = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for name in names:
        if name.startswith(prefix) and name.endswith(".spill"):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


class MemoryBudget:
    """One memory limit shared by several SpillBuffers.

    PostgreSQL may stream many large transactions at once; a limit per buffer
    would let N of them hold N times the limit. Past the shared limit, the
    buffer holding the most memory spills.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.buffers: set[SpillBuffer] = set()

    def grew(self) -> None:
        if self.used > self.limit and self.buffers:
            largest = max(self.buffers, key=lambda b: b.memory_size)
            if largest.memory_size:
                largest._spill()


class SpillBuffer:
    """An append-only, replay-once sequence of picklable items with bounded memory."""

    def __init__(
        self,
        threshold: int,
        directory: str | None = None,
        prefix: str = "cdc-stream-",
        budget: MemoryBudget | None = None,
    ) -> None:
        # A buffer of its own has its own limit; a shared budget replaces it.
        self.budget = budget if budget is not None else MemoryBudget(threshold)
        self.budget.buffers.add(self)
        self.directory = directory
        self.prefix = prefix
        self.path: str | None = None  # the spill file, once there is one
        self._file: BinaryIO | None = None
        self._chunks = 0  # pickled chunks in the file
        self._items: list[Any] = []
        self._memory = 0  # approximate bytes held in _items
        self._closed = False
        # Deletes the file even if the owner forgets the buffer without closing
        # it (e.g. a replay generator dropped before its first item).
        self._finalizer: weakref.finalize | None = None

    @property
    def spilled(self) -> bool:
        """True once anything has been written to disk."""
        return self._chunks > 0

    @property
    def memory_size(self) -> int:
        """Approximate bytes currently held in memory."""
        return self._memory

    def append(self, item: Any, size: int) -> None:
        """Add `item`, whose approximate in-memory size is `size` bytes."""
        if self._closed:
            raise ValueError("append to a closed SpillBuffer")
        self._items.append(item)
        self._memory += size
        self.budget.used += size
        self.budget.grew()

    def discard(self, predicate: Callable[[Any], bool]) -> None:
        """Drop the items still in memory for which `predicate` is true.

        Items already on disk are not touched: the caller filters those when
        replaying (rewriting the file to drop them would cost more than it saves).
        """
        before = len(self._items)
        if not before:
            return
        self._items = [item for item in self._items if not predicate(item)]
        # Sizes are not kept per item: scale the estimate by the share kept.
        kept = self._memory * len(self._items) // before
        self.budget.used -= self._memory - kept
        self._memory = kept

    def replay(self) -> Generator[Any, None, None]:
        """Yield every item in append order, then close the buffer.

        Reads the file back one chunk at a time. Closing the generator early
        (or losing it) also closes the buffer and deletes the file.
        """
        for chunk in self.replay_chunks():
            yield from chunk

    def replay_chunks(self) -> Generator[list[Any], None, None]:
        """`replay()` a list at a time: each chunk read back from the file (about
        1 MB of pickle), then the items still in memory."""
        if self._closed:
            raise ValueError("replay of a closed SpillBuffer")
        try:
            if self._file is not None:
                self._file.flush()
                self._file.seek(0)
                for _ in range(self._chunks):
                    yield pickle.load(self._file)
            items, self._items = self._items, []
            self._release()
            if items:
                yield items
        finally:
            self.close()

    def close(self) -> None:
        """Forget every item and delete the spill file. Safe to call twice."""
        self._closed = True
        self._items = []
        self._release()
        self.budget.buffers.discard(self)
        self._file = None
        self.path = None
        if self._finalizer is not None:
            self._finalizer()  # closes and deletes the file, once

    def _spill(self) -> None:
        if self._file is None:
            fd, self.path = tempfile.mkstemp(
                prefix=self.prefix, suffix=".spill", dir=self.directory
            )
            self._file = os.fdopen(fd, "w+b")
            self._finalizer = weakref.finalize(self, _remove, self._file, self.path)
        items = self._items
        per_chunk = max(1, len(items) * _CHUNK_BYTES // max(self._memory, 1))
        for start in range(0, len(items), per_chunk):
            self._write_chunk(items[start : start + per_chunk])
        self._items = []
        self._release()

    def _release(self) -> None:
        """Give the memory of the items no longer held back to the budget."""
        self.budget.used -= self._memory
        self._memory = 0

    def _write_chunk(self, chunk: list[Any]) -> None:
        assert self._file is not None
        pickle.dump(chunk, self._file, protocol=pickle.HIGHEST_PROTOCOL)
        self._chunks += 1

    def __enter__(self) -> SpillBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove(file: BinaryIO, path: str) -> None:
    file.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
