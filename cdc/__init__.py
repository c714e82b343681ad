"""cdc: a change-data-capture daemon (database log -> mappers -> Kafka)."""

__version__ = "0.1.0"
