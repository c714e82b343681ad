"""PgoutputDecoder on hand-built pgoutput messages (no server)."""

from __future__ import annotations

import inspect
import os
import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.errors import DecodeError
from cdc.model import DELETE, INSERT, MESSAGE, TRUNCATE, UPDATE, Change, Commit, Interval
from connectors.postgres.lsn import PG_EPOCH_OFFSET_US
from connectors.postgres.pgoutput import PgoutputDecoder

# --- message builders (protocol: "Logical Replication Message Formats") -------

UNCHANGED = object()  # a 'u' (unchanged TOAST) column in tuple data
TS = 762_960_855_123_456  # 2024-02-29 13:34:15.123456 UTC, in PostgreSQL-epoch µs


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def head(kind: bytes, xid: int | None) -> bytes:
    """Type byte, plus the xid that messages carry inside a stream block."""
    return kind if xid is None else kind + struct.pack(">I", xid)


def begin(final_lsn: int, xid: int, ts: int = TS) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, ts, xid)


def commit(commit_lsn: int, end_lsn: int, ts: int = TS) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn, end_lsn, ts)


def relation(
    oid: int,
    table: str,
    columns: list[tuple[str, int, bool]],
    identity: bytes = b"d",
    schema: str = "public",
    xid: int | None = None,
) -> bytes:
    body = struct.pack(">I", oid) + cstr(schema) + cstr(table) + identity
    body += struct.pack(">H", len(columns))
    for name, type_oid, is_key in columns:
        body += bytes((int(is_key),)) + cstr(name) + struct.pack(">Ii", type_oid, -1)
    return head(b"R", xid) + body


def type_message(oid: int, name: str, xid: int | None = None) -> bytes:
    return head(b"Y", xid) + struct.pack(">I", oid) + cstr("public") + cstr(name)


