"""The `rename` built-in mapper on hand-made changes."""

import pytest

from cdc.model import UPDATE, Change
from mappers.rename import RenameMapper

COLUMNS = {"id": "int4", "amt": "numeric", "cust": "int4"}


def change(**kw):
    base = dict(op=UPDATE, database="shop", schema="public", table="orders",
                key={"id": 1}, before={"id": 1, "amt": 1, "cust": 3},
                after={"id": 1, "cust": 3}, columns=COLUMNS, position=1, txid=1,
                commit_ts=0, index=0, unchanged=("amt",))
    base.update(kw)
    return Change(**base)


def test_table_rename_keeps_or_sets_schema():
    m = RenameMapper({"tables": {"public.orders": "orders_v2", "public.legacy_*": "archive.old"}})
    out = m.map(change())
    assert (out.schema, out.table) == ("public", "orders_v2")
    out = m.map(change(table="legacy_1"))
    assert (out.schema, out.table) == ("archive", "old")


def test_mysql_target_with_namespace_sets_database():
    m = RenameMapper({"tables": {"shop.orders": "sales.orders"}})
    out = m.map(change(schema=""))
    assert (out.database, out.schema, out.table) == ("sales", "", "orders")


def test_column_rename_everywhere_matched_on_original_table():
    m = RenameMapper({"tables": {"public.orders": "orders_v2"},
                      "columns": {"public.orders": {"amt": "amount", "id": "order_id"}}})
    c = change()
    out = m.map(c)
    assert out.table == "orders_v2"
    assert out.key == {"order_id": 1}
    assert out.before == {"order_id": 1, "amount": 1, "cust": 3}
    assert out.after == {"order_id": 1, "cust": 3}
    assert out.columns == {"order_id": "int4", "amount": "numeric", "cust": "int4"}
    assert out.unchanged == ("amount",)
    assert c.table == "orders" and c.key == {"id": 1}  # input untouched
    assert m.map(change()).columns is out.columns  # one columns dict per layout


def test_other_tables_pass_through():
    m = RenameMapper({"columns": {"public.orders": {"amt": "amount"}}})
    c = change(table="customers")
    assert m.map(c) is c


def test_rename_onto_an_existing_column_is_a_mapper_error():
    m = RenameMapper({"columns": {"public.orders": {"amt": "cust"}}})
    with pytest.raises(ValueError, match="same name"):
        m.map(change())


@pytest.mark.parametrize("options, message", [
    ({}, "expected option 'tables' or 'columns'"),
    ({"tables": {"public.orders": ""}}, "tables.public.orders"),
    ({"tables": {"public.orders": "a.b.c"}}, "tables.public.orders"),
    ({"tables": {"public.orders": 3}}, "tables.public.orders"),
    ({"tables": ["x"]}, "option 'tables'"),
    ({"columns": {"t": {"a": 1}}}, "columns.t.a"),
    ({"columns": {"t": ["a"]}}, "columns.t"),
    ({"columns": {"t": {"a": "x", "b": "x"}}}, "same name"),
    ({"tables": {"t": "u"}, "schemas": {}}, "unknown option.*schemas"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        RenameMapper(options)
