"""Row decoding (connectors/mysql/rows.py) on events captured from MariaDB 10.11.

The hex bodies below are real TABLE_MAP and WRITE/UPDATE/DELETE_ROWS (v1) event
bodies (header and checksum removed) from a server with binlog_row_metadata=FULL,
written by:

    CREATE TABLE cap.alltypes (id int primary key, c_ti tinyint, c_tiu tinyint unsigned,
      c_si smallint, c_siu smallint unsigned, c_mi mediumint, c_miu mediumint unsigned,
      c_i int, c_iu int unsigned, c_bi bigint, c_biu bigint unsigned, c_dec decimal(12,2),
      c_dec0 decimal(5,0), c_decb decimal(65,30), c_f float, c_d double, c_date date,
      c_time time, c_time3 time(3), c_time6 time(6), c_dt datetime, c_dt3 datetime(3),
      c_dt6 datetime(6), c_ts timestamp null, c_ts6 timestamp(6) null, c_year year,
      c_ch char(5), c_vc varchar(40), c_vcl varchar(300) character set latin1, c_txt text,
      c_ltxt longtext character set latin1, c_bin binary(4), c_vbin varbinary(10),
      c_blob blob, c_json json, c_enum enum('sad','ok','happy'), c_set set('a','b','c','d'),
      c_bit1 bit(1), c_bit3 bit(3), c_bit16 bit(16), c_geo geometry);
    -- (time_zone '+00:00')
    INSERT ... VALUES (1, -128, 255, -32768, 65535, -8388608, 16777215, -2147483648,
      4294967295, -9223372036854775808, 18446744073709551615, 12345.67, -99999,
      -12345678901234567890123456789012345.123456789012345678901234567891, 1.5, -2.25e100,
      '2024-02-29', '-838:59:59', '12:34:56.789', '23:59:59.999999', '2024-02-29 13:14:15',
      '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456', '2024-02-29 13:14:15',
      '2024-02-29 13:14:15.123456', 2024, 'ab', 'héllo "quoted" 😀', 'café latin',
      'long text', 'latin long é', x'01020000', x'00ff', x'deadbeef',
      '{"k": [1, 2.5, "x"], "n": null}', 'happy', 'a,c', b'1', b'101',
      b'0000000100000010', ST_GeomFromText('POINT(1 2)'));
    INSERT INTO alltypes (id) VALUES (2);
    UPDATE alltypes SET c_vc='updated', c_dec=-0.01, c_time='-00:00:01.5' WHERE id=1;
    DELETE FROM alltypes WHERE id=2;

    CREATE TABLE cap.edge (id int primary key, t1 time(1), t3 time(3), t6 time(6),
      d1 decimal(10,4), d2 decimal(20,0), d3 decimal(4,4), dt0 datetime, da date,
      ts3 timestamp(3) null, s set('x','y'), e enum('p','q'));   -- sql_mode ''
    INSERT INTO edge VALUES (1, '-00:00:01.5', '-12:00:00.123', '-00:00:00.000001',
      -123456.7891, 12345678901234567890, -0.0001, '0000-00-00 00:00:00', '0000-00-00',
      NULL, '', 'q');
    INSERT INTO edge VALUES (2, '100:00:00.5', '00:00:00.001', '838:59:59.000000', 0, -1,
      0.9999, '9999-12-31 23:59:59', '1000-01-01', '2038-01-19 03:14:07.999', 'x,y', NULL);
"""

from __future__ import annotations

import datetime as dt
from decimal import Context, Decimal
from typing import Any

import pytest

from cdc.errors import DecodeError
from cdc.model import Geometry
from connectors.mysql.jsonb import parse_json_binary
from connectors.mysql.rows import (
    DELETE_ROWS_V1,
    UPDATE_ROWS_V1,
    UPDATE_ROWS_V2,
    WRITE_ROWS_V1,
    WRITE_ROWS_V2,
    RowsDecoder,
    _decimal,
    decimal_reader,
)

