"""MysqlSource's event handling on hand-made packets (no server): transaction
boundaries, positions, GTID state, table filter, truncate; and the runtime hook."""

from __future__ import annotations

import struct
from types import SimpleNamespace
from typing import Any

import pytest

from cdc.config import MysqlSourceConfig
from cdc.errors import PositionLostError, SlotInUse
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

    def packet(self, event_type: int, body: bytes, ts: int = TS) -> bytes:
        size = 19 + len(body) + 4
        self.pos += size
        header = struct.pack("<IBIIIH", ts, event_type, 1, size, self.pos, 0)
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
    src._set_file("binlog.000003")
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


def test_rows_rendered_by_the_decoder_and_the_commit_read_from_the_xid_header():
    # A pipeline without mappers: the row arrives as the format's JSON, the key as
    # values; the Commit's position and time are the XID event's own header fields.
    from cdc.model import RenderedRow
    from mappers.debezium import DebeziumFormat

    src, log = source(), Binlog()
    src.json_values = DebeziumFormat().json_values
    src._decoder = RowsDecoder(is_mariadb=True, json_columns=lambda s, t: {"c_json"},
                               json_values=src.json_values)  # fmt: skip
    change, commit = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)),
        log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP),
        log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT),
        log.packet(ev.XID_EVENT, struct.pack("<Q", 77), ts=TS + 3),
    ])  # fmt: skip
    assert isinstance(change, Change) and type(change.after) is RenderedRow
    assert change.key == {"id": 1} and change.commit_ts == TS * 1_000_000
    assert isinstance(commit, Commit)
    assert commit.position == ("binlog.000003", log.pos, "0-1-5")
    assert commit.commit_ts == (TS + 3) * 1_000_000 and commit.txid == 5


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


# -- schema changes (source option schema_changes) -------------------------------------


def test_ddl_on_a_captured_table_is_a_schema_change_then_its_commit():
    src, log = source(schema_changes=True), Binlog()
    packets = [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)),
        log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP),
        log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT),
        log.packet(ev.XID_EVENT, struct.pack("<Q", 77)),
    ]  # fmt: skip
    gtid_at = log.pos
    packets.append(log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(6, standalone=True)))
    ddl_at = log.pos
    packets.append(log.packet(ev.QUERY_EVENT, query("ALTER TABLE alltypes ADD COLUMN z int")))
    ddl_end = log.pos
    out = feed(src, packets)
    assert [type(i).__name__ for i in out] == ["Change", "Commit", "Change", "Commit"]
    notice, commit = out[2], out[3]
    assert isinstance(notice, Change) and isinstance(commit, Commit)
    assert (notice.op, notice.database, notice.schema, notice.table) == (
        "schema", "cap", "", "alltypes")
    assert notice.after == {"ddl": "ALTER TABLE alltypes ADD COLUMN z int",
                            "kind": "ALTER TABLE", "default_database": "cap"}  # fmt: skip
    assert notice.key is None and notice.before is None and notice.columns == {}
    assert notice.position == ("binlog.000003", gtid_at)  # the transaction's first event
    assert notice.log_pos == ("binlog.000003", ddl_at, 0) and notice.index == 0
    assert notice.txid == 6 and notice.source["gtid"] == "0-1-6"
    assert commit.position == ("binlog.000003", ddl_end, "0-1-6")


def test_schema_changes_are_off_by_default():
    src, log = source(), Binlog()
    out = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(6, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("ALTER TABLE alltypes ADD z int")),
    ])  # fmt: skip
    assert [type(i) for i in out] == [Commit]


def test_only_captured_tables_and_databases_give_schema_changes():
    src, log = source(schema_changes=True, tables=("cap.orders", "cap.lines")), Binlog()

    def ddl(sql: str, schema: str = "cap") -> list[tuple[str, str, str]]:
        out = feed(src, [log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(7, standalone=True)),
                         log.packet(ev.QUERY_EVENT, query(sql, schema))])  # fmt: skip
        assert isinstance(out[-1], Commit)
        return [(c.database, c.table, c.after["kind"]) for c in out
                if isinstance(c, Change) and c.after]  # fmt: skip

    assert ddl("ALTER TABLE other ADD z int") == []
    assert ddl("ALTER TABLE `cap`.`orders` ADD z int", schema="") == [
        ("cap", "orders", "ALTER TABLE")]
    assert ddl("ALTER TABLE orders ADD z int", schema="") == []  # no database to resolve it
    # One notice per captured table the statement names, in statement order.
    assert ddl("DROP TABLE IF EXISTS `cap`.`lines`,`cap`.`x`,`cap`.`orders` "
               "/* generated by server */") == [("cap", "lines", "DROP TABLE"),
                                                ("cap", "orders", "DROP TABLE")]  # fmt: skip
    assert ddl("RENAME TABLE orders TO orders_old, orders_new TO orders") == [
        ("cap", "orders", "RENAME TABLE")]
    assert ddl("CREATE INDEX i ON lines (a)") == [("cap", "lines", "CREATE INDEX")]
    assert ddl("CREATE DATABASE shop2", schema="") == []  # not a captured database
    assert ddl("ALTER DATABASE CHARACTER SET utf8mb4") == [("cap", "", "ALTER DATABASE")]
    assert ddl("CREATE VIEW v AS SELECT 1") == []
    assert ddl("GRANT SELECT ON cap.* TO u") == []


def test_all_tables_captured_means_every_database_but_the_system_ones():
    src, log = source(schema_changes=True), Binlog()
    out = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(7, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("CREATE DATABASE shop", "")),
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(8, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("CREATE TABLE mysql.x (a int)", "")),
    ])  # fmt: skip
    notices = [(c.database, c.table, c.op) for c in out if isinstance(c, Change)]
    assert notices == [("shop", "", "schema")]
    assert [type(i) for i in out].count(Commit) == 2


