"""Whole MariaDB transactions rendered by the scanner (connectors/accel/mysql_scan.c)
give what the general path gives: the same records, event ids, positions, GTID
state and transaction count, whatever the stream holds and however its bytes
arrive.

Random binlog streams are built from every shape of transaction the scanner
takes or leaves to the Python path (inserts, updates, deletes over several
tables and row events; a key update; NULLs; values the C reader refuses; tables
not captured, or not readable in C; a table altered under the same id; a
COMMIT query; DDL; ANNOTATE_ROWS events; heartbeats; a new binlog file; two
GTID domains), framed as replication packets and fed through a socket pair in
random pieces. The same stream goes through the source twice, with the scanner
and without any whole-record rendering, and through a pipeline into a
capturing sink.
"""

from __future__ import annotations

import random
import re
import socket
import struct
from decimal import Decimal
from typing import Any

import pytest

from cdc.model import Change, Commit, RowRecords
from connectors.mysql import events as ev
from connectors.mysql import rows
from connectors.mysql import source as source_module
from connectors.mysql.rows import (
    DELETE_ROWS_V1,
    T_DATETIME2,
    T_FLOAT,
    T_LONG,
    T_LONGLONG,
    T_NEWDECIMAL,
    T_VARCHAR,
    TABLE_MAP_EVENT,
    UPDATE_ROWS_V1,
    WRITE_ROWS_V1,
    WRITE_ROWS_V2,
    RowsDecoder,
)
from connectors.mysql.source import MysqlSource, PacketReader
from mappers.debezium import DebeziumFormat
from tests.unit.test_mysql_rendered_rows import _pack_datetime2
from tests.unit.test_mysql_rows import _pack_decimal
from tests.unit.test_mysql_source import Binlog, mariadb_gtid, query, source
from tests.unit.whole_records import Sink, assert_same, feed, outcome, pipeline, record_format

pytestmark = pytest.mark.skipif(rows.accelerator is None, reason="the C accelerator is not built")

# (name, type, metadata bytes) of the tables; every column nullable, utf8mb4 text.
ORDERS = [("id", T_LONGLONG, b""), ("code", T_VARCHAR, b"\x28\x00"),
          ("amount", T_NEWDECIMAL, b"\x0c\x02"), ("at", T_DATETIME2, b"\x06"),
          ("note", T_VARCHAR, b"\x90\x01"), ("n", T_LONG, b"")]  # fmt: skip
ORDERS_ALTERED = ORDERS + [("extra", T_LONG, b"")]
FLOATS = [("id", T_LONGLONG, b""), ("f", T_FLOAT, b"\x04")]  # not read in C
NUMERIC = {T_LONGLONG, T_LONG, T_NEWDECIMAL, T_FLOAT}


