"""cdc.testing (change, load_chain, run) and `cdc test-mapper`, without services."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdc.cli import main
from cdc.errors import MapperError
from cdc.model import Event
from cdc.testing import change, load_chain, run

MAPPER = '''
from cdc.model import Event


def order_events(change):
    if change.table != "orders":
        return change
    if change.after.get("total", 0) < 0:
        raise ValueError("negative total")
    return Event(topic="shop.orders", key=str(change.key["id"]),
                 value={"type": "OrderCreated", "id": change.key["id"]})
'''


@pytest.fixture()
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    module = f"mappers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MAPPER)
    monkeypatch.delenv("HELPER_PG_DSN", raising=False)
    path = tmp_path / "cdc.yaml"
    path.write_text(textwrap.dedent(f"""\
        version: 1
        pipelines:
          - name: shop
            source: {{type: postgres, dsn: "${{HELPER_PG_DSN}}"}}
            mappers:
              - {{type: python, path: "{module}:order_events"}}
            sink:
              type: kafka
              topic: "cdc.{{table}}"
              format: json
              properties: {{bootstrap.servers: "${{HELPER_KAFKA:-localhost:9092}}"}}
            offsets: {{path: {tmp_path}/shop.offsets}}
          - name: raw
            source: {{type: postgres, dsn: "postgresql://x@y/z"}}
            sink: {{type: kafka, topic: "raw.{{schema}}.{{table}}",
                   properties: {{bootstrap.servers: "localhost:9092"}}}}
            offsets: {{path: {tmp_path}/raw.offsets}}
        """))
    return path


def test_change_fills_in_the_rest():
    c = change("sales.orders", after={"id": 7, "note": "x", "meta": {"a": 1}})
    assert (c.op, c.schema, c.table, c.database) == ("insert", "sales", "orders", "db")
    assert c.key == {"id": 7}
    assert c.columns == {"id": "int8", "note": "text", "meta": "jsonb"}
    assert c.before is None and c.index == 0
    d = change("orders", "delete", key={"id": 7})
    assert d.before == {"id": 7} and d.after is None and d.schema == "public"
    assert change("t").position != change("t").position  # each its own transaction
    assert change("t", position=5, index=2, txid=9).txid == 9
    with pytest.raises(ValueError, match="op must be one of"):
        change("t", op="upsert")


def test_load_chain_imports_the_mappers_like_cdc_run(config: Path):
    chain = load_chain(config)
    out = chain.apply(change("orders", after={"id": 1}))
    assert len(out) == 1 and isinstance(out[0], Event) and out[0].topic == "shop.orders"
    assert not load_chain(config, pipeline="raw")


def test_run_gives_the_events_the_daemon_would_publish(config: Path):
    events = run(config, [change("orders", after={"id": 1}, position=0x10),
                          change("customers", after={"id": 3, "name": "ACME"}, position=0x11)])
    assert [e.topic for e in events] == ["shop.orders", "cdc.customers"]
    assert events[0].key == b"1"
    assert json.loads(events[0].value) == {"type": "OrderCreated", "id": 1}
    assert ("cdc-event-id", b"10/0") in events[0].headers
    customer = json.loads(events[1].value)
    assert customer["after"] == {"id": 3, "name": "ACME"} and customer["op"] == "insert"
    assert json.loads(events[1].key) == {"id": 3}
    assert ("cdc-event-id", b"11/0") in events[1].headers
    raw = run(config, [change("t", after={"id": 1})], pipeline="raw")
    assert raw[0].topic == "raw.public.t" and json.loads(raw[0].value)["op"] == "c"


def test_run_raises_a_mapper_error(config: Path):
    with pytest.raises(MapperError, match="negative total"):
        run(config, [change("orders", after={"id": 1, "total": -1})])


def test_cli_prints_one_json_line_per_event(config: Path, tmp_path: Path):
    changes = tmp_path / "changes.jsonl"
    changes.write_text(
        '{"table": "public.orders", "after": {"id": 1}}\n'
        "\n"
        '{"table": "customers", "op": "delete", "before": {"id": 3}, "key": {"id": 3}}\n'
    )
    result = CliRunner().invoke(main, ["test-mapper", str(config), str(changes)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert lines[0] == {"topic": "shop.orders", "key": 1,
                        "value": {"type": "OrderCreated", "id": 1},
                        "headers": {"cdc-event-id": "1/0"}}
    assert lines[1]["topic"] == "cdc.customers" and lines[1]["value"]["op"] == "delete"
    assert lines[1]["headers"] == {"cdc-event-id": "3/0"}
    assert lines[2]["value"] is None  # the tombstone after the delete


@pytest.mark.parametrize("line, message", [
    ("not json", "Expecting value"),
    ("[1]", "expected a JSON object"),
    ('{"op": "insert"}', "'table'"),
    ('{"table": "t", "colour": 1}', "unknown key(s) colour"),
    ('{"table": "t", "op": "upsert"}', "op must be one of"),
    ('{"table": "t", "after": [1]}', "'after' must be an object"),
])
def test_cli_refuses_a_bad_line_naming_it(config: Path, tmp_path: Path, line: str, message: str):
    changes = tmp_path / "changes.jsonl"
    changes.write_text('{"table": "t", "after": {"id": 1}}\n' + line + "\n")
    result = CliRunner().invoke(main, ["test-mapper", str(config), str(changes)])
    assert result.exit_code == 2
    assert f"{changes}:2:" in result.output and message in result.output


def test_cli_unknown_pipeline(config: Path, tmp_path: Path):
    changes = tmp_path / "changes.jsonl"
    changes.write_text('{"table": "t"}\n')
    result = CliRunner().invoke(main, ["test-mapper", str(config), str(changes),
                                       "--pipeline", "nope"])
    assert result.exit_code == 2 and "no pipeline named 'nope'" in result.output
