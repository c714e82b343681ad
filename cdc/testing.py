"""Test your mappers without a database or a broker.

Build `Change`s tersely with `change()`, load the mapper chain of your YAML
file with `load_chain()`, or run the whole thing with `run()`: the chain, then
the sink's format, topic and key templates, exactly as `cdc run` does, giving
the `Event`s (topic, key and value bytes, headers) the daemon would publish.

Example (a pytest test next to ``pipeline.yaml``)::

    from cdc.testing import change, run

    def test_new_order_becomes_order_created():
        events = run("pipeline.yaml", [change("orders", after={"id": 7, "total": 10})])
        assert [e.topic for e in events] == ["orders.events"]
        assert json.loads(events[0].value)["type"] == "OrderCreated"

A mapper that raises makes `run()` raise `cdc.errors.MapperError`, whatever
its `on_error`: in a test, a failure is what you want to see.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .chain import MapperChain
from .config import Config, PipelineConfig, load_config
from .errors import ConfigError
from .model import OPS, Change, Event
from .render import EventRenderer, Headers

__all__ = ["change", "load_chain", "run", "load_pipeline_config"]

# Positions of changes built without one: each its own transaction, in order.
_positions = itertools.count(0x1000000, 0x100)

COMMIT_TS = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z: fixed, so outputs are stable


def _type_name(value: Any) -> str:
    """A PostgreSQL type name for a Python value (what a decoder would report)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int8"
    if isinstance(value, float):
        return "float8"
    if isinstance(value, Decimal):
        return "numeric"
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo is not None else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, dt.time):
        return "time"
    if isinstance(value, (bytes, bytearray)):
        return "bytea"
    if isinstance(value, (dict, list)):
        return "jsonb"
    return "text"


