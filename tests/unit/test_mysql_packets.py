"""PacketReader: MySQL protocol packets from a socket, however the bytes arrive
and however they are taken (one by one or every buffered one at once)."""

from __future__ import annotations

import random
import socket
import threading

import pytest

from cdc.errors import ConnectionLost
from connectors.mysql.source import PacketReader


def _frame(payload: bytes, seq: int = 0) -> bytes:
    """One logical packet as the server frames it: 16 MiB - 1 chunks, then the rest."""
    out = b""
    while True:
        chunk, payload = payload[:0xFFFFFF], payload[0xFFFFFF:]
        out += len(chunk).to_bytes(3, "little") + bytes((seq & 0xFF,)) + chunk
        seq += 1
        if len(chunk) < 0xFFFFFF:
            return out


def _send_in_pieces(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    pos = 0
    while pos < len(data):
        n = rng.choice([1, 3, 4, 5, 17, 1000, 70000])
        sock.sendall(data[pos : pos + n])
        pos += n
    sock.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_packets_come_out_whole_however_the_bytes_are_split(seed: int) -> None:
    rng = random.Random(seed)
    payloads = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 20, 300, 5000])))
                for _ in range(300)]  # fmt: skip
    payloads.insert(150, b"x" * 0xFFFFFF)  # exactly one full chunk: then an empty one
    payloads.insert(200, b"\x00" + b"y" * (0xFFFFFF + 10))
    ours, theirs = socket.socketpair()
    data = b"".join(_frame(p) for p in payloads)
    writer = threading.Thread(target=_send_in_pieces, args=(theirs, data, rng))
    writer.start()
    reader = PacketReader(ours)
    try:
        got: list[bytes] = []
        while len(got) < len(payloads):  # as the source reads them: whole buffered runs
            got += reader.packets() if rng.random() < 0.7 else [reader.packet()]
        assert got == payloads
        with pytest.raises(ConnectionLost, match="closed"):
            reader.packet()
    finally:
        writer.join()
        ours.close()
