"""Output formats: how the sink turns a `Change` into Kafka key/value bytes.

Whatever is still a `Change` at the end of the mapper chain is rendered by
the sink's `format`. A format returns a list of records, each
``(topic_override, key, value)``:

- usually one record; a delete with tombstones on gives two (the envelope,
  then ``(None, key, None)``); an empty list means "nothing to publish"
  (e.g. a truncate while truncate events are off);
- ``topic_override`` is None unless the format puts the record on a topic of
  its own (Debezium puts logical messages on ``<server_name>.message``); the
  sink otherwise computes the topic from its template.

Example::

    fmt = make_format("debezium", server_name="dbz")
    for topic, key, value in fmt.render(change):
        producer.produce(topic or default_topic, value, key)

Column type names (`Change.columns` values) follow PostgreSQL's own spelling
as the decoder reports it (see `split_type_name`): base names such as
``int4``, ``numeric``, ``timestamptz``; a type modifier in parentheses where the
column has one (``numeric(12,2)``, ``timestamptz(3)``, ``varchar(20)``); arrays
as the element name with a leading underscore (``_text``, ``_int4``); enums
and other user types by their own name.
"""

from __future__ import annotations

import binascii
import importlib
import json
from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any, Generic, Protocol, TypeVar

from cdc.model import Change

T = TypeVar("T")

# (topic override or None, key bytes or None, value bytes or None)
Record = tuple[str | None, bytes | None, bytes | None]

DECIMAL_MODES = ("string", "base64")

# Compact, UTF-8, like Kafka Connect's JsonConverter. The C encoder is built
# once and called directly: json.dumps()/JSONEncoder.encode() rebuild it on
# every call, which costs more than encoding a small row.
_json_options = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
)
_iterencode = (
    None
    if c_make_encoder is None
    else c_make_encoder(
        None, _json_options.default, encode_basestring, None, ":", ",", False, False, False
    )
)


def base64_text(value: bytes) -> str:
    """bytes -> base64 text, as JSON formats carry binary values."""
    return binascii.b2a_base64(value, newline=False).decode("ascii")


