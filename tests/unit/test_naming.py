import pytest

from cdc.errors import SinkError
from cdc.model import INSERT, Change, event_id
from cdc.render import KeyNamer, TopicNamer


def change(**kw):
    base = dict(op=INSERT, database="shop", schema="public", table="orders",
                key={"id": 7, "region": "eu"}, before=None, after={"id": 7},
                columns={"id": "int4"}, position=10, txid=1, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def test_topic_template_fields_and_cache():
    namer = TopicNamer("{pipeline}.{database}.{schema}.{table}.{op}", "p1")
    assert namer(change()) == "p1.shop.public.orders.insert"
    assert namer(change(table="customers")) == "p1.shop.public.customers.insert"


def test_topic_follows_every_field_from_one_change_to_the_next():
    # The last change's topic is reused while its fields are the same objects;
    # equal strings that are other objects, and any field that changes, still work.
    namer = TopicNamer("{database}.{schema}.{table}.{op}", "p")
    fields = [dict(), dict(op="delete"), dict(schema="audit"), dict(database="crm"),
              dict(table="lines"), dict(table="".join(["li", "nes"])), dict()]  # fmt: skip
    for kw in fields * 2:
        c = change(**kw)
        assert namer(c) == f"{c.database}.{c.schema}.{c.table}.{c.op}"


def test_key_template_uses_key_columns():
    assert KeyNamer("{table}:{region}:{id}", "p")(change()) == b"orders:eu:7"


def test_key_template_that_does_not_fit_names_the_table_and_columns():
    with pytest.raises(SinkError, match=r"public.orders \(key columns: id, region\)"):
        KeyNamer("{sku}", "p")(change())


def test_positions_in_event_ids_have_one_text_form():
    from cdc.model import format_position

    assert format_position(("binlog.000001", 4)) == "binlog.000001:4"
    assert format_position(("binlog.000001", 4, "0-1-2")) == "binlog.000001:4:0-1-2"
    assert format_position(0x16B3748) == "16B3748"
    assert event_id(change(position=("binlog.000002", 900), index=3), 1) == "binlog.000002:900/3/1"
