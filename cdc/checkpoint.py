"""Which source position is safe to confirm, given the broker's acknowledgements.

Every transaction read from the source gets a `Txn` tracker. Each event
produced for it adds one to `pending`; each delivery report takes one off.
Transactions are kept in commit order, and the safe position only moves past a
transaction once it is closed (its Commit was seen) and nothing of it, nor of
any earlier transaction, is pending. Acknowledgements may arrive out of order
across partitions; this rule makes that harmless.

All of this runs on the pipeline's thread: confluent-kafka calls delivery
callbacks from `poll()`/`flush()`, which the pipeline calls itself.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from confluent_kafka import KafkaError, Message


class Txn:
    """Delivery bookkeeping of one source transaction."""

    __slots__ = ("pending", "position", "closed", "on_delivery", "_owner")

    def __init__(self, owner: Checkpointer):
        self.pending = 0
        self.position: Any = None
        self.closed = False
        self._owner = owner
        # One bound method per transaction, handed to every produce() call of
        # it: no per-event closure.
        self.on_delivery = self._delivered

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._owner.failure = (err, msg)
            return
        self.pending -= 1


class Checkpointer:
    """Tracks open transactions and yields the newest fully acknowledged position."""

    def __init__(self) -> None:
        self._open: deque[Txn] = deque()
        self.failure: tuple[KafkaError, Message] | None = None
        self.acked_position: Any = None

    def begin(self) -> Txn:
        txn = Txn(self)
        self._open.append(txn)
        return txn

    def commit(self, txn: Txn, position: Any) -> None:
        txn.position = position
        txn.closed = True

    def advance(self) -> Any | None:
        """Drop the finished head transactions; return the new safe position, if it moved."""
        moved = None
        queue = self._open
        while queue:
            head = queue[0]
            if not head.closed or head.pending:
                break
            queue.popleft()
            if head.position is not None:
                moved = head.position
        if moved is not None:
            self.acked_position = moved
        return moved

    @property
    def idle(self) -> bool:
        """True when no transaction is open or waiting for the broker."""
        return not self._open

    @property
    def in_flight(self) -> int:
        return sum(t.pending for t in self._open)