def array_of(element: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A converter applying `element` to every item of a (nested) array value.

    None when the elements need no conversion. A value that is not a list (an
    array the decoder could only pass as text) is passed on as str.
    """
    if element is None:
        return None

    def convert(value: Any) -> Any:
        if type(value) is not list:
            return str(value)
        return [
            None if item is None else convert(item) if type(item) is list else element(item)
            for item in value
        ]

    return convert


class LayoutCache(Generic[T]):
    """What a format precomputes per column layout, keyed by the `Change.columns` dict.

    The decoder shares one `columns` dict between every change of a table
    version, so its identity is the cheapest key there is; the entry keeps the
    dict alive and is checked against it, so a reused id() cannot alias.
    """

    def __init__(self, build: Callable[[dict[str, str]], T], limit: int = 4096):
        self._build = build
        self._limit = limit
        self._entries: dict[int, tuple[dict[str, str], T]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, columns: dict[str, str]) -> T:
        entry = self._entries.get(id(columns))
        if entry is None or entry[0] is not columns:
            if len(self._entries) >= self._limit:
                self._entries.clear()
            entry = self._entries[id(columns)] = (columns, self._build(columns))
        return entry[1]


def to_json(value: Any) -> str:
    """Compact JSON text of `value` (non-ASCII kept; NaN refused)."""
    if _iterencode is None:  # pure-Python json (no _json accelerator)
        return _json_options.encode(value)
    return "".join(_iterencode(value, 0))


# Format name -> "module:factory". Imported on first use, so a format's
# dependencies (e.g. an Avro library) are only needed when it is configured.
_REGISTRY: dict[str, str] = {
    "debezium": "mappers.debezium:DebeziumFormat",
    "json": "mappers.json_format:JsonFormat",
    "cloudevents": "mappers.cloudevents:CloudEventsFormat",
    "avro": "mappers.avro_format:AvroFormat",
}

# Formats that also take the sink's `topic` and `key` templates and its
# `schema_registry` settings (the Avro subject is named after the topic).
_SINK_AWARE = frozenset({"avro"})


class Format(Protocol):
    """Renders a Change into Kafka records."""

    def render(self, change: Change) -> list[Record]: ...


def make_format(
    name: str,
    *,
    decimal: str = "string",
    tombstones: bool = True,
    truncate: bool = False,
    server_name: str = "cdc",
    topic: str | None = None,
    key: str | None = None,
    schema_registry: Any = None,
) -> Format:
    """Build the format called `name` (``debezium``, ``json``, ``cloudevents`` or ``avro``).

    `decimal` is ``string`` (exact text, our default) or ``base64`` (Debezium's
    default binary form); `tombstones` adds a null-value record after each
    delete; `truncate` publishes truncates instead of skipping them;
    `server_name` is Debezium's ``topic.prefix`` (``source.name`` and the
    topic of logical messages). `topic`, `key` (the sink's templates) and
    `schema_registry` (a `cdc.config.SchemaRegistryConfig` or a mapping of its
    keys) are used by ``avro`` only and ignored by the others.

    >>> make_format("debezium", server_name="dbz").render(change)  # doctest: +SKIP
    """
    target = _REGISTRY.get(name)
    if target is None:
        raise ValueError(f"unknown format {name!r}: expected one of {', '.join(_REGISTRY)}")
    if decimal not in DECIMAL_MODES:
        raise ValueError(f"unknown decimal mode {decimal!r}: expected one of {DECIMAL_MODES}")
    module_name, _, factory_name = target.partition(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    sink: dict[str, Any] = {}
    if name in _SINK_AWARE:
        sink = {"topic": topic, "key": key, "schema_registry": schema_registry}
    fmt: Format = factory(
        decimal=decimal, tombstones=tombstones, truncate=truncate, server_name=server_name,
        **sink,
    )
    return fmt


def split_type_name(type_name: str) -> tuple[str, tuple[int, ...], int]:
    """Split a column type name into (base name, type modifiers, array dimensions).

    >>> split_type_name("numeric(12,2)")
    ('numeric', (12, 2), 0)
    >>> split_type_name("_varchar(20)")
    ('varchar', (20,), 1)
    >>> split_type_name("timestamp(3) with time zone")
    ('timestamptz', (3,), 0)
    >>> split_type_name("text[]")
    ('text', (), 1)

    Arrays are PostgreSQL's internal ``_elem`` names; ``elem[]`` (format_type's
    spelling) is accepted too, as are format_type's long names of the common
    built-in types. The dimension count is 1 for any array: PostgreSQL does not
    record dimensions in the type, and values come as nested lists anyway.
    """
    name = type_name.strip().lower()
    dims = 0
    if name.endswith("[]"):
        dims = 1
        name = name.rstrip("[]").rstrip()
    elif name.startswith("_"):
        dims = 1
        name = name[1:]
    mods: tuple[int, ...] = ()
    open_paren = name.find("(")
    if open_paren >= 0:
        close_paren = name.find(")", open_paren)
        inner = name[open_paren + 1 : close_paren]
        try:
            mods = tuple(int(part) for part in inner.split(",") if part.strip())
        except ValueError:
            mods = ()
        name = (name[:open_paren] + name[close_paren + 1 :]).strip()
        name = " ".join(name.split())
    return _ALIASES.get(name, name), mods, dims


# format_type()'s spellings of built-in types -> PostgreSQL's internal names.
_ALIASES = {
    "smallint": "int2",
    "integer": "int4",
    "int": "int4",
    "bigint": "int8",
    "decimal": "numeric",
    "real": "float4",
    "double precision": "float8",
    "boolean": "bool",
    "character varying": "varchar",
    "character": "bpchar",
    "time without time zone": "time",
    "time with time zone": "timetz",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamptz",
}
