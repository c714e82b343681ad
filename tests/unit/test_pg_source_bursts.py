"""PostgresSource.read(): bursts, and messages received after a streamed transaction's commit.

A Stream Commit's replay is lazy and ends the burst; the messages already
received after it must come in the next read() (a kill -9 test once caught
them being dropped), and no keepalive position may be confirmed meanwhile.
"""

from __future__ import annotations

from typing import Any

from cdc.config import PostgresSourceConfig
from cdc.model import Change, Commit
from connectors.postgres.pgoutput import PgoutputDecoder
from connectors.postgres.source import PostgresSource
from tests.unit.test_pgoutput import (
    begin,
    commit,
    insert,
    relation,
    stream_commit,
    stream_start,
    stream_stop,
)

OID = 16500


class FakeStream:
    """The replication stream: each messages() call returns the next batch."""

    def __init__(self, batches: list[list[bytes]]) -> None:
        self.batches = batches
        self.streaming = True
        self.keepalive_lsn = 0
        self.last_status = 0.0
        self.confirmed_lsn = 0
        self.reply_requested = False
        self.sent: list[int] = []
        self.lsn = 0x1000

    def messages(self, timeout: float) -> list[tuple[int, bytes]]:
        if not self.batches:
            return []
        out = []
        for payload in self.batches.pop(0):
            self.lsn += 0x10
            out.append((self.lsn, payload))
        self.keepalive_lsn = self.lsn + 0x10  # a keepalive past everything received
        return out

    def send_status(self, lsn: int) -> None:
        self.sent.append(lsn)
        self.confirmed_lsn = lsn


def source_with(batches: list[list[bytes]]) -> tuple[PostgresSource, FakeStream]:
    config = PostgresSourceConfig(dsn="postgresql://localhost/x", slot="s", publication="p",
                                  heartbeat_interval=0)  # fmt: skip
    source = PostgresSource(config)
    stream = FakeStream(batches)
    source._stream = stream  # type: ignore[assignment]
    source._decoder = PgoutputDecoder("x", spill_threshold=1 << 20)
    return source, stream


def ids(items: Any) -> list[Any]:
    return [i.after["id"] if type(i) is Change else "commit" for i in items]


def test_messages_after_a_streamed_commit_come_in_the_next_read() -> None:
    rel = relation(OID, "t", [("id", 23, True)])
    streamed = [
        stream_start(900), relation(OID, "t", [("id", 23, True)], xid=900),
        insert(OID, ["1"], xid=900), insert(OID, ["2"], xid=900), stream_stop(),
        stream_commit(900, 0x5000, 0x5008),
    ]  # fmt: skip
    after = [begin(0x6000, 901), insert(OID, ["3"]), commit(0x6000, 0x6008)]
    source, stream = source_with([[rel, *streamed, *after], []])
    first = list(source.read(0))
    assert ids(first) == [1, 2, "commit"]
    # Idle and nothing open in the decoder, but message 3 is received and not
    # published: the keepalive position must not be confirmed.
    source._acked = 0
    source.tick(True)
    assert all(lsn < stream.keepalive_lsn for lsn in stream.sent)
    second = list(source.read(0))
    assert ids(second) == [3, "commit"]
    assert isinstance(second[-1], Commit) and second[-1].position == 0x6008
    assert list(source.read(0)) == []
