"""The debezium format against real Debezium 3.6.3 output (shared/reference)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cdc.model import Change, Interval
from mappers.debezium import PLACEHOLDER, DebeziumFormat, value_converter
from mappers.formats import make_format, split_type_name

# A copy of ../shared/reference, kept in the repository so the suite runs anywhere.
REFERENCE = Path(__file__).resolve().parents[1] / "data" / "reference"
PG_CAPTURES = json.loads((REFERENCE / "debezium-3.6.3-postgres-envelopes.json").read_text())
MYSQL_CAPTURES = json.loads((REFERENCE / "debezium-3.6.3-mysql-envelopes.json").read_text())

# How the decoder describes types_demo (postgres-types_demo.sql).
COLUMNS = {
    "id": "int4",
    "c_smallint": "int2",
    "c_int": "int4",
    "c_bigint": "int8",
    "c_numeric": "numeric(12,2)",
    "c_real": "float4",
    "c_double": "float8",
    "c_bool": "bool",
    "c_text": "text",
    "c_varchar": "varchar(20)",
    "c_char": "bpchar(3)",
    "c_date": "date",
    "c_time": "time",
    "c_timestamp": "timestamp",
    "c_timestamptz": "timestamptz",
    "c_interval": "interval",
    "c_uuid": "uuid",
    "c_json": "json",
    "c_jsonb": "jsonb",
    "c_bytea": "bytea",
    "c_text_arr": "_text",
    "c_int_arr": "_int4",
    "c_enum": "mood",
    "c_toast": "text",
}

TOAST = "".join(hashlib.md5(str(g).encode()).hexdigest() for g in range(1, 641))

INSERTED: dict[str, Any] = {
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
    "c_date": dt.date(2024, 2, 29),
    "c_time": dt.time(13, 14, 15, 123456),
    "c_timestamp": dt.datetime(2024, 2, 29, 13, 14, 15, 123456),
    "c_timestamptz": dt.datetime(2024, 2, 29, 11, 14, 15, 123456, tzinfo=dt.UTC),
    # '1 year 2 months 3 days 04:05:06.789'
    "c_interval": Interval(months=14, days=3, microseconds=14_706_789_000),
    "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "c_json": {"k": [1, 2.5, "x"], "n": None},
    "c_jsonb": {"k": [1, 2.5, "x"], "n": None},
    "c_bytea": b"\xde\xad\xbe\xef\x00",
    "c_text_arr": ["a", "b c", None],
    "c_int_arr": [1, 2, None, 4],
    "c_enum": "happy",
    "c_toast": TOAST,
}


def change_for(case: str, source: dict[str, Any]) -> Change:
    """The Change our decoder produces for one captured operation, with the
    transaction details (txid, LSNs, commit time) of the capture."""
    last_commit, lsn = json.loads(source["sequence"])
    common: dict[str, Any] = {
        "database": "dbz",
        "txid": source["txId"],
        "commit_ts": source["ts_us"],
        "index": 0,
        "position": source["lsn"],
        "log_pos": int(lsn),
        "source": {} if last_commit is None else {"last_commit_lsn": int(last_commit)},
    }
    table: dict[str, Any] = {"schema": "public", "table": "types_demo", "columns": COLUMNS}
    if case == "insert":
        after = dict(INSERTED)
        return Change(op="insert", key={"id": 1}, before=None, after=after, **table, **common)
    if case == "update_toast_unchanged":
        after = dict(INSERTED, c_int=123457, c_text="updated")
        del after["c_toast"]
        return Change(
            op="update", key={"id": 1}, before=None, after=after, unchanged=("c_toast",),
            **table, **common,
        )
    if case in ("delete", "delete_tombstone"):
        return Change(op="delete", key={"id": 1}, before={"id": 1}, after=None, **table, **common)
    if case == "truncate":
        return Change(op="truncate", key=None, before=None, after=None, **table, **common)
    if case == "message":
        body = {"prefix": "outbox", "content": b'{"a":1}', "transactional": True}
        return Change(
            op="message", schema="", table="", columns={}, key=None, before=None, after=body,
            **common,
        )
    raise AssertionError(case)


FORMAT_OPTIONS = {
    "default": {"decimal": "base64"},
    "decimal_string": {"decimal": "string"},
    "truncate_on": {"truncate": True},
}

# Fields allowed to differ from the capture: when we rendered, and who we are.
WALL_CLOCK = ("ts_ms", "ts_us", "ts_ns")


def without(record: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in fields}


def assert_same_envelope(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    assert list(ours) == list(theirs), "top-level field order"
    assert without(ours, WALL_CLOCK + ("source",)) == without(theirs, WALL_CLOCK + ("source",))
    for image in ("before", "after"):
        if theirs.get(image) is not None:
            assert list(ours[image]) == list(theirs[image]), f"{image} column order"
    assert list(ours["source"]) == list(theirs["source"]), "source field order"
    assert without(ours["source"], ("version",)) == without(theirs["source"], ("version",))
    assert ours["source"]["version"].startswith("cdc-")
    for field in WALL_CLOCK:
        if field in theirs:
            assert isinstance(ours[field], int)


def capture_id(capture: dict[str, Any]) -> str:
    return f"{capture['run']}-{capture['case']}"


@pytest.mark.parametrize("capture", PG_CAPTURES, ids=capture_id)
def test_matches_debezium_capture(capture: dict[str, Any]) -> None:
    fmt = make_format("debezium", server_name="dbz", **FORMAT_OPTIONS[capture["run"]])
    source = (capture["value"] or {}).get("source")
    if source is None:  # the tombstone: take the transaction from the delete before it
        delete = next(
            c for c in PG_CAPTURES if c["run"] == capture["run"] and c["case"] == "delete"
        )
        source = delete["value"]["source"]
    records = fmt.render(change_for(capture["case"], source))

    if capture["case"] == "delete":
        assert len(records) == 2
        records = records[:1]
    elif capture["case"] == "delete_tombstone":
        assert len(records) == 2
        records = records[1:]
    assert len(records) == 1
    [(topic, key, value)] = records

    expected_topic = capture["topic"] if capture["case"] == "message" else None
    assert topic == expected_topic
    assert (None if key is None else json.loads(key)) == capture["key"]
    if capture["value"] is None:
        assert value is None
    else:
        assert value is not None
        assert_same_envelope(json.loads(value), capture["value"])


def insert_source() -> dict[str, Any]:
    return next(c for c in PG_CAPTURES if c["case"] == "insert")["value"]["source"]


def render_one(change: Change, **options: Any) -> tuple[str | None, Any, Any]:
    [(topic, key, value)] = DebeziumFormat(server_name="dbz", **options).render(change)
    return topic, None if key is None else json.loads(key), json.loads(value) if value else None


def test_default_decimal_mode_is_string() -> None:
    _, _, value = render_one(change_for("insert", insert_source()))
    assert value["after"]["c_numeric"] == "12345.67"


def test_tombstones_off_gives_the_delete_alone() -> None:
    change = change_for("delete", insert_source())
    [(topic, key, value)] = DebeziumFormat(tombstones=False).render(change)
    assert topic is None and key == b'{"id":1}' and value is not None


def test_truncate_is_skipped_by_default() -> None:
    assert DebeziumFormat().render(change_for("truncate", insert_source())) == []


def test_message_topic_follows_server_name() -> None:
    topic, key, value = render_one(change_for("message", insert_source()))
    assert topic == "dbz.message"
    assert key == {"prefix": "outbox"}
    assert value["message"] == {"prefix": "outbox", "content": "eyJhIjoxfQ=="}
    assert "before" not in value and "after" not in value


def test_output_is_compact_utf8() -> None:
    [(_, _, value)] = DebeziumFormat().render(change_for("insert", insert_source()))
    assert value is not None
    assert b'"c_text":"h\xc3\xa9llo \\"quoted\\" \\\\ backslash"' in value
    assert b", " not in value.split(b'"c_json"')[0]


def test_snapshot_read() -> None:
    change = change_for("insert", insert_source())
    change.op, change.snapshot = "read", True
    _, _, value = render_one(change)
    assert value["op"] == "r" and value["source"]["snapshot"] == "true"


def test_primary_key_change_is_delete_tombstone_create() -> None:
    change = change_for("insert", insert_source())
    change.op, change.key, change.before = "update", {"id": 2}, {"id": 1}
    change.after = dict(INSERTED, id=2)
    records = DebeziumFormat().render(change)
    assert [(json.loads(k) if k else None) for _, k, _ in records] == [
        {"id": 1}, {"id": 1}, {"id": 2},
    ]
    deleted, tombstone, created = (json.loads(v) if v else None for _, _, v in records)
    assert deleted["op"] == "d" and deleted["before"]["id"] == 1 and deleted["after"] is None
    assert tombstone is None
    assert created["op"] == "c" and created["before"] is None and created["after"]["id"] == 2


def test_update_with_old_tuple_renders_before() -> None:
    change = change_for("insert", insert_source())
    change.op, change.before = "update", dict(INSERTED)
    _, _, value = render_one(change)
    assert value["op"] == "u" and value["before"] == value["after"]


def test_unchanged_toast_placeholders_follow_debezium_per_type() -> None:
    change = change_for("insert", insert_source())
    change.op = "update"
    change.unchanged = ("c_bytea", "c_text_arr", "c_int_arr", "c_jsonb")
    for name in change.unchanged:
        del change.after[name]
    _, _, value = render_one(change)
    after = value["after"]
    assert after["c_bytea"] == "X19kZWJleml1bV91bmF2YWlsYWJsZV92YWx1ZQ=="
    assert after["c_text_arr"] == [PLACEHOLDER]
    assert after["c_int_arr"] == list(PLACEHOLDER.encode())
    assert after["c_jsonb"] == PLACEHOLDER


@pytest.mark.parametrize(
    ("type_name", "decimal", "value", "expected"),
    [
        ("numeric(12,2)", "string", Decimal("12345.67"), "12345.67"),
        ("numeric(12,2)", "string", Decimal("-0.01"), "-0.01"),
        ("numeric(12,2)", "string", Decimal("5"), "5.00"),
        ("numeric(20,10)", "string", Decimal("0.0000001000"), "1.000E-7"),  # BigDecimal.toString
        ("numeric(12,2)", "string", Decimal("NaN"), "NAN"),
        ("numeric(12,2)", "base64", Decimal("12345.67"), "EtaH"),
        ("numeric(12,2)", "base64", Decimal("-0.01"), "/w=="),
        ("numeric(12,2)", "base64", Decimal("0"), "AA=="),
        ("numeric(40,0)", "base64", Decimal("18446744073709551615"), "AP//////////"),
        ("numeric", "string", Decimal("1.50"), "1.50"),
        ("numeric", "base64", Decimal("1.50"), {"scale": 1, "value": "Dw=="}),
        ("numeric", "base64", Decimal("100"), {"scale": 0, "value": "ZA=="}),
        ("float4", "string", 3.14, 3.14),
        ("float4", "string", 0.10000000149011612, 0.1),  # the float32 nearest to 0.1
        ("float4", "string", float("nan"), "NaN"),
        ("float8", "string", float("-inf"), "-Infinity"),
        ("date", "string", dt.date(1969, 12, 31), -1),
        ("time", "string", dt.time(0, 0, 1, 500), 1_000_500),
        ("time(3)", "string", dt.time(0, 0, 1, 500000), 1500),
        ("time", "string", "24:00:00", 86_400_000_000),
        ("timestamp", "string", dt.datetime(1969, 12, 31, 23, 59, 59, 999999), -1),
        ("timestamp(3)", "string", dt.datetime(1970, 1, 1, 0, 0, 1, 234567), 1234),
        ("timestamp", "string", "infinity", 9223372036825200000),
        ("timestamptz", "string", dt.datetime(2024, 2, 29, 11, 14, 15, tzinfo=dt.UTC),
         "2024-02-29T11:14:15.000000Z"),
        ("timestamptz(3)", "string",
         dt.datetime(2024, 2, 29, 13, 14, 15, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
         "2024-02-29T11:14:15.120Z"),
        ("timestamptz(0)", "string", dt.datetime(2024, 2, 29, 11, 14, 15, tzinfo=dt.UTC),
         "2024-02-29T11:14:15Z"),
        ("timestamptz", "string", "-infinity", "-infinity"),
        ("interval", "string", Interval(-1, 0, 0), -2_629_800_000_000),
        ("jsonb", "string", {"é": [1, None]}, '{"é": [1, null]}'),
        ("_numeric(5,1)", "string", [[Decimal("1.5"), None]], [["1.5", None]]),
        ("_bytea", "string", [b"\x00"], ["AA=="]),
        ("mood", "string", "sad", "sad"),
        ("tsvector", "string", "'a':1", "'a':1"),
    ],
)
def test_value_conversions(type_name: str, decimal: str, value: Any, expected: Any) -> None:
    convert = value_converter(type_name, decimal)
    assert (value if convert is None else convert(value)) == expected


def test_special_numeric_in_base64_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="decimal=string"):
        value_converter("numeric", "base64")(Decimal("NaN"))  # type: ignore[misc]


def test_type_name_spellings() -> None:
    assert split_type_name("numeric(12,2)") == ("numeric", (12, 2), 0)
    assert split_type_name("_int4") == ("int4", (), 1)
    assert split_type_name("character varying(20)[]") == ("varchar", (20,), 1)
    assert split_type_name("timestamp(3) with time zone") == ("timestamptz", (3,), 0)


def test_columns_are_prepared_once_per_columns_dict() -> None:
    fmt = DebeziumFormat()
    change = change_for("insert", insert_source())
    fmt.render(change)
    fmt.render(change_for("insert", insert_source()))
    assert len(fmt._tables) == 1
    change.columns = dict(COLUMNS)  # a new relation version
    fmt.render(change)
    assert len(fmt._tables) == 2


def test_unknown_format_and_decimal_mode() -> None:
    with pytest.raises(ValueError, match="unknown format 'protobuf'"):
        make_format("protobuf")
    with pytest.raises(ValueError, match="unknown decimal mode"):
        make_format("debezium", decimal="double")


def test_mysql_source_block_matches_capture() -> None:
    capture = next(c for c in MYSQL_CAPTURES if c["case"] == "insert")
    source = capture["value"]["source"]
    change = Change(
        op="insert", database="dbz", schema="", table="envtest", key={"id": 1}, before=None,
        after={"id": 1, "c_vc": 'héllo "quoted"'},
        columns={"id": "int4", "c_vc": "varchar(40)"},
        position=("binlog.000002", 3200), txid=None, commit_ts=source["ts_us"], index=0,
        log_pos=(source["file"], source["pos"], source["row"]),
        source={"connector": "mysql", "server_id": source["server_id"], "gtid": None},
    )
    [(_, key, value)] = DebeziumFormat(server_name="dbzmy").render(change)
    ours = json.loads(value or b"")
    assert key is not None and json.loads(key) == capture["key"]
    assert list(ours) == list(capture["value"])
    assert list(ours["source"]) == list(source)
    assert without(ours["source"], ("version",)) == without(source, ("version",))
    assert ours["after"] == {"id": 1, "c_vc": 'héllo "quoted"'}


def _pg_change(table: str, lsn: int | None, index: int, last_commit: int | None) -> Change:
    return Change("insert", "shop", "public", table, {"id": index}, None, {"id": index},
                  {"id": "int4"}, 0x16B3748, 731, 1709212455123456, index,
                  log_pos=lsn, source={"last_commit_lsn": last_commit})  # fmt: skip


def test_source_block_parts_reused_only_for_the_same_transaction_and_table() -> None:
    # The per-transaction parts are kept between changes; a change that differs
    # in any of them (e.g. renamed by a mapper) must not get the previous ones.
    fmt = DebeziumFormat(server_name="dbz")
    changes = [
        _pg_change("orders", 100, 0, 50), _pg_change("orders", 200, 1, 50),
        _pg_change("order_lines", 300, 2, 50), _pg_change("orders", None, 3, None),
    ]  # fmt: skip
    for change in changes:
        source = json.loads(fmt.render(change)[0][2])["source"]
        assert source["table"] == change.table
        last = change.source["last_commit_lsn"]
        lsn = change.log_pos
        assert json.loads(source["sequence"]) == [
            None if last is None else str(last), None if lsn is None else str(lsn)
        ]
        assert source["lsn"] == lsn and source["txId"] == 731
        assert source["ts_us"] == 1709212455123456


def test_mysql_source_block_is_the_dict_encoded() -> None:
    fmt = DebeziumFormat(server_name="dbz")
    block = {"connector": "mysql", "server_id": 7, "gtid": "0-1-5", "file": "b.000001",
             "thread": None, "query": None}  # fmt: skip
    for i, log_pos in enumerate([("b.000001", 400, 0), ("b.000001", 400, 1), None]):
        change = Change("insert", "shop", "", "orders" if i < 2 else "lines", {"id": i}, None,
                        {"id": i}, {"id": "int"}, ("b.000001", 900, "0-1-5"), 5,
                        1709212455000000, i, log_pos=log_pos, source=block)  # fmt: skip
        source = json.loads(fmt.render(change)[0][2])["source"]
        assert source == fmt._mysql_source(change)


def test_mysql_source_block_text_is_the_dict_encoded_across_transactions() -> None:
    # Parts kept per table and per transaction: byte for byte the encoded dict,
    # for a run of transactions on two tables with every field varying.
    from mappers.formats import to_json

    fmt = DebeziumFormat(server_name="dbz")
    sources = [
        {"connector": "mysql", "server_id": 7, "gtid": "0-1-5"},
        {"connector": "mysql", "server_id": 7, "gtid": "0-1-6"},
        {"connector": "mysql", "server_id": 8, "gtid": None, "thread": 12, "query": "INSERT é"},
        {"connector": "mysql", "server_id": 8, "gtid": None},
    ]
    for i in range(24):
        block = sources[i // 3 % len(sources)]
        change = Change("insert", "shop", "", ("orders", "lines", "ñ")[i % 3], {"id": i}, None,
                        {"id": i}, {"id": "int4"}, ("b.000001", 900 + i // 3, ""), None,
                        1709212455000000 + i // 3 * 1001, i, snapshot=i % 4 == 0,
                        log_pos=("b.000001", 400 + i, i % 3), source=block)  # fmt: skip
        text = fmt._mysql_source_json(change)
        assert text == '"source":' + to_json(fmt._mysql_source(change))


def test_mysql_source_fields_a_mapper_made_unhashable_or_retyped_still_render() -> None:
    from mappers.formats import to_json

    fmt = DebeziumFormat(server_name="dbz")
    for i, block in enumerate([
        {"connector": "mysql", "server_id": 1, "gtid": None, "query": ["a", "list"]},
        {"connector": "mysql", "server_id": 1, "gtid": None},
        {"connector": "mysql", "server_id": True, "gtid": None},  # equal to 1, not the same JSON
    ]):  # fmt: skip
        change = Change("insert", "shop", "", "orders", {"id": 1}, None, {"id": 1},
                        {"id": "int4"}, ("b.000001", 900, ""), None, 1709212455000000 + i, 0,
                        log_pos=("b.000001", 400, 0), source=block)  # fmt: skip
        assert fmt._mysql_source_json(change) == '"source":' + to_json(fmt._mysql_source(change))


def _without_clock(value: bytes | None) -> bytes | None:
    """An envelope without its processing-time fields (the last ts_ms, ts_us, ts_ns)."""
    return None if value is None else value.rsplit(b',"ts_ms":', 1)[0]


def test_rows_the_mysql_decoder_rendered_get_the_general_envelope() -> None:
    # Rows rendered by the decoder take a shortcut built once per row event; byte
    # for byte it must give what the general path gives for the same row as a dict,
    # across transactions, tables, events, commit times, ops and key changes.
    from cdc.model import RenderedRow

    shortcut, general = DebeziumFormat(server_name="dbz"), DebeziumFormat(server_name="dbz")
    tables = {
        "orders": {"id": "int", "total": "decimal(10,2)", "note": "varchar(20)"},
        "lines": {"order_id": "int", "n": "int", "sku": "varchar(8)"},
        "skus": {"sku": "varchar(8)", "n": "int", "note": "varchar(20)"},
        "prices": {"total": "decimal(10,2)", "n": "int", "sku": "varchar(8)"},
        # A type the format does not know: its integers are converted (to text).
        "odd": {"n": "mystery", "sku": "varchar(8)", "note": "varchar(20)"},
    }
    keys = {"orders": ("id",), "lines": ("order_id", "n"), "skus": ("sku",), "prices": ("total",),
            "odd": ("n",)}  # fmt: skip
    blocks = [
        {"connector": "mysql", "server_id": 7, "gtid": "0-7-1", "file": "b.000001"},
        {"connector": "mysql", "server_id": 7, "gtid": "0-7-2", "file": "b.000001"},
        {"connector": "mysql", "server_id": 9, "gtid": None, "file": "b.000002"},
    ]
    seen_ops = set()
    # Runs of co-prime lengths: every field changes alone somewhere.
    for i in range(525):
        table = ("orders", "lines", "skus", "prices", "odd")[i // 7 % 5]
        columns = tables[table]
        block = blocks[i // 5 % len(blocks)]
        after = {
            "orders": {"id": i, "total": Decimal(f"{i}.50"), "note": f"n{i} é\""},
            "lines": {"order_id": i // 3, "n": i % 3, "sku": f"s{i}"},
            "skus": {"sku": f"s{i}", "n": i, "note": f"n{i}"},
            "prices": {"total": Decimal(f"{i}.25"), "n": i, "sku": f"s{i}"},
            "odd": {"n": i, "sku": f"s{i}", "note": f"n{i}"},
        }[table]
        key = {k: after[k] for k in keys[table]}
        op = ("insert", "update", "update", "insert", "update")[i % 5]
        before = None
        if op == "update":
            before = dict(after, **{
                "orders": {"note": f"old {i}", "total": Decimal(i)}, "lines": {"sku": f"old {i}"},
                "skus": {"n": -i}, "prices": {"n": -i}, "odd": {"note": "old"},
            }[table])  # fmt: skip
            if i % 11 == 2:  # a primary-key change: the general path's three records
                first = keys[table][0]
                before[first] = {"total": Decimal(-1), "sku": "old"}.get(first, -1)
        log_pos = (block["file"], 4 + i // 2 * 100, i % 2)
        made = []
        for fmt, image in ((shortcut, RenderedRow(general._tables.get(columns).row(after))),
                           (general, after)):  # fmt: skip
            change = Change(op, "shop", "", table, key, before, image, columns,
                            (block["file"], 900 + i // 5), None,
                            1709212455000000 + i // 3 * 1_000_000, i,
                            log_pos=log_pos, source=block)  # fmt: skip
            made.append([(t, k, _without_clock(v)) for t, k, v in fmt.render(change)])
        assert made[0] == made[1], (i, op)
        seen_ops.add((op, len(made[0])))
    assert seen_ops == {("insert", 1), ("update", 1), ("update", 3)}


def test_a_one_column_integer_key_goes_through_its_converter_where_it_has_one():
    fmt = DebeziumFormat(server_name="dbz")
    for type_name, want in (("int4", b'{"n":5}'), ("mystery", b'{"n":"5"}')):
        change = Change("insert", "shop", "public", "t", {"n": 5}, None, {"n": 5},
                        {"n": type_name}, 10, 1, 1709212455000000, 0)  # fmt: skip
        assert fmt.render(change)[0][1] == want
