"""Load a pipeline configuration file, check it, and return typed settings.

Bad configuration is refused before anything starts: `load_config` raises one
`ConfigError` listing every problem it found, each naming the file, the key
path and what was expected::

    >>> config = load_config("config/examples/orders.yaml",
    ...                      env={"PG_DSN": "postgresql://cdc:secret@db/shop"})
    >>> config.pipelines[0].source.slot
    'cdc_orders'
    >>> config.pipelines[0].source
    PostgresSourceConfig(type='postgres', dsn='postgresql://cdc:***@db/shop', ...)

Steps: YAML (`yaml.safe_load`) -> `${VAR}` / `${VAR:-default}` expansion in
string values (`$${` is a literal `${`) -> validation -> frozen dataclasses.
The same contract is written as JSON Schema in config/schema.json for editors;
tests/unit/test_config.py keeps the two in sync.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import string
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from .errors import ConfigError

CONFIG_VERSION = 1
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")
SOURCE_TYPES = ("postgres", "mysql")
SNAPSHOT_MODES = ("initial", "never", "always", "initial_only")
ON_ERROR = ("fail", "skip", "dead_letter")
BUILTIN_MAPPERS = ("debezium", "outbox", "filter", "columns", "rename", "route", "cloudevents")
MAPPER_TYPES = ("python", *BUILTIN_MAPPERS)
SINK_TYPES = ("kafka",)
SINK_FORMATS = ("debezium", "json", "cloudevents", "avro")
DECIMAL_MODES = ("string", "base64")
OFFSET_STORES = ("file", "kafka", "postgres")
TEMPLATE_FIELDS = ("database", "schema", "table", "op", "pipeline")
# Accepted by the schema so that configs are forward compatible, refused at load time.
NOT_AVAILABLE_YET: dict[str, tuple[str, ...]] = {"format": (), "store": ("kafka", "postgres")}

# librdkafka settings under the user's `properties`. message.timeout.ms=0 makes
# the producer retry until the broker comes back: the checkpoint simply waits.
# enable.sparse.connections=false connects to the brokers at once: with lazy
# connections the idempotent producer's id is only asked for on its 500 ms retry
# timer, so nothing was acknowledged for the first ~1 s after every (re)start.
PRODUCER_DEFAULTS: Mapping[str, str] = MappingProxyType(
    {
        "enable.idempotence": "true",
        "acks": "all",
        "linger.ms": "5",
        "compression.type": "lz4",
        "message.timeout.ms": "0",
        "queue.buffering.max.messages": "100000",
        "queue.buffering.max.kbytes": "16384",
        "enable.sparse.connections": "false",
    }
)

T = TypeVar("T")
Convert = Callable[[Any], Any]


# ---------------------------------------------------------------------------
# The typed configuration


@dataclass(frozen=True, kw_only=True, slots=True)
class HttpConfig:
    """The /metrics /healthz /readyz server."""

    listen: str = "0.0.0.0:9400"
    enabled: bool = True

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True, kw_only=True, slots=True)
class LogConfig:
    level: str = "info"  # one of LOG_LEVELS
    format: str = "json"  # one of LOG_FORMATS


@dataclass(frozen=True, kw_only=True, slots=True)
class PostgresSourceConfig:
    """A logical replication slot read with pgoutput.

    `tables` holds "schema.table" names (a bare name in the file means
    public.name); None means every table. Durations are seconds.
    """

    type: str = "postgres"
    dsn: str
    slot: str
    publication: str
    create: bool = True
    tables: tuple[str, ...] | None = None
    exclude_tables: tuple[str, ...] = ()
    snapshot: str = "initial"  # one of SNAPSHOT_MODES
    heartbeat_interval: float = 10.0
    status_interval: float = 10.0  # how often standby status is sent
    streaming: bool = True
    spill_threshold: int = 16_000_000  # bytes of streamed transactions kept in memory, all together
    spill_dir: str | None = None  # None: the system's temporary directory

    def redacted(self) -> str:
        """The DSN with its password hidden: postgresql://user:***@host/db."""
        return redact_dsn(self.dsn)

    def __repr__(self) -> str:
        return _repr_fields(self, dsn=self.redacted())