def table_map(table_id: int, schema: str, table: str, columns: list[tuple[str, int, bytes]],
              key: tuple[int, ...]) -> bytes:  # fmt: skip
    """A TABLE_MAP body as MariaDB writes it with binlog_row_metadata=FULL."""
    n = len(columns)
    body = table_id.to_bytes(6, "little") + b"\x01\x00"
    for name in (schema, table):
        body += bytes((len(name),)) + name.encode() + b"\0"
    body += bytes((n,)) + bytes(t for _, t, _ in columns)
    meta = b"".join(m for _, _, m in columns)
    body += bytes((len(meta),)) + meta + ((1 << n) - 1).to_bytes((n + 7) // 8, "little")
    numeric = sum(t in NUMERIC for _, t, _ in columns)
    body += bytes((1, (numeric + 7) // 8)) + b"\0" * ((numeric + 7) // 8)  # all signed
    body += bytes((2, 1, 45))  # default charset utf8mb4
    names = b"".join(bytes((len(c),)) + c.encode() for c, _, _ in columns)
    body += bytes((4, len(names))) + names
    return body + bytes((8, len(key))) + bytes(key)


def order_image(i: int, code: str = "A-1", note: str | None = "x", n: int | None = 5,
                amount: str | None = None, altered: bool = False) -> bytes:  # fmt: skip
    nulls = (note is None) << 4 | (n is None) << 5
    out = nulls.to_bytes(1, "little") + i.to_bytes(8, "little", signed=True)
    out += bytes((len(code.encode()),)) + code.encode()
    out += _pack_decimal(Decimal(amount or f"{i % 1000 + 10}.25"), 12, 2)
    out += _pack_datetime2((2024, 2, 29, 13, 14, 15, 123456 + i % 1000), 6)
    if note is not None:
        out += len(note.encode()).to_bytes(2, "little") + note.encode()
    if n is not None:
        out += n.to_bytes(4, "little", signed=True)
    if altered:  # 7 columns: the same one-byte null bitmap, one more INT
        out += (7).to_bytes(4, "little")
    return out


def rows_body(table_id: int, ncols: int, images: list[bytes], update: bool = False,
              v2: bool = False) -> bytes:  # fmt: skip
    bitmap = ((1 << ncols) - 1).to_bytes((ncols + 7) // 8, "little")
    body = table_id.to_bytes(6, "little") + b"\x01\x00" + (b"\x02\x00" if v2 else b"")
    return body + bytes((ncols,)) + bitmap + (bitmap if update else b"") + b"".join(images)


class Stream:
    """Random transactions as the server's replication packets (OK byte, event)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.log = Binlog()
        self.packets: list[bytes] = []
        self.seq = 10
        self.ids = {"orders": 40, "items": 41, "hidden": 42, "floats": 43}
        self.altered = False
        self.next_id = 1000

    def add(self, event_type: int, body: bytes, flags: int = 0) -> None:
        packet = self.log.packet(event_type, body)
        if flags:
            packet = packet[:18] + struct.pack("<H", flags) + packet[20:]
        self.packets.append(packet)

    def gtid(self, domain: int = 0, standalone: bool = False, flags: int = 0) -> None:
        self.seq += 1
        body = struct.pack("<QIB", self.seq, domain, (1 if standalone else 0) | flags) + b"\0" * 6
        self.add(ev.MARIADB_GTID_EVENT, body)

    def map(self, name: str) -> int:
        table_id = self.ids[name]
        if name == "floats":
            body = table_map(table_id, "shop", name, FLOATS, (0,))
        else:
            columns = ORDERS_ALTERED if name == "orders" and self.altered else ORDERS
            body = table_map(table_id, "shop" if name != "hidden" else "other", name, columns,
                             (0,) if name != "items" else (1, 0))  # fmt: skip
        self.add(TABLE_MAP_EVENT, body)
        return table_id

    def row_event(self, name: str, kind: str) -> None:
        rng = self.rng
        table_id = self.map(name)
        if rng.random() < 0.2:
            self.add(ev.MARIADB_ANNOTATE_ROWS_EVENT, b"INSERT INTO ...")
        if name == "floats":
            images = [b"\0" + rng.randrange(99).to_bytes(8, "little") + struct.pack("<f", 1.5)]
            self.add(WRITE_ROWS_V1, rows_body(table_id, 2, images))
            return
        altered = name == "orders" and self.altered
        ncols = len(ORDERS_ALTERED if altered else ORDERS)

        def image(i: int, **kw: Any) -> bytes:
            return order_image(i, altered=altered, **kw)

        ids = [rng.randrange(10_000) for _ in range(rng.choice((1, 1, 2, 5)))]
        if kind == "insert":
            images = [image(i, note=rng.choice(("x", None, "é\"\\\n")),
                            n=rng.choice((5, None, -7))) for i in ids]  # fmt: skip
            self.add(rng.choice((WRITE_ROWS_V1, WRITE_ROWS_V1, WRITE_ROWS_V2)),
                     rows_body(table_id, ncols, images, v2=False))  # fmt: skip
            if self.packets[-1][5] == WRITE_ROWS_V2:  # v2 carries extra data
                self.packets.pop()
                self.add(WRITE_ROWS_V2, rows_body(table_id, ncols, images, v2=True))
        elif kind == "update":
            images = []
            for i in ids:
                images += [image(i), image(i, code="B-2", note=None)]
            self.add(UPDATE_ROWS_V1, rows_body(table_id, ncols, images, update=True))
        elif kind == "key update":
            self.add(UPDATE_ROWS_V1, rows_body(table_id, ncols, [image(1), image(2)], update=True))
        elif kind == "refused value":  # "0.25": the C reader's DECIMAL shortcut refuses it
            self.add(WRITE_ROWS_V1, rows_body(table_id, ncols, [image(3, amount="0.25")]))
        else:
            self.add(DELETE_ROWS_V1, rows_body(table_id, ncols, [image(i) for i in ids]))

    def plain(self, count: int, rows: int = 1, *names: str) -> None:
        """`count` transactions of `rows` insert events each (into `names` in turn)."""
        for _ in range(count):
            self.gtid()
            for k in range(rows):
                name = names[k % len(names)] if names else "orders"
                self.row_event(name, "delete" if name == "items" else "insert")
            self.add(ev.XID_EVENT, struct.pack("<Q", self.seq))

    def transaction(self) -> None:
        rng = self.rng
        shape = rng.choices(
            ["rows", "key update", "refused", "commit query", "ddl", "truncate", "alter",
             "rotate", "heartbeat", "floats", "domains", "new id"],
            [30, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 1],
        )[0]  # fmt: skip
        if shape == "rotate":
            self.log.pos = 4
            self.add(ev.ROTATE_EVENT, struct.pack("<Q", 4) + f"binlog.{self.next_id:06d}".encode())
            self.next_id += 1
            return
        if shape == "heartbeat":
            self.add(ev.HEARTBEAT_EVENT, b"binlog")
            return
        if shape in ("ddl", "truncate", "alter"):
            self.gtid(standalone=True)
            sql = {"ddl": "CREATE TABLE shop.t2 (id int)", "truncate": "TRUNCATE TABLE orders",
                   "alter": "ALTER TABLE orders ADD extra int"}[shape]  # fmt: skip
            self.add(ev.QUERY_EVENT, query(sql, "shop"))
            if shape == "alter":
                self.altered = True
            return
        if shape == "new id":  # the server reopened a table: a new id, the same bytes
            self.ids["orders"] += 100
        self.gtid(domain=1 if shape == "domains" else 0)
        for _ in range(rng.choice((1, 1, 2, 3))):
            name = rng.choice(("orders", "orders", "items", "hidden"))
            kind = rng.choice(("insert", "insert", "update", "delete"))
            self.row_event(name, kind)
        if shape in ("key update", "refused"):
            self.row_event("orders", "key update" if shape == "key update" else "refused value")
        if shape == "floats":
            self.row_event("floats", "insert")
        if shape == "commit query":  # a non-transactional engine: no XID
            self.add(ev.QUERY_EVENT, query("COMMIT", "shop"))
        else:
            self.add(ev.XID_EVENT, struct.pack("<Q", self.seq))


def frames(packets: list[bytes]) -> bytes:
    return b"".join(len(p).to_bytes(3, "little") + b"\0" + p for p in packets)


def new_source(fmt: DebeziumFormat, scanned: bool) -> MysqlSource:
    src = source(tables=["shop.orders", "shop.items", "shop.floats"])
    src.json_values = fmt.json_values
    src._decoder = RowsDecoder(is_mariadb=True, json_values=fmt.json_values)
    src._gtid_state = {0: "0-1-4"}
    if scanned:
        src.record_format = record_format(fmt)
        src._scanner = rows.accelerator.Scanner(True)
    return src


def bursts(data: bytes) -> list[list[Any]]:
    """What read() hands out, burst by burst, for the stream sent at once (scanner on)."""
    src = new_source(DebeziumFormat(), True)
    ours, theirs = socket.socketpair()
    src._packets = PacketReader(ours)
    theirs.sendall(data)
    try:
        out = []
        while items := src.read(0):
            out.append(list(items))
        return out
    finally:
        ours.close()
        theirs.close()


def run(stream: bytes, scanned: bool, cuts: list[int], tombstones: bool = True) -> dict[str, Any]:
    """Everything a pipeline makes of the stream, fed to the source in pieces."""
    fmt = DebeziumFormat(tombstones=tombstones)
    src = new_source(fmt, scanned)
    ours, theirs = socket.socketpair()
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    src._packets = PacketReader(ours)
    sink = Sink()
    run = pipeline(src, fmt, sink, "{database}.{table}.{op}")
    commits: list[Commit] = []
    kinds: set[type] = set()
    try:
        for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            theirs.sendall(stream[start:end])
            while items := src.read(0):
                commits += feed(run, items, kinds)
        assert src._packets.pos == len(src._packets.buf)  # everything read
    finally:
        ours.close()
        theirs.close()
    made = outcome(run, sink, commits, kinds)
    made["gtid"] = (src._gtid_text, dict(src._gtid_state), src._last_commit, src._file)
    return made


def compare(stream: bytes, cuts: list[int], tombstones: bool = True) -> dict[str, Any]:
    # The general path waits in recv() for the rest of a packet cut short (the
    # server always sends it): it reads the stream whole.
    want = run(stream, False, [], tombstones)
    got = run(stream, True, cuts, tombstones)
    assert_same(want, got)
    return got


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_give_what_the_general_path_gives(seed: int) -> None:
    rng = random.Random(seed)
    stream = Stream(rng)
    for _ in range(rng.randrange(5, 60)):
        stream.transaction()
    data = frames(stream.packets)
    cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(0, 12)))
    compare(data, cuts, tombstones=seed % 4 != 0)


def test_plain_transactions_are_taken_whole() -> None:
    stream = Stream(random.Random(1))
    stream.plain(20, 2, "orders", "items")
    got = compare(frames(stream.packets), [])
    assert got["kinds"] == {RowRecords, Commit}
    # The first transaction teaches the scanner its tables (through _handle, its
    # row events rendered one by one); the 19 others come whole, with one Commit.
    assert len(got["positions"]) == 2 and got["transactions"] == 20


def test_a_transaction_split_across_reads_waits_for_its_end() -> None:
    # Cut inside every transaction: the scanner never renders part of one; it
    # takes each once its XID has arrived.
    stream = Stream(random.Random(2))
    stream.plain(10)
    data = frames(stream.packets)
    got = compare(data, list(range(7, len(data), 97)))
    assert Change not in got["kinds"]


def test_a_transaction_too_big_to_wait_for_takes_the_python_path(monkeypatch) -> None:
    monkeypatch.setattr(source_module, "SCAN_MAX_BYTES", 300)
    stream = Stream(random.Random(3))
    for _ in range(3):
        stream.plain(1)
        stream.plain(1, 5)  # bigger than 300 bytes
    data = frames(stream.packets)
    compare(data, list(range(50, len(data), 250)))


def test_bursts_stop_near_burst_rows(monkeypatch) -> None:
    monkeypatch.setattr(source_module, "BURST", 7)
    stream = Stream(random.Random(4))
    stream.plain(30)
    data = frames(stream.packets)
    sizes = [sum(i.rows for i in burst if type(i) is RowRecords) for burst in bursts(data)]
    rows_sent = len([s for s in run(data, True, [])["sent"] if s[2] is not None])
    assert sum(sizes) == rows_sent  # every row, in several bursts of about 7
    assert len(sizes) > 3 and max(sizes) < 7 + 5


def test_a_transaction_ending_in_a_commit_query_is_not_held_back() -> None:
    # A non-transactional engine's transaction ends in a COMMIT query, not an XID:
    # the scanner leaves it to _handle at once, instead of waiting for an XID that
    # never comes (on a quiet server, until the next transaction).
    stream = Stream(random.Random(8))
    stream.plain(1)
    stream.gtid()
    stream.row_event("orders", "insert")
    stream.add(ev.QUERY_EVENT, query("COMMIT", "shop"))
    end = stream.log.pos
    stream.add(ev.HEARTBEAT_EVENT, b"binlog")
    items = [i for burst in bursts(frames(stream.packets)) for i in burst]
    assert type(items[-1]) is Commit and items[-1].position[1] == end


def test_unknown_gtid_flags_and_xa_take_the_python_path() -> None:
    # Flags the scanner does not know (DDL, XA) leave the transaction to _handle.
    stream = Stream(random.Random(5))
    stream.gtid(flags=32)  # FL_DDL on a transaction
    stream.row_event("orders", "insert")
    stream.add(ev.XID_EVENT, struct.pack("<Q", 1))
    stream.gtid()
    stream.row_event("orders", "insert")
    stream.add(ev.XID_EVENT, struct.pack("<Q", 1))
    got = compare(frames(stream.packets), [])
    assert Change not in got["kinds"]  # the first is rendered per event, the second whole


def test_event_ids_follow_the_transactions_position() -> None:
    # As cdc.model.event_id: "<file>:<the transaction's position>/<index>", rows
    # numbered across the transaction's events; a tombstone's id ends in "/1".
    stream = Stream(random.Random(6))
    stream.plain(1)  # teaches the scanner the table
    stream.gtid()
    start = stream.log.pos - (len(stream.packets[-1]) - 1)
    table_id = stream.map("orders")
    ncols = len(ORDERS)
    stream.add(DELETE_ROWS_V1, rows_body(table_id, ncols, [order_image(1), order_image(2)]))
    stream.add(WRITE_ROWS_V1, rows_body(table_id, ncols, [order_image(3)]))
    stream.add(ev.XID_EVENT, struct.pack("<Q", 1))
    got = compare(frames(stream.packets), [])
    ids = [dict(h)["cdc-event-id"].decode() for *_, h in got["sent"]][1:]
    assert ids == [f"binlog.000003:{start}/{i}" for i in ("0", "0/1", "1", "1/1", "2")]


def test_scanner_arguments() -> None:
    acc = rows.accelerator
    scanner = acc.Scanner(True)
    with pytest.raises(ValueError, match="outside"):
        scanner.scan(b"", 1, b'"f"', b"f:", {}, 10)
    with pytest.raises(ValueError, match="6 bytes"):
        scanner.learn(b"\0" * 5, b"", None)
    with pytest.raises(TypeError, match="RecordPlan"):
        scanner.learn(b"\0" * 6, b"", "plan")
    # Nothing whole in the buffer: nothing taken, nothing moved.
    assert scanner.scan(b"\x05\x00\x00", 0, b'"f"', b"f:", {}, 10)[:2] == (0, acc.SCAN_END)
    # Not a GTID event: the Python path's.
    packet = Binlog().packet(ev.HEARTBEAT_EVENT, b"x")
    framed = len(packet).to_bytes(3, "little") + b"\0" + packet
    assert scanner.scan(framed, 0, b'"f"', b"f:", {}, 10)[:2] == (0, acc.SCAN_PYTHON)
    # The error packet of a failed dump, and a continued (16 MiB) packet, too.
    for payload in (b"\xff\x36\x04#HY000boom", b"\0" * 10):
        length = 0xFFFFFF if payload[0] == 0 else len(payload)
        framed = length.to_bytes(3, "little") + b"\0" + payload
        assert scanner.scan(framed, 0, b'"f"', b"f:", {}, 10)[:2] == (0, acc.SCAN_PYTHON)
    # A GTID without its transaction's end yet.
    framed = frames([Binlog().packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5))])
    assert scanner.scan(framed, 0, b'"f"', b"f:", {}, 10)[:2] == (0, acc.SCAN_INCOMPLETE)
    # Only a RecordPlan that is set up is learnt.
    with pytest.raises(TypeError, match="__init__"):
        scanner.learn(b"\0" * 6, b"", acc.RecordPlan.__new__(acc.RecordPlan))


def test_a_failed_scan_leaves_the_gtid_state_as_it_was() -> None:
    # The GTID state moves only with a scan's result: a MemoryError half-way must not
    # leave it naming transactions whose records were thrown away.
    _testcapi = pytest.importorskip("_testcapi")
    stream = Stream(random.Random(9))
    stream.plain(1)
    taught = new_source(DebeziumFormat(), True)
    for packet in stream.packets:  # the first transaction teaches the scanner
        taught._handle(packet, [])
    stream.packets.clear()
    for domain in (1, 2):
        stream.gtid(domain=domain)
        stream.row_event("orders", "insert")
        stream.add(ev.XID_EVENT, struct.pack("<Q", 1))
    data = frames(stream.packets)
    outcomes = set()
    for k in range(120):
        state = {0: "0-1-4"}
        _testcapi.set_nomemory(k, k + 1)
        try:
            taught._scanner.scan(data, 0, b'"f"', b"f:", state, 100)
            outcomes.add("scanned")
        except MemoryError:
            outcomes.add("MemoryError")
            assert state == {0: "0-1-4"}
        finally:
            _testcapi.remove_mem_hooks()
    assert outcomes == {"MemoryError", "scanned"}


def test_values_are_byte_equal_with_the_time_of_rendering_apart() -> None:
    # The comparison above masks ts_ms/ts_us/ts_ns; here they are only checked to
    # be the time of rendering, in the three units, as the general path writes.
    stream = Stream(random.Random(7))
    stream.plain(1)
    [items] = bursts(frames(stream.packets))
    value = next(i for i in items if type(i) is RowRecords).records[0][2]
    assert value is not None
    ms, us, ns = map(int, re.findall(rb'"ts_ms":(\d+),"ts_us":(\d+),"ts_ns":(\d+)}$', value)[0])
    assert ms == us // 1000 == ns // 1_000_000
