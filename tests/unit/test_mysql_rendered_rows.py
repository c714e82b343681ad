"""Rows rendered by the MySQL decoder (pipelines without mappers) equal the general path's.

With `json_values`, `TableDecoder.keyed_rows` renders new row images straight
into the Debezium JSON (see cdc.model.RenderedRow). Every row must come out
exactly as when the format renders the decoded Python values: checked on the
captured every-type events, both decimal modes, and on generated DATETIME and
DECIMAL values around their edges (before 1970, zero dates, every precision).
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from cdc.model import RenderedRow
from connectors.mysql.rows import (
    T_DATETIME2,
    T_JSON,
    T_LONG,
    T_NEWDECIMAL,
    T_VARCHAR,
    UPDATE_ROWS_V1,
    WRITE_ROWS_V1,
    Column,
    RowsDecoder,
    TableDecoder,
    TableMap,
)
from mappers.debezium import DebeziumFormat
from tests.unit.test_mysql_rows import (
    ALLTYPES_DELETE,
    ALLTYPES_INSERT,
    ALLTYPES_INSERT_NULLS,
    ALLTYPES_MAP,
    ALLTYPES_UPDATE,
    EDGE_INSERT_1,
    EDGE_INSERT_2,
    EDGE_MAP,
    _v2,
)
from tests.unit.test_mysql_rows import _pack_decimal as pack_decimal

DELETE_ROWS_V1 = 25
WRITE_ROWS_V2 = 30


def _decoders(fmt: DebeziumFormat | None) -> RowsDecoder:
    return RowsDecoder(is_mariadb=True, json_columns=lambda schema, table: {"c_json"},
                       json_values=None if fmt is None else fmt.json_values)  # fmt: skip


def _general_row(fmt: DebeziumFormat, table: TableDecoder, row: dict[str, Any]) -> str:
    """The format's own rendering of decoded values (the general path)."""
    return fmt._tables.get(table.columns).row(row)


def _assert_same(fmt: DebeziumFormat, map_body: bytes, body: bytes, event_type: int) -> int:
    """keyed_rows with rendering equals the plain decoding; returns how many rows rendered."""
    plain = _decoders(None).table_map(map_body)
    rendering = _decoders(fmt).table_map(map_body)
    assert plain is not None and rendering is not None
    rendered = 0
    expected = plain.keyed_rows(body, event_type)
    got = rendering.keyed_rows(body, event_type)
    assert len(got) == len(expected)
    for (before, after, key), want in zip(got, expected, strict=True):
        want_before, want_after, want_key = want
        assert before == want_before and key == want_key
        if type(after) is RenderedRow:
            rendered += 1
            assert isinstance(want_after, dict)
            assert after == _general_row(fmt, plain, want_after)
        else:
            assert after == want_after
    return rendered


@pytest.mark.parametrize("decimal", ["string", "base64"])
def test_every_type_renders_like_the_general_path(decimal: str) -> None:
    fmt = DebeziumFormat(decimal=decimal)
    assert _assert_same(fmt, ALLTYPES_MAP, ALLTYPES_INSERT, WRITE_ROWS_V1) == 1
    assert _assert_same(fmt, ALLTYPES_MAP, _v2(ALLTYPES_INSERT), WRITE_ROWS_V2) == 1
    # The update's new image renders; its old image stays Python values (the
    # format compares it with the key to spot key changes).
    assert _assert_same(fmt, ALLTYPES_MAP, ALLTYPES_UPDATE, UPDATE_ROWS_V1) == 1
    assert _assert_same(fmt, ALLTYPES_MAP, ALLTYPES_DELETE, DELETE_ROWS_V1) == 0
    # Images with NULLs (and the zero dates in them) take the general path.
    assert _assert_same(fmt, ALLTYPES_MAP, ALLTYPES_INSERT_NULLS, WRITE_ROWS_V1) == 0
    assert _assert_same(fmt, EDGE_MAP, EDGE_INSERT_1, WRITE_ROWS_V1) == 0
    assert _assert_same(fmt, EDGE_MAP, EDGE_INSERT_2, WRITE_ROWS_V1) == 0