@dataclass(frozen=True, kw_only=True, slots=True)
class MysqlSourceConfig:
    """A MySQL/MariaDB binlog reader. `tables` holds "database.table" names."""

    type: str = "mysql"
    dsn: str  # mysql://user:pass@host:3306/db
    server_id: int
    tables: tuple[str, ...] | None = None
    exclude_tables: tuple[str, ...] = ()
    snapshot: str = "initial"
    heartbeat_interval: float = 10.0
    # Publish DDL statements on captured tables/databases as op "schema" changes
    # (off by default: consumers of existing pipelines would get a new kind of record).
    schema_changes: bool = False

    def redacted(self) -> str:
        """The DSN with its password hidden: mysql://user:***@host:3306/db."""
        return redact_dsn(self.dsn)

    def __repr__(self) -> str:
        return _repr_fields(self, dsn=self.redacted())


SourceConfig = PostgresSourceConfig | MysqlSourceConfig


@dataclass(frozen=True, kw_only=True, slots=True)
class MapperConfig:
    """One step of the mapper chain.

    `type` "python" loads `path` ("module:attr") and hands it `options`; a
    built-in type gets every other key of its YAML entry as `options`.
    `on_error` None means the pipeline's. `name` defaults to the path or type.
    """

    type: str
    name: str
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    on_error: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class SchemaRegistryConfig:
    """The Confluent Schema Registry of `format: avro` (SchemaRegistryClient settings).

    `properties` holds further client settings by their confluent-kafka names
    (e.g. ``max.retries``, ``bearer.auth.*``), passed through.
    """

    url: str  # http(s)://host:port; several separated by commas
    basic_auth_user_info: str | None = None  # user:password
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    timeout: float = 5.0  # seconds per HTTP request
    auto_register: bool = True  # False: schemas must be registered beforehand
    properties: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        user = self.basic_auth_user_info
        hidden = {name: "***" if _SECRET_PROPERTY.search(name) else value
                  for name, value in self.properties.items()}  # fmt: skip
        return _repr_fields(
            self, url=redact_dsn(self.url), properties=hidden,
            basic_auth_user_info=None if user is None else f"{user.partition(':')[0]}:***",
        )  # fmt: skip


@dataclass(frozen=True, kw_only=True, slots=True)
class SinkConfig:
    """The Kafka producer and how changes are rendered for it."""

    type: str = "kafka"
    topic: str = "{database}.{schema}.{table}"  # over TEMPLATE_FIELDS
    key: str | None = None  # None: the primary key as JSON
    format: str = "debezium"  # one of SINK_FORMATS
    properties: dict[str, str] = field(default_factory=dict)  # librdkafka settings
    tombstones: bool = True  # a tombstone after every delete, as Debezium does
    truncate: bool = False  # Debezium skips truncates by default
    decimal: str = "string"  # one of DECIMAL_MODES
    flush_timeout: float = 30.0
    schema_registry: SchemaRegistryConfig | None = None  # format avro only, required there

    def producer_config(self) -> dict[str, str]:
        """librdkafka settings: the user's `properties` over PRODUCER_DEFAULTS.

        Raises ConfigError for overrides that would break at-least-once
        delivery (load_config has refused those already).
        """
        problem = _delivery_guarantee_problem(self.properties)
        if problem is not None:
            name, message = problem
            raise ConfigError(message, key=_child("sink.properties", name))
        return {**PRODUCER_DEFAULTS, **self.properties}

    def __repr__(self) -> str:
        hidden = {
            name: "***" if _SECRET_PROPERTY.search(name) else value
            for name, value in self.properties.items()
        }
        return _repr_fields(self, properties=hidden)


@dataclass(frozen=True, kw_only=True, slots=True)
class OffsetsConfig:
    store: str = "file"  # one of OFFSET_STORES (only file is available yet)
    path: str  # default /var/lib/cdc/<pipeline>.offsets


@dataclass(frozen=True, kw_only=True, slots=True)
class PipelineConfig:
    name: str
    source: SourceConfig
    mappers: tuple[MapperConfig, ...] = ()
    sink: SinkConfig
    offsets: OffsetsConfig
    on_error: str = "fail"  # one of ON_ERROR
    dead_letter_topic: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    version: int = CONFIG_VERSION
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    pipelines: tuple[PipelineConfig, ...]


