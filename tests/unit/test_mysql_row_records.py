"""Whole records rendered by the MySQL source (cdc.model.RowRecords) equal the
pipeline's general path, message for message.

A pipeline without mappers whose error policy is `fail` lets the source render
every Kafka record of a row event in C, from the templates the debezium format
gives (`record_template`). The same binlog events go through the source
and a pipeline twice, with and without that, into a capturing sink: the topics,
keys, values (but for the time of rendering: their last ts_ms, ts_us, ts_ns)
and event-id headers must be the same, for inserts, updates (also of the key),
deletes with and without tombstones, NULLs, composite and text keys, tables
without a key, and tables the C reader does not take. (Whole transactions
rendered by the scanner: test_mysql_scanner.py.)
"""

from __future__ import annotations

import struct
from decimal import Decimal
from typing import Any

import pytest

from cdc.model import Change, RecordFormat, RowRecords
from cdc.render import TopicNamer
from connectors.mysql import events as ev
from connectors.mysql import rows
from connectors.mysql.rows import (
    DELETE_ROWS_V1,
    T_DATETIME2,
    T_LONG,
    T_LONGLONG,
    T_NEWDECIMAL,
    T_VARCHAR,
    TABLE_MAP_EVENT,
    UPDATE_ROWS_V1,
    WRITE_ROWS_V1,
    WRITE_ROWS_V2,
    Column,
    RowsDecoder,
    TableDecoder,
    TableMap,
)
from mappers.debezium import DebeziumFormat
from tests.unit.test_mysql_rendered_rows import _pack_datetime2
from tests.unit.test_mysql_rows import ALLTYPES_DELETE, ALLTYPES_INSERT, ALLTYPES_MAP, _pack_decimal
from tests.unit.test_mysql_source import Binlog, mariadb_gtid, source
from tests.unit.whole_records import Sink, feed, pipeline, record_format

pytestmark = pytest.mark.skipif(rows.accelerator is None, reason="the C accelerator is not built")

TABLE_ID = (1).to_bytes(6, "little")
COLUMNS = [("id", T_LONGLONG, 0), ("code", T_VARCHAR, 40), ("amount", T_NEWDECIMAL, 12 << 8 | 2),
           ("at", T_DATETIME2, 6), ("note", T_VARCHAR, 400), ("n", T_LONG, 0)]  # fmt: skip


def _table(fmt: DebeziumFormat, key: tuple[int, ...]) -> TableDecoder:
    cols = []
    for name, type_code, meta in COLUMNS:
        c = Column(type_code, meta, nullable=True)
        c.name, c.collation = name, 45
        cols.append(c)
    return TableDecoder(TableMap(1, "cap", "orders", cols, key, b"generated"), fmt.json_values)


def _image(i: int, code: str = "A-1", note: str | None = "x", n: int | None = 5) -> bytes:
    nulls = (note is None) << 4 | (n is None) << 5
    out = nulls.to_bytes(1, "little") + i.to_bytes(8, "little")
    out += bytes((len(code.encode()),)) + code.encode()
    out += _pack_decimal(Decimal(f"{i + 10}.25"), 12, 2)
    out += _pack_datetime2((2024, 2, 29, 13, 14, 15, 123456 + i), 6)
    if note is not None:
        out += len(note.encode()).to_bytes(2, "little") + note.encode()
    if n is not None:
        out += n.to_bytes(4, "little", signed=True)
    return out


def _body(images: list[bytes], update: bool = False) -> bytes:
    n = len(COLUMNS)
    body = TABLE_ID + b"\x01\x00" + bytes((n,)) + ((1 << n) - 1).to_bytes(1, "little")
    if update:
        body += ((1 << n) - 1).to_bytes(1, "little")
    return body + b"".join(images)


def _events() -> list[tuple[int, bytes]]:
    """A transaction of every kind of row event, as (type, body)."""
    return [
        (WRITE_ROWS_V1, _body([_image(1), _image(2, "é\"\\\n", None), _image(3, n=None)])),
        (UPDATE_ROWS_V1, _body([_image(1), _image(1, "B-2", "y"),
                                _image(2, "é\"\\\n", None), _image(2, n=-7)], update=True)),
        (UPDATE_ROWS_V1, _body([_image(3), _image(30)], update=True)),  # the key changes
        (DELETE_ROWS_V1, _body([_image(1, "B-2", "y"), _image(30)])),
    ]  # fmt: skip


def _run(events: list[tuple[int, bytes]], key: tuple[int, ...], whole: bool,
         tombstones: bool) -> tuple[list[Any], list[type]]:  # fmt: skip
    """(messages sent, item types read) for the events through source and pipeline."""
    fmt = DebeziumFormat(tombstones=tombstones)
    src, log = source(), Binlog()
    src.json_values = fmt.json_values
    if whole:
        src.record_format = record_format(fmt)
    src._decoder = RowsDecoder(is_mariadb=True, json_values=fmt.json_values)
    src._decoder._by_id[TABLE_ID] = _table(fmt, key)
    items: list[Any] = []
    src._handle(log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)), items)
    for event_type, body in events:
        src._handle(log.packet(event_type, body), items)
    src._handle(log.packet(ev.XID_EVENT, struct.pack("<Q", 77)), items)
    sink = Sink()
    run = pipeline(src, fmt, sink, "{database}.{table}.{op}")
    feed(run, items)
    assert run.checkpointer.advance() == items[-1].position
    return sink.sent, [type(i) for i in items]


