"""The ``avro`` format: Debezium's envelope in Avro, with Confluent Schema Registry.

The same logical content as the ``debezium`` format (``before``, ``after``,
``source``, ``transaction``, ``op``, ``ts_ms``/``ts_us``/``ts_ns``; key = the
primary-key columns), written by confluent-kafka's `AvroSerializer` in the
Confluent wire format (magic byte 0, the 4-byte schema id, the Avro binary).
The serializer registers each schema under ``<topic>-key`` / ``<topic>-value``
(TopicNameStrategy) the first time it is used, so any Confluent
`AvroDeserializer` (Kafka Connect's AvroConverter, ksqlDB, Flink
``debezium-avro-confluent``) reads the messages.

Schemas follow Debezium's Avro mapping (PostgreSQL connector defaults:
``time.precision.mode=adaptive``, ``decimal.handling.mode=precise``,
``interval.handling.mode=numeric``, ``binary.handling.mode=bytes``); the
``connect.name`` of each semantic type is Debezium's:

=====================  ==========================================================
bool                   boolean
int2 / int4            int (int2 with ``connect.type: int16``)
int8, oid, xid         long
float4 / float8        float / double (NaN and infinities as Avro has them)
numeric(p,s)           bytes, ``logicalType: decimal``, precision p, scale s
                       (``org.apache.kafka.connect.data.Decimal``); NaN/Infinity
                       cannot be written: a format error (``on_error`` applies)
numeric (no scale)     string, the exact text as in the debezium format
date                   int, days since the epoch (``io.debezium.time.Date``)
time(0-3) / time       int ms / long µs since midnight (``Time`` / ``MicroTime``)
timestamp(0-3) / -     long epoch ms / µs (``Timestamp`` / ``MicroTimestamp``)
timestamptz            string ISO-8601 UTC (``io.debezium.time.ZonedTimestamp``)
timetz                 string (``io.debezium.time.ZonedTime``)
interval               long µs, a month = 30.4375 days (``MicroDuration``)
json / jsonb           string, the JSON text (``io.debezium.data.Json``)
uuid, xml              string (``io.debezium.data.Uuid`` / ``Xml``)
bytea                  bytes
arrays                 array of the element type, elements nullable
text, varchar, enums   string (and any other type: its text)
=====================  ==========================================================

MySQL/MariaDB columns arrive with the same type names (see
connectors/mysql/rows.py), so they map the same way. Every value column is
nullable (``["null", T]``, default null): neither pgoutput nor the binlog says
whether a column is NOT NULL. Key columns are not nullable (primary-key
columns never are), except when the key is the whole row (a REPLICA IDENTITY
FULL table without a primary key).

Names: records are ``<server_name>.<schema>.<table>.Value`` / ``.Key`` /
``.Envelope`` (MySQL: ``<server_name>.<database>.<table>``), every part with
characters Avro does not allow replaced by ``_``; column names likewise.

One schema per table version: everything is built once per `Change.columns`
layout (and topic) and cached with its serializers, so the hot path converts
values and calls the serializer, which contacts the registry only the first
time a schema is seen under a subject. An ``ALTER TABLE`` gives a new layout,
hence a new schema version under the same subjects; whether the registry
accepts it is its compatibility setting's call.

Registry failures are not about one change, so they never go through
``on_error``: an unreachable registry, a timeout, HTTP 5xx or 429 raise
`SinkUnavailable` (the runtime rebuilds the pipeline with backoff and
resumes from the last acknowledged position); any other refusal (bad
credentials, an incompatible schema, a schema that is not registered while
``auto_register`` is off) raises `SinkError` and stops the pipeline. Either
way nothing after the last acknowledged change is checkpointed. A value that
does not fit its schema is a per-change format error (``on_error`` applies).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from cdc.errors import ConfigError, SinkError, SinkUnavailable
from cdc.model import DELETE, INSERT, MESSAGE, READ, TRUNCATE, UPDATE, Change
from cdc.render import TopicNamer

from .debezium import PLACEHOLDER, package_version
from .debezium import value_converter as debezium_converter
from .formats import LayoutCache, Record, array_of, split_type_name

Converter = Callable[[Any], Any]

_OPS = {INSERT: "c", UPDATE: "u", DELETE: "d", READ: "r", TRUNCATE: "t", MESSAGE: "m"}
_EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

# Registry client settings unless the user's `properties` say otherwise: a
# failing registry is retried by the runtime (pipeline rebuilt with backoff),
# so one attempt should not block the loop for long.
CLIENT_DEFAULTS: Mapping[str, Any] = {"max.retries": 2, "retries.wait.ms": 500,
                                      "retries.max.wait.ms": 5000}  # fmt: skip

# HTTP statuses of the registry that are worth retrying: it is down or overloaded.
_RETRIABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


# --- type mapping ------------------------------------------------------------------


def _semantic(avro_type: str, name: str) -> dict[str, Any]:
    return {"type": avro_type, "connect.version": 1, "connect.name": name}


def _decimal_schema(precision: int, scale: int) -> dict[str, Any]:
    return {
        "type": "bytes", "scale": scale, "precision": precision, "connect.version": 1,
        "connect.parameters": {"scale": str(scale), "connect.decimal.precision": str(precision)},
        "connect.name": "org.apache.kafka.connect.data.Decimal", "logicalType": "decimal",
    }  # fmt: skip


def _decimal(scale: int) -> Converter:
    quantum = Decimal(1).scaleb(-scale)

    def convert(value: Any) -> Decimal:
        if type(value) is not Decimal:
            value = Decimal(str(value))
        if not value.is_finite():
            raise ValueError(f"numeric {value} cannot be written as an Avro decimal")
        return value.quantize(quantum, context=_EXACT)

    return convert


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode()


def _float(value: Any) -> float:
    return float(value)


_STRING_TYPES = frozenset("text varchar bpchar char name citext".split())
_SEMANTIC_STRINGS = {
    "uuid": "io.debezium.data.Uuid",
    "xml": "io.debezium.data.Xml",
    "enum": "io.debezium.data.Enum",
    "set": "io.debezium.data.EnumSet",
}


def column_type(type_name: str) -> tuple[Any, Converter | None]:
    """The Avro schema of a non-null value of a `type_name` column, and the converter
    from the `Change` value to the Avro value (None: the value is used as is).

    >>> column_type("numeric(12,2)")[0]["logicalType"]
    'decimal'
    >>> column_type("int8")
    ('long', None)
    """
    base, mods, dims = split_type_name(type_name)
    if dims:
        element = base + (f"({','.join(map(str, mods))})" if mods else "")
        item, convert = column_type(element)
        return {"type": "array", "items": ["null", item]}, array_of(convert)
    if base in _STRING_TYPES:
        return "string", None
    if base == "bool":
        return "boolean", None
    if base == "int2":
        return {"type": "int", "connect.type": "int16"}, None
    if base == "int4":
        return "int", None
    if base in ("int8", "oid", "xid"):
        return "long", None
    if base == "float4":
        return "float", _float
    if base == "float8":
        return "double", _float
    if base == "numeric":
        # Avro decimals need 0 <= scale <= precision (PostgreSQL 15 allows more).
        if len(mods) == 2 and 0 <= mods[1] <= mods[0]:
            return _decimal_schema(mods[0], mods[1]), _decimal(mods[1])
        return "string", debezium_converter("numeric", "string")
    if base == "date":
        return _semantic("int", "io.debezium.time.Date"), debezium_converter(type_name)
    if base == "time":
        if mods and mods[0] <= 3:
            return _semantic("int", "io.debezium.time.Time"), debezium_converter(type_name)
        return _semantic("long", "io.debezium.time.MicroTime"), debezium_converter(type_name)
    if base == "timestamp":
        if mods and mods[0] <= 3:
            return _semantic("long", "io.debezium.time.Timestamp"), debezium_converter(type_name)
        return (_semantic("long", "io.debezium.time.MicroTimestamp"),
                debezium_converter(type_name))  # fmt: skip
    if base == "timestamptz":
        return _semantic("string", "io.debezium.time.ZonedTimestamp"), debezium_converter(type_name)
    if base == "timetz":
        return _semantic("string", "io.debezium.time.ZonedTime"), str
    if base == "interval":
        return _semantic("long", "io.debezium.time.MicroDuration"), debezium_converter(type_name)
    if base in ("json", "jsonb"):
        return _semantic("string", "io.debezium.data.Json"), debezium_converter(type_name)
    if base == "bytea":
        return "bytes", _bytes
    semantic = _SEMANTIC_STRINGS.get(base)
    if semantic is not None:
        return _semantic("string", semantic), str
    return "string", str


def _base_type(schema: Any) -> Any:
    return schema if isinstance(schema, str) else schema.get("type")


def placeholder_for(schema: Any) -> Any:
    """Debezium's unchanged-TOAST placeholder in a field of `schema` (None: not expressible)."""
    base = _base_type(schema)
    if base == "string":
        return PLACEHOLDER
    if base == "bytes" and not isinstance(schema, dict):
        return PLACEHOLDER.encode()
    if base == "array":
        item = _base_type(schema["items"][1])
        if item == "string":
            return [PLACEHOLDER]
        if item in ("int", "long"):
            return list(PLACEHOLDER.encode())
    return None