# ---------------------------------------------------------------------------
# Public functions


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, expand and check the configuration file at `path`.

    `env` supplies `${VAR}` values (default: os.environ). Raises ConfigError
    naming the file, the key path and what was expected; several problems
    come as one error with one line each.
    """
    file = os.fspath(path)
    problems = _Problems(file)
    data = _expand(_read_yaml(file), os.environ if env is None else env, "", problems)
    problems.raise_any()
    if data is None:
        raise ConfigError("expected a mapping with version and pipelines, got an empty file",
                          path=file)
    config = _parse_config(_Section.of(problems, data, ""))
    problems.raise_any()
    assert config is not None  # no problems means every section was built
    return config


def parse_duration(value: Any) -> float:
    """Seconds from a number of seconds or a string like "250ms", "10s", "5m", "1h".

    Raises ValueError saying what was expected.
    """
    if _is_number(value) and 0 <= value < math.inf:
        return float(value)
    match = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(f"expected a duration like 10s, 500ms, 1m, got {_describe(value)}")
    number, unit = match.groups()
    return float(number) * _DURATION_UNITS[unit]


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string like "512kB", "64MB", "1GiB".

    kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB powers of 1024.
    Raises ValueError saying what was expected.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise _Invalid(f"expected a size like 64MB, 512kB, 1GiB, got {_describe(value)}")
    number, unit = match.groups()
    return int(float(number) * _SIZE_UNITS[unit.lower()])


def redact_dsn(dsn: str) -> str:
    """`dsn` with its password replaced by ***, for logs and error messages.

    Handles URLs (postgresql://user:pw@host/db?password=pw) and libpq
    keyword strings (host=db password=pw).
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _KEYWORD_PASSWORD.sub(r"\1***", dsn)
    userinfo, at, host = rest.rpartition("@")
    if at and ":" in userinfo:
        rest = f"{userinfo.partition(':')[0]}:***@{host}"
    return f"{scheme}://" + _QUERY_PASSWORD.sub(r"\1***", rest)


# ---------------------------------------------------------------------------
# Reading the file and expanding ${VAR}


def _read_yaml(file: str) -> Any:
    try:
        with open(file, encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError(f"cannot read the configuration: {error.strerror}", path=file) from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"expected UTF-8 text: {error}", path=file) from None
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        context = f" ({error.context})" if error.context else ""
        raise ConfigError(f"invalid YAML{where}: {error.problem}{context}", path=file) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"invalid YAML: {error}", path=file) from None


# `$${` is an escaped `${`; the last alternative catches malformed references.
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


class _Substituted(str):
    """A string produced by ${VAR} expansion. Where a number or a boolean is
    expected it is read as YAML would have read the value written in place."""


