"""The data model shared by connectors, mappers and the sink.

A connector turns the database log into a stream of `Change` objects, with a
`Commit` marker after the last change of every transaction. Mappers turn
Changes into `Event`s (or other Changes); whatever is still a Change at the
end of the chain is rendered by the sink's format.

Example::

    Change(op=INSERT, database="shop", schema="public", table="orders",
           key={"id": 7}, before=None, after={"id": 7, "status": "new"},
           columns={"id": "int4", "status": "text"}, position=0x16B3748,
           txid=731, commit_ts=1709212455123456, index=0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

# Change.op values. Plain strings so mapper authors can compare with literals.
INSERT = "insert"
UPDATE = "update"
DELETE = "delete"
TRUNCATE = "truncate"
MESSAGE = "message"  # a logical decoding message (pg_logical_emit_message)
READ = "read"  # a row read by a snapshot
SCHEMA = "schema"  # a DDL statement on a captured table or database (MySQL/MariaDB)
OPS = (INSERT, UPDATE, DELETE, TRUNCATE, MESSAGE, READ, SCHEMA)


@dataclass(frozen=True, slots=True)
class Interval:
    """A PostgreSQL interval: its three fields are independent (a month is not
    a fixed number of days), so it is kept as the server stores it.

    (Not a NamedTuple: JSON encoders would silently turn a tuple into a list.)
    """

    months: int
    days: int
    microseconds: int


@dataclass(frozen=True, slots=True)
class Geometry:
    """A spatial value: OGC well-known binary (WKB) and its spatial reference id.

    `srid` 0 means none was given (MySQL/MariaDB store the SRID next to the WKB).
    """

    wkb: bytes
    srid: int = 0


# Python types of Change values, by kind of column (connectors convert to these):
#   integers -> int            numeric/decimal -> decimal.Decimal (never float)
#   float4/8 -> float           bool -> bool      text, char, enum, uuid -> str
#   date -> datetime.date       time -> datetime.time (a MySQL TIME outside
#                               00:00..23:59:59.999999 -> datetime.timedelta)
#   timestamp -> naive datetime.datetime   timestamptz -> aware datetime (UTC)
#   interval -> Interval        json/jsonb -> parsed (dict, list, str, ...)
#   bytea/blob -> bytes         arrays -> list (nested for multi-dimensional)
#   MySQL spatial types -> Geometry
#   anything else (domains, unknown types, values outside Python's ranges such
#   as 'infinity' timestamps) -> the server's text form, str


@dataclass(slots=True, eq=False)
class Change:
    """One row change, normalized across databases.

    `before`/`after` map column name to a converted value (None where the row
    image does not exist, e.g. `before` of an insert). A column listed in
    `unchanged` was not carried by the log (PostgreSQL's unchanged TOAST
    values): it is absent from `after`, never reported as null.

    `position` is the position of the transaction's commit (PostgreSQL: the
    commit LSN; MySQL: the binlog coordinates of the transaction), shared by
    every change of the transaction; `index` numbers the changes within it
    from 0. Together they identify the change on every replay.

    In a pipeline without mappers, the PostgreSQL and MySQL sources may hand
    the format `after` as a `RenderedRow` (the row already in the format's JSON).

    For op == "message", `after` is {"prefix": str, "content": bytes,
    "transactional": bool} and `table`/`schema` are empty.

    For op == "schema" (a DDL statement; MySQL/MariaDB with the source option
    `schema_changes: true`), `after` is {"ddl": the statement as logged,
    "kind": e.g. "ALTER TABLE" or "DROP DATABASE", "default_database": the
    session's database when it ran ('' if none)}; `table` is the captured
    table it names ('' for a database-level statement), `key`, `before` and
    `columns` are empty. It is a transaction of its own, in binlog order with
    the row changes around it.
    """

    op: str
    database: str
    schema: str
    table: str
    key: dict[str, Any] | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    columns: dict[str, str]  # column name -> database type name, in table order
    position: Any
    txid: int | None
    commit_ts: int  # commit time, microseconds since the Unix epoch (UTC)
    index: int
    unchanged: tuple[str, ...] = ()
    snapshot: bool = False
    # Where this one change sits in the log, for envelopes that report it
    # (PostgreSQL: the change's LSN; MySQL: (file, pos, row)).
    log_pos: Any = None
    # Connector-specific, transaction-wide details for envelopes (e.g. the
    # MySQL server_id and GTID). Shared by every change of a transaction.
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def table_id(self) -> str:
        """`schema.table` (or `database.table` where there are no schemas)."""
        return f"{self.schema or self.database}.{self.table}"


class RenderedRow(str):
    """A row image the source rendered straight into the sink format's JSON object text.

    Only where nothing but the format looks at the row: a pipeline without
    mappers whose format offers `json_values` (the `debezium` format) lets the
    PostgreSQL and MySQL decoders turn column text or binlog values into JSON
    text directly, skipping Python values. Mapper authors never see one.
    """

    __slots__ = ()


# What such a format gives a source (its `json_values`): column types -> for each
# column in order, the format's value converter (None: the value is used as is) and
# its shortcut from the value's text (PostgreSQL's text form, as bytes) to JSON text
# (None: none; it returns None for a value it cannot take); and the format's JSON
# encoder of one value (compact, non-ASCII kept). A converter with an `EPOCH_UNIT`
# attribute (an int) maps a naive datetime to its count of that many microseconds
# since 1970-01-01, floored: a source holding a time's fields may compute it itself.
EPOCH_UNIT = "epoch_unit"
# A shortcut with this attribute set (True) quotes a numeric text whose first digit
# (after an optional '-') is 1-9 as it is, and refuses every other text: a source
# holding a DECIMAL's digits may apply it itself (connectors/accel/mysql_image.c).
QUOTES_PLAIN_NUMERIC = "quotes_plain_numeric"
# A shortcut with this attribute set (True) turns PostgreSQL's timestamptz text in
# UTC, 'YYYY-MM-DD HH:MM:SS[.f]+00', into "YYYY-MM-DDTHH:MM:SS.ffffffZ" (the
# fraction padded to 6 digits) and refuses every other text (connectors/accel).
UTC_MICROS_TIMESTAMPTZ = "utc_micros_timestamptz"
JsonValues = Callable[
    [dict[str, str]],
    tuple[
        Sequence[Callable[[Any], Any] | None],
        Sequence[Callable[[bytes], str | None] | None],
        Callable[[Any], str],
    ],
]


@dataclass(slots=True, eq=False)
class Commit:
    """Marks the end of a transaction in a source's stream.

    `position` is what the source must be given back through `ack()` once
    every event of this and all earlier transactions is acknowledged
    (PostgreSQL: the commit's end LSN). A source that hands several whole
    transactions at once (MySQL's `RowRecords` of a scan) ends them with one
    Commit: `earlier_commit_ts` then holds the commit times of all but the last.
    """

    position: Any
    txid: int | None = None
    commit_ts: int = 0
    earlier_commit_ts: Sequence[int] = ()


# A Kafka record as a source renders it whole: topic, key, value (None: a
# tombstone), headers.
KafkaRecord = tuple[str, bytes | None, bytes | None, list[tuple[str, str | bytes | None]]]


@dataclass(slots=True, eq=False)
class RowRecords:
    """Kafka records the source rendered whole, in order: of one row event, or of
    whole transactions (then followed by their one `Commit`).

    One step past `RenderedRow`, for a pipeline without mappers whose only
    error policy is `fail`: nothing but the format looks at the rows and no
    change can be skipped, so a source that can (MySQL, with the C accelerator)
    renders every record itself, topic, key, value and event-id header, from
    the format's templates (see `RecordFormat`). `rows` counts the row changes
    (a delete's tombstone is a record, not a row).
    """

    records: list[KafkaRecord]
    rows: int


class Hole(IntEnum):
    """The holes of a record template (`RecordFormat`), filled per row by the source."""

    BEFORE = 0  # the old row image as the format's JSON object (null for an insert)
    AFTER = 1  # the new row image (null for a delete)
    TS_MS = 2  # the change's commit time (MySQL: its event's time) in ms, us, ns
    TS_US = 3
    TS_NS = 4
    SERVER_ID = 5  # MySQL: the server that wrote the transaction
    GTID = 6  # MySQL: the transaction's GTID as JSON text (a string or null)
    FILE = 7  # MySQL: the binlog file as JSON text
    POS = 8  # the change's position: MySQL its row event's in the file, PostgreSQL its LSN
    ROW = 9  # the row's number in its event
    NOW_MS = 10  # the time of rendering in ms, us, ns
    NOW_US = 11
    NOW_NS = 12
    TXID = 13  # PostgreSQL: the transaction's xid
    # PostgreSQL: the previous transaction's commit LSN as Debezium's `sequence`
    # holds it (a JSON string inside a JSON string: \"n\"), or null
    LAST_COMMIT = 14


# A record value as text (bytes) and holes, in order.
RecordTemplate = tuple["bytes | Hole", ...]
# A table's templates and topics for its inserts, updates and deletes, in that order.
PerOp = tuple[tuple[RecordTemplate, ...], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class RecordFormat:
    """What a source needs to render whole records (`RowRecords`) for a pipeline.

    `template(change)` is the format's value template for the changes of a
    table and op like `change` (its values are None), or None where the format
    must see every change itself; `topic(change)` the pipeline's topic for
    them; `tombstones` whether a delete's record is followed by a tombstone.
    The records' key is the primary key's columns as a JSON object, and each
    carries its event id (`event_id`) in the `EVENT_ID_HEADER` header.
    """

    template: Callable[[Change], RecordTemplate | None]
    topic: Callable[[Change], str]
    tombstones: bool

    def per_op(self, database: str, schema: str, table: str, columns: dict[str, str],
               source: dict[str, Any]) -> PerOp | None:  # fmt: skip
        """The templates and topics of a table's inserts, updates and deletes, in
        that order (what a source's C renderer takes); None where the format has
        no template for one of them."""
        heads = [Change(op, database, schema, table, None, None, None, columns, None, None, 0, 0,
                        source=source) for op in (INSERT, UPDATE, DELETE)]  # fmt: skip
        templates = tuple(t for t in map(self.template, heads) if t is not None)
        if len(templates) < len(heads):
            return None
        return templates, tuple(map(self.topic, heads))


@dataclass(slots=True, eq=False)
class Event:
    """A message for the broker.

    `topic` and `key` left as None are filled in by the sink (topic template,
    primary key). `key` and `value` may be bytes, str or any JSON-serializable
    object; `value` None is a tombstone.
    """

    topic: str | None
    key: Any
    value: Any
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    # The change this event came from; set by the pipeline when a mapper
    # leaves it empty. Used for the event id and for dead-letter reports.
    change: Change | None = None



# Header carrying the deterministic event id (same change -> same id on replay).
EVENT_ID_HEADER = "cdc-event-id"


def event_id(change: Change, n: int = 0) -> str:
    """Deterministic id of the `n`-th event made from `change`.

    Built from the transaction's commit position and the change's index, so a
    replay after a crash carries the same id and consumers can drop it.
    """
    pos = change.position
    text = format_position(pos)
    return f"{text}/{change.index}" if n == 0 else f"{text}/{change.index}/{n}"


def format_position(pos: Any) -> str:
    """A compact, stable text form of a position."""
    if isinstance(pos, int):
        return f"{pos:X}"
    if isinstance(pos, tuple):
        if len(pos) == 2:  # MySQL's (file, pos): one per transaction
            return f"{pos[0]}:{pos[1]}"
        return ":".join(map(str, pos))
    return str(pos)