def test_padding_bits_of_the_null_bitmap_are_not_nulls() -> None:
    # The servers set the bitmap bits past the last column: the fast readers
    # must still be used (they were not, and every row took the slow loop).
    table = _decoders(None).table_map(ALLTYPES_MAP)
    assert table is not None
    n = len(table.names)
    bitmap_at = 8 + 1 + (n + 7) // 8  # post-header, column count, columns-present bitmap
    first_null_byte = ALLTYPES_INSERT[bitmap_at + (n + 7) // 8 - 1]
    assert first_null_byte >> (n % 8), "the capture has padding bits set"
    plan = table._plan(ALLTYPES_INSERT[9 : 9 + (n + 7) // 8])
    calls = []
    fast = plan.fast
    plan.fast = lambda data, pos: calls.append(pos) or fast(data, pos)  # type: ignore[method-assign]
    table.keyed_rows(ALLTYPES_INSERT, WRITE_ROWS_V1)
    assert calls, "the image without NULLs was not read by the compiled reader"


# --- generated values: a table of one key, DATETIMEs of every precision, DECIMALs ----


def _table(columns: list[tuple[str, int, int]], fmt: DebeziumFormat | None,
           key: tuple[int, ...] = (0,)) -> TableDecoder:  # fmt: skip
    cols = []
    for name, type_code, meta in columns:
        c = Column(type_code, meta, nullable=False)
        c.name = name
        c.collation = 45  # utf8mb4_general_ci
        cols.append(c)
    return TableDecoder(TableMap(1, "db", "t", cols, key, b"generated"),
                        None if fmt is None else fmt.json_values)  # fmt: skip


def _pack_datetime2(value: tuple[int, int, int, int, int, int, int], fsp: int) -> bytes:
    year, month, day, hour, minute, second, us = value
    packed = ((year * 13 + month) << 22 | day << 17 | hour << 12 | minute << 6 | second)
    out = (packed + 0x8000000000).to_bytes(5, "big")
    nfrac = (fsp + 1) // 2
    if nfrac:
        us = us // (10 ** (6 - 2 * nfrac)) if nfrac < 3 else us
        out += us.to_bytes(nfrac, "big")
    return out


def _write_rows(table: TableDecoder, images: list[bytes], present: int = 0) -> bytes:
    """A WRITE_ROWS v1 body; `present` (a bitmap) lists fewer columns than all."""
    n = len(table.names)
    nbytes = (n + 7) // 8
    present = present or (1 << n) - 1
    m = bin(present).count("1")
    body = (1).to_bytes(6, "little") + b"\x01\x00" + bytes((n,))
    body += present.to_bytes(nbytes, "little")
    for image in images:  # padding bits of the null bitmap set, as servers do
        body += (((1 << 8 * ((m + 7) // 8)) - 1) ^ ((1 << m) - 1)).to_bytes((m + 7) // 8, "little")
        body += image
    return body


def _both(columns: list[tuple[str, int, int]], images: list[bytes], key: tuple[int, ...] = (0,),
          present: int = 0) -> list[tuple[Any, Any]]:  # fmt: skip
    """(rendered, general) (after, key) pairs of a WRITE_ROWS body, checked equal."""
    fmt = DebeziumFormat()
    table, plain = _table(columns, fmt, key), _table(columns, None, key)
    body = _write_rows(table, images, present)
    out = []
    for (_, after, k), (_, want, want_k) in zip(table.keyed_rows(body, WRITE_ROWS_V1),
                                                plain.keyed_rows(body, WRITE_ROWS_V1),
                                                strict=True):  # fmt: skip
        assert k == want_k and [type(v) for v in (k or {}).values()] == [
            type(v) for v in (want_k or {}).values()]  # fmt: skip
        assert isinstance(want, dict)
        if type(after) is RenderedRow:
            assert after == _general_row(fmt, plain, want)
        else:
            assert after == want
        out.append((after, k))
    return out


@pytest.mark.parametrize("fsp", [0, 1, 2, 3, 4, 5, 6])
def test_datetimes_render_like_the_general_path(fsp: int) -> None:
    fmt = DebeziumFormat()
    columns = [("id", T_LONG, 0), ("at", T_DATETIME2, fsp), ("name", T_VARCHAR, 400)]
    table = _table(columns, fmt)
    plain = _table(columns, DebeziumFormat())
    plain._json = None
    rng = random.Random(fsp)
    values = [(1970, 1, 1, 0, 0, 0, 0), (1969, 12, 31, 23, 59, 59, 999999),
              (1, 1, 1, 0, 0, 0, 0), (9999, 12, 31, 23, 59, 59, 999999),
              (2024, 2, 29, 13, 14, 15, 123456), (1000, 1, 1, 0, 0, 0, 1),
              (0, 0, 0, 0, 0, 0, 0), (2024, 0, 0, 0, 0, 0, 0),
              (2023, 2, 29, 1, 2, 3, 4)]  # fmt: skip
    for _ in range(300):
        values.append((rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29),
                       rng.randrange(24), rng.randrange(60), rng.randrange(60),
                       rng.randrange(1_000_000)))  # fmt: skip
    images = []
    for i, value in enumerate(values):
        name = "é" * (i % 3) + str(value)
        images.append(i.to_bytes(4, "little", signed=True) + _pack_datetime2(value, fsp)
                      + len(name.encode()).to_bytes(2, "little") + name.encode())  # fmt: skip
    body = _write_rows(table, images)
    got = table.keyed_rows(body, WRITE_ROWS_V1)
    want = plain.keyed_rows(body, WRITE_ROWS_V1)
    rendered = 0
    for (_, after, key), (_, want_after, want_key) in zip(got, want, strict=True):
        assert key == want_key
        assert isinstance(want_after, dict)
        if type(after) is RenderedRow:
            rendered += 1
            assert after == _general_row(fmt, plain, want_after), want_after
        else:  # zero dates and impossible dates: the general path's text
            assert type(want_after["at"]) is str and after == want_after
    assert rendered == len(values) - 3


@pytest.mark.parametrize("fsp", [0, 3, 4, 6])
def test_datetimes_sharing_their_second_render_like_the_general_path(fsp: int) -> None:
    # The count up to the second is remembered by the five packed bytes: rows that
    # share it (before and after 1970, both epoch units) keep their own fractions.
    columns = [("id", T_LONG, 0), ("at", T_DATETIME2, fsp)]
    seconds = [(1969, 12, 31, 23, 59, 59), (1970, 1, 1, 0, 0, 0), (2031, 7, 8, 9, 10, 11)]
    values = [(*second, us) for _ in range(2) for second in seconds
              for us in (0, 1, 999, 1000, 500_000, 999_999)]  # fmt: skip
    images = [i.to_bytes(4, "little") + _pack_datetime2(v, fsp) for i, v in enumerate(values)]
    kinds = [type(after) for after, _ in _both(columns, images)]
    assert kinds == [RenderedRow] * len(values)


@pytest.mark.parametrize(("precision", "scale"), [(12, 2), (5, 0), (10, 4), (4, 4), (18, 9),
                                                  (30, 10), (65, 30)])  # fmt: skip
@pytest.mark.parametrize("decimal", ["string", "base64"])
def test_decimals_render_like_the_general_path(precision: int, scale: int, decimal: str) -> None:
    fmt = DebeziumFormat(decimal=decimal)
    columns = [("id", T_LONG, 0), ("amount", T_NEWDECIMAL, precision << 8 | scale)]
    table = _table(columns, fmt)
    plain = _table(columns, fmt)
    plain._json = None
    rng = random.Random(precision * 100 + scale)
    intg = precision - scale
    texts = ["0", "1", "-1", "0.5", "-0.5"]
    for _ in range(200):
        whole = rng.choice([0, rng.randrange(10**intg), 10**intg - 1]) if intg else 0
        frac = rng.choice([0, 1, rng.randrange(10**scale)]) if scale else 0
        sign = "-" if rng.random() < 0.5 else ""
        texts.append(f"{sign}{whole}" + (f".{frac:0{scale}d}" if scale else ""))
    values = [Decimal(t) for t in texts if abs(Decimal(t)) < Decimal(10) ** intg]
    images = [i.to_bytes(4, "little") + pack_decimal(v, precision, scale)
              for i, v in enumerate(values)]  # fmt: skip
    body = _write_rows(table, images)
    got = table.keyed_rows(body, WRITE_ROWS_V1)
    want = plain.keyed_rows(body, WRITE_ROWS_V1)
    for (_, after, _), (_, want_after, _) in zip(got, want, strict=True):
        assert type(after) is RenderedRow and isinstance(want_after, dict)
        assert after == _general_row(fmt, plain, want_after), want_after


def test_a_value_the_format_refuses_takes_the_general_path() -> None:
    # A converter that raises (here: every value) leaves the row to the general
    # path, where the format reports it under the pipeline's error policy.
    fmt = DebeziumFormat()

    def json_values(columns: dict[str, str]) -> Any:
        converters, shortcuts, encode = fmt.json_values(columns)

        def refuse(value: Any) -> Any:
            raise ValueError("refused")

        return [refuse if c is not None else None for c in converters], shortcuts, encode

    table = RowsDecoder(is_mariadb=True, json_columns=lambda s, t: {"c_json"},
                        json_values=json_values).table_map(ALLTYPES_MAP)  # fmt: skip
    assert table is not None
    [(_, after, key)] = table.keyed_rows(ALLTYPES_INSERT, WRITE_ROWS_V1)
    assert type(after) is dict and key == {"id": 1}


def test_truncated_image_takes_the_general_path() -> None:
    fmt = DebeziumFormat()
    columns = [("id", T_LONG, 0), ("name", T_VARCHAR, 400)]
    table = _table(columns, fmt)
    image = (7).to_bytes(4, "little") + (50).to_bytes(2, "little") + b"short"
    [(_, after, _)] = table.keyed_rows(_write_rows(table, [image]), WRITE_ROWS_V1)
    assert type(after) is dict  # the general path decides (here: what it reads)


def test_json_null_and_empty_json_render_as_null() -> None:
    # JSON's null (literal 0x04 0x00) and an empty value decode to None: the
    # format writes null, never the string "null".
    columns = [("id", T_LONG, 0), ("doc", T_JSON, 4)]
    images = [(1).to_bytes(4, "little") + (2).to_bytes(4, "little") + b"\x04\x00",
              (2).to_bytes(4, "little") + (0).to_bytes(4, "little")]  # fmt: skip
    for after, _ in _both(columns, images):
        assert type(after) is RenderedRow and after.endswith('"doc":null}')


def test_partial_images_take_the_general_path() -> None:
    # binlog_row_image=MINIMAL/NOBLOB in a session that predates the fix: the
    # format writes null for the absent columns, which only the general path knows.
    columns = [("id", T_LONG, 0), ("note", T_VARCHAR, 400), ("n", T_LONG, 0)]
    image = (1).to_bytes(4, "little") + (5).to_bytes(4, "little")
    [(after, _)] = _both(columns, [image], present=0b101)
    assert type(after) is dict and after == {"id": 1, "n": 5}


def test_keys_of_other_types_and_orders_equal_the_general_path() -> None:
    columns = [("at", T_DATETIME2, 6), ("amount", T_NEWDECIMAL, 12 << 8 | 2), ("id", T_LONG, 0)]
    image = (_pack_datetime2((2024, 2, 29, 13, 14, 15, 123456), 6)
             + pack_decimal(Decimal("-12.30"), 12, 2) + (7).to_bytes(4, "little"))  # fmt: skip
    for key in [(0,), (1,), (2, 1), (1, 0, 2)]:
        [(after, k)] = _both(columns, [image], key=key)
        assert type(after) is RenderedRow and k is not None
        assert list(k) == [columns[i][0] for i in key]


def test_impossible_times_take_the_general_path() -> None:
    columns = [("id", T_LONG, 0), ("at", T_DATETIME2, 6)]
    images = [(i).to_bytes(4, "little") + _pack_datetime2(v, 6) for i, v in enumerate(
        [(2024, 1, 1, 25, 0, 0, 0), (2024, 1, 1, 1, 60, 0, 0), (2024, 1, 1, 1, 0, 61, 0),
         (2024, 1, 1, 1, 0, 0, 1_000_000), (2024, 1, 1, 23, 59, 59, 999_999)])]  # fmt: skip
    kinds = [type(after) for after, _ in _both(columns, images)]
    assert kinds == [dict, dict, dict, dict, RenderedRow]