ALLTYPES_MAP = bytes.fromhex(
    "1200000000000100036361700008616c6c747970657300290301010202090903030808f6f6f604050a131313"
    "12121211110dfe0f0ffcfcfe0ffcfcfefe101010ff290c020500411e04080003060003060006fe14a0002c01"
    "0204fe040a000204f701f80101000300000204feffffffff0101032aa080030a2d2d082d083f3f3f2e3f0701"
    "0004f602696404635f746905635f74697504635f736905635f73697504635f6d6905635f6d697503635f6904"
    "635f697504635f626905635f62697505635f64656306635f6465633006635f6465636203635f6603635f6406"
    "635f6461746506635f74696d6507635f74696d653307635f74696d653604635f647405635f64743305635f64"
    "743604635f747305635f74733606635f7965617204635f636804635f766305635f76636c05635f7478740663"
    "5f6c74787405635f62696e06635f7662696e06635f626c6f6206635f6a736f6e06635f656e756d05635f7365"
    "7406635f6269743106635f6269743307635f626974313605635f67656f0a012d050904016101620163016406"
    "0e0303736164026f6b056861707079080100"
)

# event type 23
ALLTYPES_INSERT = bytes.fromhex(
    "120000000000010029ffffffffff010000000000fe0100000080ff0080ffff000080ffffff00000080ffffff"
    "ff0000000000000080ffffffffffffffff8000003039437e79607f439eb1ca484078caf1cb3fd0f8a086f8a4"
    "32eaff439eb1ca484078fc840000c03fed5b47cae292c4d45dd00f4b910580c8b81ed2817efb0f423f99b2ba"
    "d38f99b2bad38f04ce99b2bad38f01e24065e0832765e0832701e2407c0261621468c3a96c6c6f202271756f"
    "7465642220f09f98800a00636166e9206c6174696e09006c6f6e6720746578740c0000006c6174696e206c6f"
    "6e6720e90201020200ff0400deadbeef1f0000007b226b223a205b312c20322e352c202278225d2c20226e22"
    "3a206e756c6c7d03050105010219000000000000000101000000000000000000f03f0000000000000040"
)

# event type 23
ALLTYPES_INSERT_NULLS = bytes.fromhex(
    "120000000000010029ffffffffff01feffffffffff02000000"
)

# event type 24
ALLTYPES_UPDATE = bytes.fromhex(
    "120000000000010029ffffffffff01ffffffffff010000000000fe0100000080ff0080ffff000080ffffff00"
    "000080ffffffff0000000000000080ffffffffffffffff8000003039437e79607f439eb1ca484078caf1cb3f"
    "d0f8a086f8a432eaff439eb1ca484078fc840000c03fed5b47cae292c4d45dd00f4b910580c8b81ed2817efb"
    "0f423f99b2bad38f99b2bad38f04ce99b2bad38f01e24065e0832765e0832701e2407c0261621468c3a96c6c"
    "6f202271756f7465642220f09f98800a00636166e9206c6174696e09006c6f6e6720746578740c0000006c61"
    "74696e206c6f6e6720e90201020200ff0400deadbeef1f0000007b226b223a205b312c20322e352c20227822"
    "5d2c20226e223a206e756c6c7d03050105010219000000000000000101000000000000000000f03f00000000"
    "000000400000000000fe0100000080ff0080ffff000080ffffff00000080ffffffff0000000000000080ffff"
    "ffffffffffff7ffffffffffe7e79607f439eb1ca484078caf1cb3fd0f8a086f8a432eaff439eb1ca484078fc"
    "840000c03fed5b47cae292c4d45dd00f7fffff80c8b81ed2817efb0f423f99b2bad38f99b2bad38f04ce99b2"
    "bad38f01e24065e0832765e0832701e2407c02616207757064617465640a00636166e9206c6174696e09006c"
    "6f6e6720746578740c0000006c6174696e206c6f6e6720e90201020200ff0400deadbeef1f0000007b226b22"
    "3a205b312c20322e352c202278225d2c20226e223a206e756c6c7d0305010501021900000000000000010100"
    "0000000000000000f03f0000000000000040"
)

