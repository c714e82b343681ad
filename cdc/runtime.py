"""Builds pipelines from a validated config and runs them until told to stop.

Each pipeline runs on its own thread. SIGTERM/SIGINT set the stop flag: every
pipeline finishes its current burst, waits for the broker to acknowledge what
is in flight, checkpoints and closes. A pipeline whose source connection is
lost (ConnectionLost) reconnects with backoff; one that fails otherwise stops
the others the same way, and the process exits non-zero.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading
import time
from typing import Any

from .chain import LoadedMapper, MapperChain, import_object, instantiate
from .config import (
    Config,
    MapperConfig,
    MysqlSourceConfig,
    PipelineConfig,
    PostgresSourceConfig,
)
from .errors import CdcError, ConfigError, ConnectionLost, SinkUnavailable, SlotInUse
from .metrics import PipelineMetrics, serve
from .model import RecordFormat
from .offsets import FileOffsetStore
from .pipeline import Pipeline
from .render import TopicNamer
from .sink import KafkaSink

log = logging.getLogger("cdc")

# Seconds between reconnection attempts after a lost source connection.
RETRY_MIN = 1.0
RETRY_MAX = 30.0


def add_mapper_paths(config_path: str) -> None:
    """Make mapper modules next to the config file, or in the working directory, importable."""
    for directory in (os.getcwd(), os.path.dirname(os.path.abspath(config_path))):
        if directory not in sys.path:
            sys.path.insert(0, directory)


def build_source(p: PipelineConfig) -> Any:
    src = p.source
    if isinstance(src, PostgresSourceConfig):
        from connectors.postgres.source import PostgresSource

        return PostgresSource(src, name=p.name)
    if isinstance(src, MysqlSourceConfig):
        # Every snapshot mode (initial | always | initial_only | never) is supported.
        from connectors.mysql.source import MysqlSource

        return MysqlSource(src, name=p.name)
    raise ConfigError(
        f"source type {src.type!r} is not available in this version", key="source.type"
    )


def build_chain(p: PipelineConfig, index_base: str) -> MapperChain:
    from mappers import builtin_mapper

    loaded: list[LoadedMapper] = []
    for i, m in enumerate(p.mappers):
        where = f"{index_base}.mappers[{i}]"
        loaded.append(_load_mapper(m, where, p, builtin_mapper))
    return MapperChain(loaded)


def _load_mapper(m: MapperConfig, where: str, p: PipelineConfig, builtin: Any) -> LoadedMapper:
    if m.type == "python":
        assert m.path is not None
        obj = import_object(m.path, f"{where}.path")
        return instantiate(obj, dict(m.options), m.name or m.path, where)
    obj = builtin(m.type, where)
    options = {**dict(m.options), "_sink": p.sink, "_type": m.type, "_pipeline": p.name}
    return instantiate(obj, options, m.name or m.type, where)


def build_pipeline(p: PipelineConfig, index: int) -> Pipeline:
    from mappers.formats import make_format

    source = build_source(p)
    chain = build_chain(p, f"pipelines[{index}]")
    for loaded, m in zip(chain.mappers, p.mappers, strict=True):
        loaded.on_error = m.on_error or p.on_error
    fmt = make_format(
        p.sink.format,
        decimal=p.sink.decimal,
        tombstones=p.sink.tombstones,
        truncate=p.sink.truncate,
        server_name=p.name,
        topic=p.sink.topic,
        key=p.sink.key,
        schema_registry=p.sink.schema_registry,
    )
    if not chain and p.sink.key is None:
        # Nothing but the format looks at the rows: let a source that can render
        # them straight into the format's JSON do so (see RenderedRow).
        json_values = getattr(fmt, "json_values", None)
        if json_values is not None and hasattr(source, "json_values"):
            source.json_values = json_values
        # And where no change can be skipped or dead-lettered (the pipeline keeps
        # no change per record), let it render whole records (see RowRecords).
        template = getattr(fmt, "record_template", None)
        if template is not None and p.on_error == "fail" and hasattr(source, "record_format"):
            source.record_format = RecordFormat(
                template, TopicNamer(p.sink.topic, p.name), p.sink.tombstones
            )
    producer_config = p.sink.producer_config()
    sink = KafkaSink(producer_config)
    store = FileOffsetStore(p.offsets.path)
    return Pipeline(
        p.name,
        source,
        chain,
        fmt.render,
        sink,
        store,
        p.sink.topic,
        key_template=p.sink.key,
        flush_timeout=p.sink.flush_timeout,
        metrics=PipelineMetrics(p.name),
        on_error=p.on_error,
        dead_letter_topic=p.dead_letter_topic,
        max_message_bytes=int(producer_config.get("message.max.bytes", 1_000_000)),
    )


def tune_gc() -> None:
    """Fewer, cheaper garbage collections while streaming.

    Row changes are freed by reference counting, never by the collector, yet
    every few hundred of them would start a collection that scans the burst
    still held (and, at each full one, every object of the process). What
    exists before the pipelines are built (modules, the configuration) lives
    as long as the process: frozen out of the collector's sight. Pipelines are
    not: one replaced after a lost connection is garbage with cycles. The young
    generation is collected every 50,000 allocations instead of 700: a few
    milliseconds of streaming; rare cyclic garbage waits that long.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