def _expand(value: Any, env: Mapping[str, str], key: str, problems: _Problems) -> Any:
    """`value` with ${VAR} expanded in every string scalar (never in keys)."""
    if isinstance(value, dict):
        return {k: _expand(v, env, _child(key, k), problems) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, env, _child(key, i), problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value
    substituted = False

    def replace(match: re.Match[str]) -> str:
        nonlocal substituted
        text, name, default = match.group(0, 1, 2)
        if text == "$${":
            return "${"
        if name is None:
            fragment = value[match.start():][:20]  # not the whole value: it may hold a secret
            problems.add(key, "expected ${NAME} or ${NAME:-default} (write $${ for a literal ${), "
                              f"got {fragment!r}")
            return text
        substituted = True
        setting = env.get(name)
        # As in the shell, ${VAR:-default} also replaces a variable set to "".
        if default is not None and not setting:
            return default
        if setting is None:
            problems.add(key, f"expected environment variable {name} to be set (or a default: "
                              f"${{{name}:-default}}), got it unset")
            return text
        return setting

    expanded = _VARIABLE.sub(replace, value)
    return _Substituted(expanded) if substituted else expanded


# ---------------------------------------------------------------------------
# Collecting problems while reading mappings


class _Invalid(ValueError):
    """A value does not fit. `at` locates the culprit inside it (list index or key)."""

    def __init__(self, message: str, at: str | int | None = None):
        super().__init__(message)
        self.at = at


class _Problems:
    def __init__(self, file: str):
        self.file = file
        self.errors: list[ConfigError] = []

    def add(self, key: str, message: str) -> None:
        self.errors.append(ConfigError(message, path=self.file, key=key or None))

    def raise_any(self) -> None:
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = "\n".join(f"  {error}" for error in self.errors)
            raise ConfigError(f"{len(self.errors)} problems:\n{lines}", path=self.file)


class _Section:
    """One YAML mapping being read under its key path.

    Reports problems as it goes and remembers the keys the schema knows, so
    that `build()` can report the others as unknown.
    """

    def __init__(self, problems: _Problems, data: dict[Any, Any], key: str):
        self.problems = problems
        self.data = data
        self.key = key
        self.known: list[str] = []
        self.problems_before = len(problems.errors)

    @classmethod
    def of(cls, problems: _Problems, value: Any, key: str) -> _Section | None:
        if isinstance(value, dict):
            return cls(problems, value, key)
        problems.add(key, f"expected a mapping, got {_describe(value)}")
        return None

    def report(self, name: str | None, message: str, at: str | int | None = None) -> None:
        key = self.key if name is None else _child(self.key, name)
        self.problems.add(key if at is None else _child(key, at), message)

    def _lookup(self, name: str, required: bool) -> Any:
        """The raw value of `name`; None when absent or null (reported if required)."""
        self.known.append(name)
        value = self.data.get(name)
        if value is None and required:
            got = ", got null" if name in self.data else " is missing"
            self.report(name, f"required key {name!r}{got}")
        return value

    def read(self, converters: Mapping[str, Convert], required: Collection[str] = ()
             ) -> dict[str, Any]:
        """Converted values of the keys present; absent (or null) keys are left
        out so that the dataclass defaults apply."""
        values = {}
        for name, convert in converters.items():
            raw = self._lookup(name, name in required)
            if raw is None:
                continue
            try:
                values[name] = convert(raw)
            except _Invalid as error:
                self.report(name, str(error), error.at)
        return values

    def section(self, name: str, *, required: bool = False) -> _Section | None:
        raw = self._lookup(name, required)
        if raw is None:
            return None if required else _Section(self.problems, {}, _child(self.key, name))
        return _Section.of(self.problems, raw, _child(self.key, name))

    def sections(self, name: str, *, required: bool = False) -> Iterator[_Section]:
        """One section per mapping of the list `name` (required: non-empty)."""
        raw = self._lookup(name, required)
        if raw is None:
            return
        if not isinstance(raw, list) or required and not raw:
            self.report(name, f"expected a {'non-empty ' if required else ''}list of mappings, "
                              f"got {_describe(raw)}")
            return
        for index, item in enumerate(raw):
            section = _Section.of(self.problems, item, _child(_child(self.key, name), index))
            if section is not None:
                yield section

    def rest(self) -> dict[str, Any]:
        """The keys not read so far (a built-in mapper's options)."""
        rest = {k: v for k, v in self.data.items() if k not in self.known}
        self.known.extend(rest)
        return rest

    def build(self, factory: Callable[..., T], values: dict[str, Any]) -> T | None:
        """Report unknown keys, then `factory(**values)`; None when this section
        (or one inside it) had a problem, since load_config raises then."""
        known = list(dict.fromkeys(self.known))
        for name in self.data:
            if isinstance(name, str) and name not in known:
                hint = _suggestion(name, known) or f"; expected one of {', '.join(known)}"
                self.report(name, f"unknown key {name!r}{hint}")
            elif not isinstance(name, str):
                self.report(None, f"expected string keys, got {_describe(name)}")
        if len(self.problems.errors) > self.problems_before:
            return None
        return factory(**values)


# ---------------------------------------------------------------------------
# The schema, one parser per section


def _parse_config(top: _Section | None) -> Config | None:
    if top is None:
        return None
    values = top.read({"version": _version}, required={"version"})
    values["http"] = _parse_flat(top.section("http"), HttpConfig,
                                 {"listen": _listen_address, "enabled": _boolean})
    values["log"] = _parse_flat(top.section("log"), LogConfig,
                                {"level": _choice(LOG_LEVELS), "format": _choice(LOG_FORMATS)})
    seen: dict[str, dict[str, str]] = {"name": {}, "offsets": {}}
    values["pipelines"] = tuple(
        _parse_pipeline(p, seen) for p in top.sections("pipelines", required=True))
    return top.build(Config, values)


def _parse_flat(s: _Section | None, factory: Callable[..., T], converters: Mapping[str, Convert]
                ) -> T | None:
    """A section of plain values."""
    return None if s is None else s.build(factory, s.read(converters))


def _parse_pipeline(s: _Section, seen: dict[str, dict[str, str]]) -> PipelineConfig | None:
    values = s.read(
        {"name": _pipeline_name, "on_error": _choice(ON_ERROR), "dead_letter_topic": _topic_name},
        required={"name"},
    )
    name = values.get("name", "")
    _check_unique(s.problems, _child(s.key, "name"), name, seen["name"], "pipeline name")
    values["source"] = _parse_source(s.section("source", required=True), name)
    values["mappers"] = tuple(_parse_mapper(m) for m in s.sections("mappers"))
    values["sink"] = _parse_sink(s.section("sink", required=True))
    if values["sink"] is not None and values["sink"].format == "avro":
        for i, m in enumerate(values["mappers"]):
            if m is not None and m.type == "route":
                s.report("mappers", "route is not available with format avro (the Avro subject is "
                                    "named after the topic): use the sink's topic and key "
                                    "templates", at=i)
    offsets = _parse_offsets(s.section("offsets"), name)
    if offsets is not None:
        _check_unique(s.problems, _child(_child(s.key, "offsets"), "path"), offsets.path,
                      seen["offsets"], "offsets path")
    values["offsets"] = offsets
    dead_letter_users = [values.get("on_error")] + [
        m.on_error for m in values["mappers"] if m is not None]
    if "dead_letter" in dead_letter_users and "dead_letter_topic" not in values:
        s.report("dead_letter_topic", "required key 'dead_letter_topic' is missing "
                                      "(on_error: dead_letter sends failed changes there)")
    return s.build(PipelineConfig, values)


def _check_unique(problems: _Problems, key: str, value: str, seen: dict[str, str], what: str
                  ) -> None:
    """Report `value` at `key` if an earlier pipeline used it (`seen`: value -> key)."""
    if value in seen:
        problems.add(key, f"expected a unique {what}, got {value!r} again "
                          f"(first at {seen[value]})")
    elif value:
        seen[value] = key


def _parse_source(s: _Section | None, pipeline: str) -> SourceConfig | None:
    if s is None:
        return None
    kind = s.read({"type": _choice(SOURCE_TYPES)}, required={"type"}).get("type")
    if kind == "postgres":
        return _parse_postgres_source(s, pipeline)
    if kind == "mysql":
        return _parse_mysql_source(s)
    return None  # the type is reported; other keys cannot be judged without it


def _parse_postgres_source(s: _Section, pipeline: str) -> PostgresSourceConfig | None:
    values = s.read(
        {
            "dsn": _postgres_dsn,
            "slot": _slot_name,
            "publication": _publication_name,
            "create": _boolean,
            "tables": _table_list(default_schema="public"),
            "exclude_tables": _table_list(default_schema="public", allow_empty=True),
            "snapshot": _choice(SNAPSHOT_MODES),
            "heartbeat_interval": _positive_duration,
            "status_interval": _positive_duration,
            "streaming": _boolean,
            "spill_threshold": _positive_size,
            "spill_dir": _string,
        },
        required={"dsn"},
    )
    if "schema_changes" in s.data:  # a clearer word than "unknown key"
        s.known.append("schema_changes")
        s.report("schema_changes", "only a mysql source has this option: PostgreSQL's "
                                   "logical decoding does not carry DDL statements")
    values.setdefault("slot", f"cdc_{pipeline}")
    values.setdefault("publication", f"cdc_{pipeline}")
    return s.build(PostgresSourceConfig, values)


def _parse_mysql_source(s: _Section) -> MysqlSourceConfig | None:
    values = s.read({"dsn": _mysql_dsn, "server_id": _integer(1, 2**32 - 1)},
                    required={"dsn", "server_id"})
    # A bare table name means a table of the DSN's database.
    database = urlsplit(values.get("dsn", "")).path.strip("/") or None
    values |= s.read(
        {
            "tables": _table_list(default_schema=database),
            "exclude_tables": _table_list(default_schema=database, allow_empty=True),
            "snapshot": _choice(SNAPSHOT_MODES),
            "heartbeat_interval": _positive_duration,
            "schema_changes": _boolean,
        }
    )
    return s.build(MysqlSourceConfig, values)


def _parse_mapper(s: _Section) -> MapperConfig | None:
    values = s.read({"type": _choice(MAPPER_TYPES), "name": _string, "on_error": _choice(ON_ERROR)},
                    required={"type"})
    kind = values.get("type")
    if kind is None:
        return None  # the type is reported; other keys cannot be judged without it
    if kind == "python":
        values |= s.read({"path": _python_path, "options": _options}, required={"path"})
    else:
        values["options"] = s.rest()
    values.setdefault("name", values.get("path") or kind)
    return s.build(MapperConfig, values)


def _parse_sink(s: _Section | None) -> SinkConfig | None:
    if s is None:
        return None
    values = s.read(
        {
            "type": _choice(SINK_TYPES),
            "topic": _template(TEMPLATE_FIELDS),
            "key": _template(None),
            "format": _choice(SINK_FORMATS, NOT_AVAILABLE_YET["format"]),
            "properties": _kafka_properties,
            "tombstones": _boolean,
            "truncate": _boolean,
            "decimal": _choice(DECIMAL_MODES),
            "flush_timeout": _positive_duration,
        },
        required={"type", "properties"},
    )
    _parse_sink_registry(s, values)
    return s.build(SinkConfig, values)


def _parse_sink_registry(s: _Section, values: dict[str, Any]) -> None:
    """sink.schema_registry: required by format avro, refused by the others."""
    fmt = values.get("format", "debezium")
    present = s.data.get("schema_registry") is not None
    if fmt == "avro":
        if not present:
            s.known.append("schema_registry")
            s.report("schema_registry", "required key 'schema_registry' is missing (format avro "
                                        "registers its schemas there: {url: http://host:8081})")
        else:
            values["schema_registry"] = _parse_schema_registry(s.section("schema_registry"))
        if "decimal" in values:
            s.report("decimal", "applies to the JSON formats only: format avro writes numeric(p,s) "
                                "as the Avro decimal type and numeric without a scale as its "
                                "exact text; remove sink.decimal")
    elif present:
        s.known.append("schema_registry")
        s.report("schema_registry", f"only format avro uses a schema registry, got format {fmt!r}")


def _parse_schema_registry(s: _Section | None) -> SchemaRegistryConfig | None:
    if s is None:
        return None
    values = s.read(
        {
            "url": _registry_url,
            "basic_auth_user_info": _user_info,
            "ssl_ca_location": _string,
            "ssl_certificate_location": _string,
            "ssl_key_location": _string,
            "timeout": _positive_duration,
            "auto_register": _boolean,
            "properties": _registry_properties,
        },
        required={"url"},
    )
    if "ssl_key_location" in values and "ssl_certificate_location" not in values:
        s.report("ssl_certificate_location", "required key 'ssl_certificate_location' is missing "
                                             "(ssl_key_location is the key of that certificate)")
    return s.build(SchemaRegistryConfig, values)


def _parse_offsets(s: _Section | None, pipeline: str) -> OffsetsConfig | None:
    if s is None:
        return None
    values = s.read({"store": _choice(OFFSET_STORES, NOT_AVAILABLE_YET["store"]),
                     "path": _string})
    values.setdefault("path", f"/var/lib/cdc/{pipeline}.offsets")
    return s.build(OffsetsConfig, values)


# ---------------------------------------------------------------------------
# Value converters: return the typed value or raise _Invalid("expected ..., got ...")


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"expected a non-empty string, got {_describe(value)}")
    return str(value)  # a plain str, also for _Substituted