def tuple_data(values: list[Any]) -> bytes:
    out = struct.pack(">H", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value is UNCHANGED:
            out += b"u"
        else:
            raw = value.encode() if isinstance(value, str) else value
            out += b"t" + struct.pack(">I", len(raw)) + raw
    return out


def insert(oid: int, values: list[Any], xid: int | None = None) -> bytes:
    return head(b"I", xid) + struct.pack(">I", oid) + b"N" + tuple_data(values)


def update(
    oid: int,
    new: list[Any],
    old: list[Any] | None = None,
    old_kind: bytes = b"K",
    xid: int | None = None,
) -> bytes:
    body = struct.pack(">I", oid)
    if old is not None:
        body += old_kind + tuple_data(old)
    return head(b"U", xid) + body + b"N" + tuple_data(new)


def delete(oid: int, old: list[Any], kind: bytes = b"K", xid: int | None = None) -> bytes:
    return head(b"D", xid) + struct.pack(">I", oid) + kind + tuple_data(old)


def truncate(oids: list[int], options: int = 0, xid: int | None = None) -> bytes:
    body = struct.pack(">IB", len(oids), options) + b"".join(struct.pack(">I", o) for o in oids)
    return head(b"T", xid) + body


def message(
    prefix: str, content: bytes, transactional: bool, lsn: int, xid: int | None = None
) -> bytes:
    body = struct.pack(">BQ", int(transactional), lsn) + cstr(prefix)
    return head(b"M", xid) + body + struct.pack(">I", len(content)) + content


def stream_start(xid: int, first: bool = True) -> bytes:
    return b"S" + struct.pack(">IB", xid, int(first))


def stream_stop() -> bytes:
    return b"E"


def stream_commit(xid: int, commit_lsn: int, end_lsn: int, ts: int = TS) -> bytes:
    return b"c" + struct.pack(">IBQQq", xid, 0, commit_lsn, end_lsn, ts)


def stream_abort(xid: int, subxid: int) -> bytes:
    return b"A" + struct.pack(">II", xid, subxid)


def feed(decoder: PgoutputDecoder, *messages: bytes, lsn: int = 0x1000) -> list[Any]:
    """Decode messages at consecutive LSNs; everything they yield, in order."""
    out: list[Any] = []
    for i, payload in enumerate(messages):
        out.extend(decoder.decode(lsn + i * 0x10, payload))
    return out


# --- the types_demo table of /work/shared/reference ---------------------------

MOOD = 16390
DEMO = 16400
DEMO_COLUMNS = [
    ("id", 23, True), ("c_smallint", 21, False), ("c_int", 23, False),
    ("c_bigint", 20, False), ("c_numeric", 1700, False), ("c_real", 700, False),
    ("c_double", 701, False), ("c_bool", 16, False), ("c_text", 25, False),
    ("c_varchar", 1043, False), ("c_char", 1042, False), ("c_date", 1082, False),
    ("c_time", 1083, False), ("c_timestamp", 1114, False), ("c_timestamptz", 1184, False),
    ("c_interval", 1186, False), ("c_uuid", 2950, False), ("c_json", 114, False),
    ("c_jsonb", 3802, False), ("c_bytea", 17, False), ("c_text_arr", 1009, False),
    ("c_int_arr", 1007, False), ("c_enum", MOOD, False), ("c_toast", 25, False),
]  # fmt: skip
TOAST = "c4ca4238a0b923820dcc509a6f75849b" * 640
# What the server sends for postgres-types_ops.sql's insert (TimeZone=UTC).
DEMO_ROW = [
    "1", "32767", "123456", "9223372036854775807", "12345.67", "3.14", "2.718281828459045",
    "t", 'héllo "quoted" \\ backslash', "varchar value", "ab ", "2024-02-29",
    "13:14:15.123456", "2024-02-29 13:14:15.123456", "2024-02-29 11:14:15.123456+00",
    "1 year 2 mons 3 days 04:05:06.789", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    '{"k": [1, 2.5, "x"], "n": null}', '{"k": [1, 2.5, "x"], "n": null}', "\\xdeadbeef00",
    '{a,"b c",NULL}', "{1,2,NULL,4}", "happy", TOAST,
]  # fmt: skip
DEMO_AFTER = {
    "id": 1,
    "c_smallint": 32767,
    "c_int": 123456,
    "c_bigint": 9223372036854775807,
    "c_numeric": Decimal("12345.67"),
    "c_real": 3.14,
    "c_double": 2.718281828459045,
    "c_bool": True,
    "c_text": 'héllo "quoted" \\ backslash',
    "c_varchar": "varchar value",
    "c_char": "ab ",
    "c_date": date(2024, 2, 29),
    "c_time": time(13, 14, 15, 123456),
    "c_timestamp": datetime(2024, 2, 29, 13, 14, 15, 123456),
    "c_timestamptz": datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=UTC),
    "c_interval": Interval(14, 3, 14_706_789_000),
    "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "c_json": {"k": [1, 2.5, "x"], "n": None},
    "c_jsonb": {"k": [1, 2.5, "x"], "n": None},
    "c_bytea": b"\xde\xad\xbe\xef\x00",
    "c_text_arr": ["a", "b c", None],
    "c_int_arr": [1, 2, None, 4],
    "c_enum": "happy",
    "c_toast": TOAST,
}


def demo_decoder(**kwargs: Any) -> PgoutputDecoder:
    decoder = PgoutputDecoder("dbz", **kwargs)
    feed(decoder, type_message(MOOD, "mood"), relation(DEMO, "types_demo", DEMO_COLUMNS))
    return decoder


def feed_one(decoder: PgoutputDecoder, lsn: int, payload: bytes | memoryview) -> list[Any]:
    return list(decoder.decode(lsn, payload))


# --- regular transactions ------------------------------------------------------


def test_insert_every_type() -> None:
    decoder = demo_decoder()
    items = feed(
        decoder, begin(0x16B3748, 731), insert(DEMO, DEMO_ROW), commit(0x16B3748, 0x16B3780)
    )
    change, done = items
    assert isinstance(change, Change) and isinstance(done, Commit)
    assert change.op == INSERT
    assert (change.database, change.schema, change.table) == ("dbz", "public", "types_demo")
    assert change.after == DEMO_AFTER
    for name, value in DEMO_AFTER.items():
        assert type(change.after[name]) is type(value), name
    assert change.key == {"id": 1}
    assert change.before is None
    assert change.unchanged == ()
    assert change.columns["c_numeric"] == "numeric"
    assert change.columns["c_text_arr"] == "_text"
    assert change.columns["c_enum"] == "mood"
    assert list(change.columns) == [name for name, _, _ in DEMO_COLUMNS]
    assert change.position == 0x16B3748
    assert change.txid == 731
    assert change.index == 0
    assert change.log_pos == 0x1010
    assert change.commit_ts == TS + PG_EPOCH_OFFSET_US
    assert datetime.fromtimestamp(change.commit_ts / 1e6, UTC).year == 2024
    assert (done.position, done.txid, done.commit_ts) == (0x16B3780, 731, change.commit_ts)


