"""Whole PostgreSQL transactions rendered by the scanner (connectors/accel/pg_scan.c)
give what the general path gives: the same records, event ids, positions, commit
times and counts, whatever the stream holds and however it is cut into bursts.

Random pgoutput streams are built from every shape of transaction the scanner
takes or leaves to the Python path: inserts, updates (new tuple only, with the
old key or the whole old row, unchanged TOAST values) and deletes (key or old
row) over several tables; NULLs; values whose text the C kinds refuse (a
numeric below 1, NaN, a timestamptz out of range or with another zone); tables
not captured, or with a column of another type; a table whose
Relation changes mid-stream; truncates, logical messages, Type messages,
origins; streamed transactions (with aborts) interleaved with the others. The
same stream goes through the source twice, with the scanner and without any
whole-record rendering, and through a pipeline into a capturing sink.
"""

from __future__ import annotations

import random
import re
import struct
from typing import Any

import pytest

from cdc.config import PostgresSourceConfig
from cdc.model import Change, Commit, RowRecords
from connectors.accel import accelerator
from connectors.postgres.lsn import PG_EPOCH_OFFSET_US
from connectors.postgres.pgoutput import PgoutputDecoder
from connectors.postgres.source import PostgresSource
from mappers.debezium import DebeziumFormat
from tests.unit.test_pg_source_bursts import FakeStream
from tests.unit.test_pgoutput import (
    TS,
    UNCHANGED,
    begin,
    commit,
    cstr,
    delete,
    insert,
    message,
    stream_abort,
    stream_commit,
    stream_start,
    stream_stop,
    truncate,
    type_message,
    update,
)
from tests.unit.whole_records import Sink, assert_same, feed, outcome, pipeline, record_format

pytestmark = pytest.mark.skipif(accelerator is None, reason="the C accelerator is not built")

INT8, INT4, TEXT, VARCHAR, BOOL, NUMERIC, TSTZ, DATE = 20, 23, 25, 1043, 16, 1700, 1184, 1082
NUMERIC_12_2 = (12 << 16 | 2) + 4  # numeric's typmod: (precision << 16 | scale) + 4

# name -> (oid, columns (name, type, typmod, key)); every type but DATE rendered in C.
TABLES: dict[str, tuple[int, list[tuple[str, int, int, bool]]]] = {
    "orders": (16401, [("id", INT8, -1, True), ("account", INT4, -1, False),
                       ("name", TEXT, -1, False), ("amount", NUMERIC, NUMERIC_12_2, False),
                       ("created", TSTZ, -1, False), ("active", BOOL, -1, False)]),
    "items": (16402, [("sku", VARCHAR, 44, True), ("n", INT4, -1, True),
                      ("note", TEXT, -1, False)]),
    "dated": (16403, [("id", INT4, -1, True), ("day", DATE, -1, False)]),
    "hidden": (16404, [("id", INT4, -1, True)]),
    "keyless": (16405, [("a", INT4, -1, False), ("b", TEXT, -1, False)]),
}  # fmt: skip


def relation(name: str, altered: bool = False, identity: bytes = b"d") -> bytes:
    oid, columns = TABLES[name]
    if altered:
        columns = [*columns, ("extra", TEXT, -1, False)]
    body = struct.pack(">I", oid) + cstr("public") + cstr(name) + identity
    body += struct.pack(">H", len(columns))
    for column, type_oid, typmod, is_key in columns:
        body += bytes((int(is_key),)) + cstr(column) + struct.pack(">Ii", type_oid, typmod)
    return b"R" + body