# event type 25
ALLTYPES_DELETE = bytes.fromhex(
    "120000000000010029ffffffffff01feffffffffff02000000"
)

EDGE_MAP = bytes.fromhex(
    "db0000000000010003636170000465646765000c03131313f6f6f6120a11fefe0f0103060a04140004040003"
    "f801f701fe0f0101000424026964027431027433027436026431026432026433036474300264610374733301"
    "7301650a012d0505020178017906050201700171080100"
)

# event type 23
EDGE_INSERT_1 = bytes.fromhex(
    "db000000000001000cff0f00f2010000007ffffece7f3ffffb327fffffffffff7e1dbfe12c8c149aa4350dfb"
    "38d27ffe80000000000000000002"
)

# event type 23
EDGE_INSERT_2 = bytes.fromhex(
    "db000000000001000cff0f00f80200000086400032800000000ab46efb00000080000000007fffffffffffff"
    "fffea70ffef3ff7efb21d0077fffffff270603"
)


UTC = dt.UTC

ALLTYPES_ROW = {
    "id": 1, "c_ti": -128, "c_tiu": 255, "c_si": -32768, "c_siu": 65535, "c_mi": -8388608,
    "c_miu": 16777215, "c_i": -2147483648, "c_iu": 4294967295,
    "c_bi": -9223372036854775808, "c_biu": 18446744073709551615,
    "c_dec": Decimal("12345.67"), "c_dec0": Decimal("-99999"),
    "c_decb": Decimal("-12345678901234567890123456789012345.123456789012345678901234567891"),
    "c_f": 1.5, "c_d": -2.25e100, "c_date": dt.date(2024, 2, 29),
    "c_time": -dt.timedelta(hours=838, minutes=59, seconds=59),
    "c_time3": dt.time(12, 34, 56, 789000), "c_time6": dt.time(23, 59, 59, 999999),
    "c_dt": dt.datetime(2024, 2, 29, 13, 14, 15),
    "c_dt3": dt.datetime(2024, 2, 29, 13, 14, 15, 123000),
    "c_dt6": dt.datetime(2024, 2, 29, 13, 14, 15, 123456),
    "c_ts": dt.datetime(2024, 2, 29, 13, 14, 15, tzinfo=UTC),
    "c_ts6": dt.datetime(2024, 2, 29, 13, 14, 15, 123456, tzinfo=UTC),
    "c_year": 2024, "c_ch": "ab", "c_vc": 'héllo "quoted" 😀', "c_vcl": "café latin",
    "c_txt": "long text", "c_ltxt": "latin long é", "c_bin": b"\x01\x02\x00\x00",
    "c_vbin": b"\x00\xff", "c_blob": b"\xde\xad\xbe\xef",
    "c_json": {"k": [1, 2.5, "x"], "n": None}, "c_enum": "happy", "c_set": "a,c",
    "c_bit1": True, "c_bit3": b"\x05", "c_bit16": b"\x02\x01",
    "c_geo": Geometry(bytes.fromhex("0101000000000000000000f03f0000000000000040"), 0),
}  # fmt: skip


def rows(table: Any, body: bytes, event_type: int) -> list[tuple[Any, Any]]:
    """(before, after) of every row of an event (keyed_rows without the keys)."""
    return [(before, after) for before, after, _ in table.keyed_rows(body, event_type)]


def decoders() -> RowsDecoder:
    # MariaDB's JSON is LONGTEXT: the source tells which columns hold JSON.
    return RowsDecoder(is_mariadb=True, json_columns=lambda schema, table: {"c_json"})