def test_decoder_state_between_begin_and_commit() -> None:
    decoder = demo_decoder()
    assert not decoder.in_transaction
    assert list(decoder.decode(1, begin(0x100, 5))) == []
    assert decoder.in_transaction
    feed(decoder, commit(0x100, 0x110))
    assert not decoder.in_transaction


def test_update_with_unchanged_toast() -> None:
    decoder = demo_decoder()
    row: list[Any] = list(DEMO_ROW)
    row[2], row[8], row[-1] = "123457", "updated", UNCHANGED
    items = feed(decoder, begin(0x200, 732), update(DEMO, row), commit(0x200, 0x210))
    change = items[0]
    assert change.op == UPDATE
    assert change.before is None  # REPLICA IDENTITY DEFAULT, key unchanged
    assert "c_toast" not in change.after
    assert change.unchanged == ("c_toast",)
    assert change.after["c_int"] == 123457 and change.after["c_text"] == "updated"
    assert change.key == {"id": 1}


def test_update_with_key_tuple_and_old_tuple() -> None:
    decoder = PgoutputDecoder("db")
    cols = [("id", 23, True), ("name", 25, False)]
    full = [("id", 23, True), ("name", 25, True)]  # REPLICA IDENTITY FULL flags every column
    items = feed(
        decoder,
        relation(1, "a", cols),
        relation(2, "b", full, identity=b"f"),
        begin(0x300, 9),
        update(1, ["2", "x"], old=["1", None], old_kind=b"K"),
        update(2, ["1", "new"], old=["1", "old"], old_kind=b"O"),
        commit(0x300, 0x310),
    )
    by_key, by_old, _ = items
    assert by_key.before == {"id": 1}
    assert by_key.key == {"id": 2} and by_key.after == {"id": 2, "name": "x"}
    assert by_old.before == {"id": 1, "name": "old"}
    assert by_old.after == {"id": 1, "name": "new"}
    assert [by_key.index, by_old.index] == [0, 1]
    assert decoder.relations[2].replica_identity == "f"


def test_delete_key_and_old() -> None:
    decoder = PgoutputDecoder("db")
    cols = [("id", 23, True), ("name", 25, False)]
    items = feed(
        decoder,
        relation(1, "a", cols),
        begin(0x400, 10),
        delete(1, ["1", None], kind=b"K"),
        delete(1, ["2", "two"], kind=b"O"),
        commit(0x400, 0x410),
    )
    by_key, by_old, done = items
    assert (by_key.op, by_key.key, by_key.before, by_key.after) == (
        DELETE,
        {"id": 1},
        {"id": 1},
        None,
    )
    assert by_old.key == {"id": 2} and by_old.before == {"id": 2, "name": "two"}
    assert done.position == 0x410


def test_table_without_key() -> None:
    decoder = PgoutputDecoder("db")
    items = feed(
        decoder,
        relation(3, "log", [("msg", 25, False)]),
        begin(0x500, 11),
        insert(3, ["hello"]),
        commit(0x500, 0x510),
    )
    assert items[0].key is None and items[0].after == {"msg": "hello"}


def test_truncate_two_relations() -> None:
    decoder = PgoutputDecoder("db")
    items = feed(
        decoder,
        relation(1, "a", [("id", 23, True)]),
        relation(2, "b", [("id", 23, True)], schema="other"),
        begin(0x600, 12),
        truncate([1, 2], options=3),  # CASCADE | RESTART IDENTITY
        commit(0x600, 0x610),
    )
    first, second, done = items
    assert [(c.op, c.schema, c.table, c.index) for c in (first, second)] == [
        (TRUNCATE, "public", "a", 0),
        (TRUNCATE, "other", "b", 1),
    ]
    assert all(c.key is None and c.before is None and c.after is None for c in (first, second))
    assert first.columns == {"id": "int4"}
    assert isinstance(done, Commit)


