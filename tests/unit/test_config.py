import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc import config as cfg
from cdc.config import (
    Config,
    HttpConfig,
    LogConfig,
    MysqlSourceConfig,
    OffsetsConfig,
    PipelineConfig,
    PostgresSourceConfig,
    SinkConfig,
    load_config,
    parse_duration,
    parse_size,
    redact_dsn,
)
from cdc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "examples" / "orders.yaml"
SCHEMA = ROOT / "config" / "schema.json"


def pipeline(**overrides: Any) -> dict[str, Any]:
    """A minimal valid pipeline; a None override removes the key."""
    base: dict[str, Any] = {
        "name": "orders",
        "source": {"type": "postgres", "dsn": "postgresql://cdc:secret@db/shop"},
        "sink": {"type": "kafka", "properties": {"bootstrap.servers": "kafka:9092"}},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def document(*pipelines: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "pipelines": list(pipelines) or [pipeline()], **top}


@pytest.fixture
def write(tmp_path: Path):
    """Write a config (a dict, dumped as YAML, or raw text) and return its path."""

    def write(content: dict[str, Any] | str) -> Path:
        path = tmp_path / "cdc.yaml"
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text)
        return path

    return write


@pytest.fixture
def refused(write):
    """The ConfigError that loading `content` raises."""

    def refused(content: dict[str, Any] | str, env: dict[str, str] | None = None) -> ConfigError:
        with pytest.raises(ConfigError) as caught:
            load_config(write(content), env=env or {})
        return caught.value

    return refused


def assert_problem(error: ConfigError, key: str | None, *expected: str) -> None:
    """One problem, reported at `key`, whose message contains every `expected` text."""
    assert error.key == key
    assert error.path is not None and error.path.endswith("cdc.yaml")
    assert str(error).startswith(f"{error.path}: {key}: " if key else f"{error.path}: ")
    for text in expected:
        assert text in error.detail


# -- valid configurations ---------------------------------------------------------------


def test_example_parses_with_defaults_filled():
    config = load_config(EXAMPLE, env={"PG_DSN": "postgresql://cdc:secret@db:5432/shop"})

    assert config.version == 1
    assert config.http == HttpConfig(listen="0.0.0.0:9400", enabled=True)
    (orders,) = config.pipelines
    assert orders.source == PostgresSourceConfig(
        dsn="postgresql://cdc:secret@db:5432/shop",
        slot="cdc_orders",
        publication="cdc_orders",
        tables=("public.orders", "public.customers"),
    )
    assert orders.sink.properties["bootstrap.servers"] == "127.0.0.1:9092"
    assert orders.sink.topic == "{database}.{schema}.{table}"
    assert orders.offsets == OffsetsConfig(store="file", path="/var/lib/cdc/orders.offsets")
    assert [m.type for m in orders.mappers] == ["python"]
    assert orders.dead_letter_topic == "cdc.dlq.orders"


def test_minimal_config_gets_every_default(write):
    config = load_config(write(document()), env={})

    assert config.http == HttpConfig()
    assert (config.http.host, config.http.port) == ("0.0.0.0", 9400)
    assert config.log == LogConfig(level="info", format="json")
    (p,) = config.pipelines
    assert p == PipelineConfig(
        name="orders",
        source=p.source,
        sink=p.sink,
        offsets=OffsetsConfig(path="/var/lib/cdc/orders.offsets"),
    )
    assert p.mappers == () and p.on_error == "fail" and p.dead_letter_topic is None
    source = p.source
    assert isinstance(source, PostgresSourceConfig)
    assert (source.slot, source.publication, source.create) == ("cdc_orders", "cdc_orders", True)
    assert source.tables is None and source.exclude_tables == ()
    assert source.snapshot == "initial" and source.streaming is True
    assert source.heartbeat_interval == source.status_interval == 10.0
    assert source.spill_threshold == 16_000_000 and source.spill_dir is None
    assert p.sink == SinkConfig(properties={"bootstrap.servers": "kafka:9092"})
    assert p.sink.key is None and p.sink.format == "debezium" and p.sink.decimal == "string"
    assert p.sink.tombstones is True and p.sink.truncate is False
    assert p.sink.flush_timeout == 30.0


