"""The `filter` built-in mapper on hand-made changes."""

from decimal import Decimal

import pytest

from cdc.model import DELETE, INSERT, MESSAGE, TRUNCATE, UPDATE, Change
from mappers.filter import FilterMapper, TableMatcher


def change(**kw):
    base = dict(op=INSERT, database="shop", schema="public", table="orders", key={"id": 1},
                before=None, after={"id": 1, "status": "paid", "total": Decimal("120.00"),
                                    "note": None},
                columns={"id": "int4", "status": "text", "total": "numeric", "note": "text"},
                position=1, txid=1, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def kept(options, c):
    return FilterMapper(dict(options)).map(c) is c


def test_tables_globs_and_action():
    assert kept({"tables": "public.ord*"}, change())
    assert not kept({"tables": ["public.customers"]}, change())
    assert kept({"tables": "orders"}, change())  # bare table name
    assert not kept({"tables": "public.orders", "action": "drop"}, change())
    assert kept({"tables": "public.customers", "action": "drop"}, change())


def test_mysql_database_dot_table_matches():
    assert kept({"tables": "shop.orders"}, change(schema=""))


def test_ops():
    assert kept({"ops": [INSERT, UPDATE]}, change())
    assert not kept({"ops": "delete"}, change())
    assert kept({"ops": "message"}, change(op=MESSAGE, schema="", table="", after={}))


def cond(column, op, *value):
    c = {"column": column, "op": op}
    if value:
        c["value"] = value[0]
    return c


@pytest.mark.parametrize("condition, expected", [
    (cond("status", "==", "paid"), True),
    (cond("status", "!=", "paid"), False),
    (cond("total", ">=", 100), True),
    (cond("total", "<", 100.5), False),
    (cond("total", ">", "99"), "error"),
    (cond("status", "in", ["paid", "shipped"]), True),
    (cond("status", "not in", ["paid"]), False),
    (cond("note", "is null"), True),
    (cond("note", "is not null"), False),
    (cond("note", ">", 1), False),  # null compares false, as in SQL
    (cond("missing", "==", None), False),  # absent column: no condition holds
    (cond("missing", "is null"), False),
])
def test_conditions(condition, expected):
    m = FilterMapper({"conditions": [condition]})
    if expected == "error":
        with pytest.raises(ValueError, match="cannot compare"):
            m.map(change())
    else:
        assert (m.map(change()) is not None) is expected


def test_all_any_and_deletes_use_before():
    conditions = [cond("status", "==", "paid"), cond("total", ">", 1000)]
    assert not kept({"conditions": conditions}, change())
    assert kept({"conditions": conditions, "match": "any"}, change())
    deleted = change(op=DELETE, before={"id": 1, "status": "paid"}, after=None)
    assert kept({"conditions": [cond("status", "==", "paid")]}, deleted)


def test_changes_without_row_never_match_conditions():
    t = change(op=TRUNCATE, key=None, after=None)
    assert not kept({"conditions": [cond("status", "==", "paid")]}, t)
    assert kept({"conditions": [cond("status", "==", "paid")], "action": "drop"}, t)


def test_drop_matching_rows_only():
    options = {"tables": "public.orders", "conditions": [cond("status", "==", "test")],
               "action": "drop"}
    assert kept(options, change())
    assert not kept(options, change(after={"id": 2, "status": "test"}))


def test_table_matcher_never_matches_messages():
    assert TableMatcher(["*"]).index("shop", "", "") is None
    assert TableMatcher(["x", "*.orders"]).index("shop", "public", "orders") == 1


@pytest.mark.parametrize("options, message", [
    ({"tables": 3}, "option 'tables'"),
    ({"ops": ["insert", "upsert"]}, "option 'ops'.*upsert"),
    ({"conditions": {"column": "a"}}, "option 'conditions'"),
    ({"conditions": [{"column": "a", "op": "~", "value": 1}]}, r"conditions\[0\].op"),
    ({"conditions": [{"op": "==", "value": 1}]}, r"conditions\[0\].column"),
    ({"conditions": [{"column": "a", "op": "=="}]}, "needs a value"),
    ({"conditions": [{"column": "a", "op": "is null", "value": 1}]}, "takes no value"),
    ({"conditions": [{"column": "a", "op": "in", "value": 1}]}, "needs a list"),
    ({"conditions": [{"column": "a", "op": "<", "value": None}]}, "null"),
    ({"conditions": [{"column": "a", "value": 1, "extra": 2}]}, "unknown option.*extra"),
    ({"match": "some"}, "option 'match'"),
    ({"action": "delete"}, "option 'action'"),
    ({"where": "x"}, "unknown option.*where"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        FilterMapper(options)


def test_reserved_runtime_options_are_accepted():
    assert kept({"_sink": None, "_type": "filter", "_pipeline": "p"}, change())
