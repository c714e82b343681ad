"""The `columns` built-in mapper on hand-made changes."""

import hashlib

import pytest

from cdc.model import UPDATE, Change
from mappers.columns import ColumnsMapper

COLUMNS = {"id": "int4", "email": "text", "phone": "text", "notes": "text",
           "secret": "bytea", "score": "int4"}


def change(**kw):
    row = {"id": 1, "email": "a@b.c", "phone": "555", "notes": "x" * 50, "secret": b"\x01\x02",
           "score": 7}
    base = dict(op=UPDATE, database="shop", schema="public", table="customers",
                key={"id": 1}, before=dict(row), after=dict(row), columns=COLUMNS,
                position=1, txid=1, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def sha(salt, text):
    return hashlib.sha256((salt + text).encode()).hexdigest()


@pytest.fixture
def salt(monkeypatch):
    monkeypatch.setenv("TEST_SALT", "pepper")
    return "pepper"


def test_mask_hash_truncate_apply_to_before_after(salt):
    m = ColumnsMapper({"salt_env": "TEST_SALT", "tables": {"public.customers": {
        "mask": ["phone"], "hash": ["email"], "truncate": {"notes": 10, "secret": 1}}}})
    c = change()
    out = m.map(c)
    for row in (out.before, out.after):
        assert row["phone"] == "****"
        assert row["email"] == sha(salt, "a@b.c")
        assert row["notes"] == "x" * 10 and row["secret"] == b"\x01"
        assert row["id"] == 1 and row["score"] == 7
    assert out.columns["phone"] == "text" and out.columns["email"] == "text"
    assert c.after["phone"] == "555"  # the input change is not modified
    assert m.map(change()).columns is out.columns  # one columns dict per layout


def test_mask_texts_and_nulls_stay_null():
    m = ColumnsMapper({"tables": {"*.customers": {"mask": {"phone": "xxx", "email": "?"}}}})
    out = m.map(change(after={"id": 1, "phone": None, "email": "e"}))
    assert out.after == {"id": 1, "phone": None, "email": "?"}


def test_include_and_exclude_apply_to_key_columns_and_unchanged():
    m = ColumnsMapper({"tables": {"customers": {"exclude": ["notes", "id"]}}})
    out = m.map(change(unchanged=("notes", "phone")))
    assert "notes" not in out.after and "id" not in out.before
    assert out.key is None  # the only key column is excluded
    assert "notes" not in out.columns and out.unchanged == ("phone",)
    m = ColumnsMapper({"tables": {"customers": {"include": ["id", "email"]}}})
    out = m.map(change())
    assert out.after == {"id": 1, "email": "a@b.c"} and out.key == {"id": 1}
    assert list(out.columns) == ["id", "email"]


def test_hashing_a_key_column_changes_the_key(salt):
    m = ColumnsMapper({"salt_env": "TEST_SALT", "tables": {"customers": {"hash": ["id"]}}})
    out = m.map(change())
    assert out.key == {"id": sha(salt, "1")} == {"id": out.after["id"]}


def test_other_tables_and_messages_pass_through():
    m = ColumnsMapper({"tables": {"public.customers": {"mask": ["phone"]}}})
    c = change(table="orders")
    assert m.map(c) is c


def test_first_matching_pattern_wins():
    m = ColumnsMapper({"tables": {"public.customers": {"mask": ["phone"]},
                                  "*": {"exclude": ["phone"]}}})
    assert m.map(change()).after["phone"] == "****"
    assert "phone" not in m.map(change(table="leads")).after


def test_refuses_to_start_without_salt(monkeypatch):
    monkeypatch.delenv("TEST_SALT", raising=False)
    options = {"salt_env": "TEST_SALT", "tables": {"t": {"hash": ["email"]}}}
    with pytest.raises(ValueError, match="TEST_SALT is not set"):
        ColumnsMapper(dict(options))
    monkeypatch.setenv("TEST_SALT", "")
    with pytest.raises(ValueError, match="TEST_SALT is empty"):
        ColumnsMapper(dict(options))
    with pytest.raises(ValueError, match="needs a salt"):
        ColumnsMapper({"tables": {"t": {"hash": ["email"]}}})


@pytest.mark.parametrize("options, message", [
    ({}, "option 'tables'"),
    ({"tables": ["t"]}, "option 'tables'"),
    ({"tables": {"t": {"include": ["a"], "exclude": ["b"]}}}, "not both"),
    ({"tables": {"t": {"mask": {"a": 1}}}}, "tables.t.mask.a"),
    ({"tables": {"t": {"truncate": {"a": -1}}}}, "tables.t.truncate.a"),
    ({"tables": {"t": {"truncate": {"a": "10"}}}}, "tables.t.truncate.a"),
    ({"tables": {"t": {"mask": ["a"], "truncate": {"a": 1}}}}, "both mask and truncate"),
    ({"tables": {"t": {"redact": ["a"]}}}, "unknown option.*redact"),
    ({"tables": {"t": {}}, "salt_env": 5}, "option 'salt_env'"),
    ({"tables": {"t": {}}, "mode": "x"}, "unknown option.*mode"),
])
def test_bad_options_are_refused(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ColumnsMapper(options)