def test_mysql_source_qualifies_bare_tables_with_the_dsn_database(write):
    source = {"type": "mysql", "dsn": "mysql://cdc:pw@db:3306/shop", "server_id": 4242,
              "tables": ["orders", "crm.customers"], "heartbeat_interval": "1m"}
    config = load_config(write(document(pipeline(source=source))), env={})

    assert config.pipelines[0].source == MysqlSourceConfig(
        dsn="mysql://cdc:pw@db:3306/shop", server_id=4242,
        tables=("shop.orders", "crm.customers"), heartbeat_interval=60.0)


def test_mappers_keep_builtin_options_and_python_paths(write):
    mappers = [
        {"type": "outbox", "table": "public.outbox", "on_error": "skip"},
        {"type": "python", "path": "myapp.events:order_events", "options": {"x": 1},
         "name": "orders"},
    ]
    outbox, python = load_config(write(document(pipeline(mappers=mappers))),
                                 env={}).pipelines[0].mappers

    assert (outbox.name, outbox.options, outbox.on_error) == ("outbox", {"table": "public.outbox"},
                                                              "skip")
    assert (python.name, python.path, python.options) == ("orders", "myapp.events:order_events",
                                                          {"x": 1})


@pytest.mark.parametrize(("text", "seconds"), [
    (2, 2.0), (0.5, 0.5), ("250ms", 0.25), ("10s", 10.0), ("1.5s", 1.5), ("5m", 300.0),
    ("1h", 3600.0),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [
    (1024, 1024), ("512kB", 512_000), ("64MB", 64_000_000), ("1GiB", 2**30), ("4 KiB", 4096),
])
def test_sizes(text, size):
    assert parse_size(text) == size


# -- ${VAR} expansion ---------------------------------------------------------------------


def test_variables_expand_with_defaults_and_escapes(write):
    path = write("""
version: 1
http: {listen: "${LISTEN:-127.0.0.1:9400}"}
pipelines:
  - name: orders
    source: {type: postgres, dsn: "${PG_DSN}", spill_dir: "${EMPTY:-/tmp/spill}"}
    mappers:
      - {type: route, note: "costs $${PRICE} in ${CURRENCY}", "${KEY}": kept}
    sink:
      type: kafka
      properties: {bootstrap.servers: "${KAFKA:-k:9092}"}
""")
    env = {"PG_DSN": "postgresql://db/shop", "EMPTY": "", "CURRENCY": "EUR", "KAFKA": "b:1"}
    config = load_config(path, env=env)

    assert config.http.listen == "127.0.0.1:9400"
    (p,) = config.pipelines
    assert isinstance(p.source, PostgresSourceConfig)
    assert p.source.dsn == "postgresql://db/shop"
    assert p.source.spill_dir == "/tmp/spill"  # as in the shell, :- also replaces ""
    assert p.mappers[0].options == {"note": "costs ${PRICE} in EUR", "${KEY}": "kept"}
    assert p.sink.properties["bootstrap.servers"] == "b:1"


def test_expanded_values_are_typed_like_yaml_scalars(write):
    source = {"type": "mysql", "dsn": "mysql://cdc@db/shop", "server_id": "${SERVER_ID}"}
    http = {"enabled": "${HTTP_ENABLED:-false}"}
    config = load_config(write(document(pipeline(source=source), http=http)),
                         env={"SERVER_ID": "7"})

    assert config.pipelines[0].source == MysqlSourceConfig(dsn="mysql://cdc@db/shop",
                                                            server_id=7)
    assert config.http.enabled is False


# -- one test per kind of problem -----------------------------------------------------------


def test_unknown_key_suggests_the_closest(refused):
    source = {"type": "postgres", "dsn": "postgresql://db/shop", "tabels": ["orders"]}
    error = refused(document(pipeline(source=source)))
    assert_problem(error, "pipelines[0].source.tabels",
                   "unknown key 'tabels' (did you mean 'tables'?)")


def test_unknown_key_without_a_close_one_lists_the_known(refused):
    error = refused(document(log={"colour": True}))
    assert_problem(error, "log.colour", "unknown key 'colour'; expected one of level, format")


def test_missing_required_key(refused):
    error = refused(document(pipeline(source={"type": "postgres"})))
    assert_problem(error, "pipelines[0].source.dsn", "required key 'dsn' is missing")


def test_wrong_type(refused):
    source = {"type": "postgres", "dsn": "postgresql://db/shop", "create": "maybe"}
    error = refused(document(pipeline(source=source)))
    assert_problem(error, "pipelines[0].source.create", "expected true or false, got 'maybe'")


def test_bad_enum_value(refused):
    error = refused(document(pipeline(on_error="ignore")))
    assert_problem(error, "pipelines[0].on_error",
                   "expected one of fail, skip, dead_letter, got 'ignore'")


def test_bad_duration(refused):
    source = {"type": "postgres", "dsn": "postgresql://db/shop", "heartbeat_interval": "soon"}
    error = refused(document(pipeline(source=source)))
    assert_problem(error, "pipelines[0].source.heartbeat_interval",
                   "expected a duration like 10s, 500ms, 1m, got 'soon'")


def test_bad_size(refused):
    source = {"type": "postgres", "dsn": "postgresql://db/shop", "spill_threshold": "lots"}
    error = refused(document(pipeline(source=source)))
    assert_problem(error, "pipelines[0].source.spill_threshold",
                   "expected a size like 64MB, 512kB, 1GiB, got 'lots'")


def test_unknown_template_field(refused):
    sink = {"type": "kafka", "topic": "cdc.{tabel}", "properties": {"bootstrap.servers": "k:1"}}
    error = refused(document(pipeline(sink=sink)))
    assert_problem(error, "pipelines[0].sink.topic",
                   "expected fields from database, schema, table, op, pipeline",
                   "unknown field {tabel}", "(did you mean 'table'?)")


def test_bad_table_name(refused):
    source = {"type": "postgres", "dsn": "postgresql://db/shop", "tables": ["orders", "a b"]}
    error = refused(document(pipeline(source=source)))
    assert_problem(error, "pipelines[0].source.tables[1]",
                   "expected 'schema.table' or 'table' (= public.table), got 'a b'")


def test_duplicate_pipeline_names(refused):
    error = refused(document(pipeline(), pipeline(offsets={"path": "/tmp/other.offsets"})))
    assert_problem(error, "pipelines[1].name",
                   "expected a unique pipeline name, got 'orders' again (first at "
                   "pipelines[0].name)")


def test_dead_letter_needs_a_topic(refused):
    error = refused(document(pipeline(mappers=[{"type": "outbox", "on_error": "dead_letter"}])))
    assert_problem(error, "pipelines[0].dead_letter_topic",
                   "required key 'dead_letter_topic' is missing")


def test_unset_variable(refused):
    error = refused(document(pipeline(source={"type": "postgres", "dsn": "${PG_DSN}"})))
    assert_problem(error, "pipelines[0].source.dsn",
                   "expected environment variable PG_DSN to be set", "got it unset")


def test_yaml_syntax_error_names_line_and_column(refused):
    error = refused("version: 1\npipelines:\n  - name: [orders\n")
    assert_problem(error, None, "invalid YAML at line 4, column 1")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "cdc.yaml")
    assert_problem(caught.value, None, "cannot read the configuration: No such file")