def test_ddl_names_follow_lower_case_table_names():
    src, log = source(schema_changes=True, tables=("cap.orders",)), Binlog()
    src._lower_names = True  # lower_case_table_names = 1: ORDERS is orders
    out = feed(src, [
        log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(7, standalone=True)),
        log.packet(ev.QUERY_EVENT, query("ALTER TABLE CAP.ORDERS ADD z int")),
    ])  # fmt: skip
    assert [(c.database, c.table) for c in out if isinstance(c, Change)] == [("cap", "orders")]


# -- the position on a quiet server -----------------------------------------------------


def test_a_new_binlog_file_moves_the_position_when_nothing_is_open():
    src, log = source(), Binlog()
    body = struct.pack("<Q", 4) + b"binlog.000004"
    out = feed(src, [log.packet(ev.ROTATE_EVENT, body)])
    assert len(out) == 1 and isinstance(out[0], Commit)
    assert out[0].position == ("binlog.000004", 4, "0-1-4") and out[0].commit_ts == 0
    assert src._file == "binlog.000004"


def test_the_rotate_sent_on_connecting_is_not_a_position():
    src = source()
    src._last_commit = ("binlog.000003", 900)
    body = struct.pack("<Q", 4) + b"binlog.000003"
    header = struct.pack("<IBIIIH", 0, ev.ROTATE_EVENT, 1, 19 + len(body) + 4, 0, 0x20)
    out = feed(src, [b"\x00" + header + body + b"\0\0\0\0"])
    assert out == [] and src._file == "binlog.000003"


def test_heartbeats_move_the_position_past_events_outside_transactions():
    src, log = source(), Binlog()
    src._last_commit = ("binlog.000003", 4)
    checkpoint = log.packet(161, b"\x0c\0\0\0binlog.000003")  # MariaDB binlog checkpoint
    heartbeat = log.packet(ev.HEARTBEAT_EVENT, b"binlog.000003")
    out = feed(src, [checkpoint, heartbeat, heartbeat])
    end = 4 + len(checkpoint) - 1
    # One Commit: a second heartbeat at the same place adds nothing.
    assert [i.position for i in out if isinstance(i, Commit)] == [("binlog.000003", end, "0-1-4")]


def test_heartbeats_never_move_the_position_back_or_into_a_transaction():
    src, log = source(), Binlog()
    src._last_commit = ("binlog.000003", 10_000)  # resumed further on than what arrives
    out = feed(src, [log.packet(161, b"\x0c\0\0\0binlog.000003"),
                     log.packet(ev.HEARTBEAT_EVENT, b"binlog.000003")])  # fmt: skip
    assert out == []
    src._last_commit = ("binlog.000003", 4)
    log.pos = 20_000
    out = feed(src, [log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)),
                     log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP),
                     log.packet(ev.HEARTBEAT_EVENT, b"binlog.000003")])  # fmt: skip
    assert out == []  # the transaction is open: only its XID may move the position


def test_resume_by_file_and_position_when_there_is_no_gtid_state(monkeypatch):
    import pymysqlreplication

    seen: dict[str, Any] = {}

    class Reader:
        def __init__(self, **kwargs: Any):
            seen.update(kwargs)

        def _BinLogStreamReader__connect_to_stream(self) -> None:
            raise OSError("stop here")

    monkeypatch.setattr(pymysqlreplication, "BinLogStreamReader", Reader)
    src = source()
    with pytest.raises(Exception, match="stop here"):
        src._connect_stream("binlog.000003", 1234, "0-1-4")
    assert seen["auto_position"] == "0-1-4" and seen["is_mariadb"] is True
    with pytest.raises(Exception, match="stop here"):
        src._connect_stream("binlog.000003", 1234, "")  # a server that never logged a GTID
    assert seen["auto_position"] is None and seen["is_mariadb"] is False
    assert (seen["log_file"], seen["log_pos"]) == ("binlog.000003", 1234)
    src.resume_by_gtid = False
    with pytest.raises(Exception, match="stop here"):
        src._connect_stream("binlog.000003", 1234, "0-1-4")
    assert seen["auto_position"] is None and seen["is_mariadb"] is False


@pytest.mark.parametrize("code, message", [
    (4052, "A slave with the same server_uuid/server_id is already connected; the first event"),
    (1236, "A replica with the same server_uuid/server_id as this replica has connected to "
           "the source; the first event 'binlog.000001' at 4"),
])  # fmt: skip
def test_another_replica_with_our_server_id_is_not_a_purged_binlog(code, message):
    error = b"\xff" + struct.pack("<H", code) + b"#HY000" + message.encode()
    with pytest.raises(SlotInUse, match="unique source.server_id") as failure:
        source()._handle(error, [])
    assert "server_id 9" in str(failure.value) and "purged" not in str(failure.value)


def test_a_row_image_shorter_than_its_columns_is_a_decode_error_naming_the_table():
    from cdc.errors import DecodeError

    src, log = source(), Binlog()
    packets = [log.packet(ev.MARIADB_GTID_EVENT, mariadb_gtid(5)),
               log.packet(TABLE_MAP_EVENT, ALLTYPES_MAP),
               log.packet(WRITE_ROWS_V1, ALLTYPES_INSERT[:40])]  # fmt: skip
    with pytest.raises(DecodeError, match=r"row event of cap\.alltypes at binlog\.000003:\d+"):
        feed(src, packets)
