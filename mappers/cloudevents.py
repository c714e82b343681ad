"""CloudEvents 1.0: ``format: cloudevents`` (structured mode) and ``type: cloudevents``.

Every change becomes one CloudEvent whose ``data`` is the change rendered by
the ``json`` format (op, key, before, after, position, ...). Attributes:

=================  ==========================================================
specversion        ``"1.0"``
id                 the event id (`cdc.model.event_id`, also the ``cdc-event-id``
                   header): unique per source, identical on every replay
source             ``/cdc/{pipeline}/{database}/{schema}/{table}`` (a template;
                   a logical message or database-level schema change:
                   ``/cdc/{pipeline}/{database}``)
type               ``{type_prefix}.{table}.{op}``, e.g. ``cdc.orders.insert``
                   (a logical message: ``{type_prefix}.message``; a schema
                   change: ``{type_prefix}.{table}.schema``, or
                   ``{type_prefix}.schema`` for a database-level statement)
subject            the key as text: a one-column key's value (``"7"``), else
                   the key as compact JSON; a message's prefix; a schema
                   change's ``database.table`` (or database)
time               the commit time, RFC 3339 UTC (``2024-02-29T11:14:15.123456Z``)
datacontenttype    ``application/json``
=================  ==========================================================

Structured mode (the format, and the mapper's default): the record value is
the whole event, ``application/cloudevents+json``::

    {"specversion":"1.0","id":"16B3748/0","source":"/cdc/orders/shop/public/orders",
     "type":"cdc.orders.insert","subject":"7","time":"2024-02-29T11:14:15.123456Z",
     "datacontenttype":"application/json","data":{"op":"insert",...}}

Binary mode (mapper only, ``mode: binary``): the value is the ``data`` alone
and the attributes travel in headers, as the Kafka protocol binding says:
``ce_specversion``, ``ce_id``, ``ce_source``, ``ce_type``, ``ce_subject``,
``ce_time`` and ``content-type: application/json``.

The Kafka key is the json format's key (``{"id":7}``); a delete is followed by
a tombstone when ``tombstones`` is on, as with the other formats (a tombstone is
a plain null record, not a CloudEvent). A format returns no headers, so the
structured format cannot add the binding's ``content-type`` header; the mapper
in structured mode does.

YAML::

    mappers:
      - {type: cloudevents, mode: binary, type_prefix: com.example.shop,
         source: "//shop.example.com/{schema}/{table}"}
"""

from __future__ import annotations

from typing import Any

from cdc.model import EVENT_ID_HEADER, MESSAGE, SCHEMA, Change, Event, event_id
from mappers.formats import Record, to_json
from mappers.json_format import JsonFormat, _commit_ts

SPEC_VERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
DATA_CONTENT_TYPE = "application/json"
DEFAULT_TYPE_PREFIX = "cdc"
DEFAULT_SOURCE = "/cdc/{pipeline}/{database}/{schema}/{table}"
MODES = ("structured", "binary")
_SOURCE_FIELDS = ("pipeline", "database", "schema", "table")


class CloudEventsFormat:
    """CloudEvents 1.0 in structured mode; see the module docstring.

    >>> CloudEventsFormat(server_name="orders").render(change)  # doctest: +SKIP
    [(None, b'{"id":7}', b'{"specversion":"1.0","id":"16B3748/0",...}')]
    """

    def __init__(
        self,
        *,
        decimal: str = "string",
        tombstones: bool = True,
        truncate: bool = False,
        server_name: str = "cdc",
        type_prefix: str = DEFAULT_TYPE_PREFIX,
        source: str = DEFAULT_SOURCE,
    ) -> None:
        # `decimal` is accepted for a uniform factory: data is the json format,
        # whose numeric is always the exact string.
        if not isinstance(type_prefix, str) or not type_prefix:
            raise ValueError("type_prefix: expected a non-empty string")
        if not isinstance(source, str) or not source:
            raise ValueError("source: expected a non-empty template string")
        try:
            source.format(**dict.fromkeys(_SOURCE_FIELDS, "x"))
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"source: bad template {source!r} ({e}); fields: {', '.join(_SOURCE_FIELDS)}"
            ) from None
        self.tombstones = tombstones
        self.server_name = server_name
        self.type_prefix = type_prefix
        self.source = source
        self._json = JsonFormat(tombstones=False, truncate=truncate, server_name=server_name)
        # Per (database, schema, table, op): the attributes that do not vary by row.
        self._static: dict[tuple[str, str, str, str], tuple[str, str]] = {}

    def events(self, change: Change, n: int = 0) -> list[tuple[str | None, bytes | None,
                                                              dict[str, str], bytes]]:
        """(topic override, key, attributes, data) for `change`; [] when nothing is published.

        `n` numbers the events already made from this change (for the id).
        """
        rendered = self._json.render(change)
        if not rendered:
            return []
        topic, key, data = rendered[0]
        assert data is not None
        source, kind = self._source_and_type(change)
        attrs = {
            "specversion": SPEC_VERSION,
            "id": event_id(change, n),
            "source": source,
            "type": kind,
        }
        subject = _subject(change, key)
        if subject is not None:
            attrs["subject"] = subject
        if change.commit_ts:
            attrs["time"] = _commit_ts(change.commit_ts)
        attrs["datacontenttype"] = DATA_CONTENT_TYPE
        return [(topic, key, attrs, data)]

    def render(self, change: Change) -> list[Record]:
        out: list[Record] = []
        for topic, key, attrs, data in self.events(change):
            out.append((topic, key, structured(attrs, data)))
            if change.op == "delete" and self.tombstones:
                out.append((topic, key, None))
        return out

    def _source_and_type(self, change: Change) -> tuple[str, str]:
        cache_key = (change.database, change.schema, change.table, change.op)
        static = self._static.get(cache_key)
        if static is None:
            if change.op == MESSAGE:
                source = f"/cdc/{self.server_name}/{change.database}"
                kind = f"{self.type_prefix}.message"
            elif change.op == SCHEMA and not change.table:  # a database-level statement
                source = f"/cdc/{self.server_name}/{change.database}"
                kind = f"{self.type_prefix}.schema"
            else:
                source = self.source.format(
                    pipeline=self.server_name, database=change.database,
                    schema=change.schema, table=change.table,
                )
                kind = f"{self.type_prefix}.{change.table}.{change.op}"
            if len(self._static) > 4096:
                self._static.clear()
            static = self._static[cache_key] = (source, kind)
        return static


