"""From what the mapper chain returned to Kafka records: topic, key, value, headers.

`EventRenderer` is the one place that decides them, for the daemon and for
`cdc.testing` alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .errors import SinkError
from .jsonenc import encode
from .model import EVENT_ID_HEADER, Change, Event, event_id, format_position

Renderer = Callable[[Change], list[tuple[str | None, bytes | None, bytes | None]]]
Headers = list[tuple[str, str | bytes | None]]
# Receives each record: topic, key, value, headers, and the change it came from.
Emit = Callable[[str, bytes | None, bytes | None, Headers, Change], None]
# Told about a change or event that could not be serialized: item, error, event number.
RenderFailure = Callable[[Change, Exception, int], None]


class TopicNamer:
    """Fills the sink's topic template from a change's fields, cached per table and op."""

    def __init__(self, template: str, pipeline: str):
        self.template = template
        self.pipeline = pipeline
        self._cache: dict[tuple[str, str, str, str], str] = {}
        # The last change's fields and topic: runs of changes share them.
        self._last: tuple[str, str, str, str, str] = ("", "", "", "", "")

    def __call__(self, change: Change) -> str:
        database, schema, table, op, topic = self._last
        if (change.table is table and change.op is op and change.schema is schema
                and change.database is database):  # fmt: skip
            return topic
        k = (change.database, change.schema, change.table, change.op)
        found = self._cache.get(k)
        if found is None:
            if len(self._cache) >= 4096:
                self._cache.clear()
            found = self.template.format(
                database=change.database,
                schema=change.schema,
                table=change.table,
                op=change.op,
                pipeline=self.pipeline,
            )
            self._cache[k] = found
        self._last = (*k, found)
        return found


class KeyNamer:
    """Fills the sink's key template from a change's fields and primary-key columns."""

    def __init__(self, template: str, pipeline: str):
        self.template = template
        self.pipeline = pipeline

    def __call__(self, change: Change) -> bytes:
        fields = dict(change.key or {})
        fields.update(database=change.database, schema=change.schema, table=change.table,
                      op=change.op, pipeline=self.pipeline)  # fmt: skip
        try:
            return self.template.format_map(fields).encode()
        except (KeyError, IndexError, ValueError) as e:
            raise SinkError(
                f"sink.key template {self.template!r} does not fit {change.table_id} "
                f"(key columns: {', '.join(change.key or {}) or 'none'}): {e!r}"
            ) from e


class EventRenderer:
    """Turns what the mapper chain returned for one change into Kafka records.

    The one place that decides topic, key, value bytes and the `cdc-event-id`
    header of every record, used by the daemon and by `cdc.testing`. A Change
    is rendered by the sink's format; an Event keeps its own topic/key/headers
    where it set them. Example::

        renderer = EventRenderer(make_format("json").render, "{schema}.{table}", None, "p")
        out = []
        renderer.render(change, [change], lambda *record: out.append(record))
    """

    def __init__(self, render: Renderer, topic_template: str, key_template: str | None,
                 pipeline: str):  # fmt: skip
        self.format = render
        self.topic = TopicNamer(topic_template, pipeline)
        self.key = KeyNamer(key_template, pipeline) if key_template else None
        # Set by the pipeline to apply its error policy; None raises the error.
        self.on_failure: RenderFailure | None = None
        self._id_position: object = None
        self._id_prefix: str | None = None

    def render(self, change: Change, items: Iterable[Change | Event], emit: Emit) -> None:
        """Hand every record made from `items` (the chain's output for `change`) to `emit`."""
        n = 0
        for item in items:
            if type(item) is Change:
                n = self.render_change(item, emit, n)
            else:
                assert type(item) is Event
                origin = item.change or change
                try:
                    key_bytes, value = self._event_bytes(item, origin)
                except (TypeError, ValueError) as e:  # a value JSON cannot encode
                    if self.on_failure is None:
                        raise
                    self.on_failure(origin, e, n)
                    n += 1
                    continue
                headers: Headers = list(item.headers)
                if not any(h[0] == EVENT_ID_HEADER for h in headers):
                    headers.append((EVENT_ID_HEADER, event_id(origin, n).encode()))
                emit(item.topic or self.topic(origin), key_bytes, value, headers, origin)
                n += 1

    def render_change(self, item: Change, emit: Emit, n: int = 0) -> int:
        """Emit the format's records of one Change, numbered from `n`; the next number.

        `render_change(change, emit)` is `render(change, [change], emit)`, for
        pipelines without mappers.
        """
        try:
            records = self.format(item)
        except SinkError:
            raise  # e.g. the schema registry is unreachable: not about this change
        except Exception as e:
            if self.on_failure is None:
                raise
            self.on_failure(item, e, n)
            return n + 1
        keyer = self.key
        for topic, key, value in records:
            if keyer is not None and key is not None:
                key = keyer(item)
            if n == 0:
                eid = f"{self.id_prefix(item.position)}{item.index}".encode()
            else:
                eid = event_id(item, n).encode()
            emit(topic or self.topic(item), key, value, [(EVENT_ID_HEADER, eid)], item)
            n += 1
        return n

    def id_prefix(self, position: object) -> str:
        """The event ids' text before a change's index (see event_id): kept between
        calls, as every change of a transaction shares its position."""
        if position != self._id_position or self._id_prefix is None:
            self._id_prefix = format_position(position) + "/"
            self._id_position = position
        return self._id_prefix

    def _event_bytes(self, event: Event, origin: Change) -> tuple[bytes | None, bytes | None]:
        key = event.key
        if key is None:
            key = self.key(origin) if self.key is not None else origin.key
        return encode(key), encode(event.value)