def change(
    table: str,
    op: str = "insert",
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    schema: str = "public",
    database: str = "db",
    **kw: Any,
) -> Change:
    """A `Change` with everything you did not say filled in sensibly.

    `table` may be ``"schema.table"``. `key` defaults to the ``id`` column of
    `after` (or `before`) when there is one. `columns` are guessed from the
    values (int -> int8, str -> text, dict -> jsonb, ...). Without a
    `position`, each change gets the next one of a counter (its own
    transaction); `index` 0, `txid` None, `commit_ts` 2024-01-01T00:00:00Z.
    Any other `Change` field can be given as a keyword.

    >>> c = change("public.orders", after={"id": 7, "status": "new"})
    >>> c.op, c.schema, c.table, c.key
    ('insert', 'public', 'orders', {'id': 7})
    >>> change("orders", "delete", before={"id": 7}).before
    {'id': 7}
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, got {op!r}")
    if "." in table:
        schema, table = table.split(".", 1)
    if op in ("insert", "read", "update") and after is None:
        after = dict(key or {})
    if op == "delete" and before is None and key is not None:
        before = dict(key)
    if key is None:
        for row in (after, before):
            if row and "id" in row:
                key = {"id": row["id"]}
                break
    columns = kw.pop("columns", None)
    if columns is None:
        columns = {}
        for row in (before, after, key):
            for name, value in (row or {}).items():
                if columns.get(name) in (None, "text") and value is not None:
                    columns[name] = _type_name(value)
                columns.setdefault(name, "text")
    position = kw.pop("position", None)
    if position is None:
        position = next(_positions)
    fields: dict[str, Any] = {"txid": None, "commit_ts": COMMIT_TS, "index": 0}
    fields.update(kw)
    return Change(op=op, database=database, schema=schema, table=table, key=key,
                  before=before, after=after, columns=columns, position=position,
                  **fields)  # fmt: skip


class _Unset(str):
    """Stands in for an unset variable: falsy, so ${VAR:-default} takes its default,
    yet not None, so a bare ${VAR} reads as this placeholder instead of failing."""

    __slots__ = ()

    def __bool__(self) -> bool:
        return False


# Placeholders tried in turn: unset variables are mostly the source's DSN.
_PLACEHOLDERS = ("postgresql://unset@unset/unset", "mysql://unset@unset:3306/unset")


class _EnvForTests(Mapping[str, str]):
    """os.environ, where an unset variable reads as `placeholder`: tests connect nowhere."""

    def __init__(self, placeholder: str):
        self.placeholder = _Unset(placeholder)

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name, self.placeholder)

    def __iter__(self) -> Any:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)

    def get(self, name: str, default: Any = None) -> Any:  # noqa: ARG002 - never missing
        return os.environ.get(name, self.placeholder)


def _load_for_tests(config_path: str | os.PathLike[str]) -> Config:
    """load_config, where ${VAR}s that are unset do not fail (nothing connects)."""
    try:
        return load_config(config_path)
    except ConfigError:
        pass
    errors: list[ConfigError] = []
    for placeholder in _PLACEHOLDERS:
        try:
            return load_config(config_path, env=_EnvForTests(placeholder))
        except ConfigError as e:
            errors.append(e)
    # Not about the variables: report the problems with the PostgreSQL stand-in,
    # unless the source is not PostgreSQL.
    first, second = errors
    raise (second if "libpq DSN" in str(first) else first) from None


def _select(config: Config, config_path: str | os.PathLike[str],
            pipeline: str | None) -> tuple[int, PipelineConfig]:  # fmt: skip
    if pipeline is None:
        return 0, config.pipelines[0]
    for i, p in enumerate(config.pipelines):
        if p.name == pipeline:
            return i, p
    names = ", ".join(p.name for p in config.pipelines)
    raise ConfigError(f"no pipeline named {pipeline!r} (the file has: {names})",
                      path=os.fspath(config_path))  # fmt: skip


def load_pipeline_config(config_path: str | os.PathLike[str],
                         pipeline: str | None = None) -> PipelineConfig:  # fmt: skip
    """The pipeline called `pipeline` (default: the first) of the config file.

    Unset ``${VAR}``s do not fail here (they read as a placeholder DSN):
    nothing connects.
    """
    return _select(_load_for_tests(config_path), config_path, pipeline)[1]


def load_chain(config_path: str | os.PathLike[str], pipeline: str | None = None) -> MapperChain:
    """The mapper chain of a pipeline in the config file, loaded as `cdc run` loads it.

    Mapper modules are imported from the working directory and the config
    file's directory. Call ``chain.apply(change)`` to get what comes out of
    it (Changes still to be rendered, and Events).

    >>> chain = load_chain("pipeline.yaml")  # doctest: +SKIP
    >>> chain.apply(change("orders", after={"id": 1}))  # doctest: +SKIP
    [Event(topic='orders.events', ...)]
    """
    from .runtime import add_mapper_paths, build_chain

    index, p = _select(_load_for_tests(config_path), config_path, pipeline)
    add_mapper_paths(os.fspath(config_path))
    return build_chain(p, f"pipelines[{index}]")


def run(
    config_path: str | os.PathLike[str],
    changes: Iterable[Change],
    pipeline: str | None = None,
) -> list[Event]:
    """The events the pipeline would publish for `changes`, in order.

    Runs the pipeline's mapper chain, renders what is still a Change with the
    sink's format, and fills topic, key and the ``cdc-event-id`` header with
    the daemon's own code. Each Event has `key`/`value` as bytes (None for a
    null key or a tombstone), `headers` as a list of (name, bytes) and
    `change` set to the change it came from.

    >>> events = run("pipeline.yaml", [change("orders", after={"id": 1})])  # doctest: +SKIP
    >>> events[0].topic, events[0].key  # doctest: +SKIP
    ('db.public.orders', b'{"id":1}')
    """
    from mappers.formats import make_format

    p = load_pipeline_config(config_path, pipeline)
    chain = load_chain(config_path, pipeline)
    # format avro: confluent-kafka's in-process mock registry, so nothing connects.
    registry = None if p.sink.schema_registry is None else {"url": "mock://cdc-testing"}
    fmt = make_format(p.sink.format, decimal=p.sink.decimal, tombstones=p.sink.tombstones,
                      truncate=p.sink.truncate, server_name=p.name, topic=p.sink.topic,
                      key=p.sink.key, schema_registry=registry)  # fmt: skip
    renderer = EventRenderer(fmt.render, p.sink.topic, p.sink.key, p.name)
    events: list[Event] = []

    def emit(topic: str, key: bytes | None, value: bytes | None, headers: Headers,
             origin: Change) -> None:  # fmt: skip
        events.append(Event(topic, key, value, _bytes_headers(headers), origin))

    try:
        for c in changes:
            items = chain.apply(c) if chain else [c]
            renderer.render(c, items, emit)
    finally:
        chain.close()
    return events


def _bytes_headers(headers: Headers) -> list[tuple[str, bytes]]:
    out: list[tuple[str, bytes]] = []
    for name, value in headers:
        if value is None:
            out.append((name, b""))
        else:
            out.append((name, value.encode() if isinstance(value, str) else bytes(value)))
    return out