def test_table_map_gives_names_types_and_key():
    table = decoders().table_map(ALLTYPES_MAP)
    assert table is not None
    assert (table.schema, table.table, table.key_names) == ("cap", "alltypes", ("id",))
    assert list(table.columns) == list(ALLTYPES_ROW)
    assert table.columns["c_biu"] == "int8" and table.columns["c_iu"] == "int8"
    assert table.columns["c_dec"] == "numeric(12,2)"
    assert table.columns["c_decb"] == "numeric(65,30)"
    assert table.columns["c_dt3"] == "timestamp(3)" and table.columns["c_ts6"] == "timestamptz(6)"
    assert table.columns["c_time6"] == "time" and table.columns["c_json"] == "json"
    assert table.columns["c_vc"] == "varchar" and table.columns["c_ch"] == "bpchar"
    assert table.columns["c_txt"] == "text" and table.columns["c_blob"] == "bytea"
    assert table.columns["c_bit1"] == "bool" and table.columns["c_bit3"] == "bytea"
    assert table.columns["c_enum"] == "enum" and table.columns["c_set"] == "set"
    assert table.columns["c_geo"] == "geometry"


def test_every_type_decodes():
    d = decoders()
    table = d.table_map(ALLTYPES_MAP)
    assert table is not None
    assert rows(table, ALLTYPES_INSERT, WRITE_ROWS_V1) == [(None, ALLTYPES_ROW)]


def test_nulls():
    d = decoders()
    table = d.table_map(ALLTYPES_MAP)
    assert table is not None
    [(before, after)] = rows(table, ALLTYPES_INSERT_NULLS, WRITE_ROWS_V1)
    assert before is None
    assert after == {"id": 2, **{k: None for k in ALLTYPES_ROW if k != "id"}}


def test_update_carries_both_images_and_delete_the_old_row():
    d = decoders()
    table = d.table_map(ALLTYPES_MAP)
    assert table is not None
    [(before, after)] = rows(table, ALLTYPES_UPDATE, UPDATE_ROWS_V1)
    assert before == ALLTYPES_ROW
    # MariaDB truncates fractions by default: '-00:00:01.5' in a time(0) is -00:00:01.
    assert after == {**ALLTYPES_ROW, "c_vc": "updated", "c_dec": Decimal("-0.01"),
                     "c_time": -dt.timedelta(seconds=1)}  # fmt: skip
    [(before, after)] = rows(table, ALLTYPES_DELETE, DELETE_ROWS_V1)
    assert after is None and before is not None and before["id"] == 2


def test_edge_values_of_times_decimals_and_zero_dates():
    d = decoders()
    table = d.table_map(EDGE_MAP)
    assert table is not None
    [(_, first)] = rows(table, EDGE_INSERT_1, WRITE_ROWS_V1)
    assert first == {
        "id": 1, "t1": -dt.timedelta(seconds=1.5),
        "t3": -dt.timedelta(hours=12, microseconds=123000), "t6": -dt.timedelta(microseconds=1),
        "d1": Decimal("-123456.7891"), "d2": Decimal("12345678901234567890"),
        "d3": Decimal("-0.0001"), "dt0": "0000-00-00 00:00:00", "da": "0000-00-00",
        "ts3": None, "s": "", "e": "q",
    }  # fmt: skip
    [(_, second)] = rows(table, EDGE_INSERT_2, WRITE_ROWS_V1)
    assert second == {
        "id": 2, "t1": dt.timedelta(hours=100, microseconds=500000), "t3": dt.time(0, 0, 0, 1000),
        "t6": dt.timedelta(hours=838, minutes=59, seconds=59),
        "d1": Decimal("0.0000"), "d2": Decimal("-1"), "d3": Decimal("0.9999"),
        "dt0": dt.datetime(9999, 12, 31, 23, 59, 59), "da": dt.date(1000, 1, 1),
        "ts3": dt.datetime(2038, 1, 19, 3, 14, 7, 999000, tzinfo=UTC), "s": "x,y", "e": None,
    }  # fmt: skip