class Runtime:
    def __init__(self, config: Config, config_path: str):
        self.config = config
        self.stop = threading.Event()
        self.errors: list[tuple[str, BaseException]] = []
        add_mapper_paths(config_path)
        tune_gc()
        self.pipelines = [build_pipeline(p, i) for i, p in enumerate(config.pipelines)]

    def health(self) -> dict[str, Any]:
        now = time.monotonic()
        stalled = [p.name for p in self.pipelines if p.running and now - p.last_loop > 60]
        return {"ok": not self.errors and not stalled, "stalled": stalled,
                "failed": [name for name, _ in self.errors]}

    def ready(self) -> dict[str, Any]:
        running = {p.name: p.running for p in self.pipelines}
        return {"ok": all(running.values()) and not self.errors, "pipelines": running}

    def _run_one(self, index: int) -> None:
        """Run pipeline `index`; reconnect after a lost connection, stop everything otherwise.

        A failed run has already drained and checkpointed what the broker
        acknowledged, so running a fresh pipeline resumes exactly where a
        process restart would.
        """
        backoff = RETRY_MIN
        reconnecting = False
        while True:
            pipeline = self.pipelines[index]
            started = time.monotonic()
            try:
                pipeline.run(self.stop)
                return
            except (ConnectionLost, SlotInUse, SinkUnavailable) as e:
                # A slot still held right after we lost our connection is most
                # likely held by our own dying walsender: worth waiting for.
                if self.stop.is_set() or (isinstance(e, SlotInUse) and not reconnecting):
                    self._fail(pipeline, e)
                    return
                reconnecting = True
                pipeline.metrics.error(type(e).__name__)
                if time.monotonic() - started > RETRY_MAX:
                    backoff = RETRY_MIN  # it ran fine for a while: start over
                log.warning(
                    "pipeline %s %s: %s; reconnecting in %.0fs", pipeline.name,
                    "cannot publish" if isinstance(e, SinkUnavailable) else "lost its source",
                    e, backoff,
                )
            except BaseException as e:
                self._fail(pipeline, e)
                return
            if self.stop.wait(backoff):
                return
            backoff = min(backoff * 2, RETRY_MAX)
            self.pipelines[index] = build_pipeline(self.config.pipelines[index], index)

    def _fail(self, pipeline: Pipeline, e: BaseException) -> None:
        """Record the failure and stop the other pipelines."""
        self.errors.append((pipeline.name, e))
        if isinstance(e, CdcError):
            log.error("pipeline %s stopped: %s", pipeline.name, e)
        else:
            log.exception("pipeline %s crashed", pipeline.name)
        pipeline.metrics.error(type(e).__name__)
        self.stop.set()

    def run(self) -> int:
        http = self.config.http
        server = serve(http.listen, self.health, self.ready) if http.enabled else None
        threads = [
            threading.Thread(target=self._run_one, args=(i,), name=f"pipeline-{p.name}")
            for i, p in enumerate(self.pipelines)
        ]

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: draining and checkpointing", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(0.2)
        if server is not None:
            server.shutdown()
        if not self.errors:
            return 0
        codes = [e.exit_code for _, e in self.errors if isinstance(e, CdcError)]
        return max(codes) if codes else 1