def test_transactional_message() -> None:
    decoder = PgoutputDecoder("db")
    items = feed(
        decoder,
        begin(0x700, 13),
        message("outbox", b'{"a":1}', True, 0x6F0),
        commit(0x700, 0x710),
    )
    change, done = items
    assert change.op == MESSAGE and (change.schema, change.table) == ("", "")
    assert change.after == {"prefix": "outbox", "content": b'{"a":1}', "transactional": True}
    assert (change.position, change.txid, change.index) == (0x700, 13, 0)
    assert done.position == 0x710


def test_non_transactional_message() -> None:
    decoder = PgoutputDecoder("db")
    change, done = feed(decoder, message("heartbeat", b"", False, 0x800))
    assert change.op == MESSAGE and change.after["transactional"] is False
    assert (change.position, change.index, change.txid) == (0x800, 0, None)
    assert done.position == 0x800
    assert not decoder.in_transaction


def test_non_transactional_message_during_streamed_transaction() -> None:
    decoder = PgoutputDecoder("db")
    feed(decoder, stream_start(50), stream_stop())
    change, done = feed(decoder, message("heartbeat", b"x", False, 0x900))
    assert change.position == 0x900
    assert done.position is None  # confirming 0x900 would skip the open transaction
    assert decoder.in_transaction


def test_origin_is_accepted() -> None:
    decoder = PgoutputDecoder("db")
    items = feed(
        decoder,
        begin(0x100, 1),
        b"O" + struct.pack(">Q", 0x50) + cstr("node1"),
        commit(0x100, 0x110),
    )
    assert len(items) == 1 and isinstance(items[0], Commit)


def test_relation_change_mid_stream() -> None:
    decoder = PgoutputDecoder("db")
    v1 = [("id", 23, True), ("a", 25, False)]
    v2 = [("id", 23, True), ("a", 25, False), ("b", 1700, False)]
    items = feed(
        decoder,
        relation(1, "t", v1),
        begin(0x100, 1),
        insert(1, ["1", "x"]),
        insert(1, ["2", "y"]),
        commit(0x100, 0x110),
        relation(1, "t", v2),  # after ALTER TABLE ... ADD COLUMN b numeric
        begin(0x200, 2),
        insert(1, ["3", "z", "1.5"]),
        commit(0x200, 0x210),
    )
    old1, old2, _, new, _ = items
    assert old1.after == {"id": 1, "a": "x"}
    assert old1.columns is old2.columns  # one dict per Relation, shared
    assert new.after == {"id": 3, "a": "z", "b": Decimal("1.5")}
    assert new.columns == {"id": "int4", "a": "text", "b": "numeric"}


def test_identical_relation_keeps_its_object() -> None:
    decoder = PgoutputDecoder("db")
    cols = [("id", 23, True)]
    feed(decoder, relation(1, "t", cols))
    first = decoder.relations[1]
    feed(decoder, relation(1, "t", cols))
    assert decoder.relations[1] is first


def test_memoryview_payload() -> None:
    decoder = PgoutputDecoder("db")
    feed(decoder, relation(1, "t", [("id", 23, True), ("s", 25, False)]), begin(0x100, 1))
    (change,) = feed_one(decoder, 0x20, memoryview(b"pad" + insert(1, ["7", "s"]))[3:])
    assert change.after == {"id": 7, "s": "s"}


# --- streamed transactions -------------------------------------------------------


def streamed_interleaving(decoder: PgoutputDecoder) -> list[Any]:
    """Two streamed transactions, 100 (with subtransactions 101, 102) and 200."""
    return feed(
        decoder,
        relation(1, "t", [("id", 23, True), ("s", 25, False)]),
        stream_start(100),
        insert(1, ["1", "top"], xid=100),
        insert(1, ["2", "sub101"], xid=101),
        stream_stop(),
        stream_start(200),
        insert(1, ["10", "other"], xid=200),
        stream_stop(),
        stream_start(100, first=False),
        insert(1, ["3", "sub102"], xid=102),
        message("m", b"c", True, 0x1234, xid=100),
        delete(1, ["1", None], xid=100),
        stream_stop(),
    )


