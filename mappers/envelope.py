"""`type: debezium` / `type: json` as a mapper: render the change into an Event mid-chain.

Useful when a later mapper should see the rendered envelope, or to render some
tables in another format than the sink's. Options: the same as the sink's
(`decimal`, `tombstones`, `truncate`, `server_name`, `topic`).
"""

from __future__ import annotations

from typing import Any

from cdc.model import Change, Event

from .formats import make_format


class EnvelopeMapper:
    def __init__(self, options: dict[str, Any]):
        sink = options.pop("_sink", None)
        name = options.pop("_type", "debezium")
        pipeline = options.pop("_pipeline", "cdc")
        self.topic: str | None = options.pop("topic", None)
        defaults: dict[str, Any] = {"server_name": pipeline}
        if sink is not None:
            defaults.update(decimal=sink.decimal, tombstones=sink.tombstones,
                            truncate=sink.truncate)
        defaults.update(options)
        self._format = make_format(name, **defaults)

    def map(self, change: Change) -> list[Event]:
        return [
            Event(topic or self.topic, key, value, change=change)
            for topic, key, value in self._format.render(change)
        ]