_NOT_AVRO = re.compile(r"[^A-Za-z0-9_]")


def avro_name(text: str) -> str:
    """`text` as an Avro name: characters Avro does not allow become ``_``.

    >>> avro_name("order-lines"), avro_name("2fa")
    ('order_lines', '_2fa')
    """
    name = _NOT_AVRO.sub("_", text) or "_"
    return "_" + name if name[0].isdigit() else name


def _optional(schema: Any) -> list[Any]:
    return ["null", schema]


# --- schemas of the envelope ---------------------------------------------------------

_OPTIONAL_LONG = ["null", "long"]
_OPTIONAL_STRING = ["null", "string"]

_SNAPSHOT = {
    "name": "snapshot",
    "type": [{"type": "string", "connect.version": 1,
              "connect.parameters": {"allowed": "true,first,first_in_data_collection,"
                                                "last_in_data_collection,last,false,incremental"},
              "connect.default": "false", "connect.name": "io.debezium.data.Enum"}, "null"],
    "default": "false",
}  # fmt: skip


def _source_schema(connector: str) -> dict[str, Any]:
    head: list[dict[str, Any]] = [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "ts_ms", "type": "long"},
        _SNAPSHOT,
        {"name": "db", "type": "string"},
        {"name": "sequence", "type": _OPTIONAL_STRING, "default": None},
        {"name": "ts_us", "type": _OPTIONAL_LONG, "default": None},
        {"name": "ts_ns", "type": _OPTIONAL_LONG, "default": None},
    ]
    if connector == "mysql":
        tail: list[dict[str, Any]] = [
            {"name": "table", "type": _OPTIONAL_STRING, "default": None},
            {"name": "server_id", "type": "long"},
            {"name": "gtid", "type": _OPTIONAL_STRING, "default": None},
            {"name": "file", "type": "string"},
            {"name": "pos", "type": "long"},
            {"name": "row", "type": "int"},
            {"name": "thread", "type": _OPTIONAL_LONG, "default": None},
            {"name": "query", "type": _OPTIONAL_STRING, "default": None},
        ]
        name = "io.debezium.connector.mysql.Source"
    else:
        tail = [
            {"name": "schema", "type": "string"},
            {"name": "table", "type": "string"},
            {"name": "txId", "type": _OPTIONAL_LONG, "default": None},
            {"name": "lsn", "type": _OPTIONAL_LONG, "default": None},
            {"name": "xmin", "type": _OPTIONAL_LONG, "default": None},
            {"name": "origin", "type": _OPTIONAL_STRING, "default": None},
            {"name": "origin_lsn", "type": _OPTIONAL_LONG, "default": None},
        ]
        name = "io.debezium.connector.postgresql.Source"
    return {"type": "record", "name": name, "fields": head + tail,
            "connect.name": name}  # fmt: skip


