"""MysqlSource's event handling on hand-made packets (no server): transaction
boundaries, positions, GTID state, table filter, truncate; and the runtime hook."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from cdc.config import MysqlSourceConfig
from cdc.errors import PositionLostError
from cdc.model import Change, Commit
from cdc.runtime import build_source
from connectors.mysql import events as ev
from connectors.mysql.rows import TABLE_MAP_EVENT, WRITE_ROWS_V1, RowsDecoder
from connectors.mysql.source import MysqlSource, parse_dsn
from tests.unit.test_mysql_rows import ALLTYPES_INSERT, ALLTYPES_MAP

TS = 1709212455


class Binlog:
    """Packets as the server sends them during a dump: OK byte, header, body, CRC."""

    def __init__(self) -> None:
        self.pos = 4

    def packet(self, event_type: int, body: bytes) -> bytes:
        size = 19 + len(body) + 4
        self.pos += size
        header = struct.pack("<IBIIIH", TS, event_type, 1, size, self.pos, 0)
        return b"\x00" + header + body + b"\0\0\0\0"


def mariadb_gtid(seq: int, standalone: bool = False) -> bytes:
    return struct.pack("<QIB", seq, 0, 1 if standalone else 0) + b"\0" * 6


def query(sql: str, schema: str = "cap") -> bytes:
    return struct.pack("<IIBHH", 7, 0, len(schema), 0, 0) + schema.encode() + b"\0" + sql.encode()


def source(**config: Any) -> MysqlSource:
    cfg = MysqlSourceConfig(dsn="mysql://u:p%40ss@db:3307/cap", server_id=9, snapshot="never",
                            **config)  # fmt: skip
    src = MysqlSource(cfg, name="t")
    src._decoder = RowsDecoder(is_mariadb=True, json_columns=lambda s, t: {"c_json"})
    src._file = "binlog.000003"
    src._gtid_state = {0: "0-1-4"}
    src._gtid_text = "0-1-4"
    return src


def feed(src: MysqlSource, packets: list[bytes]) -> list[Change | Commit]:
    out: list[Change | Commit] = []
    for p in packets:
        src._handle(p, out)
    return out


def test_a_transaction_gives_its_changes_then_a_commit():
    src, log = source(), Binlog()
    gtid = log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5))
    start = log.pos - (len(gtid) - 1)
    packets = [gtid, log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP)]
    packets.append(log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT))
    rows_at = log.pos - (len(packets[-1]) - 1)
    packets.append(log.packet(ev.XID_EVENT, struct.pack("<Q", 77)))
    change, commit = feed(src, packets)
    assert isinstance(change, Change) and isinstance(commit, Commit)
    assert (change.op, change.database, change.schema, change.table) == (
        "insert", "cap", "", "alltypes")
    assert change.key == {"id": 1} and change.after is not None and change.before is None
    assert change.position == ("binlog.000003", start)
    assert change.log_pos == ("binlog.000003", rows_at, 0)
    assert change.txid == 5 and change.commit_ts == TS * 1_000_000 and change.index == 0
    assert change.source == {"connector": "mysql", "server_id": 1, "gtid": "0-1-5",
                             "file": "binlog.000003"}  # fmt: skip
    assert commit.position == ("binlog.000003", log.pos, "0-1-5")
    assert src.position_to_store(commit.position) == {
        "source": "mysql", "file": "binlog.000003", "pos": log.pos, "gtid_set": "0-1-5",
        "snapshot_complete": True}


def test_tables_outside_the_filter_give_only_the_commit():
    src, log = source(tables=("cap.other",)), Binlog()
    out = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)),
        log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP),
        log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT),
        log.packet(ev.XID_EVENT, struct.pack("<Q", 77)),
    ])  # fmt: skip
    assert [type(i) for i in out] == [Commit]


def test_ddl_and_truncate_are_transactions_of_their_own():
    src, log = source(), Binlog()
    out = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("TRUNCATE TABLE `alltypes`")),
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(6, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("ALTER TABLE alltypes ADD COLUMN z int")),
    ])  # fmt: skip
    truncate, first, second = out
    assert isinstance(truncate, Change) and truncate.op == "truncate"
    assert (truncate.database, truncate.table) == ("cap", "alltypes")
    assert isinstance(first, Commit) and first.position[2] == "0-1-5"
    assert isinstance(second, Commit) and second.position[2] == "0-1-6"


def test_gtid_state_keeps_every_domain():
    src, log = source(), Binlog()
    other = struct.pack("<QIB", 9, 2, 1) + b"\0" * 6  # domain 2, standalone
    out = feed(src, [log.packet(ev.MARIADB_GTID_EVENT, other),
                     log.packet(ev.QUERY_EVENT, query("CREATE TABLE x (id int)"))])  # fmt: skip
    assert isinstance(out[-1], Commit)
    assert out[-1].position[2] == "0-1-4,2-1-9"


def test_a_purged_position_is_reported():
    src = source()
    error = b"\xff" + struct.pack("<H", 1236) + b"#HY000" + b"Could not find GTID state"
    with pytest.raises(PositionLostError, match="re-snapshot"):
        src._handle(error, [])


def test_dsn_is_split_with_the_password_unquoted():
    assert parse_dsn("mysql://u:p%40ss@db:3307/cap") == {
        "host": "db", "port": 3307, "user": "u", "password": "p@ss", "database": "cap"}


def _pipeline(snapshot: str) -> Any:
    # build_source reads only the name and the source section.
    return SimpleNamespace(
        name="m", source=MysqlSourceConfig(dsn="mysql://u@db/cap", server_id=9, snapshot=snapshot)
    )


def test_runtime_builds_the_mysql_source_in_every_snapshot_mode():
    for mode in ("never", "initial", "always", "initial_only"):
        built = build_source(_pipeline(mode))
        assert isinstance(built, MysqlSource) and built.config.snapshot == mode
