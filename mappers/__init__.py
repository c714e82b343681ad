"""Built-in mappers, by the `type` name used in YAML."""

from __future__ import annotations

from typing import Any

from cdc.errors import ConfigError

# type name -> "module:class"; imported only when a config uses it.
BUILTINS: dict[str, str] = {
    "debezium": "mappers.envelope:EnvelopeMapper",
    "outbox": "mappers.outbox:OutboxMapper",
    "filter": "mappers.filter:FilterMapper",
    "columns": "mappers.columns:ColumnsMapper",
    "rename": "mappers.rename:RenameMapper",
    "route": "mappers.route:RouteMapper",
    "cloudevents": "mappers.cloudevents:CloudEventsMapper",
}


def builtin_mapper(name: str, where: str) -> Any:
    """The class of built-in mapper `name`."""
    from cdc.chain import import_object

    target = BUILTINS.get(name)
    if target is None:
        raise ConfigError(
            f"unknown mapper type {name!r}: expected python or one of "
            f"{', '.join(sorted(BUILTINS))}",
            key=f"{where}.type",
        )
    return import_object(target, f"{where}.type")
