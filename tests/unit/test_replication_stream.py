"""ReplicationStream's CopyBoth framing against a scripted connection (no server)."""

import struct

from connectors.postgres.replication import ReplicationStream


class ScriptedPGconn:
    """Hands out CopyData messages in order; records what the client sends."""

    socket = -1

    def __init__(self, messages):
        self.messages = list(messages)
        self.sent = []

    def get_copy_data(self, async_):
        if self.messages:
            data = self.messages.pop(0)
            return len(data), data
        return 0, b""

    def put_copy_data(self, data):
        self.sent.append(bytes(data))
        return 1

    def flush(self):
        return 0


def xlogdata(start, end, payload):
    return b"w" + struct.pack("!QQq", start, end, 0) + payload


def keepalive(wal_end, reply):
    return b"k" + struct.pack("!Qq?", wal_end, 0, reply)


def stream_with(messages):
    stream = ReplicationStream("postgresql://unused")
    stream._pgconn = ScriptedPGconn(messages)  # type: ignore[assignment]
    return stream


def test_data_is_yielded_and_a_requested_reply_ends_the_burst():
    stream = stream_with([
        xlogdata(100, 110, b"B..."),
        keepalive(200, reply=False),
        xlogdata(110, 120, b"C..."),
        keepalive(300, reply=True),
        xlogdata(120, 130, b"I..."),  # must wait until the reply is sent
    ])
    got = [(start, bytes(payload)) for start, payload in stream.messages(timeout=0)]
    assert got == [(100, b"B..."), (110, b"C...")]
    assert stream.reply_requested and stream.keepalive_lsn == 300

    stream.send_status(120)
    [status] = stream._pgconn.sent
    kind, written, flushed, applied, _, reply = struct.unpack("!cQQQq?", status)
    assert (kind, written, flushed, applied, reply) == (b"r", 120, 120, 120, False)
    assert not stream.reply_requested
    assert [s for s, _ in stream.messages(timeout=0)] == [120]


def test_status_never_moves_backwards():
    stream = stream_with([])
    stream.send_status(500)
    stream.send_status(400)
    flushed = [struct.unpack("!cQQQq?", s)[2] for s in stream._pgconn.sent]
    assert flushed == [500, 500]
    assert stream.confirmed_lsn == 500
