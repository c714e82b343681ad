"""Helpers for integration tests that run one PostgreSQL pipeline in-process.

Stable API (other test modules import it; add to it, do not change it):

``write_config(tmp_path, pg_dsn, bootstrap, **overrides) -> Path``
    Writes ``tmp_path/<name>.yaml``: one postgres pipeline with a unique name
    (``p_<hex>``; slot and publication default to ``cdc_<name>``), offsets in
    ``tmp_path/<name>.offsets``, ``http: {enabled: false}``, text logs,
    ``snapshot: never``, no ``tables`` (a FOR ALL TABLES publication), sink
    format ``debezium`` to ``bootstrap``. ``overrides`` are keys of the
    pipeline, deep-merged into those defaults; a ``None`` value deletes the
    key. Examples::

        write_config(tmp_path, pg_db, kafka_broker.bootstrap,
                     source={"tables": ["public.t"], "spill_threshold": "1MB"},
                     sink={"format": "json", "truncate": True})
        write_config(tmp_path, pg_db, bootstrap, name="audit",
                     sink={"topic": "audit.{table}"})

``pipeline_name(config_path) -> str``
    The pipeline name in a file written by ``write_config``.

``run_pipeline(config_path) -> ContextManager[RunningPipeline]``
    Loads the file (``cdc.config.load_config``), builds the pipeline
    (``cdc.runtime.build_pipeline``) and runs ``Pipeline.run(stop)`` on a
    thread. Entering returns once the source is open (slot and publication
    exist, so changes committed from then on are streamed). Exiting sets the
    stop flag and joins the thread (in-flight events are flushed and the
    position checkpointed), then re-raises any exception the pipeline raised.
    ``RunningPipeline``: ``.pipeline`` (the ``cdc.pipeline.Pipeline``),
    ``.config`` (its ``PipelineConfig``), ``.name``, ``.error`` (exception or
    None), ``.check()`` (raise the pipeline's exception now, if any),
    ``.stop(timeout)`` (stop early; idempotent; also re-raises).

``wait_for_events(bootstrap, topic, n, timeout=30.0, settle=0.0) -> list[Message]``
    Reads ``topic`` from offset 0 (``read_topic``) until ``n`` messages are
    there; ``AssertionError`` if fewer arrive within ``timeout``. With
    ``settle > 0`` it then keeps reading for ``settle`` seconds and fails if
    more than ``n`` arrived. Messages come sorted by (partition, offset).

``key_of(msg)``, ``value_of(msg)``: the JSON-decoded key / value (None for null).
``header(msg, name) -> str | None``: a header's value as text.
``event_id(msg) -> str``: the ``cdc-event-id`` header.
``execute_each(dsn, statements)``: runs each statement in its own transaction.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import yaml

from cdc.config import PipelineConfig, load_config
from cdc.model import EVENT_ID_HEADER
from cdc.pipeline import Pipeline
from cdc.runtime import add_mapper_paths, build_pipeline
from tests.integration.services import read_topic, wait_until

START_TIMEOUT = 30.0
STOP_TIMEOUT = 60.0


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def write_config(tmp_path: Path, pg_dsn: str, bootstrap: str, **overrides: Any) -> Path:
    """Write a one-pipeline config file (see the module docstring); return its path."""
    name = overrides.get("name") or f"p_{uuid.uuid4().hex[:10]}"
    pipeline = _merge(
        {
            "name": name,
            "source": {"type": "postgres", "dsn": str(pg_dsn), "snapshot": "never"},
            "sink": {
                "type": "kafka",
                "format": "debezium",
                "properties": {"bootstrap.servers": bootstrap},
            },
            "offsets": {"store": "file", "path": str(tmp_path / f"{name}.offsets")},
        },
        overrides,
    )
    config = {
        "version": 1,
        "http": {"enabled": False},
        "log": {"level": "info", "format": "text"},
        "pipelines": [pipeline],
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def pipeline_name(config_path: Path) -> str:
    """The name of the (first) pipeline in `config_path`."""
    return str(yaml.safe_load(config_path.read_text())["pipelines"][0]["name"])


class RunningPipeline:
    """A pipeline running on a thread; see `run_pipeline`."""

    def __init__(self, config: PipelineConfig, pipeline: Pipeline):
        self.config = config
        self.pipeline = pipeline
        self.name = config.name
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"pipeline-{self.name}",
                                        daemon=True)

    def _run(self) -> None:
        try:
            self.pipeline.run(self._stop)
        except BaseException as exc:  # handed to the test thread by check()
            self.error = exc

    def start(self) -> None:
        self._thread.start()
        wait_until(
            lambda: self.pipeline.running or not self._thread.is_alive(),
            timeout=START_TIMEOUT,
            what=f"pipeline {self.name} to open its source",
        )
        self.check()
        if not self.pipeline.running:
            raise AssertionError(f"pipeline {self.name} stopped right after starting")

    def check(self) -> None:
        """Raise the pipeline's exception, if it raised one."""
        if self.error is not None:
            raise self.error

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Ask the pipeline to stop, wait for it, re-raise its exception. Idempotent."""
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError(f"pipeline {self.name} did not stop within {timeout:.0f}s")
            # Pipeline.run() leaves its producer open (the process exits after it);
            # in-process, drop it so its threads and connections go now.
            self.pipeline.sink.close()
        self.check()


@contextmanager
def run_pipeline(config_path: Path) -> Iterator[RunningPipeline]:
    """Run the config's (first) pipeline in this process while the block runs."""
    config = load_config(config_path).pipelines[0]
    add_mapper_paths(str(config_path))  # as `cdc run` does: mappers next to the config
    running = RunningPipeline(config, build_pipeline(config, 0))
    try:
        running.start()
        yield running
    finally:
        running.stop()


def wait_for_events(
    bootstrap: str, topic: str, n: int, timeout: float = 30.0, settle: float = 0.0
) -> list[Any]:
    """The first `n` messages of `topic` (see the module docstring)."""
    messages = read_topic(bootstrap, topic, expect=n, timeout=timeout)
    if len(messages) < n:
        raise AssertionError(
            f"topic {topic!r}: {len(messages)} of {n} expected messages within {timeout:.0f}s"
        )
    if settle > 0:
        messages = read_topic(bootstrap, topic, expect=n + 1, timeout=settle)
        if len(messages) != n:
            raise AssertionError(f"topic {topic!r}: {len(messages)} messages, expected {n}")
    return messages


def _json(data: bytes | None) -> Any:
    return None if data is None or data == b"" else json.loads(data)


def key_of(msg: Any) -> Any:
    """The message key, JSON-decoded (None for a null key)."""
    return _json(msg.key())


def value_of(msg: Any) -> Any:
    """The message value, JSON-decoded (None for a tombstone)."""
    return _json(msg.value())


def header(msg: Any, name: str) -> str | None:
    """The value of header `name` as text, or None when absent."""
    for key, value in msg.headers() or ():
        if key == name:
            return None if value is None else bytes(value).decode()
    return None


def event_id(msg: Any) -> str:
    """The deterministic event id header of a message."""
    value = header(msg, EVENT_ID_HEADER)
    if value is None:
        raise AssertionError(f"message at offset {msg.offset()} has no {EVENT_ID_HEADER} header")
    return value


def execute_each(dsn: str, statements: Iterable[str]) -> None:
    """Run every statement in its own transaction (autocommit), in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)