class Stream:
    """Random transactions as pgoutput messages."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.messages: list[bytes] = []
        self.lsn = 0x100000
        self.xid = 700
        self.altered = False
        self.sent_relations: set[str] = set()
        self.open_streams: list[int] = []

    def value(self, column: str, type_oid: int, key: bool) -> Any:
        rng = self.rng
        if not key and rng.random() < 0.1:
            return None
        if type_oid in (INT8, INT4):
            return str(rng.choice((0, 1, -7, 42, 2**31 - 1, rng.randrange(10**6))))
        if type_oid in (TEXT, VARCHAR):
            text = rng.choice(("x", "", 'quote"back\\slash', "é€😀", "line\nfeed\t", "\x01"))
            return text + str(rng.randrange(100))
        if type_oid == BOOL:
            return rng.choice(("t", "f"))
        edge = rng.random() < 0.03  # a text the C kind refuses: the general path's
        if type_oid == NUMERIC:
            if edge:
                return rng.choice(("0.25", "-0.01", "NaN", "0.00"))
            return rng.choice(("12.50", "-3.25", "1000000.00", "7.00", "99999999.99"))
        if type_oid == TSTZ:
            if edge:
                return rng.choice(("infinity", "0044-03-15 12:00:00+00 BC",
                                   "2024-01-01 10:00:00+01", "12024-01-01 10:00:00+00"))
            return rng.choice(("2024-02-29 11:14:15.1234+00", "2024-02-29 11:14:15+00",
                               "1999-12-31 23:59:59.999999+00", "2000-01-01 00:00:00.5+00"))
        if type_oid == DATE:
            return "2024-02-29"
        raise AssertionError(type_oid)

    def row(self, name: str) -> list[Any]:
        _, columns = TABLES[name]
        values = [self.value(c, t, k) for c, t, _, k in columns]
        if name == "orders" and self.altered:
            values.append(self.rng.choice(("more", None, UNCHANGED)))
        return values

    def key_only(self, name: str, values: list[Any]) -> list[Any]:
        _, columns = TABLES[name]
        out = [v if k else None for v, (_, _, _, k) in zip(values, columns, strict=False)]
        return out + [None] * (len(values) - len(out))

    def change(self, name: str, xid: int | None = None) -> bytes:
        oid, _ = TABLES[name]
        rng = self.rng
        kind = rng.choice(("insert", "insert", "update", "update", "delete"))
        values = self.row(name)
        if kind == "insert" or name == "keyless":
            values = [None if v is UNCHANGED else v for v in values]
            return insert(oid, values, xid=xid)
        if kind == "update":
            shape = rng.choice(("new",) * 12 + ("key", "old", "toast"))
            if shape == "toast" and name != "orders":
                shape = "new"
            if shape == "toast":
                values[2] = UNCHANGED
            elif shape == "key":  # the key changed: the old key comes first
                return update(oid, values, self.key_only(name, self.row(name)), b"K", xid=xid)
            elif shape == "old":  # REPLICA IDENTITY FULL: the whole old row
                old = [None if v is UNCHANGED else v for v in self.row(name)]
                return update(oid, values, old, b"O", xid=xid)
            return update(oid, values, xid=xid)
        old = [None if v is UNCHANGED else v for v in values]
        if rng.random() < 0.7:
            return delete(oid, self.key_only(name, old), b"K", xid=xid)
        return delete(oid, old, b"O", xid=xid)

    def relation_once(self, name: str, xid: int | None = None) -> list[bytes]:
        """The table's Relation where the decoder may not know it. A streamed
        transaction gets its own (the server tracks them per stream: they only
        apply if it commits)."""
        payload = relation(name, altered=name == "orders" and self.altered)
        if xid is not None:
            return [payload[:1] + struct.pack(">I", xid) + payload[1:]]
        if name in self.sent_relations:
            return []
        self.sent_relations.add(name)
        return [payload]

    def transaction(self) -> None:
        rng = self.rng
        shape = rng.choices(
            ["rows", "truncate", "message", "type", "alter", "streamed", "outside message"],
            [30, 1, 2, 1, 1, 3, 2],
        )[0]  # fmt: skip
        self.lsn += 0x1000
        self.xid += 1
        lsn, xid = self.lsn, self.xid
        if shape == "outside message":
            self.messages.append(message("app", b"hello", False, lsn))
            return
        if shape == "streamed":
            self.streamed(xid)
            return
        if shape == "alter":
            self.altered = True
            self.sent_relations.discard("orders")
        out = [begin(lsn, xid)]
        if shape == "type":
            out.append(type_message(90001, "mood"))
        for _ in range(rng.choice((1, 1, 2, 3, 6))):
            name = rng.choice(("orders",) * 8 + ("items", "items", "dated", "hidden",
                                                  "keyless"))  # fmt: skip
            out += self.relation_once(name)
            out.append(self.change(name))
        if shape == "truncate":
            out += self.relation_once("items")
            out.append(truncate([TABLES["items"][0]]))
        if shape == "message":
            out.append(message("app", b"in txn", True, lsn))
        out.append(commit(lsn, lsn + 8))
        self.messages += out

    def streamed(self, xid: int) -> None:
        """A streamed transaction in two blocks around a plain one, maybe aborted
        whole or in a subtransaction."""
        lsn = self.lsn
        sub = xid + 100_000
        self.messages.append(stream_start(xid))
        for name in ("orders", "items"):
            self.messages += self.relation_once(name, xid)
            self.messages.append(self.change(name, xid))
        for _ in range(self.rng.randrange(0, 40)):  # more rows, some in a subtransaction
            self.messages.append(self.change("orders", self.rng.choice((xid, xid, sub))))
        if self.rng.random() < 0.3:
            self.messages.append(stream_abort(xid, sub))
        self.messages.append(stream_stop())
        self.lsn += 0x1000
        self.xid += 1
        self.transaction_plain(self.lsn, self.xid)
        self.messages += [stream_start(xid, first=False), self.change("orders", xid), stream_stop()]
        if self.rng.random() < 0.2:
            self.messages.append(stream_abort(xid, xid))
        else:
            self.messages.append(stream_commit(xid, lsn, lsn + 8))

    def transaction_plain(self, lsn: int, xid: int) -> None:
        self.messages.append(begin(lsn, xid))
        self.messages += self.relation_once("orders")
        self.messages += [self.change("orders"), commit(lsn, lsn + 8)]


class PgSink(Sink):
    """A non-transactional logical message has no commit time: it carries the time
    it was decoded, which differs between runs as the time of rendering does."""

    def send(self, topic: str, key: Any, value: Any, headers: Any, callback: Any) -> None:
        if value is not None and b'"txId":null' in value:
            value = re.sub(rb'"ts_(ms|us|ns)":\d+', rb'"ts_\1":T', value)
        super().send(topic, key, value, headers, callback)


def new_source(fmt: DebeziumFormat, scanned: bool, batches: list[list[bytes]],
               spill_threshold: int = 1 << 20) -> PostgresSource:  # fmt: skip
    config = PostgresSourceConfig(dsn="postgresql://localhost/x", slot="s", publication="p",
                                  heartbeat_interval=0,
                                  exclude_tables=("public.hidden",))  # fmt: skip
    src = PostgresSource(config)
    src.database = "shop"
    src._stream = FakeStream(batches)  # type: ignore[assignment]
    src.json_values = fmt.json_values
    src._decoder = PgoutputDecoder("shop", spill_threshold=spill_threshold,
                                   json_values=fmt.json_values)  # fmt: skip
    if scanned:
        assert accelerator is not None
        src.record_format = record_format(fmt, "{schema}.{table}.{op}")
        src._scanner = src._decoder.scanner = accelerator.PgScanner()
        src._decoder.on_relation = src._learn
    return src


def run(messages: list[bytes], scanned: bool, cuts: list[int], tombstones: bool = True,
        spill_threshold: int = 1 << 20) -> dict[str, Any]:  # fmt: skip
    """Everything a pipeline makes of the messages, read in bursts cut at `cuts`."""
    fmt = DebeziumFormat(tombstones=tombstones)
    batches = [messages[a:b] for a, b in zip([0, *cuts], [*cuts, len(messages)], strict=True)]
    src = new_source(fmt, scanned, batches, spill_threshold)
    sink = PgSink()
    run = pipeline(src, fmt, sink, "{schema}.{table}.{op}")
    commits: list[Commit] = []
    kinds: set[type] = set()
    while src._stream.batches or src._held:  # type: ignore[attr-defined]
        commits += feed(run, src.read(0), kinds)
    made = outcome(run, sink, commits, kinds)
    # A non-transactional message has no commit time: it carries its decode time.
    made["commit_times"] = [t for t in made["commit_times"] if t < TS + PG_EPOCH_OFFSET_US + 10**12]
    assert src._decoder is not None
    made["last_commit"] = src._decoder.last_commit
    return made


def compare(messages: list[bytes], cuts: list[int], tombstones: bool = True,
            spill_threshold: int = 1 << 20) -> dict[str, Any]:  # fmt: skip
    want = run(messages, False, cuts, tombstones, spill_threshold)
    got = run(messages, True, cuts, tombstones, spill_threshold)
    assert_same(want, got)
    return got


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_give_what_the_general_path_gives(seed: int) -> None:
    rng = random.Random(seed)
    stream = Stream(rng)
    for _ in range(rng.randrange(5, 60)):
        stream.transaction()
    cuts = sorted(rng.sample(range(1, len(stream.messages)), rng.randrange(0, 8)))
    # every third seed spills streamed transactions to disk, a few rows at a time
    compare(stream.messages, cuts, tombstones=seed % 4 != 0,
            spill_threshold=2000 if seed % 3 == 0 else 1 << 20)


def plain(stream: Stream, count: int, name: str = "orders") -> None:
    """`count` transactions of one insert each into `name`, all of them C-renderable."""
    for _ in range(count):
        stream.lsn += 0x1000
        stream.xid += 1
        values = ["1", "2", "x", "12.50", "2024-02-29 11:14:15.1234+00", "t"]
        stream.messages += [begin(stream.lsn, stream.xid), *stream.relation_once(name),
                            insert(TABLES[name][0], values),
                            commit(stream.lsn, stream.lsn + 8)]  # fmt: skip


def test_plain_transactions_are_taken_whole() -> None:
    stream = Stream(random.Random(1))
    plain(stream, 20)
    got = compare(stream.messages, [])
    # The first transaction carries the Relation: the decoder takes it (one Change);
    # the 19 others come whole, with one Commit.
    assert got["kinds"] == {Change, RowRecords, Commit}
    assert len(got["positions"]) == 2 and got["transactions"] == 20


def test_a_transaction_cut_by_the_burst_takes_the_python_path() -> None:
    stream = Stream(random.Random(2))
    plain(stream, 10)
    got = compare(stream.messages, [6, 13, 22])  # inside the 2nd, 4th and 6th transactions
    assert got["transactions"] == 10


def test_event_ids_sequence_and_lsns_follow_the_transaction() -> None:
    # As cdc.model.event_id: "<commit LSN in hex>/<index>"; Debezium's sequence
    # holds the commit LSN of the transaction before.
    stream = Stream(random.Random(3))
    plain(stream, 3)
    got = run(stream.messages, True, [])
    ids = [dict(h)["cdc-event-id"].decode() for *_, h in got["sent"]]
    lsns = [0x100000 + 0x1000 * k for k in (1, 2, 3)]
    assert ids == [f"{lsn:X}/0" for lsn in lsns]
    values = [v for _, _, v, _ in got["sent"]]
    assert b'"sequence":"[null,' in values[0] and f'"[\\"{lsns[1]}\\",'.encode() in values[2]


def test_scanner_arguments() -> None:
    acc = accelerator
    assert acc is not None
    scanner = acc.PgScanner()
    with pytest.raises(ValueError, match="outside"):
        scanner.scan([], 1, None, 10)
    with pytest.raises(TypeError, match="PgTable"):
        scanner.learn(1, "table")
    with pytest.raises(TypeError, match="__init__"):
        scanner.learn(1, acc.PgTable.__new__(acc.PgTable))
    with pytest.raises(TypeError, match="__init__"):
        acc.PgScanner.__new__(acc.PgScanner).scan([], 0, None, 1)
    scanner.forget(12345)  # not known: nothing to do
    # Nothing but a Begin: not whole; not a Begin: the Python path's; a bad item too.
    assert scanner.scan([(1, begin(0x10, 5))], 0, None, 10)[:2] == (0, acc.SCAN_INCOMPLETE)
    assert scanner.scan([(1, b"Rxx")], 0, None, 10)[:2] == (0, acc.SCAN_PYTHON)
    assert scanner.scan([("x", b"B")], 0, None, 10)[:2] == (0, acc.SCAN_PYTHON)
    # A Commit that does not match its Begin: the general path reports it.
    messages = [(1, begin(0x10, 5)), (2, commit(0x20, 0x28))]
    assert scanner.scan(messages, 0, None, 10)[:2] == (0, acc.SCAN_PYTHON)
    # An empty transaction is taken: it moves the position.
    messages = [(1, begin(0x10, 5)), (2, commit(0x10, 0x18))]
    following, stop, records, times, rows, end, xid, last = scanner.scan(messages, 0, None, 10)
    assert (following, stop, records, rows) == (2, acc.SCAN_END, [], 0)
    assert (end, xid, last) == (0x18, 5, 0x10)
    with pytest.raises(ValueError, match="key"):  # keys are integers or text
        acc.PgTable(((acc.PG_BOOL, b'{"b":', 0),), (0,), ((),) * 3, ("t",) * 3, True, "id")
    with pytest.raises(ValueError, match="prefix"):
        acc.PgTable(((acc.PG_INT, b"", 0),), (), ((),) * 3, ("t",) * 3, True, "id")


def test_invalid_utf8_is_reported_as_without_the_scanner() -> None:
    # Text that is not UTF-8 stops the pipeline with the decoder's DecodeError;
    # the scanner leaves such a transaction to it.
    from cdc.errors import DecodeError

    stream = Stream(random.Random(4))
    plain(stream, 2)
    stream.messages[-2] = insert(TABLES["orders"][0], ["1", "2", b"\xff", "12.50", None, "t"])
    for scanned in (False, True):
        with pytest.raises(DecodeError, match="utf-8"):
            run(stream.messages, scanned, [])


def test_a_big_streamed_transaction_is_rendered_in_runs(tmp_path: Any) -> None:
    # 5,000 inserts streamed in blocks and spilled to disk come back, rendered in C,
    # in RowRecords of at most _RUN_ROWS rows, as the general path gives them.
    from connectors.postgres import pgoutput

    stream = Stream(random.Random(5))
    plain(stream, 1)  # teaches the scanner the table
    xid, lsn = 9000, 0x900000
    oid = TABLES["orders"][0]
    values = ["1", "2", "x", "12.50", "2024-02-29 11:14:15.1234+00", "t"]
    for block in range(5):
        rows = [insert(oid, values, xid=xid) for _ in range(1000)]
        stream.messages += [stream_start(xid, first=block == 0), *rows, stream_stop()]
    stream.messages.append(stream_commit(xid, lsn, lsn + 8))
    got = compare(stream.messages, [], spill_threshold=50_000)
    assert got["transactions"] == 2
    fmt = DebeziumFormat()
    src = new_source(fmt, True, [stream.messages], 50_000)
    sizes = [i.rows for i in src.read(0) if type(i) is RowRecords]
    # (the first transaction's one row comes from the decoder: it carries the Relation)
    assert sum(sizes) == 5000 and max(sizes) <= pgoutput._RUN_ROWS and len(sizes) > 3


def edge(values: list[Any] | None = None, old: list[Any] | None = None,
         kind: bytes = b"D", ts: int = TS) -> list[bytes]:  # fmt: skip
    """A transaction teaching the table, then one with the given row (an insert of
    `values`, or a delete of the `kind` tuple `old`), at commit time `ts`."""
    stream = Stream(random.Random(6))
    plain(stream, 1)
    oid = TABLES["orders"][0]
    change = insert(oid, values) if values is not None else delete(oid, old or [], kind)
    lsn, xid = 0x700000, 7000
    return [*stream.messages, begin(lsn, xid, ts), change, commit(lsn, lsn + 8, ts)]


ROW = ["5", "2", "x", "1.00", "2024-02-29 11:14:15+00", "t"]


@pytest.mark.parametrize("messages", [
    # texts PostgreSQL does not write: the scanner leaves them to the decoder
    edge(["007", *ROW[1:]]), edge(["-0", *ROW[1:]]),
    edge(old=[*ROW[:3], "1.2.3", *ROW[4:]], kind=b"O"),
    edge(old=[*ROW[:3], "1.5", *ROW[4:]], kind=b"O"),  # numeric(12,2) has 2 decimals
    edge(old=[*ROW[:3], "100", *ROW[4:]], kind=b"O"),
    edge(old=[*ROW[:4], "2024-02-29 11:14:15+05+00", "t"], kind=b"O"),
    edge(old=[*ROW[:4], "2024-02-29 11:14:15.1234567+00", "t"], kind=b"O"),
    # an old key tuple keeps only the key, whatever else it holds
    edge(old=ROW, kind=b"K"),
    # commit times before 1970 and past the 64-bit nanoseconds
    edge(ROW, ts=-PG_EPOCH_OFFSET_US - 5_000_000), edge(ROW, ts=2**63 - 1),
])  # fmt: skip
def test_edges_give_what_the_general_path_gives(messages: list[bytes]) -> None:
    # the same records, or the same error (a deleted numeric '1.2.3' stops both)
    try:
        run(messages, False, [])
    except Exception as e:
        with pytest.raises(type(e), match=re.escape(str(e))):
            run(messages, True, [])
        return
    compare(messages, [])


def test_a_streamed_transaction_before_1970_takes_the_decoder() -> None:
    stream = Stream(random.Random(7))
    plain(stream, 1)
    oid, xid, lsn = TABLES["orders"][0], 8000, 0x800000
    stream.messages += [stream_start(xid), insert(oid, ROW, xid=xid), stream_stop(),
                        stream_commit(xid, lsn, lsn + 8, ts=-PG_EPOCH_OFFSET_US - 10)]  # fmt: skip
    compare(stream.messages, [])


def test_excluded_tables_take_the_decoder_which_reports_malformed_rows() -> None:
    from cdc.errors import DecodeError

    stream = Stream(random.Random(8))
    oid = TABLES["hidden"][0]
    stream.messages += [begin(0x900000, 9000), relation("hidden"), insert(oid, ["1"]),
                        commit(0x900000, 0x900008),  # the table is known from here on
                        begin(0x910000, 9001), insert(oid, ["x"]),
                        commit(0x910000, 0x910008)]  # fmt: skip
    for scanned in (False, True):
        with pytest.raises(DecodeError, match="int"):
            run(stream.messages, scanned, [])


def test_positions_past_2_63_are_written_unsigned_and_oids_are_plain_ints() -> None:
    acc = accelerator
    assert acc is not None

    class Oid(int):
        def __eq__(self, other: object) -> bool:
            raise AssertionError("a lookup ran Python code")

        __hash__ = int.__hash__

    table = acc.PgTable(((acc.PG_INT, b'{"id":', 0),), (0,), ((b"[", acc.HOLE_POS, b"]"),) * 3,
                        ("t",) * 3, False, "id")  # fmt: skip
    scanner = acc.PgScanner()
    scanner.learn(Oid(7), table)
    lsn = 2**63 + 5
    messages = [(1, begin(0x10, 5)), (lsn, insert(7, ["1"])), (2, commit(0x10, 0x18))]
    records = scanner.scan(messages, 0, None, 10)[2]
    assert records[0][2] == f"[{lsn}]".encode()