def _matching(pattern: str, expected: str) -> Callable[[Any], str]:
    regex = re.compile(pattern)

    def convert(value: Any) -> str:
        if not isinstance(value, str) or not regex.fullmatch(value):
            raise _Invalid(f"expected {expected}, got {_describe(value)}")
        return str(value)

    return convert


def _choice(options: tuple[str, ...], not_yet: tuple[str, ...] = ()) -> Callable[[Any], str]:
    available = tuple(o for o in options if o not in not_yet)

    def convert(value: Any) -> str:
        if value in not_yet:
            raise _Invalid(f"{value!r} is not available yet: expected one of "
                           f"{', '.join(available)}")
        if value not in options or not isinstance(value, str):
            hint = _suggestion(value, available) if isinstance(value, str) else ""
            raise _Invalid(f"expected one of {', '.join(available)}, got {_describe(value)}{hint}")
        return str(value)

    return convert


def _boolean(value: Any) -> bool:
    value = _typed(value)
    if not isinstance(value, bool):
        raise _Invalid(f"expected true or false, got {_describe(value)}")
    return value


def _integer(minimum: int, maximum: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        value = _typed(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(f"expected an integer, got {_describe(value)}")
        if not minimum <= value <= maximum:
            raise _Invalid(f"expected an integer from {minimum} to {maximum}, got {value}")
        return value

    return convert


def _version(value: Any) -> int:
    version = _typed(value)
    if not _is_number(version) or version != CONFIG_VERSION:
        raise _Invalid(f"expected {CONFIG_VERSION} (the only configuration version), "
                       f"got {_describe(value)}")
    return CONFIG_VERSION


def _positive_duration(value: Any) -> float:
    seconds = parse_duration(_typed(value))
    if seconds <= 0:
        raise _Invalid(f"expected a duration above zero like 10s, got {_describe(value)}")
    return seconds


def _positive_size(value: Any) -> int:
    size = parse_size(_typed(value))
    if size <= 0:
        raise _Invalid(f"expected a size above zero like 64MB, got {_describe(value)}")
    return size


def _listen_address(value: Any) -> str:
    text = _string(value)
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise _Invalid(f"expected host:port like 0.0.0.0:9400, got {text!r}")
    return text


# Slot names are limited to 63 characters by PostgreSQL; cdc_<name> must fit.
_pipeline_name = _matching(r"[a-z0-9_]{1,59}",
                           "lowercase letters, digits and _ (at most 59 characters)")
_slot_name = _matching(r"[a-z0-9_]{1,63}", "lowercase letters, digits and _ (at most 63)")
_publication_name = _matching(r"[^\x00]{1,63}", "a name of at most 63 characters")
_topic_name = _matching(r"[A-Za-z0-9._-]{1,249}", "a Kafka topic name ([A-Za-z0-9._-])")
_python_path = _matching(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*",
                         "'module:attribute' like myapp.events:order_events")


def _postgres_dsn(value: Any) -> str:
    text = _string(value)
    scheme, is_url, _ = text.partition("://")
    valid = scheme in ("postgresql", "postgres") if is_url else "=" in text
    if not valid:
        raise _Invalid("expected a libpq DSN like postgresql://user:pass@host:5432/db or "
                       f"'host=... dbname=...', got {redact_dsn(text)!r}")
    return text


def _mysql_dsn(value: Any) -> str:
    text = _string(value)
    url = urlsplit(text)
    try:
        valid = url.scheme in ("mysql", "mariadb") and bool(url.hostname) and url.port != 0
    except ValueError:  # a port that is not a number
        valid = False
    if not valid:
        raise _Invalid(f"expected a DSN like mysql://user:pass@host:3306/db, got "
                       f"{redact_dsn(text)!r}")
    return text


_TABLE_PART = r"[A-Za-z_][A-Za-z0-9_$]*"
_TABLE = re.compile(rf"(?:({_TABLE_PART})\.)?({_TABLE_PART})")


def _table_list(default_schema: str | None, allow_empty: bool = False
                ) -> Callable[[Any], tuple[str, ...]]:
    expected = "'schema.table'" + (f" or 'table' (= {default_schema}.table)"
                                   if default_schema else "")

    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not (value or allow_empty):
            hint = "" if allow_empty else " (omit the key to capture every table)"
            raise _Invalid(f"expected a non-empty list of {expected}, got {_describe(value)}{hint}")
        tables = []
        for index, item in enumerate(value):
            match = _TABLE.fullmatch(item) if isinstance(item, str) else None
            if match is None or match[1] is None and default_schema is None:
                raise _Invalid(f"expected {expected}, got {_describe(item)}", at=index)
            tables.append(f"{match[1] or default_schema}.{match[2]}")
        return tuple(tables)

    return convert


def _options(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _Invalid(f"expected a mapping with string keys, got {_describe(value)}")
    return dict(value)


def _kafka_properties(value: Any) -> dict[str, str]:
    options = _options(value)
    properties = {}
    for name, setting in options.items():
        if isinstance(setting, (str, int, float)):
            properties[name] = _librdkafka_text(setting)
        else:
            raise _Invalid(f"expected a string, number or boolean, got {_describe(setting)}",
                           at=name)
    if not properties.get("bootstrap.servers"):
        raise _Invalid("required key 'bootstrap.servers' is missing")
    problem = _delivery_guarantee_problem(properties)
    if problem is not None:
        raise _Invalid(problem[1], at=problem[0])
    return properties


def _librdkafka_text(value: str | int | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _delivery_guarantee_problem(properties: Mapping[str, str]) -> tuple[str, str] | None:
    """(property, message) for an override that breaks at-least-once, in order delivery."""
    if properties.get("enable.idempotence", "true").lower() not in ("true", "1"):
        return "enable.idempotence", (
            f"expected true (or no setting), got {properties['enable.idempotence']!r}: without "
            "the idempotent producer a retried send can duplicate or reorder events within a "
            "partition")
    for name in ("acks", "request.required.acks"):  # librdkafka accepts both spellings
        if properties.get(name, "all").lower() not in ("all", "-1"):
            return name, (
                f"expected all or -1 (or no setting), got {properties[name]!r}: with fewer "
                "acknowledgements a broker failure can lose events that are already checkpointed")
    return None


def _registry_url(value: Any) -> str:
    text = _string(value)
    for part in text.split(","):
        url = urlsplit(part.strip())
        if url.scheme not in ("http", "https", "mock") or not url.netloc:
            raise _Invalid(f"expected a URL like http://registry:8081 (several: comma-separated), "
                           f"got {redact_dsn(text)!r}")
        if url.username is not None:
            raise _Invalid("expected the URL without user:password: put them in "
                           "basic_auth_user_info")
    return text


def _user_info(value: Any) -> str:
    text = _string(value)
    if ":" not in text:
        raise _Invalid("expected user:password, got a value without ':'")  # never echo a secret
    return text


# SchemaRegistryClient settings that have a key of their own under schema_registry.
_REGISTRY_KEYS = {"url": "url", "basic.auth.user.info": "basic_auth_user_info",
                  "ssl.ca.location": "ssl_ca_location",
                  "ssl.certificate.location": "ssl_certificate_location",
                  "ssl.key.location": "ssl_key_location", "timeout": "timeout"}  # fmt: skip


def _registry_properties(value: Any) -> dict[str, Any]:
    options = _options(value)
    properties: dict[str, Any] = {}
    for name, setting in options.items():
        if name in _REGISTRY_KEYS:
            raise _Invalid(f"expected it as schema_registry.{_REGISTRY_KEYS[name]}, not under "
                           "properties", at=name)
        setting = _typed(setting)
        if not isinstance(setting, (str, int, float, bool)):
            raise _Invalid(f"expected a string, number or boolean, got {_describe(setting)}",
                           at=name)
        properties[name] = str(setting) if isinstance(setting, _Substituted) else setting
    return properties


def _template(names: tuple[str, ...] | None) -> Callable[[Any], str]:
    """A str.format template over `names` (None: any names, e.g. key columns)."""

    def convert(value: Any) -> str:
        text = _string(value)
        try:
            used = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
            text.format_map(_AnyField())  # also catches bad format specs such as {table:d}
        except (ValueError, IndexError) as error:
            raise _Invalid(f"expected a template like {{schema}}.{{table}}, got {text!r} "
                           f"({error})") from None
        for name in used:
            if not _IDENTIFIER.fullmatch(name):
                raise _Invalid(f"expected {{name}} fields, got {{{name}}} in {text!r}")
            if names is not None and name not in names:
                raise _Invalid(f"expected fields from {', '.join(names)}, got unknown field "
                               f"{{{name}}} in {text!r}{_suggestion(name, names)}")
        return text

    return convert


class _AnyField(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "x"


def _typed(value: Any) -> Any:
    """A ${VAR}-expanded scalar read as YAML would read it (10 -> int, true -> bool)."""
    if isinstance(value, _Substituted):
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, (bool, int, float)):
            return parsed
    return value


# ---------------------------------------------------------------------------
# Small helpers

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_SECRET_PROPERTY = re.compile(r"password|secret", re.IGNORECASE)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _child(parent: str, name: object) -> str:
    """The key path of `name` inside `parent`: pipelines[0].source.dsn,
    sink.properties['bootstrap.servers']."""
    if isinstance(name, int) and not isinstance(name, bool):
        return f"{parent}[{name}]"
    if isinstance(name, str) and _IDENTIFIER.fullmatch(name):
        return f"{parent}.{name}" if parent else name
    return f"{parent}[{name!r}]"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    return repr(value) if isinstance(value, str) else str(value)


def _suggestion(name: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _repr_fields(obj: Any, **shown: Any) -> str:
    """A dataclass repr with some fields shown differently (secrets hidden)."""
    parts = (f"{f.name}={shown.get(f.name, getattr(obj, f.name))!r}" for f in fields(obj))
    return f"{type(obj).__name__}({', '.join(parts)})"
