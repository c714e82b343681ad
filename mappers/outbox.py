"""`type: outbox`: the transactional outbox router (Debezium's EventRouter).

The application writes its business events into an outbox table in the same
transaction as its state change; this mapper turns every row inserted into
that table into an Event, and drops updates, deletes and truncates of it (the
application may clean the table whenever it likes). Changes of other tables
pass through untouched. `pg_logical_emit_message` messages with the configured
prefix, whose content is a JSON object with the fields id, aggregate_type,
aggregate_id, type, payload and headers (always these names: `columns` only
renames table columns), become the same Events without any table.

Example::

    - type: outbox
      table: public.outbox
      topic: "outbox.event.{aggregate_type}"   # fields: aggregate_type, type, table
      columns: {aggregate_id: order_id}          # override default column names
      prefix: outbox                             # logical decoding message prefix

An event: topic from the template, key = str(aggregate_id), value = payload
(json/jsonb as is; text parsed when it is a JSON object or array, else the
text; bytes as is), headers `cdc-event-id` = the outbox row id, `event-type`
= type, plus every entry of the optional headers column ({name: value}).
"""

from __future__ import annotations

import json
from typing import Any

from cdc.model import EVENT_ID_HEADER, INSERT, MESSAGE, READ, Change, Event

from .filter import pop_reserved, refuse_unknown, str_dict, template_fields, text_of
from .formats import split_type_name

FIELDS = ("id", "aggregate_type", "aggregate_id", "type", "payload", "headers")
TOPIC_FIELDS = ("aggregate_type", "type", "table")
EVENT_TYPE_HEADER = "event-type"
_JSON_TYPES = ("json", "jsonb")
_MESSAGE_FIELDS = {f: f for f in FIELDS}


class OutboxMapper:
    """Routes outbox rows and outbox messages to events (see the module docstring)."""

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        pop_reserved(options)
        refuse_unknown(options, ("table", "columns", "topic", "prefix"))
        table = options.get("table")
        if not isinstance(table, str) or table.count(".") != 1 or "" in table.split("."):
            raise ValueError(
                f"option 'table': expected the outbox table as 'schema.table' "
                f"(MySQL: 'database.table'), got {table!r}"
            )
        self.table = table
        columns = str_dict(options.get("columns") or {}, "columns")
        bad = sorted(set(columns) - set(FIELDS))
        if bad:
            raise ValueError(
                f"option 'columns': unknown field(s) {', '.join(bad)}: expected some of "
                f"{', '.join(FIELDS)}"
            )
        for field, column in columns.items():
            if not isinstance(column, str) or not column:
                raise TypeError(f"option 'columns.{field}': expected a column name, got {column!r}")
        self.columns: dict[str, str] = {f: columns.get(f, f) for f in FIELDS}
        self.topic = options.get("topic", "outbox.event.{aggregate_type}")
        self._topic_fields = template_fields(self.topic, "topic")
        for name in self._topic_fields:
            if name not in TOPIC_FIELDS:
                raise ValueError(
                    f"option 'topic': unknown template field {{{name}}}: expected "
                    f"{', '.join('{' + f + '}' for f in TOPIC_FIELDS)}"
                )
        prefix = options.get("prefix", "outbox")
        if not isinstance(prefix, str) or not prefix:
            raise TypeError(f"option 'prefix': expected a non-empty string, got {prefix!r}")
        self.prefix = prefix
        self._is_outbox: dict[tuple[str, str, str], bool] = {}

    def map(self, change: Change) -> Change | Event | None:
        if change.op == MESSAGE:
            after = change.after or {}
            if after.get("prefix") != self.prefix:
                return change
            return self._from_message(change, after.get("content"))
        k = (change.database, change.schema, change.table)
        is_outbox = self._is_outbox.get(k)
        if is_outbox is None:
            is_outbox = self._is_outbox[k] = self.table in (
                change.table_id,
                f"{change.database}.{change.table}",
            )
        if not is_outbox:
            return change
        if change.op not in (INSERT, READ) or change.after is None:
            return None  # updates, deletes, truncates of the outbox: nothing to publish
        row = change.after
        missing = [
            f"{c} (field {f})"
            for f, c in self.columns.items()
            if c not in row and f != "headers"
        ]
        if missing:
            raise ValueError(
                f"outbox row of {change.table_id} lacks column(s) {', '.join(missing)}; "
                f"it has {', '.join(row)} (set the mapper's `columns` option)"
            )
        payload_column = self.columns["payload"]
        payload = _payload(row[payload_column], change.columns.get(payload_column, ""))
        return self._event(change, row, payload, change.table, self.columns)

    def _from_message(self, change: Change, content: Any) -> Event:
        try:
            data = json.loads(content)
        except (TypeError, ValueError) as e:
            raise ValueError(
                f"outbox message (prefix {self.prefix!r}) is not JSON: {e}"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"outbox message (prefix {self.prefix!r}) must be a JSON object, "
                f"got {type(data).__name__}"
            )
        return self._event(change, data, data.get("payload"), "", _MESSAGE_FIELDS)

    def _event(self, change: Change, row: dict[str, Any], payload: Any, table: str,
               c: dict[str, str]) -> Event:  # fmt: skip
        event_type = row.get(c["type"])
        fields = {"aggregate_type": row.get(c["aggregate_type"]), "type": event_type,
                  "table": table}  # fmt: skip
        for name in self._topic_fields:
            if fields[name] is None or fields[name] == "":
                raise ValueError(
                    f"outbox event {'(message) ' if not table else ''}has no "
                    f"{c.get(name, name)} for topic template {self.topic!r}"
                )
            fields[name] = text_of(fields[name])
        topic = self.topic.format_map(fields)
        headers: list[tuple[str, bytes]] = []
        event_id = row.get(c["id"])
        if event_id is not None:
            headers.append((EVENT_ID_HEADER, text_of(event_id).encode()))
        if event_type is not None:
            headers.append((EVENT_TYPE_HEADER, text_of(event_type).encode()))
        extra = row.get(c["headers"])
        if isinstance(extra, (str, bytes)):
            try:
                extra = json.loads(extra)
            except ValueError:
                raise ValueError(
                    f"outbox column {c['headers']} is not a JSON object: {extra!r}"
                ) from None
        if extra is not None:
            if not isinstance(extra, dict):
                raise ValueError(
                    f"outbox column {c['headers']} must be a JSON object of "
                    f"{{name: value}}, got {type(extra).__name__}"
                )
            for name, value in extra.items():
                if value is not None:
                    headers.append((str(name), value if isinstance(value, bytes)
                                    else text_of(value).encode()))  # fmt: skip
        aggregate_id = row.get(c["aggregate_id"])
        key = None if aggregate_id is None else text_of(aggregate_id)
        return Event(topic, key, payload, headers, change=change)


def _payload(value: Any, type_name: str) -> Any:
    """The event value of an outbox payload column."""
    if isinstance(value, str) and split_type_name(type_name)[0] not in _JSON_TYPES:
        text = value.lstrip()
        if text[:1] in ("{", "["):
            try:
                return json.loads(value)
            except ValueError:
                return value
    return value
