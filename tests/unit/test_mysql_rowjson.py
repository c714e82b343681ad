"""The C row image reader (connectors/accel/mysql_image.c) answers exactly as the
generated Python reader it accelerates.

For tables whose every column is an integer, UTF-8/ASCII text with a length
prefix, a DECIMAL in the `string` mode or a DATETIME counted from the epoch,
`_compile_json` returns `accelerator.Image`. It must give the same text (and its
type), the same key (values, their types, its order) and the same next position
as the generated reader, or hand the image to it: checked on random tables and
random images full of edge values (extremes, control characters, invalid UTF-8,
impossible dates, NULLs, images cut short).
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from connectors.mysql import rows
from connectors.mysql.rows import (
    T_DATETIME2,
    T_LONG,
    T_LONGLONG,
    T_NEWDECIMAL,
    T_SHORT,
    T_STRING,
    T_TINY,
    T_VARCHAR,
    Column,
    TableDecoder,
    TableMap,
)
from mappers.debezium import DebeziumFormat
from tests.unit.test_mysql_rendered_rows import _pack_datetime2
from tests.unit.test_mysql_rows import _pack_decimal

UTF8MB4, ASCII, LATIN1 = 45, 11, 8  # collation ids

pytestmark = pytest.mark.skipif(rows.accelerator is None, reason="the C accelerator is not built")


def test_the_accelerator_is_built() -> None:
    # `make test` installs a C compiler and Python's headers (scripts/bootstrap.sh):
    # a build that silently dropped the accelerator must not pass unnoticed.
    assert rows.accelerator is not None


# --- random tables and images --------------------------------------------------------

INT_TYPES = {T_TINY: 1, T_SHORT: 2, T_LONG: 4, T_LONGLONG: 8}
SPECIAL_TEXT = ['"', "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f", "\x7f", "é", "€", "😀",
                "\u2028", "a\"b\\c", "", " ", "null"]  # fmt: skip
BAD_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xf4\x90\x80\x80", b"\xc3",
            b"\xe2\x82", b"\xf0\x9f\x98", b"\x80", b"\xf5\x80\x80\x80"]  # fmt: skip


def _column(rng: random.Random, i: int) -> tuple[Column, Any]:
    """A random column of a kind the accelerator takes, and a function making its values."""
    kind = rng.choice(["int", "int", "str", "decimal", "epoch"])
    if kind == "int":
        code = rng.choice(list(INT_TYPES))
        c = Column(code, 0, nullable=True)
        c.unsigned = rng.random() < 0.5
        width = INT_TYPES[code]

        def make_int(r: random.Random) -> bytes:
            v = r.choice([0, 1, (1 << 8 * width) - 1, 1 << (8 * width - 1),
                          (1 << (8 * width - 1)) - 1, r.getrandbits(8 * width)])  # fmt: skip
            return v.to_bytes(width, "little")

        made = make_int
    elif kind == "str":
        meta = rng.choice([10, 255, 256, 1000])
        c = Column(rng.choice([T_VARCHAR, T_STRING]) if meta < 256 else T_VARCHAR, meta, True)
        c.collation = rng.choice([UTF8MB4, UTF8MB4, ASCII])
        prefix = 1 if meta < 256 else 2

        def make_str(r: random.Random) -> bytes:
            parts = [r.choice(SPECIAL_TEXT) if r.random() < 0.5 else "x" * r.randrange(4)
                     for _ in range(r.randrange(6))]  # fmt: skip
            data = "".join(parts).encode()
            if r.random() < 0.05:
                data += r.choice(BAD_UTF8)
            data = data[:meta]
            return len(data).to_bytes(prefix, "little") + data

        made = make_str
    elif kind == "decimal":
        precision = rng.randrange(1, 66)
        # DECIMAL(p,p) texts start "0.": the format's general path writes them
        scale = rng.randrange(0, min(precision - (rng.random() < 0.9), 30) + 1)
        c = Column(T_NEWDECIMAL, precision << 8 | scale, nullable=True)
        intg = precision - scale

        def make_decimal(r: random.Random) -> bytes:
            whole = r.choice([1, 10**intg - 1, r.randrange(1, 10**intg)]) if intg else 0
            if r.random() < 0.1:
                whole = 0  # refused by the shortcut: the format's general path writes it
            frac = r.choice([0, 1, 10**scale - 1, r.randrange(10**scale)]) if scale else 0
            text = f"{'-' if r.random() < 0.4 else ''}{whole}" + (
                f".{frac:0{scale}d}" if scale else "")
            packed = _pack_decimal(Decimal(text), precision, scale)
            if r.random() < 0.03:  # a group out of range: not written by servers
                packed = bytes([packed[0]]) + b"\xff" * (len(packed) - 1)
            return packed

        made = make_decimal
    else:
        fsp = rng.randrange(7)
        c = Column(T_DATETIME2, fsp, nullable=True)

        def make_datetime(r: random.Random) -> bytes:
            value = (r.randrange(1, 10000), r.randrange(1, 13), r.randrange(1, 29), r.randrange(24),
                     r.randrange(60), r.randrange(60), r.randrange(1_000_000))
            if r.random() < 0.2:
                value = r.choice([
                (1970, 1, 1, 0, 0, 0, 0), (1969, 12, 31, 23, 59, 59, 999999),
                (1, 1, 1, 0, 0, 0, 0), (9999, 12, 31, 23, 59, 59, 999999),
                (0, 0, 0, 0, 0, 0, 0), (2023, 2, 29, 1, 2, 3, 4), (2024, 2, 29, 1, 2, 3, 4),
                (2024, 4, 31, 0, 0, 0, 0), (2024, 1, 1, 24, 0, 0, 0), (2024, 13, 1, 0, 0, 0, 0),
            ])  # fmt: skip
            packed = _pack_datetime2(value, fsp)
            if fsp and r.random() < 0.03:  # a fraction past 999999
                packed = packed[:5] + b"\xff" * (len(packed) - 5)
            return packed

        made = make_datetime
    c.name = rng.choice([f"c{i}", f"col \"{i}\"", f"é{i}", f"c\\{i}"])
    c.collation = c.collation if c.collation is not None else UTF8MB4
    return c, made


def _readers(columns: list[Column], key: tuple[int, ...]) -> tuple[Any, Any]:
    """(accelerated, generated) JSON image readers of one table (DATETIMEs of fsp <= 3
    count milliseconds, others microseconds: both epoch units)."""
    fmt = DebeziumFormat()
    table = TableDecoder(TableMap(1, "db", "t", columns, key, b"generated"), fmt.json_values)
    plan = table._plan(b"\xff" * ((len(columns) + 7) // 8))
    accelerated = plan.json
    saved = rows.accelerator
    rows.accelerator = None
    try:
        generated = TableDecoder(TableMap(1, "db", "t", columns, key, b"generated"),
                                 fmt.json_values)._plan(b"\xff" * ((len(columns) + 7) // 8)).json
    finally:
        rows.accelerator = saved
    return accelerated, generated


def _same(got: Any, want: Any) -> None:
    assert got == want
    if want is not None:
        assert type(got[0]) is type(want[0])
        if want[1] is not None:
            assert list(got[1].items()) == list(want[1].items())
            assert [type(v) for v in got[1].values()] == [type(v) for v in want[1].values()]


@pytest.mark.parametrize("seed", range(40))
def test_random_tables_read_like_the_generated_reader(seed: int) -> None:
    rng = random.Random(seed)
    made = [_column(rng, i) for i in range(rng.randrange(1, 20))]
    columns = [c for c, _ in made]
    # A key of integer or UTF-8 text columns, in any order (others keep the Python reader).
    keyable = [i for i, c in enumerate(columns)
               if c.real_type in INT_TYPES or (c.real_type in (T_VARCHAR, T_STRING)
                                               and c.collation == UTF8MB4)]  # fmt: skip
    rng.shuffle(keyable)
    key = tuple(keyable[: rng.randrange(0, 3)])
    accelerated, generated = _readers(columns, key)
    assert type(accelerated) is rows.accelerator.Image
    assert generated is not None and type(generated) is not rows.accelerator.Image
    handed: list[int] = []  # images the C reader gave to the generated one

    def spy(data: bytes, pos: int) -> Any:
        handed.append(pos)
        return generated(data, pos)

    fmt = DebeziumFormat()
    table = TableDecoder(TableMap(1, "db", "t", columns, key, b"generated"), fmt.json_values)
    assert table._json is not None
    accelerated = rows._accelerated(table._json, tuple(columns[i].name for i in key),
                                    fmt.json_values(table.columns)[2], spy)  # fmt: skip
    nbitmap = (len(columns) + 7) // 8
    taken = 0
    for _ in range(300):
        nulls = 0
        if rng.random() < 0.1:
            nulls = 1 << rng.randrange(len(columns))
        padding = ((1 << 8 * nbitmap) - 1) ^ ((1 << len(columns)) - 1)
        image = (nulls | padding).to_bytes(nbitmap, "little")
        image += b"".join(make(rng) for c, make in made)
        prefix = bytes(rng.randrange(3))
        data = prefix + image + (b"tail" if rng.random() < 0.5 else b"")
        if rng.random() < 0.05:
            data = data[: rng.randrange(len(data))]  # cut short
        got, want = accelerated(data, len(prefix)), generated(data, len(prefix))
        _same(got, want)
        taken += want is not None
    assert taken > 0 and len(handed) < 300 * 0.9  # C rendered some of them itself


def test_images_it_does_not_take_go_to_the_generated_reader() -> None:
    columns = [Column(T_LONG, 0, nullable=False), Column(T_NEWDECIMAL, 12 << 8 | 2, True)]
    for i, c in enumerate(columns):
        c.name, c.collation = f"c{i}", UTF8MB4
    _, generated = _readers(columns, (0,))
    calls: list[int] = []

    def spy(data: bytes, pos: int) -> Any:
        calls.append(pos)
        return generated(data, pos)

    fmt = DebeziumFormat()
    table = TableDecoder(TableMap(1, "db", "t", columns, (0,), b"generated"), fmt.json_values)
    assert table._json is not None
    accelerated = rows._accelerated(table._json, ("c0",), fmt.json_values(table.columns)[2], spy)
    assert accelerated is not None
    taken = b"\x00" + (7).to_bytes(4, "little") + _pack_decimal(Decimal("12.50"), 12, 2)
    assert accelerated(taken, 0) == ('{"c0":7,"c1":"12.50"}', {"c0": 7}, len(taken))
    assert calls == []
    # Below 1 the shortcut refuses the text: the generated reader (here through the
    # format's general converter) writes it.
    below_one = b"\x00" + (7).to_bytes(4, "little") + _pack_decimal(Decimal("0.50"), 12, 2)
    assert accelerated(below_one, 0) == ('{"c0":7,"c1":"0.50"}', {"c0": 7}, len(below_one))
    with_null = b"\x02" + (7).to_bytes(4, "little")
    assert accelerated(with_null, 0) is None  # NULLs: the general path
    assert calls == [0, 0]


def test_tables_with_other_columns_keep_the_generated_reader() -> None:
    for code, meta, collation in [(T_VARCHAR, 10, LATIN1), (rows.T_DATE, 0, UTF8MB4),
                                  (rows.T_DOUBLE, 8, UTF8MB4)]:  # fmt: skip
        columns = [Column(T_LONG, 0, nullable=False), Column(code, meta, True)]
        for i, c in enumerate(columns):
            c.name, c.collation = f"c{i}", collation
        accelerated, _ = _readers(columns, (0,))
        assert accelerated is not None and type(accelerated) is not rows.accelerator.Image


def test_a_decimal_key_keeps_the_generated_reader() -> None:
    columns = [Column(T_NEWDECIMAL, 12 << 8 | 2, nullable=False), Column(T_LONG, 0, True)]
    for i, c in enumerate(columns):
        c.name, c.collation = f"c{i}", UTF8MB4
    accelerated, _ = _readers(columns, (0,))
    assert type(accelerated) is not rows.accelerator.Image


def test_the_operator_can_turn_the_accelerator_off():
    import subprocess
    import sys

    code = "import connectors.mysql.rows as r; print(r.accelerator is None)"
    for env, want in [({"CDC_PURE_PYTHON": "1"}, "True"), ({}, "False")]:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", **env}, check=True)  # fmt: skip
        assert out.stdout.strip() == want


def test_out_of_memory_is_a_memory_error_not_a_fallback():
    # An allocation failing while a record is rendered raises MemoryError; it is
    # never taken for "image not taken" (None with an exception set).
    _testcapi = pytest.importorskip("_testcapi")
    from cdc.model import RenderedRow

    acc = rows.accelerator
    text = b"\x01" * 60000  # escaped to 6 bytes each: the buffer must grow
    # a WRITE_ROWS_V1 body: table id, flags, 1 column, its bitmap, one image
    body = b"\0" * 8 + b"\x01\x01" + b"\x00" + len(text).to_bytes(2, "little") + text
    template = (b"[", acc.HOLE_AFTER, b",", acc.HOLE_NOW_NS, b"]")
    context = (1, 1, b'"0-1-1"', b'"f"', 4, b"f:4/", 0)
    outcomes = set()
    for k in range(12):
        image = acc.Image(((acc.STR, b'{"s":', 2, 1),), (), RenderedRow, lambda d, p: None)
        plan = acc.RecordPlan(image, (template,) * 3, ("t",) * 3, False, "id")
        _testcapi.set_nomemory(k, k + 1)
        try:
            plan.render(body, 23, context)
            outcomes.add("rendered")
        except MemoryError:
            outcomes.add("MemoryError")
        finally:
            _testcapi.remove_mem_hooks()
    assert outcomes == {"MemoryError", "rendered"}


def test_construction_edge_cases():
    from cdc.model import RenderedRow

    acc = rows.accelerator
    with pytest.raises(TypeError, match="__init__"):
        acc.RecordPlan.__new__(acc.RecordPlan).render(b"x", 23, (0, 0, b"", b"", 0, b"", 0))
    with pytest.raises(TypeError, match="__init__"):
        acc.Scanner.__new__(acc.Scanner).scan(b"", 0, b"", b"", {}, 1)
    image = acc.Image(((acc.INT, b'{"i":', ord("b"), 0),), (), RenderedRow, lambda d, p: None)
    with pytest.raises(TypeError, match="__init__"):
        acc.RecordPlan(acc.Image.__new__(acc.Image), ((),) * 3, ("t",) * 3, False, "id")
    with pytest.raises(ValueError, match="hole"):  # a template item that is no hole
        acc.RecordPlan(image, ((b"x", 99),) * 3, ("t",) * 3, False, "id")
    with pytest.raises(ValueError, match="per op"):
        acc.RecordPlan(image, ((),) * 2, ("t",) * 2, False, "id")
    with pytest.raises(TypeError, match="once"):  # also after a failed attempt
        plan = acc.RecordPlan.__new__(acc.RecordPlan)
        with pytest.raises(ValueError):
            plan.__init__(image, ((), (b"x", 99), ()), ("t",) * 3, False, "id")
        plan.__init__(image, ((),) * 3, ("t",) * 3, False, "id")
    plan = acc.RecordPlan(image, ((acc.HOLE_TS_NS,),) * 3, ("t",) * 3, False, "id")
    body = b"\0" * 8 + b"\x01\x01\x00\x07"  # one TINYINT column, one row
    with pytest.raises(ValueError, match="timestamp"):  # 32 bits: its ns fit in 64
        plan.render(body, 23, (2**40, 1, b"null", b'"f"', 4, b"f:4/", 0))
    with pytest.raises(ValueError, match="index"):  # index + row must not overflow
        plan.render(body, 23, (1, 1, b"null", b'"f"', 4, b"f:4/", 2**63 - 1))
    [(_, _, value, _)] = plan.render(body, 23, (2**32 - 1, 1, b"null", b'"f"', 4, b"f:4/", 0))
    assert value == str((2**32 - 1) * 10**9).encode()
    with pytest.raises(ValueError, match="prefix"):  # a key's text drops its first byte
        acc.Image(((acc.INT, b"", ord("b"), 0),), ((0, "i"),), RenderedRow, lambda d, p: None)
    # An image far past the data, or of no columns (it would never move on): not taken.
    assert image(b"\0" * 9, 2**63 - 1) is None
    empty = acc.Image((), (), RenderedRow, lambda d, p: None)
    plan = acc.RecordPlan(empty, ((),) * 3, ("t",) * 3, False, "id")
    assert plan.render(b"\0" * 8 + b"\x00\x00", 23, (1, 1, b"null", b'"f"', 4, b"f:", 0)) is None
    with pytest.raises(ValueError):  # metadata no server writes
        acc.Image(((acc.DECIMAL, b'{"d":', 40, 31),), (), RenderedRow, lambda d, p: None)
    # ... and such a table, or one without columns, keeps the generated reader
    columns = [Column(T_NEWDECIMAL, 40 << 8 | 31, nullable=False)]
    columns[0].name, columns[0].collation = "d", UTF8MB4
    fmt = DebeziumFormat()
    table = TableDecoder(TableMap(1, "db", "t", columns, (), b"generated"), fmt.json_values)
    assert table._json is not None
    encode = fmt.json_values(table.columns)[2]
    assert rows._accelerated(table._json, (), encode, lambda d, p: None) is None
    assert rows._accelerated([], (), encode, lambda d, p: None) is None


def test_the_template_holes_are_the_models() -> None:
    # Formats write cdc.model.Hole into their templates; the C code reads its own
    # numbers: they must be the same, one for one.
    from cdc.model import Hole

    acc = rows.accelerator
    holes = {name[5:]: getattr(acc, name) for name in dir(acc) if name.startswith("HOLE_")}
    assert holes == {hole.name: hole.value for hole in Hole}