def _v2(body: bytes) -> bytes:
    """A v1 rows body as MySQL's v2 event: an empty extra-data block after the flags."""
    return body[:8] + b"\x02\x00" + body[8:]


def test_v2_row_events_decode_like_v1():
    d = decoders()
    table = d.table_map(ALLTYPES_MAP)
    assert table is not None
    assert rows(table, _v2(ALLTYPES_INSERT), WRITE_ROWS_V2) == [(None, ALLTYPES_ROW)]
    assert rows(table, _v2(ALLTYPES_UPDATE), UPDATE_ROWS_V2) == rows(
        table, ALLTYPES_UPDATE, UPDATE_ROWS_V1
    )


def _with_table_id(body: bytes, table_id: int) -> bytes:
    return table_id.to_bytes(6, "little") + body[6:]


def test_decoders_are_keyed_by_table_map_bytes_not_table_id():
    d = decoders()
    first = d.table_map(ALLTYPES_MAP)
    # Same table version under another id (server restart): the same decoder.
    again = d.table_map(_with_table_id(ALLTYPES_MAP, 77))
    assert again is first
    assert d.decoder(_with_table_id(ALLTYPES_INSERT, 77)) is first
    # Another table under the first table's id (id reuse): a different decoder.
    edge = d.table_map(_with_table_id(EDGE_MAP, int.from_bytes(ALLTYPES_MAP[:6], "little")))
    assert edge is not None and edge is not first
    assert d.decoder(ALLTYPES_INSERT) is edge


def test_tables_not_wanted_are_skipped():
    d = decoders()
    assert d.table_map(ALLTYPES_MAP, lambda schema, table: table != "alltypes") is None
    assert d.decoder(ALLTYPES_INSERT) is None


def test_rows_without_table_map_are_an_error():
    with pytest.raises(DecodeError, match="without a TABLE_MAP"):
        decoders().decoder(ALLTYPES_INSERT)


def test_minimal_row_metadata_is_refused():
    # One INT column, no optional metadata: what binlog_row_metadata=MINIMAL writes.
    body = (
        (5).to_bytes(6, "little") + b"\x01\x00" + b"\x01s\x00" + b"\x01t\x00"
        + b"\x01" + b"\x03" + b"\x00" + b"\x01"
    )
    with pytest.raises(DecodeError, match="binlog_row_metadata=FULL"):
        decoders().table_map(body)


# MariaDB 10.11: CREATE TABLE cap.spatial (id int primary key, p point, ls linestring,
#   g geometry, gc geometrycollection); INSERT ... VALUES (1, ST_PointFromText('POINT(1 2)',
#   4326), ST_GeomFromText('LINESTRING(0 0,1 1)'), ST_GeomFromText('POINT(3 4)', 3857), NULL)
SPATIAL_MAP = bytes.fromhex(
    "19000000000001000363617000077370617469616c000503ffffffff04040404041e01010002013f07040102"
    "0007040d0269640170026c730167026763080100"
)
SPATIAL_INSERT = bytes.fromhex(
    "1900000000000100051ff00100000019000000e61000000101000000000000000000f03f00000000000000402d"
    "0000000000000001020000000200000000000000000000000000000000000000000000000000f03f00000000"
    "0000f03f19000000110f0000010100000000000000000008400000000000001040"
)


