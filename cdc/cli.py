"""Command line: `cdc run CONFIG`, `cdc validate CONFIG`, `cdc test-mapper CONFIG CHANGES`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import __version__
from .errors import CdcError, ConfigError
from .jsonenc import loads_or_text


def _load(config_path: str):
    from .config import load_config

    try:
        return load_config(config_path)
    except ConfigError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)


@click.group()
@click.version_option(__version__, prog_name="cdc")
def main() -> None:
    """Change data capture: database log -> mappers -> Kafka."""


@main.command()
@click.argument("config_path", metavar="CONFIG")
def validate(config_path: str) -> None:
    """Check CONFIG without connecting to anything."""
    config = _load(config_path)
    from .runtime import add_mapper_paths, build_pipeline

    add_mapper_paths(config_path)
    try:
        for i, p in enumerate(config.pipelines):
            build_pipeline(p, i)  # loads mappers and formats; connects nowhere
    except ConfigError as e:
        click.echo(f"error: {config_path}: {e}", err=True)
        sys.exit(e.exit_code)
    names = ", ".join(p.name for p in config.pipelines)
    click.echo(f"{config_path}: ok ({len(config.pipelines)} pipeline(s): {names})")


@main.command()
@click.argument("config_path", metavar="CONFIG")
def run(config_path: str) -> None:
    """Run the pipelines of CONFIG until SIGTERM/SIGINT."""
    config = _load(config_path)
    from . import logs
    from .runtime import Runtime

    logs.setup(config.log.level, config.log.format)
    try:
        runtime = Runtime(config, config_path)
    except ConfigError as e:
        click.echo(f"error: {config_path}: {e}", err=True)
        sys.exit(e.exit_code)
    except CdcError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(e.exit_code)
    sys.exit(runtime.run())


# Keys of a changes.jsonl line (besides these, any Change field: position, index, ...).
_CHANGE_KEYS = ("table", "op", "before", "after", "key", "schema", "database")
_EXTRA_KEYS = ("position", "index", "txid", "commit_ts", "unchanged", "snapshot", "columns")


def _read_changes(path: str) -> list[Any]:
    """One Change per non-empty line of `path`; exit 2 naming the first bad line."""
    from .testing import change

    changes = []
    with click.open_file(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
                unknown = sorted(set(obj) - set(_CHANGE_KEYS) - set(_EXTRA_KEYS))
                if unknown:
                    raise ValueError(f"unknown key(s) {', '.join(unknown)}; expected "
                                     f"{', '.join(_CHANGE_KEYS + _EXTRA_KEYS)}")  # fmt: skip
                if not isinstance(obj.get("table"), str) or not obj["table"]:
                    raise ValueError("'table' (a non-empty string) is required")
                for name in ("before", "after", "key"):
                    if obj.get(name) is not None and not isinstance(obj[name], dict):
                        raise ValueError(f"{name!r} must be an object or null")
                fields = dict(obj)
                fields.setdefault("position", lineno)  # stable event ids: <line>/0
                if isinstance(fields.get("unchanged"), list):
                    fields["unchanged"] = tuple(fields["unchanged"])
                changes.append(change(**fields))
            except (ValueError, TypeError) as e:
                click.echo(f"error: {path}:{lineno}: {e}", err=True)
                sys.exit(2)
    return changes


@main.command("test-mapper")
@click.argument("config_path", metavar="CONFIG")
@click.argument("changes_path", metavar="CHANGES")
@click.option("--pipeline", "pipeline", default=None, metavar="NAME",
              help="The pipeline whose mappers and sink to use (default: the first).")
def test_mapper(config_path: str, changes_path: str, pipeline: str | None) -> None:
    """Print the events CONFIG's mappers and sink format make of CHANGES.

    CHANGES holds one JSON object per line, e.g.
    {"table": "public.orders", "op": "insert", "after": {"id": 7}}
    ("-" reads standard input). Each event is printed as one JSON line:
    {"topic", "key", "value", "headers"}, key and value decoded from JSON
    where they are JSON. Nothing connects to a database or a broker.
    """
    from .errors import MapperError
    from .testing import run as run_changes

    changes = _read_changes(changes_path)
    try:
        events = run_changes(config_path, changes, pipeline)
    except ConfigError as e:
        click.echo(f"error: {config_path}: {e}" if e.path is None else f"error: {e}", err=True)
        sys.exit(e.exit_code)
    except MapperError as e:
        line = getattr(e.change, "position", "?")
        click.echo(f"error: {changes_path}:{line}: {e}", err=True)
        sys.exit(1)
    for event in events:
        headers = {name: _decoded_header(value) for name, value in event.headers}
        click.echo(json.dumps({"topic": event.topic, "key": loads_or_text(event.key),
                               "value": loads_or_text(event.value), "headers": headers},
                              ensure_ascii=False))  # fmt: skip


def _decoded_header(value: bytes) -> Any:
    try:
        return value.decode()
    except UnicodeDecodeError:
        import base64

        return {"base64": base64.b64encode(value).decode("ascii")}
