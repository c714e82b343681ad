"""Command line: `cdc run CONFIG`, `cdc validate CONFIG`."""

from __future__ import annotations

import sys

import click

from . import __version__
from .errors import CdcError, ConfigError


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
