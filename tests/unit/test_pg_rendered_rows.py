"""Rows rendered by the decoder (pipelines without mappers) equal the general path's.

With `json_values`, the PostgreSQL decoder renders a row's JSON itself (see
cdc.model.RenderedRow). Every event must come out exactly as when the format
renders the decoded Python values: checked here for every type, for nulls,
unchanged TOAST values, old tuples, and for the text shortcuts on their edge cases.
"""

from __future__ import annotations

import json
import random
import struct
from decimal import Decimal
from typing import Any

import pytest

from cdc.model import Change, RenderedRow
from connectors.postgres.pgoutput import PgoutputDecoder
from connectors.postgres.types import converter_for
from mappers.debezium import DebeziumFormat, pg_text_shortcut, value_converter
from mappers.formats import to_json
from tests.unit.test_pgoutput import (
    DEMO,
    DEMO_COLUMNS,
    DEMO_ROW,
    MOOD,
    UNCHANGED,
    begin,
    commit,
    cstr,
    delete,
    feed,
    head,
    insert,
    relation,
    type_message,
    update,
)

SCALED = 16500  # a table with typmods: numeric(12,2), numeric(5,-2), timestamptz(3), ...


def scaled_relation() -> bytes:
    columns = [("id", 20, -1, True), ("amount", 1700, ((12 << 16) | 2) + 4, False),
               ("hundreds", 1700, ((5 << 16) | (-2 & 0x7FF)) + 4, False),
               ("at", 1184, -1, False), ("at_ms", 1184, 3, False),
               ("plain", 1700, -1, False)]  # fmt: skip
    body = struct.pack(">I", SCALED) + cstr("public") + cstr("scaled") + b"d"
    body += struct.pack(">H", len(columns))
    for name, oid, typmod, key in columns:
        body += bytes((int(key),)) + cstr(name) + struct.pack(">Ii", oid, typmod)
    return head(b"R", None) + body


SCALED_ROWS = [
    ["1", "12345.67", "1200", "2024-02-29 11:14:15.123456+00", "2024-02-29 11:14:15.123+00",
     "1.5"],
    ["2", "0.05", "-1200", "2024-02-29 11:14:15+00", "2024-02-29 11:14:15+00", "NaN"],
    ["3", "-0.50", "0", "2024-02-29 11:14:15.1+00", "infinity", "0.0000001"],
    ["4", "-12.00", None, "10000-01-01 00:00:00+00", "-infinity", "-1E+5"],
    ["5", "NaN", "100", "0044-03-15 12:00:00+00 BC", "2024-02-29 11:14:15.5+00", None],
    ["6", "99999.99", "0", "infinity", "2024-02-29 11:14:15.12+00", "123"],
]  # fmt: skip


def transactions(rows: list[list[Any]], oid: int) -> list[bytes]:
    out = []
    for i, row in enumerate(rows):
        lsn = 0x1000_0000 + i * 0x100
        out += [begin(lsn, 700 + i), insert(oid, row), update(oid, row), commit(lsn, lsn + 8)]
    return out


def decode(messages: list[bytes], fmt: DebeziumFormat, fused: bool) -> list[Change]:
    decoder = PgoutputDecoder("dbz", json_values=fmt.json_values if fused else None)
    items = feed(decoder, type_message(MOOD, "mood"), relation(DEMO, "types_demo", DEMO_COLUMNS),
                 scaled_relation(), *messages)  # fmt: skip
    return [item for item in items if type(item) is Change]


def rendered(fmt: DebeziumFormat, changes: list[Change]) -> list[Any]:
    out = []
    for change in changes:
        for topic, key, value in fmt.render(change):
            doc = json.loads(value) if value is not None else None
            if doc is not None:
                for field in ("ts_ms", "ts_us", "ts_ns"):
                    doc.pop(field, None)
            out.append((topic, key, doc))
    return out


@pytest.mark.parametrize("decimal", ["string", "base64"])
def test_rendered_rows_equal_the_general_path(decimal: str) -> None:
    nulls = [DEMO_ROW[0]] + [None] * (len(DEMO_ROW) - 1)
    toast = DEMO_ROW[:-1] + [UNCHANGED]
    messages = transactions([DEMO_ROW, nulls, toast], DEMO) + transactions(SCALED_ROWS, SCALED)
    messages += [
        begin(0x2000_0000, 900),
        update(DEMO, DEMO_ROW, old=["1"] + [None] * (len(DEMO_ROW) - 1), old_kind=b"K"),
        update(DEMO, DEMO_ROW, old=DEMO_ROW, old_kind=b"O"),
        delete(DEMO, ["1"] + [None] * (len(DEMO_ROW) - 1)),
        commit(0x2000_0000, 0x2000_0008),
    ]
    fmt = DebeziumFormat(server_name="dbz", decimal=decimal, truncate=True)
    general = decode(messages, fmt, fused=False)
    fused = decode(messages, fmt, fused=True)
    # The decoder took its own path for most rows, the general one for the rest.
    kinds = [type(change.after) for change in fused]
    assert kinds.count(RenderedRow) >= 10 and dict in kinds
    if decimal == "base64":
        # NaN cannot be expressed in base64 mode: both paths refuse those rows alike.
        refused = {(c.position, c.index) for c in general if "NaN" in repr(c.after)}
        assert refused
        general = [c for c in general if (c.position, c.index) not in refused]
        fused = [c for c in fused if (c.position, c.index) not in refused]
    assert [c.key for c in fused] == [c.key for c in general]
    assert rendered(fmt, fused) == rendered(fmt, general)


