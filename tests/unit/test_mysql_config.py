"""The MySQL source's `schema_changes` option: off by default, a boolean, mysql only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.config import load_config
from cdc.errors import ConfigError


def _config(tmp_path: Path, source: dict[str, Any]) -> Path:
    path = tmp_path / "cdc.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "pipelines": [{
        "name": "m", "source": source,
        "sink": {"type": "kafka", "properties": {"bootstrap.servers": "k:9092"}}}]}))
    return path


def test_schema_changes_is_a_mysql_source_option(tmp_path):
    mysql = {"type": "mysql", "dsn": "mysql://cdc@db/shop", "server_id": 7}
    assert load_config(_config(tmp_path, mysql), env={}).pipelines[0].source.schema_changes is False
    on = load_config(_config(tmp_path, {**mysql, "schema_changes": True}), env={})
    assert on.pipelines[0].source.schema_changes is True
    with pytest.raises(ConfigError) as bad:
        load_config(_config(tmp_path, {**mysql, "schema_changes": "yes"}), env={})
    assert bad.value.key == "pipelines[0].source.schema_changes"
    assert "expected true or false" in str(bad.value)
    postgres = {"type": "postgres", "dsn": "postgresql://cdc@db/shop", "schema_changes": True}
    with pytest.raises(ConfigError) as wrong:
        load_config(_config(tmp_path, postgres), env={})
    assert wrong.value.key == "pipelines[0].source.schema_changes"
    assert "only a mysql source" in str(wrong.value)
