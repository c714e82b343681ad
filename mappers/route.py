"""`type: route`: topic and key per table, from templates or a partitioning column.

Example::

    - type: route                     # put it last: it renders changes into events
      tables:                         # glob patterns; the first that matches applies
        "public.orders":
          topic: "shop.{table}.{op}"  # fields: database schema table op pipeline + columns
          partition_by: customer_id   # key = the column's value: one customer, one partition
        "public.invoices":
          key: "{tenant}-{id}"

A matching change is rendered right here through the sink's `format` (with
the sink's `decimal`, `tombstones` and `truncate` settings) into Events that
carry the routed topic and key; a delete's tombstone gets the same key, so
compaction still works. Column fields come from `after` (`before` for
deletes); values are written as plain text (numbers, ISO dates, a null as
`null`). A template naming a column the row lacks is a mapper error: on
PostgreSQL a delete carries only the primary-key columns unless the table
has `REPLICA IDENTITY FULL`, so route by key columns or set it. For a
truncate or a schema change (no row), templates with column fields are not
applied. Changes of other tables and logical messages pass through untouched.

Because the output is Events, mappers after `route` see nothing to change:
make it the last mapper of the chain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc.config import TEMPLATE_FIELDS
from cdc.model import DELETE, SCHEMA, Change, Event

from .filter import (
    TableMatcher,
    pop_reserved,
    refuse_unknown,
    str_dict,
    template_fields,
    text_of,
)
from .formats import make_format


class _Template:
    """A `str.format` template over the change's fields and its row's columns."""

    def __init__(self, template: str, where: str, pipeline: str):
        self.template = template
        fields = template_fields(template, where)
        self.columns = [f for f in fields if f not in TEMPLATE_FIELDS]
        self.pipeline = pipeline

    def render(self, change: Change, row: dict[str, Any] | None) -> str | None:
        values: dict[str, Any] = {
            "database": change.database, "schema": change.schema, "table": change.table,
            "op": change.op, "pipeline": self.pipeline,
        }  # fmt: skip
        if self.columns:
            if row is None:
                return None
            for column in self.columns:
                if column not in row:
                    hint = (
                        " (a delete carries only the primary key unless the table has "
                        "REPLICA IDENTITY FULL)" if change.op == DELETE else ""
                    )
                    raise ValueError(
                        f"route template {self.template!r}: {change.table_id} has no column "
                        f"{column!r} in this row (it has {', '.join(row)}){hint}"
                    )
                values[column] = text_of(row[column])
        return self.template.format_map(values)


class _Route:
    def __init__(self, spec: Any, where: str, pipeline: str):
        spec = str_dict(spec, where)
        refuse_unknown(spec, ("topic", "key", "partition_by"), where)
        if not spec:
            raise ValueError(f"option {where!r}: expected topic, key and/or partition_by")
        if "key" in spec and "partition_by" in spec:
            raise ValueError(f"option {where!r}: give key or partition_by, not both")
        topic = spec.get("topic")
        self.topic = None if topic is None else _Template(topic, f"{where}.topic", pipeline)
        key: _Template | None = None
        if "key" in spec:
            key = _Template(spec["key"], f"{where}.key", pipeline)
        if "partition_by" in spec:
            column = spec["partition_by"]
            if not isinstance(column, str) or not column.isidentifier():
                raise TypeError(
                    f"option '{where}.partition_by': expected a column name, got {column!r}"
                )
            key = _Template("{" + column + "}", f"{where}.partition_by", pipeline)
        self.key = key


class RouteMapper:
    """Renders changes of routed tables into Events with their own topic/key."""

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        reserved = pop_reserved(options)
        refuse_unknown(options, ("tables",))
        sink = reserved.get("_sink")
        pipeline = str(reserved.get("_pipeline", "cdc"))
        tables = options.get("tables")
        if not tables:
            raise ValueError(
                "option 'tables': expected a mapping of table pattern -> "
                "{topic, key, partition_by}"
            )
        tables = str_dict(tables, "tables")
        self.routes = [_Route(spec, f"tables.{p}", pipeline) for p, spec in tables.items()]
        self.matcher = TableMatcher(tables)
        settings: dict[str, Any] = {"server_name": pipeline}
        if sink is not None:
            settings.update(decimal=sink.decimal, tombstones=sink.tombstones,
                            truncate=sink.truncate)  # fmt: skip
        self._render: Callable[[Change], Any] = make_format(
            sink.format if sink is not None else "debezium", **settings
        ).render
        # With a sink key template, an Event without a key gets it from the template.
        self._keep_format_key = sink is None or sink.key is None

    def map(self, change: Change) -> Change | list[Event]:
        i = self.matcher.index(change.database, change.schema, change.table)
        if i is None:
            return change
        route = self.routes[i]
        op = change.op
        row = change.before if op == DELETE else None if op == SCHEMA else change.after
        topic = None if route.topic is None else route.topic.render(change, row)
        key: Any = None if route.key is None else route.key.render(change, row)
        events = []
        for record_topic, record_key, value in self._render(change):
            if key is None:
                record_key = record_key if self._keep_format_key else None
            events.append(Event(topic or record_topic, key if key is not None else record_key,
                                value, change=change))  # fmt: skip
        return events
