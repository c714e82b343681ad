"""Which source position is safe to confirm, given the broker's acknowledgements.

Every transaction read from the source gets a `Txn` tracker. Each event
produced for it adds one to `pending`; each delivery report takes one off.
Transactions are kept in commit order, and the safe position only moves past a
transaction once it is closed (its Commit was seen) and nothing of it, nor of
any earlier transaction, is pending. Acknowledgements may arrive out of order
across partitions; this rule makes that harmless.

A failed delivery report does not count the event as done: it is queued in
`Checkpointer.refused` for the pipeline, which decides by its error policy
(fail, skip, dead_letter) and only then calls `Txn.settle()`. Dead-letter
records report through `Txn.on_dead_letter_delivery`, where any failure is
fatal (`Checkpointer.failure`).

All of this runs on the pipeline's thread: confluent-kafka calls delivery
callbacks from `poll()`/`flush()`, which the pipeline calls itself.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message

from .model import Change


class Refusal:
    """A message the broker refused: its error, the report's message and its transaction.

    `change` is the change the message was rendered from when the pipeline
    kept it (see `Tracked`), else None.
    """

    __slots__ = ("error", "message", "txn", "change")

    def __init__(self, error: KafkaError, message: Message, txn: Txn, change: Change | None):
        self.error = error
        self.message = message
        self.txn = txn
        self.change = change


class Txn:
    """Delivery bookkeeping of one source transaction."""

    __slots__ = ("pending", "position", "closed", "commit_ts", "earlier_commit_ts",
                 "on_delivery", "on_dead_letter_delivery", "_owner")  # fmt: skip

    def __init__(self, owner: Checkpointer):
        self.pending = 0
        self.position: Any = None
        self.closed = False
        self.commit_ts = 0  # the source's commit time, µs since the epoch (0: unknown)
        # Where the source handed several whole transactions as one (see
        # Commit.earlier_commit_ts): the commit times of all but the last.
        self.earlier_commit_ts: Sequence[int] = ()
        self._owner = owner
        # One bound method per transaction, handed to every produce() call of
        # it: no per-event closure.
        self.on_delivery = self._delivered
        self.on_dead_letter_delivery = self._dead_letter_delivered

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._owner.refuse(Refusal(err, msg, self, None))
            return
        self.pending -= 1

    def _dead_letter_delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            # Nowhere left to put it: stop, the checkpoint stays before it.
            self._owner.failure = (err, msg)
            return
        self.pending -= 1

    def release(self) -> None:
        """Drop the bound methods, a reference cycle with this Txn, once every report
        has come: the Txn is then freed by reference counting, not by the garbage
        collector (one per transaction: most of the collector's work otherwise)."""
        del self.on_delivery, self.on_dead_letter_delivery

    def settle(self) -> None:
        """Count a refused event as done (skipped, or its dead-letter record is pending)."""
        self.pending -= 1


class Tracked:
    """Delivery callback of one message that keeps the change it was rendered from.

    Only for messages big enough that a broker may refuse them for their size:
    small ones share their transaction's bound method, so the common case
    allocates nothing per event.
    """

    __slots__ = ("txn", "change")

    def __init__(self, txn: Txn, change: Change):
        self.txn = txn
        self.change = change

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.txn._owner.refuse(Refusal(err, msg, self.txn, self.change))
            return
        self.txn.pending -= 1


class Checkpointer:
    """Tracks open transactions and yields the newest fully acknowledged position."""

    def __init__(self) -> None:
        self._open: deque[Txn] = deque()
        # A failure nothing can recover from: the pipeline stops.
        self.failure: tuple[KafkaError, Message] | None = None
        # Refused messages waiting for the pipeline's error policy, in report order.
        self.refused: list[Refusal] = []
        self.acked_position: Any = None
        # Transactions fully acknowledged, and their commit -> acknowledgement
        # latencies in seconds, since the pipeline last collected them.
        self.acked = 0
        self.latencies: list[float] = []

    def refuse(self, refusal: Refusal) -> None:
        self.refused.append(refusal)
        if self.failure is None:
            self.failure = (refusal.error, refusal.message)

    def take_refused(self) -> list[Refusal]:
        """The refusals reported since the last call; clears `failure` they caused."""
        refused, self.refused = self.refused, []
        if self.failure is not None and any(self.failure[1] is r.message for r in refused):
            self.failure = None
        return refused

    def begin(self) -> Txn:
        txn = Txn(self)
        self._open.append(txn)
        return txn

    def commit(self, txn: Txn, position: Any, commit_ts: int = 0,
               earlier_commit_ts: Sequence[int] = ()) -> None:  # fmt: skip
        txn.position = position
        txn.commit_ts = commit_ts
        txn.earlier_commit_ts = earlier_commit_ts
        txn.closed = True

    def advance(self) -> Any | None:
        """Drop the finished head transactions; return the new safe position, if it moved."""
        moved = None
        queue = self._open
        if not queue or not queue[0].closed or queue[0].pending:
            return None
        now_us = time.time() * 1e6
        latencies = self.latencies
        acked = 0
        while queue:
            head = queue[0]
            if not head.closed or head.pending:
                break
            queue.popleft()
            head.release()
            acked += 1
            if head.commit_ts:
                latencies.append((now_us - head.commit_ts) / 1e6)
            if head.earlier_commit_ts:
                acked += len(head.earlier_commit_ts)
                latencies.extend([(now_us - ts) / 1e6 for ts in head.earlier_commit_ts if ts])
            if head.position is not None:
                moved = head.position
        self.acked += acked
        if moved is not None:
            self.acked_position = moved
        return moved

    def take_stats(self) -> tuple[int, list[float]]:
        """Transactions acknowledged and their latencies since the last call."""
        stats = (self.acked, self.latencies)
        self.acked, self.latencies = 0, []
        return stats

    @property
    def idle(self) -> bool:
        """True when no transaction is open or waiting for the broker."""
        return not self._open

    @property
    def in_flight(self) -> int:
        return sum(t.pending for t in self._open)