_TRANSACTION = {
    "name": "transaction",
    "type": ["null", {
        "type": "record", "name": "block", "namespace": "event",
        "fields": [{"name": "id", "type": "string"},
                   {"name": "total_order", "type": "long"},
                   {"name": "data_collection_order", "type": "long"}],
        "connect.version": 1, "connect.name": "event.block",
    }],
    "default": None,
}  # fmt: skip

_TIMESTAMPS = [
    {"name": "ts_ms", "type": _OPTIONAL_LONG, "default": None},
    {"name": "ts_us", "type": _OPTIONAL_LONG, "default": None},
    {"name": "ts_ns", "type": _OPTIONAL_LONG, "default": None},
]


def value_schema(namespace: str, fields: list[dict[str, Any]], connector: str) -> dict[str, Any]:
    """The envelope schema of a table: `fields` are the Value record's fields."""
    value = {"type": "record", "name": "Value", "namespace": namespace, "fields": fields,
             "connect.name": f"{namespace}.Value"}  # fmt: skip
    return {
        "type": "record", "name": "Envelope", "namespace": namespace,
        "fields": [
            {"name": "before", "type": ["null", value], "default": None},
            {"name": "after", "type": ["null", f"{namespace}.Value"], "default": None},
            {"name": "source", "type": _source_schema(connector)},
            _TRANSACTION,
            {"name": "op", "type": "string"},
            *_TIMESTAMPS,
        ],
        "connect.version": 2, "connect.name": f"{namespace}.Envelope",
    }  # fmt: skip