def test_streamed_transactions_interleaved_with_aborts() -> None:
    decoder = PgoutputDecoder("db")
    assert streamed_interleaving(decoder) == []
    assert decoder.in_transaction
    assert feed(decoder, stream_abort(100, 101), stream_abort(200, 200)) == []
    assert decoder.in_transaction
    result = decoder.decode(0x9000, stream_commit(100, 0x8000, 0x8010))
    assert inspect.isgenerator(result)
    assert not decoder.in_transaction  # state moves at decode time, not when consumed
    items = list(result)
    changes, done = items[:-1], items[-1]
    assert [(c.op, c.after or c.before) for c in changes] == [
        (INSERT, {"id": 1, "s": "top"}),
        (INSERT, {"id": 3, "s": "sub102"}),
        (MESSAGE, {"prefix": "m", "content": b"c", "transactional": True}),
        (DELETE, {"id": 1}),
    ]
    assert [c.index for c in changes] == [0, 1, 2, 3]
    assert {(c.position, c.txid, c.commit_ts) for c in changes} == {
        (0x8000, 100, TS + PG_EPOCH_OFFSET_US)
    }
    assert changes[0].log_pos == 0x1020  # the change's own WAL position
    assert isinstance(done, Commit) and (done.position, done.txid) == (0x8010, 100)


def test_streamed_transaction_committed_after_other_transactions() -> None:
    decoder = PgoutputDecoder("db")
    streamed_interleaving(decoder)
    # A regular transaction commits while 100 and 200 are still open.
    items = feed(decoder, begin(0x7000, 300), insert(1, ["20", "regular"]), commit(0x7000, 0x7010))
    assert items[0].after == {"id": 20, "s": "regular"} and items[0].txid == 300
    assert decoder.in_transaction
    other = feed_one(decoder, 0x9100, stream_commit(200, 0x9000, 0x9010))
    assert [c.after for c in other[:-1]] == [{"id": 10, "s": "other"}]
    assert decoder.in_transaction  # 100 is still open
    feed(decoder, stream_abort(100, 100))
    assert not decoder.in_transaction


def test_relation_inside_stream_applies_at_commit() -> None:
    decoder = PgoutputDecoder("db")
    feed(
        decoder,
        relation(1, "t", [("id", 23, True)]),
        stream_start(100),
        relation(1, "t", [("id", 23, True), ("n", 20, False)], xid=100),
        insert(1, ["1", "5"], xid=100),
        stream_stop(),
    )
    # Transactions committing before 100 still see the old shape.
    items = feed(decoder, begin(0x100, 7), insert(1, ["2"]), commit(0x100, 0x110))
    assert items[0].after == {"id": 2}
    streamed = feed_one(decoder, 0x300, stream_commit(100, 0x200, 0x210))
    assert streamed[0].after == {"id": 1, "n": 5}
    assert list(decoder.relations[1].column_types) == ["id", "n"]


def test_subtransaction_abort_keeps_its_relation() -> None:
    decoder = PgoutputDecoder("db")
    feed(
        decoder,
        stream_start(100),
        relation(1, "t", [("id", 23, True)], xid=101),
        insert(1, ["1"], xid=101),
        insert(1, ["2"], xid=100),
        stream_stop(),
        stream_abort(100, 101),
    )
    items = feed_one(decoder, 0x300, stream_commit(100, 0x200, 0x210))
    assert [c.after for c in items[:-1]] == [{"id": 2}]


def test_stream_start_first_segment_restarts_transaction() -> None:
    decoder = PgoutputDecoder("db")
    feed(
        decoder,
        relation(1, "t", [("id", 23, True)]),
        stream_start(100),
        insert(1, ["1"], xid=100),
        stream_stop(),
        stream_start(100),  # sent again from its start, e.g. after a reconnect
        insert(1, ["1"], xid=100),
        stream_stop(),
    )
    items = list(decoder.decode(0x300, stream_commit(100, 0x200, 0x210)))
    assert len(items) == 2