@pytest.mark.parametrize(("name", "value", "why"), [
    ("enable.idempotence", False, "without the idempotent producer"),
    ("acks", 1, "with fewer acknowledgements"),
])
def test_overrides_that_break_delivery_are_refused(refused, name, value, why):
    sink = {"type": "kafka", "properties": {"bootstrap.servers": "k:1", name: value}}
    error = refused(document(pipeline(sink=sink)))
    assert_problem(error, f"pipelines[0].sink.properties[{name!r}]" if "." in name
                   else f"pipelines[0].sink.properties.{name}", "expected ", why)


def test_features_not_built_yet_are_refused_clearly(refused):
    error = refused(document(pipeline(offsets={"store": "kafka"})))
    assert_problem(error, "pipelines[0].offsets.store",
                   "'kafka' is not available yet: expected one of file")


def test_every_problem_is_reported_at_once(refused):
    error = refused(document(pipeline(name="Orders", on_error="ignore"), version=2))

    lines = str(error).splitlines()
    assert lines[0] == f"{error.path}: 3 problems:"
    assert [line.split(": ")[1] for line in lines[1:]] == [
        "version", "pipelines[0].name", "pipelines[0].on_error"]
    assert all(line.startswith(f"  {error.path}: ") for line in lines[1:])


# -- secrets and the producer ----------------------------------------------------------------


