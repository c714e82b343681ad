import pytest

from cdc.chain import LoadedMapper, MapperChain, import_object, instantiate
from cdc.errors import ConfigError, MapperError
from cdc.model import INSERT, Change, Event


def change(**kw):
    base = dict(op=INSERT, database="db", schema="public", table="t", key={"id": 1},
                before=None, after={"id": 1}, columns={"id": "int4"}, position=10,
                txid=1, commit_ts=0, index=0)
    base.update(kw)
    return Change(**base)


def test_chain_order_drop_rewrite_and_fan_out():
    seen = []

    def first(c):
        seen.append(("first", c.table))
        if c.table == "skip":
            return None
        c.table = "renamed"
        return c

    def second(c):
        seen.append(("second", c.table))
        return [Event("t", "k", {"n": 1}), c]

    chain = MapperChain([LoadedMapper("first", first), LoadedMapper("second", second)])
    out = chain.apply(change())
    assert [type(x).__name__ for x in out] == ["Event", "Change"]
    assert out[1].table == "renamed"
    assert chain.apply(change(table="skip")) == []
    assert seen == [("first", "t"), ("second", "renamed"), ("first", "skip")]


def test_events_pass_later_mappers_untouched():
    def to_event(c):
        return Event("x", None, None)

    def boom(c):
        raise AssertionError("must not see events")

    chain = MapperChain([LoadedMapper("a", to_event), LoadedMapper("b", boom)])
    assert len(chain.apply(change())) == 1


def test_raising_mapper_is_wrapped_with_name_and_change():
    def bad(c):
        raise ValueError("nope")

    c = change()
    with pytest.raises(MapperError) as info:
        MapperChain([LoadedMapper("bad", bad)]).apply(c)
    assert info.value.mapper == "bad" and info.value.change is c
    assert "ValueError: nope" in str(info.value)


def test_wrong_return_type_is_a_mapper_error():
    with pytest.raises(MapperError, match="expected None, Change, Event"):
        MapperChain([LoadedMapper("m", lambda c: 42)]).apply(change())


def test_import_and_instantiate_class_with_options():
    class Upper:
        def __init__(self, options):
            self.suffix = options["suffix"]

        def map(self, c):
            c.table += self.suffix
            return c

    m = instantiate(Upper, {"suffix": "_x"}, "upper", "pipelines[0].mappers[0]")
    assert MapperChain([m]).apply(change())[0].table == "t_x"
    assert import_object("json:dumps", "k") is __import__("json").dumps
    with pytest.raises(ConfigError, match="module:attribute"):
        import_object("json.dumps", "k")
    with pytest.raises(ConfigError, match="cannot import module"):
        import_object("no_such_mod:f", "k")
    with pytest.raises(ConfigError, match="takes no options"):
        instantiate(lambda c: c, {"a": 1}, "f", "k")
