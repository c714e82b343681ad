"""Binlog event framing: the common header and the few non-row events the source needs.

Every event is a 19-byte header (timestamp, type, server_id, event size, end
position, flags), a body and, with ``binlog_checksum=CRC32``, a 4-byte
checksum. The source reads raw packets from the replication connection and
splits them here; row and TABLE_MAP bodies go to `rows.RowsDecoder`.

`read_binlog_file(path)` yields the same (header, body) pairs from a binlog
file on disk (tests and benchmarks).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

QUERY_EVENT = 2
STOP_EVENT = 3
ROTATE_EVENT = 4
FORMAT_DESCRIPTION_EVENT = 15
XID_EVENT = 16
HEARTBEAT_EVENT = 27
GTID_EVENT = 33  # MySQL
ANONYMOUS_GTID_EVENT = 34
PREVIOUS_GTIDS_EVENT = 35
TRANSACTION_PAYLOAD_EVENT = 40  # MySQL 8 binlog_transaction_compression
HEARTBEAT_V2_EVENT = 41
MARIADB_ANNOTATE_ROWS_EVENT = 160
MARIADB_GTID_EVENT = 162
MARIADB_GTID_LIST_EVENT = 163
MARIADB_COMPRESSED_EVENTS = frozenset(range(165, 172))  # log_bin_compress

HEADER = struct.Struct("<IBIIIH")
HEADER_SIZE = 19
MARIADB_FL_STANDALONE = 1  # a GTID event not followed by BEGIN ... COMMIT/XID
ARTIFICIAL_FLAG = 0x20  # LOG_EVENT_ARTIFICIAL_F: made up by the dump thread, not in the file


class Header(NamedTuple):
    timestamp: int
    type: int
    server_id: int
    size: int
    log_pos: int  # position of the next event: the end of this one
    flags: int


def parse_rotate(body: bytes) -> tuple[str, int]:
    """ROTATE body -> (next file, position in it)."""
    return body[8:].decode(), int.from_bytes(body[:8], "little")


def parse_query(body: bytes) -> tuple[str, str]:
    """QUERY body -> (default schema, statement text)."""
    schema_len = body[8]
    status_len = body[11] | body[12] << 8
    start = 13 + status_len
    schema = body[start : start + schema_len].decode(errors="replace")
    return schema, body[start + schema_len + 1 :].decode(errors="replace")


# A MariaDB GTID event's body: sequence number, domain id, flags.
MARIADB_GTID = struct.Struct("<QIB")


def parse_mysql_gtid(body: bytes) -> str:
    """MySQL GTID body -> 'uuid:gno'."""
    sid = body[1:17].hex()
    gno = int.from_bytes(body[17:25], "little")
    return f"{sid[:8]}-{sid[8:12]}-{sid[12:16]}-{sid[16:20]}-{sid[20:]}:{gno}"


def read_binlog_file(path: str, checksum: bool = True) -> Iterator[tuple[Header, bytes]]:
    """(header, body) of every event in a binlog file (checksums stripped, not verified)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\xfebin":
        raise ValueError(f"{path} is not a binlog file")
    pos = 4
    tail = 4 if checksum else 0
    unpack = HEADER.unpack_from
    while pos + HEADER_SIZE <= len(data):
        header = Header(*unpack(data, pos))
        end = pos + header.size
        if header.type == FORMAT_DESCRIPTION_EVENT:
            # binlog version (2), server version (50), timestamp (4), header length
            # (1), post-header lengths..., then the checksum algorithm byte.
            body = data[pos + HEADER_SIZE : end]
            tail = 4 if checksum and body[-5] == 1 else 0
            yield header, body[:-5]
        else:
            yield header, data[pos + HEADER_SIZE : end - tail]
        pos = end