def test_big_streamed_transaction_spills_to_disk(tmp_path: Path) -> None:
    decoder = PgoutputDecoder("db", spill_dir=str(tmp_path), spill_threshold=4096)
    feed(decoder, relation(1, "t", [("id", 23, True), ("s", 25, False)]), stream_start(100))
    rows = 5000
    for i in range(rows):
        decoder.decode(0x10000 + i, insert(1, [str(i), "x" * 20], xid=100 + i % 3))
    feed(decoder, stream_stop(), stream_abort(100, 101))
    (spill_file,) = os.listdir(tmp_path)
    assert os.path.getsize(tmp_path / spill_file) > 100_000
    memory = decoder._streams[100].buffer.memory_size
    assert memory <= 4096
    result = decoder.decode(0x90000, stream_commit(100, 0x80000, 0x80010))
    ids = []
    for item in result:
        if isinstance(item, Change):
            assert item.after is not None
            ids.append(item.after["id"])
    assert ids == [i for i in range(rows) if i % 3 != 1]  # subtransaction 101 dropped
    assert os.listdir(tmp_path) == []


def test_aborted_and_reset_streams_remove_spill_files(tmp_path: Path) -> None:
    decoder = PgoutputDecoder("db", spill_dir=str(tmp_path), spill_threshold=100)
    feed(decoder, relation(1, "t", [("id", 23, True)]))
    for xid in (100, 200):
        feed(decoder, stream_start(xid), *[insert(1, [str(i)], xid=xid) for i in range(50)])
        feed(decoder, stream_stop())
    assert len(os.listdir(tmp_path)) == 2
    feed(decoder, stream_abort(100, 100))
    assert len(os.listdir(tmp_path)) == 1
    decoder.close()
    assert os.listdir(tmp_path) == [] and not decoder.in_transaction


# --- errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload, text",
    [
        (b"", "empty"),
        (b"Z", "unknown message type"),
        (insert(1, ["1"])[:-1], "Insert message at LSN 0/1000"),
        (insert(1, ["1"]) + b"extra", "Insert"),
        (insert(99, ["1"]), "no Relation message seen for OID 99"),
        (insert(1, ["1", "2"]), "tuple has 2 columns"),
        (b"I" + struct.pack(">I", 1) + b"N" + struct.pack(">H", 1) + b"b", "binary"),
        (update(1, ["1"])[:5] + b"X", "Update"),
        (insert(1, ["abc"]), "invalid literal"),
        (b"P" + b"\0" * 40, "two-phase"),
        (b"K" + b"\0" * 40, "Commit Prepared"),
        (commit(0x999, 0x9A0), "commit LSN 0/999"),
        (begin(0x1, 1), "Begin inside an open transaction"),
        (stream_stop(), "Stream Stop outside"),
        (stream_commit(5, 1, 2), "unknown streamed transaction 5"),
        (stream_start(5, first=False), "start was missed"),
    ],
)
def test_malformed_messages(payload: bytes, text: str) -> None:
    decoder = PgoutputDecoder("db")
    feed(decoder, relation(1, "t", [("id", 23, True)]), begin(0x100, 1))
    with pytest.raises(DecodeError, match=text):
        decoder.decode(0x1000, payload)


def test_change_outside_transaction() -> None:
    decoder = PgoutputDecoder("db")
    feed(decoder, relation(1, "t", [("id", 23, True)]))
    with pytest.raises(DecodeError, match="outside a transaction"):
        decoder.decode(0x1000, insert(1, ["1"]))
    with pytest.raises(DecodeError, match="outside a transaction"):
        decoder.decode(0x1000, message("p", b"", True, 0x1000))


def test_malformed_streamed_change_fails_at_commit() -> None:
    decoder = PgoutputDecoder("db")
    feed(
        decoder,
        relation(1, "t", [("id", 23, True)]),
        stream_start(100),
        insert(1, ["oops"], xid=100),
        stream_stop(),
    )
    with pytest.raises(DecodeError, match="Insert message at LSN 0/1020"):
        list(decoder.decode(0x5000, stream_commit(100, 0x200, 0x210)))
