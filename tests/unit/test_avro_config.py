"""sink.format: avro and sink.schema_registry in the configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.config import SchemaRegistryConfig, load_config
from cdc.errors import ConfigError

PROPERTIES = {"bootstrap.servers": "kafka:9092"}


def load(tmp_path: Path, sink: dict[str, Any], env: dict[str, str] | None = None,
         **pipeline: Any) -> Any:  # fmt: skip
    document = {"version": 1, "pipelines": [{
        "name": "orders",
        "source": {"type": "postgres", "dsn": "postgresql://cdc:secret@db/shop"},
        "sink": {"type": "kafka", "properties": PROPERTIES, **sink},
        **pipeline,
    }]}  # fmt: skip
    path = tmp_path / "cdc.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_config(path, env=env or {})


def refused(tmp_path: Path, sink: dict[str, Any], **pipeline: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, sink, **pipeline)
    return caught.value


def test_avro_with_a_registry(tmp_path):
    config = load(tmp_path, {"format": "avro", "schema_registry": {
        "url": "${SR_URL}", "basic_auth_user_info": "${SR_USER}:${SR_PASSWORD}",
        "timeout": "2s", "auto_register": "${SR_AUTO:-false}",
        "properties": {"max.retries": 5, "retries.wait.ms": "${WAIT:-250}"},
    }}, env={"SR_URL": "https://sr1:8081,https://sr2:8081", "SR_USER": "cdc",
             "SR_PASSWORD": "hunter2"})  # fmt: skip
    registry = config.pipelines[0].sink.schema_registry
    assert registry == SchemaRegistryConfig(
        url="https://sr1:8081,https://sr2:8081", basic_auth_user_info="cdc:hunter2",
        timeout=2.0, auto_register=False, properties={"max.retries": 5, "retries.wait.ms": 250})
    assert "hunter2" not in repr(config.pipelines[0].sink)
    assert "cdc:***" in repr(registry)


def test_defaults(tmp_path):
    registry = load(tmp_path, {"format": "avro", "schema_registry": {"url": "http://sr:8081"}}
                    ).pipelines[0].sink.schema_registry  # fmt: skip
    assert (registry.timeout, registry.auto_register, registry.properties) == (5.0, True, {})
    assert load(tmp_path, {}).pipelines[0].sink.schema_registry is None


def test_avro_needs_a_registry(tmp_path):
    error = refused(tmp_path, {"format": "avro"})
    assert error.key == "pipelines[0].sink.schema_registry"
    assert "required key 'schema_registry' is missing" in error.detail
    assert "format avro registers its schemas there" in error.detail


def test_a_registry_without_avro_is_refused(tmp_path):
    error = refused(tmp_path, {"format": "json", "schema_registry": {"url": "http://sr:8081"}})
    assert error.key == "pipelines[0].sink.schema_registry"
    assert "only format avro uses a schema registry, got format 'json'" in error.detail


def test_decimal_does_not_apply_to_avro(tmp_path):
    error = refused(tmp_path, {"format": "avro", "decimal": "base64",
                               "schema_registry": {"url": "http://sr:8081"}})  # fmt: skip
    assert error.key == "pipelines[0].sink.decimal"
    assert "Avro decimal type" in error.detail


def test_route_is_refused_with_avro(tmp_path):
    error = refused(tmp_path, {"format": "avro", "schema_registry": {"url": "http://sr:8081"}},
                    mappers=[{"type": "filter"}, {"type": "route", "tables": {"t": {"key": "x"}}}])
    assert error.key == "pipelines[0].mappers[1]"
    assert "route is not available with format avro" in error.detail


@pytest.mark.parametrize(("registry", "key", "message"), [
    ({}, "url", "required key 'url' is missing"),
    ({"url": "sr:8081"}, "url", "expected a URL like http://registry:8081"),
    ({"url": "http://sr:8081,ftp://x"}, "url", "expected a URL like http://registry:8081"),
    ({"url": "http://u:p@sr:8081"}, "url", "put them in basic_auth_user_info"),
    ({"url": "http://sr", "basic_auth_user_info": "nocolon"}, "basic_auth_user_info",
     "expected user:password, got a value without ':'"),
    ({"url": "http://sr", "timeout": "0s"}, "timeout", "above zero"),
    ({"url": "http://sr", "auto_register": "yes"}, "auto_register", "expected true or false"),
    ({"url": "http://sr", "properties": {"url": "http://x"}}, "properties.url",
     "expected it as schema_registry.url"),
    ({"url": "http://sr", "properties": {"basic.auth.user.info": "a:b"}},
     "properties['basic.auth.user.info']", "schema_registry.basic_auth_user_info"),
    ({"url": "http://sr", "properties": {"x": [1]}}, "properties.x", "expected a string"),
    ({"url": "http://sr", "ssl_key_location": "/k.pem"}, "ssl_certificate_location",
     "required key 'ssl_certificate_location' is missing"),
    ({"url": "http://sr", "compat": "none"}, "compat", "unknown key 'compat'"),
])
def test_bad_registry_settings(tmp_path, registry, key, message):
    error = refused(tmp_path, {"format": "avro", "schema_registry": registry})
    assert error.key == f"pipelines[0].sink.schema_registry.{key}"
    assert message in error.detail
    assert "nocolon" not in error.detail  # a credential is never echoed


def test_cdc_testing_runs_an_avro_config_against_a_mock_registry(tmp_path):
    from cdc.testing import change, run

    config = tmp_path / "cdc.yaml"
    config.write_text(
        "version: 1\npipelines:\n  - name: p\n    source: {type: postgres, dsn: '${PG_DSN}'}\n"
        "    sink: {type: kafka, format: avro, properties: {bootstrap.servers: k:9092},\n"
        "           schema_registry: {url: 'http://registry.invalid:8081'}}\n")
    [event] = run(config, [change("orders", after={"id": 7, "total": 10})])
    assert event.topic == "db.public.orders"
    assert event.value is not None and event.value[0] == 0  # Confluent framing