@pytest.mark.parametrize("tombstones", [True, False])
@pytest.mark.parametrize("key", [(0,), (1, 0), (1,), ()])
def test_whole_records_equal_the_general_path(key: tuple[int, ...], tombstones: bool) -> None:
    want, kinds = _run(_events(), key, whole=False, tombstones=tombstones)
    assert RowRecords not in kinds
    got, kinds = _run(_events(), key, whole=True, tombstones=tombstones)
    assert got == want
    # Inserts, updates that keep the key and deletes are rendered whole; an update
    # event with a key change (Debezium: a delete and a create) takes the general
    # path (the second update changes `id`, the first `code`).
    # Without a key, nothing is compared: every event is rendered whole.
    whole = {(0,): 3, (1, 0): 2, (1,): 3, (): 4}[key]
    assert kinds.count(RowRecords) == whole


def test_event_ids_count_rows_across_whole_and_general_events() -> None:
    sent, _ = _run(_events(), (0,), whole=True, tombstones=True)
    ids = [dict(headers)["cdc-event-id"].decode().split("/", 1)[1] for *_, headers in sent]
    # 3 inserts, 2 updates, the key update's delete + tombstone + create, 2 deletes
    # each with its tombstone.
    assert ids == ["0", "1", "2", "3", "4", "5", "5/1", "5/2", "6", "6/1", "7", "7/1"]


def test_v2_events_and_the_every_type_table() -> None:
    # A v2 event (extra data in its header) is read as v1; a table with columns the
    # C reader does not take gives Changes.
    fmt = DebeziumFormat()
    v2 = TABLE_ID + b"\x01\x00" + b"\x02\x00" + _body([_image(1)])[8:]
    for whole in (True, False):
        src, log = source(), Binlog()
        src.json_values = fmt.json_values
        src.record_format = record_format(fmt) if whole else None
        src._decoder = RowsDecoder(is_mariadb=True, json_columns=lambda s, t: {"c_json"},
                                   json_values=fmt.json_values)  # fmt: skip
        src._decoder._by_id[TABLE_ID] = _table(fmt, (0,))
        items: list[Any] = []
        src._handle(log.packet(WRITE_ROWS_V2, v2), items)
        src._handle(log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP), items)
        src._handle(log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT), items)
        src._handle(log.packet(DELETE_ROWS_V1, ALLTYPES_DELETE), items)
        assert [type(i) for i in items] == [RowRecords if whole else Change, Change, Change]
        assert [i.index for i in items if type(i) is Change] == ([1, 2] if whole else [0, 1, 2])
        if whole:
            [(_, _, _, headers)] = items[0].records
            # no GTID event: the transaction starts at the row event (position 4)
            assert headers == [("cdc-event-id", b"binlog.000003:4/0")]


def test_a_burst_counts_rows_not_row_events():
    # Whole records hold every row of their event: a read() stops near BURST rows
    # (as with Changes), not BURST events, so bulk inserts cannot pile up in memory.
    from connectors.mysql.source import BURST

    fmt = DebeziumFormat()
    src, log = source(), Binlog()
    src.json_values = fmt.json_values
    src.record_format = record_format(fmt)
    src._decoder = RowsDecoder(is_mariadb=True, json_values=fmt.json_values)
    src._decoder._by_id[TABLE_ID] = _table(fmt, (0,))
    event = log.packet(WRITE_ROWS_V1, _body([_image(i) for i in range(100)]))
    packets = [log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5))] + [event] * (BURST // 10)

    class Packets:
        def pending(self, timeout: float) -> bool:
            return bool(packets)

        def packets(self) -> list[bytes]:
            taken = packets[:5]
            del packets[:5]
            return taken

    src._packets = Packets()  # type: ignore[assignment]
    out = src.read(0.1)
    rows_read = sum(len(i.records) for i in out if type(i) is RowRecords)
    assert BURST <= rows_read < BURST + 5 * 100 and packets


def test_a_table_version_asks_the_format_once():
    # The templates of a table version are made once (one per op), when its first
    # row event comes; a table the C reader does not take never asks: its events
    # go straight to the general path.
    fmt = DebeziumFormat()
    calls: list[Change] = []

    def template(change: Change) -> Any:
        calls.append(change)
        return fmt.record_template(change)

    for table_map, body, wanted in [(ALLTYPES_MAP, ALLTYPES_INSERT, 0), (None, None, 3)]:
        calls.clear()
        src, log = source(), Binlog()
        src.json_values = fmt.json_values
        src.record_format = RecordFormat(template, TopicNamer("{table}", "p"), True)
        src._decoder = RowsDecoder(is_mariadb=True, json_columns=lambda s, t: {"c_json"},
                                   json_values=fmt.json_values)  # fmt: skip
        items: list[Any] = []
        if table_map is None:
            src._decoder._by_id[TABLE_ID] = _table(fmt, (0,))
            body = _body([_image(1)])
        else:
            src._handle(log.packet(TABLE_MAP_EVENT, table_map), items)
        for _ in range(3):
            src._handle(log.packet(WRITE_ROWS_V1, body), items)
        kind = Change if table_map is not None else RowRecords
        assert [type(i) for i in items] == [kind] * 3
        assert [c.op for c in calls] == ["insert", "update", "delete"][:wanted]