def test_no_rendered_rows_without_json_values() -> None:
    changes = decode(transactions([DEMO_ROW], DEMO), DebeziumFormat(), fused=False)
    assert all(type(change.after) is not RenderedRow for change in changes)


def general_json(type_name: str, oid: int, typmod: int, text: str) -> str:
    value = converter_for(oid, typmod)(text.encode())
    convert = value_converter(type_name)
    return to_json(value if convert is None else convert(value))


def test_numeric_shortcut_matches_the_general_path_or_declines() -> None:
    shortcut = pg_text_shortcut("numeric(12,2)")
    assert shortcut is not None
    assert pg_text_shortcut("numeric(5,-2)") is None and pg_text_shortcut("numeric") is None
    assert pg_text_shortcut("numeric(12,2)", "base64") is None
    rng = random.Random(7)
    texts = ["0.00", "0.05", "-0.05", "1.00", "-1.00", "NaN", "Infinity", "-Infinity"]
    for _ in range(2000):
        digits = rng.randint(1, 10)
        value = Decimal(rng.randint(-(10**digits), 10**digits)).scaleb(-2)
        texts.append(f"{value:.2f}")
    for text in texts:
        fast = shortcut(text.encode())
        if fast is not None:
            assert fast == general_json("numeric(12,2)", 1700, ((12 << 16) | 2) + 4, text), text


def test_timestamptz_shortcut_matches_the_general_path_or_declines() -> None:
    shortcut = pg_text_shortcut("timestamptz")
    assert shortcut is not None and pg_text_shortcut("timestamptz(3)") is None
    texts = ["2024-02-29 11:14:15+00", "2024-02-29 11:14:15.1+00",
             "2024-02-29 11:14:15.000001+00", "2024-02-29 11:14:15.123456+00",
             "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00",
             "10000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC", "infinity", "-infinity",
             "2024-02-29 11:14:15+05:30", "2024-02-29 11:14:15.5-08"]  # fmt: skip
    declined = 0
    for text in texts:
        fast = shortcut(text.encode())
        if fast is None:
            declined += 1
        else:
            assert fast == general_json("timestamptz", 1184, -1, text), text
    assert declined == 6


def test_negative_numeric_scale_is_read_from_the_typmod() -> None:
    from connectors.postgres.types import type_name

    assert type_name(1700, None, ((5 << 16) | (-2 & 0x7FF)) + 4) == "numeric(5,-2)"
    assert type_name(1700, None, ((12 << 16) | 2) + 4) == "numeric(12,2)"


FULL = 16600  # columns (a, b, v), REPLICA IDENTITY FULL, PRIMARY KEY (b, a)


def full_decoder(fmt: DebeziumFormat, fused: bool, key: tuple[str, ...]) -> PgoutputDecoder:
    decoder = PgoutputDecoder("dbz", json_values=fmt.json_values if fused else None,
                              primary_key=lambda schema, table: key)  # fmt: skip
    columns = [("a", 23, True), ("b", 23, True), ("v", 25, True)]
    feed(decoder, relation(FULL, "full_t", columns, identity=b"f"))
    return decoder


def test_a_primary_key_in_its_own_order_gives_every_event_of_a_row_the_same_key() -> None:
    # Under REPLICA IDENTITY FULL the key is the primary key, in its order (b, a);
    # inserts (decoder-rendered) and updates/deletes (old tuple: general path)
    # must carry the same key bytes, or a row's events land on different partitions.
    fmt = DebeziumFormat(server_name="dbz")
    messages = [begin(0x3000, 950), insert(FULL, ["1", "2", "x"]),
                update(FULL, ["1", "2", "y"], old=["1", "2", "x"], old_kind=b"O"),
                delete(FULL, ["1", "2", "y"], kind=b"O"), commit(0x3000, 0x3008)]  # fmt: skip
    for fused in (False, True):
        changes = [c for c in feed(full_decoder(fmt, fused, ("b", "a")), *messages)
                   if type(c) is Change]  # fmt: skip
        keys = {key for change in changes for _, key, _ in fmt.render(change)}
        assert keys == {b'{"b":2,"a":1}'}, (fused, keys)


def test_a_key_column_missing_from_the_relation_is_reported_as_before() -> None:
    from cdc.errors import DecodeError

    fmt = DebeziumFormat(server_name="dbz")
    messages = [begin(0x3000, 950), insert(FULL, ["1", "2", "x"]), commit(0x3000, 0x3008)]
    for fused in (False, True):
        with pytest.raises(DecodeError):
            feed(full_decoder(fmt, fused, ("gone", "a")), *messages)