def test_spatial_values_carry_their_srid_and_points_are_named():
    table = decoders().table_map(SPATIAL_MAP)
    assert table is not None
    # The binlog's GEOMETRY_TYPE metadata tells a POINT column from other spatial ones.
    assert table.columns == {"id": "int4", "p": "point", "ls": "geometry", "g": "geometry",
                             "gc": "geometry"}  # fmt: skip
    [(_, after)] = rows(table, SPATIAL_INSERT, WRITE_ROWS_V1)
    assert after == {
        "id": 1,
        "p": Geometry(bytes.fromhex("0101000000000000000000f03f0000000000000040"), 4326),
        "ls": Geometry(bytes.fromhex("010200000002000000" + "00" * 16 + "000000000000f03f" * 2), 0),
        "g": Geometry(bytes.fromhex("010100000000000000000008400000000000001040"), 3857),
        "gc": None,
    }


def test_mysql_binary_json():
    # {"a": 1, "b": [true, "x"]} in MySQL's binary JSON (a small object).
    data = bytes.fromhex(
        "00" "0200" "2000" "12000100" "13000100" "050100" "021400" "61" "62"
        "0200" "0c00" "040100" "0c0a00" "0178"
    )
    assert parse_json_binary(data) == {"a": 1, "b": [True, "x"]}
    assert parse_json_binary(bytes.fromhex("0c03616263")) == "abc"
    assert parse_json_binary(bytes.fromhex("0b000000000000f83f")) == 1.5
    assert parse_json_binary(bytes.fromhex("0402")) is False


_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def _pack_decimal(value: Decimal, precision: int, scale: int) -> bytes:
    """MySQL's decimal2bin, written out from its description, for the property test."""
    exact = Context(prec=100)
    sign, digits, exponent = value.quantize(Decimal(1).scaleb(-scale), context=exact).as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rjust(scale + 1, "0")
    cut = len(text) - scale
    whole, frac = text[:cut], text[cut:]
    intg = precision - scale
    whole = whole.rjust(intg, "0")[-intg:] if intg else ""
    out = b""
    lead = intg % 9
    if lead:
        out += int(whole[:lead]).to_bytes(_DIG2BYTES[lead], "big")
    for i in range(lead, intg, 9):
        out += int(whole[i : i + 9]).to_bytes(4, "big")
    for i in range(0, scale - scale % 9, 9):
        out += int(frac[i : i + 9]).to_bytes(4, "big")
    if scale % 9:
        out += int(frac[scale - scale % 9 :]).to_bytes(_DIG2BYTES[scale % 9], "big")
    raw = bytearray(out)
    if sign:
        raw = bytearray(b ^ 0xFF for b in raw)
    raw[0] ^= 0x80
    return bytes(raw)


@pytest.mark.parametrize(
    ("precision", "scale"),
    [(1, 0), (5, 0), (9, 0), (10, 0), (18, 0), (12, 2), (10, 4), (4, 4), (9, 9), (18, 9),
     (19, 9), (20, 10), (30, 15), (65, 30), (65, 0), (38, 38), (7, 3), (2, 1)],
)  # fmt: skip
def test_decimal_readers_agree_with_mysql_packing(precision: int, scale: int) -> None:
    import random

    rng = random.Random(precision * 100 + scale)
    # The plain text, as the rendered path reads it in line (the same generated code).
    read, read_text = decimal_reader(precision, scale), _decimal(precision, scale, str)
    intg = precision - scale
    for _ in range(300):
        whole = rng.choice([0, rng.randrange(10**intg), 10**intg - 1]) if intg else 0
        frac = rng.choice([0, rng.randrange(10**scale), 1]) if scale else 0
        text = ("-" if rng.random() < 0.5 else "") + str(whole)
        text += f".{frac:0{scale}d}" if scale else ""
        value = Decimal(text)
        data = b"\x07" + _pack_decimal(value, precision, scale) + b"\x07"
        decoded, end = read(data, 1)
        assert decoded == value and end == len(data) - 1, (text, decoded)
        plain, _ = read_text(data, 1)
        assert Decimal(plain) == value
        assert plain == (f"{'-' if plain.startswith('-') else ''}{whole}"
                         + (f".{frac:0{scale}d}" if scale else "")), (text, plain)  # fmt: skip