def key_schema(namespace: str, fields: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": "Key", "namespace": namespace, "fields": fields,
            "connect.name": f"{namespace}.Key"}  # fmt: skip


_MESSAGE_NAMESPACE = "io.debezium.connector.postgresql"
MESSAGE_KEY_SCHEMA = {
    "type": "record", "name": "MessageKey", "namespace": _MESSAGE_NAMESPACE,
    "fields": [{"name": "prefix", "type": _OPTIONAL_STRING, "default": None}],
    "connect.name": f"{_MESSAGE_NAMESPACE}.MessageKey",
}  # fmt: skip
MESSAGE_VALUE_SCHEMA = {
    "type": "record", "name": "MessageValue", "namespace": _MESSAGE_NAMESPACE,
    "fields": [
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": _OPTIONAL_LONG, "default": None},
        {"name": "source", "type": _source_schema("postgresql")},
        _TRANSACTION,
        {"name": "message", "type": {
            "type": "record", "name": "Message", "namespace": _MESSAGE_NAMESPACE,
            "fields": [{"name": "prefix", "type": _OPTIONAL_STRING, "default": None},
                       {"name": "content", "type": ["null", "bytes"], "default": None}],
            "connect.name": f"{_MESSAGE_NAMESPACE}.Message"}},
    ],
    "connect.name": f"{_MESSAGE_NAMESPACE}.MessageValue",
}  # fmt: skip


# --- per-layout state -----------------------------------------------------------------