@pytest.mark.parametrize(("dsn", "shown"), [
    ("postgresql://cdc:s3cr:et@db:5432/shop", "postgresql://cdc:***@db:5432/shop"),
    ("postgresql://db/shop?user=cdc&password=s3cret", "postgresql://db/shop?user=cdc&password=***"),
    ("host=db password='s3 cret' dbname=shop", "host=db password=*** dbname=shop"),
    ("mysql://cdc:s3cret@db:3306/shop", "mysql://cdc:***@db:3306/shop"),
    ("postgresql://cdc@db/shop", "postgresql://cdc@db/shop"),
])
def test_dsn_passwords_are_hidden(dsn, shown):
    assert redact_dsn(dsn) == shown


def test_config_reprs_hide_secrets(write):
    properties = {"bootstrap.servers": "k:1", "sasl.password": "s3cret"}
    config = load_config(write(document(pipeline(sink={"type": "kafka",
                                                       "properties": properties}))), env={})

    assert "secret" not in repr(config)
    assert config.pipelines[0].source.redacted() == "postgresql://cdc:***@db/shop"
    assert "'sasl.password': '***'" in repr(config.pipelines[0].sink)


def test_producer_config_puts_user_properties_over_the_defaults():
    sink = SinkConfig(properties={"bootstrap.servers": "k:1", "linger.ms": "20"})
    assert sink.producer_config() == {
        "enable.idempotence": "true", "acks": "all", "linger.ms": "20",
        "compression.type": "lz4", "message.timeout.ms": "0",
        "queue.buffering.max.messages": "100000", "queue.buffering.max.kbytes": "16384",
        "enable.sparse.connections": "false", "bootstrap.servers": "k:1",
    }


def test_producer_config_refuses_weaker_acks():
    sink = SinkConfig(properties={"bootstrap.servers": "k:1", "request.required.acks": "0"})
    with pytest.raises(ConfigError, match="with fewer acknowledgements"):
        sink.producer_config()


def test_properties_become_librdkafka_strings(write):
    properties = {"bootstrap.servers": "k:1", "linger.ms": 0.5, "batch.size": 1000,
                  "enable.idempotence": True}
    config = load_config(write(document(pipeline(sink={"type": "kafka",
                                                       "properties": properties}))), env={})
    assert config.pipelines[0].sink.properties == {
        "bootstrap.servers": "k:1", "linger.ms": "0.5", "batch.size": "1000",
        "enable.idempotence": "true"}


# -- config/schema.json stays in sync with the dataclasses ----------------------------------


def _schema_properties(schema: dict[str, Any], where: str) -> dict[str, Any]:
    node = schema
    for part in where.split("/"):
        node = node[part] if part else node
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node["properties"]


@pytest.mark.parametrize(("cls", "where"), [
    (Config, ""),
    (HttpConfig, "properties/http"),
    (LogConfig, "properties/log"),
    (PipelineConfig, "$defs/pipeline"),
    (PostgresSourceConfig, "$defs/postgresSource"),
    (MysqlSourceConfig, "$defs/mysqlSource"),
    (SinkConfig, "$defs/sink"),
    (OffsetsConfig, "$defs/pipeline/properties/offsets"),
])
def test_schema_has_the_keys_of_every_dataclass(cls, where):
    schema = json.loads(SCHEMA.read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    names = [f.name for f in dataclasses.fields(cls)]
    assert sorted(_schema_properties(schema, where)) == sorted(names)


@pytest.mark.parametrize(("values", "where"), [
    (cfg.LOG_LEVELS, "properties/log/properties/level"),
    (cfg.LOG_FORMATS, "properties/log/properties/format"),
    (cfg.SOURCE_TYPES, "$defs/source/properties/type"),
    (cfg.SNAPSHOT_MODES, "$defs/snapshot"),
    (cfg.ON_ERROR, "$defs/onError"),
    (cfg.MAPPER_TYPES, "$defs/mapper/properties/type"),
    (cfg.SINK_FORMATS, "$defs/sink/properties/format"),
    (cfg.DECIMAL_MODES, "$defs/sink/properties/decimal"),
    (cfg.OFFSET_STORES, "$defs/pipeline/properties/offsets/properties/store"),
])
def test_schema_enums_match_the_loader(values, where):
    node = json.loads(SCHEMA.read_text())
    for part in where.split("/"):
        node = node[part]
    assert node["enum"] == list(values)