def structured(attrs: dict[str, str], data: bytes) -> bytes:
    """The structured-mode JSON: the attributes, then ``"data"`` (already JSON) spliced in."""
    head = to_json(attrs)
    return head[:-1].encode() + b',"data":' + data + b"}"


def binary_headers(attrs: dict[str, str]) -> list[tuple[str, bytes]]:
    """Kafka protocol binding headers for binary mode: ``ce_<attr>`` plus ``content-type``."""
    headers = [
        (f"ce_{name}", value.encode()) for name, value in attrs.items()
        if name != "datacontenttype"
    ]
    headers.append(("content-type", attrs.get("datacontenttype", DATA_CONTENT_TYPE).encode()))
    return headers


def _subject(change: Change, key: bytes | None) -> str | None:
    """The key as text: a one-column int/text key's value, else the key's JSON."""
    if change.op == MESSAGE:
        return str((change.after or {}).get("prefix", ""))
    if change.op == SCHEMA:
        return f"{change.database}.{change.table}" if change.table else change.database
    if change.key and len(change.key) == 1:
        (value,) = change.key.values()
        if type(value) is str or type(value) is int:
            return str(value)
    return None if key is None else key.decode()


class CloudEventsMapper:
    """``type: cloudevents``: turn each Change into a CloudEvents Event mid-chain.

    Options: ``mode`` (structured | binary, default structured), ``type_prefix``
    (default ``cdc``), ``source`` (template over pipeline, database, schema,
    table), ``topic`` (default: the sink's template), ``tombstones`` and
    ``truncate`` (default: the sink's). Events from earlier mappers pass by
    untouched, as for every mapper.
    """

    def __init__(self, options: dict[str, Any]):
        sink = options.pop("_sink", None)
        options.pop("_type", None)
        pipeline = options.pop("_pipeline", "cdc")
        self.mode = options.pop("mode", "structured")
        if self.mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        self.topic: str | None = options.pop("topic", None)
        settings: dict[str, Any] = {"server_name": pipeline}
        if sink is not None:
            settings.update(tombstones=sink.tombstones, truncate=sink.truncate)
        for name in ("type_prefix", "source", "tombstones", "truncate"):
            if name in options:
                settings[name] = options.pop(name)
        if options:
            raise ValueError(
                f"unknown option(s) {', '.join(sorted(options))}: expected mode, type_prefix, "
                "source, topic, tombstones, truncate"
            )
        self._format = CloudEventsFormat(**settings)

    def map(self, change: Change) -> list[Event]:
        out: list[Event] = []
        for topic, key, attrs, data in self._format.events(change):
            topic = topic or self.topic
            if self.mode == "binary":
                value = data
                headers = binary_headers(attrs)
            else:
                value = structured(attrs, data)
                headers = [("content-type", STRUCTURED_CONTENT_TYPE.encode())]
            # The CloudEvents id and the cdc-event-id header are the same string.
            headers.append((EVENT_ID_HEADER, attrs["id"].encode()))
            out.append(Event(topic, key, value, headers, change=change))
            if change.op == "delete" and self._format.tombstones:
                out.append(Event(topic, key, None, [(EVENT_ID_HEADER,
                                                     event_id(change, 1).encode())],
                                 change=change))
        return out