class _Layout:
    """What one `Change.columns` layout gives: fields, converters, placeholders."""

    __slots__ = ("columns", "plan", "fields", "types", "converters", "targets")

    def __init__(self, columns: dict[str, str]) -> None:
        self.columns = columns  # keeps the dict alive, so its id() stays unique
        plan: list[tuple[str, str, Converter | None]] = []
        fields: list[dict[str, Any]] = []
        types: dict[str, Any] = {}
        seen: dict[str, str] = {}
        for column, type_name in columns.items():
            field = avro_name(column)
            if field in seen:
                raise ValueError(
                    f"columns {seen[field]!r} and {column!r} have the same Avro name {field!r}"
                )
            seen[field] = column
            schema, convert = column_type(type_name)
            plan.append((column, field, convert))
            fields.append({"name": field, "type": _optional(schema), "default": None})
            types[column] = schema
        self.plan = tuple(plan)
        self.fields = fields
        self.types = types
        self.converters = {column: convert for column, _, convert in plan}
        # (database, schema, table, connector, topic) -> _Target
        self.targets: dict[tuple[str, str, str, str, str], _Target] = {}

    def row(self, values: dict[str, Any], unchanged: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every field, null where `values` lacks the column; TOAST placeholders for `unchanged`."""
        out: dict[str, Any] = {}
        get = values.get
        for column, field, convert in self.plan:
            value = get(column)
            if value is not None and convert is not None:
                value = convert(value)
            out[field] = value
        for column in unchanged:
            schema = self.types.get(column)
            if schema is not None:
                out[avro_name(column)] = placeholder_for(schema)
        return out

    def key(self, key: dict[str, Any]) -> dict[str, Any]:
        converters = self.converters
        out: dict[str, Any] = {}
        for column, value in key.items():
            convert = converters.get(column)
            out[avro_name(column)] = value if value is None or convert is None else convert(value)
        return out


class _Target:
    """The serializers of one table (of one layout) on one topic."""

    __slots__ = ("topic", "value", "value_ctx", "key_ctx", "keys", "namespace", "connector",
                 "table_id")

    def __init__(self, topic: str, value: Any, value_ctx: Any, key_ctx: Any, namespace: str,
                 connector: str, table_id: str) -> None:  # fmt: skip
        self.topic = topic
        self.value = value
        self.value_ctx = value_ctx
        self.key_ctx = key_ctx
        self.keys: dict[tuple[str, ...], Any] = {}  # key column names -> serializer
        self.namespace = namespace
        self.connector = connector
        self.table_id = table_id


def _import_serde() -> Any:
    try:
        from confluent_kafka.schema_registry import (
            SchemaRegistryClient,
            topic_subject_name_strategy,
        )
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.schema_registry.error import SchemaRegistryError
        from confluent_kafka.serialization import MessageField, SerializationContext
    except ImportError as e:
        raise ConfigError(
            "format avro needs fastavro and confluent-kafka's schema registry client, which "
            f"are not installed ({e}): pip install 'cdc[avro]' (or confluent-kafka[avro])",
            key="sink.format",
        ) from None
    return (SchemaRegistryClient, topic_subject_name_strategy, AvroSerializer,
            SchemaRegistryError, MessageField, SerializationContext)  # fmt: skip


def registry_client_config(settings: Any) -> dict[str, Any]:
    """SchemaRegistryClient settings from a `SchemaRegistryConfig` (or a mapping of its keys)."""
    get = settings.get if isinstance(settings, Mapping) else (
        lambda name, default=None: getattr(settings, name, default))
    conf: dict[str, Any] = dict(CLIENT_DEFAULTS)
    conf["url"] = get("url")
    for name, setting in (("basic_auth_user_info", "basic.auth.user.info"),
                          ("ssl_ca_location", "ssl.ca.location"),
                          ("ssl_certificate_location", "ssl.certificate.location"),
                          ("ssl_key_location", "ssl.key.location")):  # fmt: skip
        value = get(name)
        if value:
            conf[setting] = value
    timeout = get("timeout", 5.0)
    if timeout is not None:
        conf["timeout"] = float(timeout)
    conf.update(get("properties") or {})
    return conf


def _redacted_url(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


class AvroFormat:
    """Debezium envelopes as Confluent-framed Avro; see the module docstring.

    `topic` and `key` are the sink's templates: the subject of a record is
    ``<topic>-key``/``<topic>-value``, so the format computes the topic itself.
    With a `key` template the key is the template's text, not Avro (this
    format returns an empty placeholder that the renderer replaces).
    `schema_registry` is a `SchemaRegistryConfig` or a mapping with its keys
    (`url`, `basic_auth_user_info`, `ssl_*`, `timeout`, `auto_register`,
    `properties`); ``url: mock://name`` uses confluent-kafka's in-process mock
    registry. `decimal` is accepted for a uniform factory and not used:
    numeric(p,s) is always the Avro decimal type.
    """

    def __init__(
        self,
        *,
        decimal: str = "string",
        tombstones: bool = True,
        truncate: bool = False,
        server_name: str = "cdc",
        topic: str | None = None,
        key: str | None = None,
        schema_registry: Any = None,
    ) -> None:
        if schema_registry is None:
            raise ConfigError("format avro needs schema_registry settings (at least its url)",
                              key="sink.schema_registry")  # fmt: skip
        (client_class, strategy, self._serializer_class, self._registry_error,
         self._field, self._context) = _import_serde()  # fmt: skip
        conf = registry_client_config(schema_registry)
        self.url = _redacted_url(str(conf.get("url") or ""))
        try:
            self.client = client_class.new_client(conf)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"bad schema registry settings: {e}",
                              key="sink.schema_registry") from None  # fmt: skip
        auto_register = (schema_registry.get("auto_register", True)
                         if isinstance(schema_registry, Mapping)
                         else getattr(schema_registry, "auto_register", True))  # fmt: skip
        self.auto_register = bool(auto_register)
        self._serializer_conf = {
            "auto.register.schemas": self.auto_register,
            "normalize.schemas": False,
            "subject.name.strategy": strategy,
        }
        self.tombstones = tombstones
        self.truncate = truncate
        self.server_name = server_name
        self.message_topic = f"{server_name}.message"
        self._topic = TopicNamer(topic or "{database}.{schema}.{table}", server_name)
        self._plain_keys = key is not None
        self._version = package_version()
        self._layouts: LayoutCache[_Layout] = LayoutCache(_Layout)
        self._message_target: _Target | None = None

    # -- the hot path ---------------------------------------------------------------

    def render(self, change: Change) -> list[Record]:
        op = change.op
        if op == MESSAGE:
            return self._render_message(change)
        if op == TRUNCATE and not self.truncate:
            return []
        if op not in _OPS:
            raise ValueError(f"format avro does not render {op!r} changes")
        layout = self._layouts.get(change.columns)
        target = self._target(layout, change)
        topic = target.topic
        if op == TRUNCATE:
            return [(topic, None, self._value(target, change, "t", None, None))]
        key = change.key
        key_bytes = None if key is None else self._key(target, layout, key)
        before = change.before
        if op == UPDATE and before is not None and key and _key_changed(key, before):
            return self._render_key_change(change, layout, target, key_bytes)
        value = self._value(
            target, change, _OPS[op],
            None if before is None else layout.row(before),
            None if change.after is None else layout.row(change.after, change.unchanged),
        )  # fmt: skip
        if op == DELETE and self.tombstones:
            return [(topic, key_bytes, value), (topic, key_bytes, None)]
        return [(topic, key_bytes, value)]

    def _render_key_change(self, change: Change, layout: _Layout, target: _Target,
                           new_key: bytes | None) -> list[Record]:  # fmt: skip
        # As Debezium: a primary-key update is a delete of the old key (and its
        # tombstone), then a create of the new one.
        before = change.before or {}
        old_key = self._key(target, layout, {name: before.get(name) for name in change.key or {}})
        topic = target.topic
        out: list[Record] = [(topic, old_key, self._value(target, change, "d",
                                                          layout.row(before), None))]
        if self.tombstones:
            out.append((topic, old_key, None))
        after = None if change.after is None else layout.row(change.after, change.unchanged)
        out.append((topic, new_key, self._value(target, change, "c", None, after)))
        return out

    def _target(self, layout: _Layout, change: Change) -> _Target:
        connector = str(change.source.get("connector") or "postgresql")
        topic = self._topic(change)
        k = (change.database, change.schema, change.table, connector, topic)
        target = layout.targets.get(k)
        if target is None:
            namespace = ".".join(avro_name(part) for part in
                                 (self.server_name, change.schema or change.database,
                                  change.table))  # fmt: skip
            schema = value_schema(namespace, layout.fields, connector)
            target = layout.targets[k] = _Target(
                topic, self._serializer(schema), self._context(topic, self._field.VALUE),
                self._context(topic, self._field.KEY), namespace, connector, change.table_id,
            )  # fmt: skip
        return target

    def _serializer(self, schema: dict[str, Any]) -> Any:
        return self._serializer_class(self.client, json.dumps(schema),
                                      conf=self._serializer_conf)  # fmt: skip

    def _key(self, target: _Target, layout: _Layout, key: dict[str, Any]) -> bytes:
        if self._plain_keys:
            return b""  # the renderer puts the sink's key template here
        names = tuple(key)
        serializer = target.keys.get(names)
        if serializer is None:
            # Primary-key columns are never null; a key that is the whole row (a
            # REPLICA IDENTITY FULL table without a primary key) may hold nulls.
            whole_row = len(names) > 1 and set(names) == set(layout.columns)
            fields = []
            for column in names:
                schema = layout.types.get(column, "string")
                fields.append({"name": avro_name(column), "type": _optional(schema),
                               "default": None} if whole_row else
                              {"name": avro_name(column), "type": schema})  # fmt: skip
            serializer = target.keys[names] = self._serializer(
                key_schema(target.namespace, fields))
        return self._serialize(serializer, layout.key(key), target.key_ctx, target, "key")

    def _value(self, target: _Target, change: Change, op: str, before: dict[str, Any] | None,
               after: dict[str, Any] | None) -> bytes:  # fmt: skip
        now_ns = time.time_ns()
        envelope = {
            "before": before,
            "after": after,
            "source": (self._mysql_source(change) if target.connector == "mysql"
                       else self._pg_source(change)),  # fmt: skip
            "transaction": None,
            "op": op,
            "ts_ms": now_ns // 1_000_000,
            "ts_us": now_ns // 1000,
            "ts_ns": now_ns,
        }
        return self._serialize(target.value, envelope, target.value_ctx, target, "value")

    def _serialize(self, serializer: Any, obj: dict[str, Any], ctx: Any, target: _Target,
                   field: str) -> bytes:  # fmt: skip
        try:
            data: bytes = serializer(obj, ctx)
        except self._registry_error as e:
            raise self._registry_failure(e, f"{target.topic}-{field}", target.table_id) from e
        except Exception as e:
            if _is_transport_error(e):
                raise SinkUnavailable(
                    f"the schema registry at {self.url} is unreachable ({type(e).__name__}: "
                    f"{e}) while registering the {field} schema of {target.table_id} "
                    f"(subject {target.topic}-{field}); nothing after the last acknowledged "
                    "change is checkpointed"
                ) from e
            raise ValueError(f"cannot write the {field} of a {target.table_id} change as Avro: "
                             f"{type(e).__name__}: {e}") from e  # fmt: skip
        return data

    def _registry_failure(self, e: Any, subject: str, table: str) -> SinkError:
        status = getattr(e, "http_status_code", None)
        code = getattr(e, "error_code", None)
        detail = getattr(e, "error_message", None) or str(e)
        where = (f"the schema registry at {self.url} answered HTTP {status} (error {code}: "
                 f"{detail}) for subject {subject} of {table}")  # fmt: skip
        if status in _RETRIABLE_STATUS or status is None or status == -1:
            return SinkUnavailable(f"{where}; nothing after the last acknowledged change is "
                                   "checkpointed")  # fmt: skip
        if status in (401, 403):
            hint = "check schema_registry.basic_auth_user_info (or the registry's ACLs)"
        elif status == 409:
            hint = ("the new schema is incompatible with the subject's earlier versions under "
                    "its compatibility setting: change the subject's compatibility level, or "
                    "publish this table version to another topic")
        elif status == 404 and not self.auto_register:
            hint = ("schema_registry.auto_register is false and this schema is not registered "
                    "under the subject: register it first, or set auto_register: true")
        else:
            hint = "the registry refused the schema"
        return SinkError(f"{where}: {hint}; the pipeline stops and nothing after the last "
                         "acknowledged change is checkpointed")  # fmt: skip

    # -- source blocks and messages -------------------------------------------------

    def _pg_source(self, change: Change) -> dict[str, Any]:
        ts_us = change.commit_ts
        lsn = change.log_pos
        last_commit = change.source.get("last_commit_lsn") if change.source else None
        sequence = json.dumps([None if last_commit is None else str(last_commit),
                               None if lsn is None else str(lsn)], separators=(",", ":"))
        return {
            "version": self._version, "connector": "postgresql", "name": self.server_name,
            "ts_ms": ts_us // 1000, "snapshot": "true" if change.snapshot else "false",
            "db": change.database, "sequence": sequence, "ts_us": ts_us, "ts_ns": ts_us * 1000,
            "schema": change.schema, "table": change.table,
            "txId": None if change.txid is None else int(change.txid),
            "lsn": None if lsn is None else int(lsn), "xmin": None, "origin": None,
            "origin_lsn": None,
        }  # fmt: skip

    def _mysql_source(self, change: Change) -> dict[str, Any]:
        ts_us = change.commit_ts
        extra = change.source
        log_pos = change.log_pos
        file, pos, row = log_pos if isinstance(log_pos, tuple) else ("", 0, 0)
        return {
            "version": self._version, "connector": "mysql", "name": self.server_name,
            "ts_ms": ts_us // 1000, "snapshot": "true" if change.snapshot else "false",
            "db": change.database, "sequence": None, "ts_us": ts_us, "ts_ns": ts_us * 1000,
            "table": change.table, "server_id": int(extra.get("server_id") or 0),
            "gtid": extra.get("gtid"), "file": file or "", "pos": int(pos or 0),
            "row": int(row or 0), "thread": extra.get("thread"), "query": extra.get("query"),
        }  # fmt: skip

    def _render_message(self, change: Change) -> list[Record]:
        body = change.after or {}
        prefix = body.get("prefix", "")
        content = body.get("content") or b""
        if isinstance(content, str):
            content = content.encode()
        target = self._message_target
        if target is None:
            topic = self.message_topic
            target = self._message_target = _Target(
                topic, self._serializer(MESSAGE_VALUE_SCHEMA),
                self._context(topic, self._field.VALUE), self._context(topic, self._field.KEY),
                _MESSAGE_NAMESPACE, "postgresql", "logical decoding messages",
            )  # fmt: skip
            target.keys[("prefix",)] = self._serializer(MESSAGE_KEY_SCHEMA)
        value = {
            "op": "m", "ts_ms": time.time_ns() // 1_000_000, "source": self._pg_source(change),
            "transaction": None, "message": {"prefix": prefix, "content": bytes(content)},
        }  # fmt: skip
        key = b"" if self._plain_keys else self._serialize(
            target.keys[("prefix",)], {"prefix": prefix}, target.key_ctx, target, "key")
        return [(target.topic, key,
                 self._serialize(target.value, value, target.value_ctx, target, "value"))]


def _key_changed(key: dict[str, Any], before: dict[str, Any]) -> bool:
    for name, value in key.items():
        old = before.get(name)
        if old is not None and old != value:
            return True
    return False


_TRANSPORT_MODULES = ("httpx", "httpx2", "httpcore", "requests", "urllib3", "ssl", "socket")


def _is_transport_error(error: BaseException) -> bool:
    """A network-level failure talking to the registry (refused, reset, timeout, DNS, TLS)."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    for cls in type(error).__mro__:
        module = cls.__module__.split(".", 1)[0]
        if module in _TRANSPORT_MODULES:
            return True
    return False
