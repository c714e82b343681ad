"""Decoder for the pgoutput logical replication protocol (versions 1 to 4).

The replication stream hands every XLogData payload to
`PgoutputDecoder.decode` together with its WAL start LSN; the decoder turns
it into `cdc.model.Change`s and a `Commit` after the last change of each
transaction. Message formats: PostgreSQL docs, "Logical Replication Message
Formats".

Regular transactions arrive whole between Begin and Commit (the server sends
a transaction only once it has committed), so their changes are yielded as
they arrive. Streamed transactions (protocol 2+, ``streaming on``) arrive in
blocks between Stream Start and Stream Stop, interleaved with other
transactions, and only Stream Commit makes them real: their raw messages are
kept in a `SpillBuffer` per transaction and decoded at Stream Commit, the same
way PostgreSQL's own apply worker spools them. Relation and Type messages of a
streamed transaction are therefore applied when it commits, in order with its
changes, which keeps an ALTER TABLE inside the transaction from affecting
transactions that commit before it.

Example::

    decoder = PgoutputDecoder("shop")
    for wal_start, payload in stream:
        for item in decoder.decode(wal_start, payload):
            ...   # Change, Change, ..., Commit

Consume each returned iterable before the next `decode` call: a Stream Commit
returns a lazy generator that reads the spilled transaction back as it goes.
"""

from __future__ import annotations

import functools
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import InvalidOperation
from json.encoder import encode_basestring
from typing import Any, NamedTuple

from cdc.errors import DecodeError
from cdc.model import (
    DELETE,
    INSERT,
    MESSAGE,
    TRUNCATE,
    UPDATE,
    Change,
    Commit,
    JsonValues,
    RenderedRow,
    RowRecords,
)

from .lsn import PG_EPOCH_OFFSET_US, format_lsn
from .spill import MemoryBudget, SpillBuffer
from .types import BOOL_CONVERTER, TEXT_CONVERTER, Converter, converter_for, type_name

# PostgreSQL timestamps count microseconds from 2000-01-01; ours from 1970-01-01.

# A buffered message costs more memory than its payload (tuple, bytes header,
# ints); counted so the spill threshold tracks real memory, not just payload.
_BUFFERED_ITEM_OVERHEAD = 160

_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_BEGIN = struct.Struct(">QqI")  # final LSN, commit timestamp, xid
_COMMIT = struct.Struct(">BQQq")  # flags, commit LSN, end LSN, commit timestamp
_ORIGIN = struct.Struct(">Q")  # origin commit LSN (then the origin name)
_MESSAGE_HEAD = struct.Struct(">BQ")  # flags, message LSN (then prefix, length, content)
_RELATION_TAIL = struct.Struct(">BH")  # replica identity setting, column count
_COLUMN_TYPE = struct.Struct(">Ii")  # type OID, atttypmod
_TRUNCATE_HEAD = struct.Struct(">IB")  # relation count, options
_STREAM_START = struct.Struct(">IB")  # xid, first-segment flag
_STREAM_COMMIT = struct.Struct(">IBQQq")  # xid, flags, commit LSN, end LSN, timestamp
_STREAM_ABORT = struct.Struct(">II")  # xid, subxid (v4 parallel mode adds LSN, timestamp)

_MESSAGE_NAMES = {
    ord("B"): "Begin", ord("C"): "Commit", ord("O"): "Origin", ord("R"): "Relation",
    ord("Y"): "Type", ord("I"): "Insert", ord("U"): "Update", ord("D"): "Delete",
    ord("T"): "Truncate", ord("M"): "Message", ord("S"): "Stream Start",
    ord("E"): "Stream Stop", ord("c"): "Stream Commit", ord("A"): "Stream Abort",
    ord("b"): "Begin Prepare", ord("P"): "Prepare", ord("K"): "Commit Prepared",
    ord("r"): "Rollback Prepared", ord("p"): "Stream Prepare",
}  # fmt: skip
_TWO_PHASE = frozenset(map(ord, "bPKrp"))
_SCHEMA_KINDS = frozenset(map(ord, "RY"))
# Rows of a streamed transaction's replay rendered into one RowRecords at most.
_RUN_ROWS = 2000
# Messages that carry the (sub)transaction xid after the type byte inside a
# Stream Start..Stop block.
_STREAMABLE = frozenset(map(ord, "IUDTMRY"))
_MESSAGE = ord("M")

# Tuple data markers ('t' text, 'n' null, 'u' unchanged TOAST, 'b' binary) are
# written as int literals (116, 110, 117, 98) in _read_tuple, the hottest loop:
# constants are cheaper to load there than module globals.
_NEW, _KEY, _OLD = b"N"[0], b"K"[0], b"O"[0]

# What malformed input raises inside the parsers (struct.error, short buffers,
# bad UTF-8, converters rejecting a value); decode() turns them into DecodeError.
_MALFORMED = (ValueError, IndexError, KeyError, struct.error, InvalidOperation)

Row = dict[str, Any]


_IDENTITY_FULL = ord("f")

class Column(NamedTuple):
    name: str
    type_oid: int
    type_modifier: int
    is_key: bool  # part of the replica identity (primary key, or every column if FULL)


class Relation:
    """A published table as described by the latest Relation message.

    Holds what decoding needs precomputed: one converter per column and the
    `column_types` dict that every Change of this relation shares.
    """

    __slots__ = ("oid", "schema", "table", "replica_identity", "columns",
                 "column_types", "key_names", "fields", "signature", "read_tuple",
                 "read_json")  # fmt: skip

    def __init__(
        self,
        oid: int,
        schema: str,
        table: str,
        replica_identity: str,
        columns: tuple[Column, ...],
        custom_types: Mapping[int, str] | None = None,
        key_names: tuple[str, ...] | None = None,
    ) -> None:
        self.oid = oid
        self.schema = schema
        self.table = table
        self.replica_identity = replica_identity  # 'd'efault, 'n'othing, 'f'ull, 'i'ndex
        self.columns = columns
        self.column_types: dict[str, str] = {
            c.name: type_name(c.type_oid, custom_types, c.type_modifier) for c in columns
        }
        # Under REPLICA IDENTITY FULL every column is flagged as key; the
        # caller then passes the primary key so Change.key stays the real key.
        self.key_names: tuple[str, ...] = (
            key_names if key_names is not None else tuple(c.name for c in columns if c.is_key)
        )
        self.fields: tuple[tuple[str, Converter], ...] = tuple(
            (c.name, converter_for(c.type_oid, c.type_modifier, custom_types)) for c in columns
        )
        # Compiled by the decoder once the Relation is taken (an unchanged one
        # re-sent by the server is dropped): until then the general reader.
        self.read_tuple: TupleReader = functools.partial(_read_tuple, fields=self.fields)
        # Set by the decoder when rows go straight to JSON (see RenderedRow).
        self.read_json: JsonReader | None = None
        # Relation messages are re-sent after every cache invalidation; an
        # unchanged one keeps the existing object (and its shared dicts).
        self.signature = (schema, table, replica_identity, columns,
                          tuple(self.column_types.values()))  # fmt: skip

    def __repr__(self) -> str:
        return f"Relation({self.oid}, {self.schema}.{self.table}, {len(self.columns)} columns)"


class _Txn:
    """Transaction-wide fields of the Changes being produced."""

    __slots__ = ("xid", "position", "commit_ts", "index", "source")

    def __init__(
        self, xid: int, position: int, commit_ts: int, last_commit: int | None = None
    ) -> None:
        self.xid = xid
        # Debezium's source.sequence is [previous commit LSN, change LSN].
        self.source = {"last_commit_lsn": last_commit}
        self.position = position  # the commit LSN
        self.commit_ts = commit_ts  # µs since the Unix epoch
        self.index = 0  # of the next change


class _StreamedTxn:
    """An open streamed transaction: its raw messages, and its aborted subtransactions."""

    __slots__ = ("buffer", "aborted")

    def __init__(self, buffer: SpillBuffer) -> None:
        # Items: (subxid, wal_start, payload). Raw payloads pickle far faster
        # and smaller than decoded rows.
        self.buffer = buffer
        self.aborted: set[int] = set()


DataParser = Callable[[bytes, int, int, _Txn], tuple[Change, ...]]


class PgoutputDecoder:
    """Turns pgoutput messages into Changes and Commits. See the module docstring."""

    def __init__(
        self,
        database: str,
        spill_dir: str | None = None,
        spill_threshold: int = 16_000_000,
        primary_key: Callable[[str, str], tuple[str, ...] | None] | None = None,
        base_type: Callable[[int], int | None] | None = None,
        spill_prefix: str = "cdc-stream-",
        json_values: JsonValues | None = None,
        on_relation: Callable[[Relation], None] | None = None,
    ) -> None:
        self.database = database
        # Looks up a table's primary key columns (schema, table) -> names or
        # None; consulted for REPLICA IDENTITY FULL tables only.
        self.primary_key = primary_key
        # Looks up the base type OID of a domain (None for other types);
        # consulted once per Type message, so domains decode as their base.
        self.base_type = base_type
        self.domains: dict[int, int] = {}  # domain type OID -> base type OID
        self.spill_dir = spill_dir
        self.spill_threshold = spill_threshold
        self.spill_prefix = spill_prefix
        # The sink format's per-column value converters, when the pipeline lets
        # rows go straight to JSON (no mappers): see RenderedRow.
        self.json_values: JsonValues | None = json_values
        # Told about every Relation taken (a new table, or a changed one): a
        # source that renders whole transactions itself learns them so.
        self.on_relation = on_relation
        # That source's scanner (connectors.accel's PgScanner): it renders the
        # changes of streamed transactions as they are replayed, too.
        self.scanner: Any = None
        # One limit for every open streamed transaction together.
        self._budget = MemoryBudget(spill_threshold)
        self.relations: dict[int, Relation] = {}
        # The commit LSN of the previous transaction (Debezium's source.sequence);
        # a source that decodes transactions itself moves it past them.
        self.last_commit: int | None = None
        self.types: dict[int, str] = {}  # non-built-in type OID -> name, from Type messages
        self._txn: _Txn | None = None  # the open Begin..Commit transaction
        self._streams: dict[int, _StreamedTxn] = {}  # open streamed transactions by xid
        self._stream_xid: int | None = None  # set inside a Stream Start..Stop block
        self._data: dict[int, DataParser] = {
            ord("I"): self._insert,
            ord("U"): self._update,
            ord("D"): self._delete,
            ord("T"): self._truncate,
            ord("M"): self._message,
        }
        self._schema: dict[int, Callable[[bytes, int], None]] = {
            ord("R"): self._relation,
            ord("Y"): self._type,
        }
        self._control: dict[int, Callable[[int, bytes], Iterable[Change | Commit | RowRecords]]] = {
            ord("B"): self._begin,
            ord("C"): self._commit,
            ord("O"): self._origin,
            ord("S"): self._stream_start,
            ord("E"): self._stream_stop,
            ord("c"): self._stream_commit,
            ord("A"): self._stream_abort,
        }

    @property
    def in_transaction(self) -> bool:
        """True between Begin and Commit, or while a streamed transaction is open."""
        return self._txn is not None or bool(self._streams)

    @property
    def in_block(self) -> bool:
        """True between Begin and Commit or Stream Start and Stop: the next message
        continues what is open here (a streamed transaction may stay open between
        its blocks while whole transactions come and go)."""
        return self._txn is not None or self._stream_xid is not None

    def decode(
        self, wal_start: int, payload: bytes | bytearray | memoryview
    ) -> Iterable[Change | Commit | RowRecords]:
        """Decode one XLogData payload; `wal_start` is its LSN.

        Returns the Changes it completes (a tuple, or a lazy generator for a
        Stream Commit, where `scanner` may render runs of them whole as
        RowRecords), with a Commit after a transaction's last change.
        Raises DecodeError for malformed or unexpected messages.
        """
        if type(payload) is not bytes:
            payload = bytes(payload)  # memoryview slices would reach the converters
        try:
            kind = payload[0]
            if self._stream_xid is not None and kind in _STREAMABLE:
                self._buffer_streamed(wal_start, payload)
                return ()
            parse = self._data.get(kind)
            if parse is not None:
                txn = self._txn
                if txn is not None:
                    return parse(payload, 1, wal_start, txn)
                if kind == _MESSAGE:
                    return self._message_outside_transaction(payload, wal_start)
                raise ValueError("change outside a transaction")
            schema = self._schema.get(kind)
            if schema is not None:
                schema(payload, 1)
                return ()
            control = self._control.get(kind)
            if control is not None:
                return control(wal_start, payload)
            if kind in _TWO_PHASE:
                raise ValueError("two-phase commit is not supported (slot must not use two_phase)")
            raise ValueError(f"unknown message type {bytes((kind,))!r}")
        except _MALFORMED as exc:
            raise _decode_error(payload, wal_start, exc) from exc

    def reset(self) -> None:
        """Forget every open transaction (e.g. before a reconnect); keeps relations."""
        for streamed in self._streams.values():
            streamed.buffer.close()
        self._streams.clear()
        self._txn = None
        self._stream_xid = None

    close = reset

    # --- transaction control ------------------------------------------------

    def _begin(self, lsn: int, buf: bytes) -> tuple[()]:
        if self._txn is not None or self._stream_xid is not None:
            raise ValueError("Begin inside an open transaction")
        final_lsn, ts, xid = _BEGIN.unpack_from(buf, 1)
        self._txn = _Txn(xid, final_lsn, ts + PG_EPOCH_OFFSET_US, self.last_commit)
        return ()

    def _commit(self, lsn: int, buf: bytes) -> tuple[Commit]:
        txn = self._txn
        if txn is None:
            raise ValueError("Commit without Begin")
        _flags, commit_lsn, end_lsn, ts = _COMMIT.unpack_from(buf, 1)
        if commit_lsn != txn.position:
            raise ValueError(
                f"commit LSN {format_lsn(commit_lsn)} != Begin's {format_lsn(txn.position)}"
            )
        self._txn = None
        self.last_commit = commit_lsn
        return (Commit(end_lsn, txn.xid, ts + PG_EPOCH_OFFSET_US),)

    def _origin(self, lsn: int, buf: bytes) -> tuple[()]:
        # Replication origin of a transaction replayed from elsewhere; validated, not used.
        _ORIGIN.unpack_from(buf, 1)
        _cstring(buf, 1 + _ORIGIN.size)
        return ()

    # --- streamed transactions ----------------------------------------------

    def _stream_start(self, lsn: int, buf: bytes) -> tuple[()]:
        if self._stream_xid is not None:
            raise ValueError("Stream Start inside a stream block")
        xid, first_segment = _STREAM_START.unpack_from(buf, 1)
        if first_segment:
            # A first segment for a known xid means the server restarted the
            # transaction (reconnect): what we held is stale.
            stale = self._streams.pop(xid, None)
            if stale is not None:
                stale.buffer.close()
            buffer = SpillBuffer(
                self.spill_threshold, self.spill_dir, self.spill_prefix, self._budget
            )
            self._streams[xid] = _StreamedTxn(buffer)
        elif xid not in self._streams:
            raise ValueError(f"continuation of streamed transaction {xid} whose start was missed")
        self._stream_xid = xid
        return ()

    def _stream_stop(self, lsn: int, buf: bytes) -> tuple[()]:
        if self._stream_xid is None:
            raise ValueError("Stream Stop outside a stream block")
        self._stream_xid = None
        return ()

    def _buffer_streamed(self, wal_start: int, payload: bytes) -> None:
        assert self._stream_xid is not None
        (subxid,) = _U32.unpack_from(payload, 1)
        item = (subxid, wal_start, payload)
        self._streams[self._stream_xid].buffer.append(item, len(payload) + _BUFFERED_ITEM_OVERHEAD)

    def _stream_abort(self, lsn: int, buf: bytes) -> tuple[()]:
        xid, subxid = _STREAM_ABORT.unpack_from(buf, 1)
        streamed = self._streams.get(xid)
        if streamed is None:
            return ()  # the server reports subtransaction aborts of empty streams too
        if subxid == xid:
            del self._streams[xid]
            streamed.buffer.close()
            return ()
        # Only the subtransaction's data goes; its Relation/Type messages stay,
        # since later changes of the transaction may rely on them.
        streamed.aborted.add(subxid)
        streamed.buffer.discard(lambda item: item[0] == subxid and item[2][0] not in _SCHEMA_KINDS)
        return ()

    def _stream_commit(self, lsn: int, buf: bytes) -> Iterator[Change | Commit | RowRecords]:
        if self._stream_xid is not None:
            raise ValueError("Stream Commit inside a stream block")
        xid, _flags, commit_lsn, end_lsn, ts = _STREAM_COMMIT.unpack_from(buf, 1)
        streamed = self._streams.pop(xid, None)
        if streamed is None:
            raise ValueError(f"Stream Commit of unknown streamed transaction {xid}")
        commit_ts = ts + PG_EPOCH_OFFSET_US
        # State changes above happen now; only the replay itself is lazy.
        txn = _Txn(xid, commit_lsn, commit_ts, self.last_commit)
        self.last_commit = commit_lsn
        return self._replay(streamed, txn, Commit(end_lsn, xid, commit_ts))

    def _replay(
        self, streamed: _StreamedTxn, txn: _Txn, commit: Commit
    ) -> Iterator[Change | Commit | RowRecords]:
        aborted = streamed.aborted
        data, schema = self._data, self._schema
        scanner = self.scanner
        wal_start, payload = txn.position, b""
        try:
            for chunk in streamed.buffer.replay_chunks():
                i, n = 0, len(chunk)
                while i < n:
                    if scanner is not None:  # a run of changes rendered whole, in C
                        i, made = self._render_run(scanner, chunk, i, aborted, txn)
                        if made is not None:
                            yield made
                        if i == n:
                            break
                    subxid, wal_start, payload = chunk[i]
                    i += 1
                    kind = payload[0]
                    if kind in _SCHEMA_KINDS:
                        schema[kind](payload, 5)
                    elif subxid not in aborted:
                        yield from data[kind](payload, 5, wal_start, txn)
        except _MALFORMED as exc:
            raise _decode_error(payload, wal_start, exc) from exc
        finally:
            streamed.buffer.close()
        yield commit

    @staticmethod
    def _render_run(scanner: Any, chunk: list[tuple[int, int, bytes]], start: int,
                    aborted: set[int], txn: _Txn) -> tuple[int, RowRecords | None]:  # fmt: skip
        """The records of the run of changes at chunk[start] the scanner takes
        (at most _RUN_ROWS rows), and where the run ends; txn.index moves past it."""
        following, records, rows, changes = scanner.changes(
            chunk, start, aborted, txn.position, txn.commit_ts, txn.xid,
            txn.source["last_commit_lsn"], txn.index, _RUN_ROWS,
        )  # fmt: skip
        txn.index += changes
        return following, RowRecords(records, rows) if records else None

    # --- schema -------------------------------------------------------------

    def _relation(self, buf: bytes, pos: int) -> None:
        (oid,) = _U32.unpack_from(buf, pos)
        schema, pos = _cstring(buf, pos + 4)
        table, pos = _cstring(buf, pos)
        identity, count = _RELATION_TAIL.unpack_from(buf, pos)
        domains = self.domains
        pos += _RELATION_TAIL.size
        columns = []
        for _ in range(count):
            flags = buf[pos]
            name, pos = _cstring(buf, pos + 1)
            type_oid, type_modifier = _COLUMN_TYPE.unpack_from(buf, pos)
            type_oid = domains.get(type_oid, type_oid)
            pos += _COLUMN_TYPE.size
            columns.append(Column(name, type_oid, type_modifier, bool(flags & 1)))
        _expect_end(buf, pos)
        key_names = None
        if identity == _IDENTITY_FULL and self.primary_key is not None:
            key_names = self.primary_key(schema, table)
        relation = Relation(
            oid, schema, table, chr(identity), tuple(columns), self.types, key_names
        )
        current = self.relations.get(oid)
        if current is None or current.signature != relation.signature:
            relation.read_tuple = compile_tuple_reader(relation.fields)
            if self.json_values is not None:
                values, shortcuts, encode = self.json_values(relation.column_types)
                relation.read_json = compile_json_reader(
                    relation.fields, relation.key_names, values, shortcuts, encode
                )
            self.relations[oid] = relation
            if self.on_relation is not None:
                self.on_relation(relation)

    def _type(self, buf: bytes, pos: int) -> None:
        (oid,) = _U32.unpack_from(buf, pos)
        _namespace, pos = _cstring(buf, pos + 4)
        name, pos = _cstring(buf, pos)
        _expect_end(buf, pos)
        self.types[oid] = name
        if self.base_type is not None:
            base = self.base_type(oid)
            if base is not None:
                self.domains[oid] = base

    def _relation_at(self, buf: bytes, pos: int) -> Relation:
        (oid,) = _U32.unpack_from(buf, pos)
        relation = self.relations.get(oid)
        if relation is None:
            raise ValueError(f"no Relation message seen for OID {oid}")
        return relation

    # --- changes --------------------------------------------------------------
    # Each takes the payload and the offset of the body (after the type byte and,
    # in streamed transactions, the xid) and returns the Changes it makes.

    def _insert(self, buf: bytes, pos: int, lsn: int, txn: _Txn) -> tuple[Change, ...]:
        rel = self._relation_at(buf, pos)
        if buf[pos + 4] != _NEW:
            raise ValueError("Insert without a new tuple")
        if rel.read_json is not None:
            rendered = rel.read_json(buf, pos + 5)
            if rendered is not None and rendered[2] == len(buf):
                return (self._change(INSERT, rel, rendered[1], None, rendered[0], None, lsn, txn),)
        after, unchanged, pos = rel.read_tuple(buf, pos + 5)
        _expect_end(buf, pos)
        key = _key(rel.key_names, after, unchanged, None)
        return (self._change(INSERT, rel, key, None, after, unchanged, lsn, txn),)

    def _update(self, buf: bytes, pos: int, lsn: int, txn: _Txn) -> tuple[Change, ...]:
        rel = self._relation_at(buf, pos)
        pos += 4
        marker = buf[pos]
        if marker == _NEW and rel.read_json is not None:
            rendered = rel.read_json(buf, pos + 1)
            if rendered is not None and rendered[2] == len(buf):
                return (self._change(UPDATE, rel, rendered[1], None, rendered[0], None, lsn, txn),)
        before = None
        if marker == _KEY or marker == _OLD:
            old, _, pos = rel.read_tuple(buf, pos + 1)
            before = old if marker == _OLD else _pick(rel.key_names, old)
            marker = buf[pos]
        if marker != _NEW:
            raise ValueError(f"Update without a new tuple (found {bytes((marker,))!r})")
        after, unchanged, pos = rel.read_tuple(buf, pos + 1)
        _expect_end(buf, pos)
        key = _key(rel.key_names, after, unchanged, before)
        return (self._change(UPDATE, rel, key, before, after, unchanged, lsn, txn),)

    def _delete(self, buf: bytes, pos: int, lsn: int, txn: _Txn) -> tuple[Change, ...]:
        rel = self._relation_at(buf, pos)
        marker = buf[pos + 4]
        if marker != _KEY and marker != _OLD:
            raise ValueError("Delete without a key or old tuple")
        old, _, pos = rel.read_tuple(buf, pos + 5)
        _expect_end(buf, pos)
        before = old if marker == _OLD else _pick(rel.key_names, old)
        key = _key(rel.key_names, old, None, None)
        return (self._change(DELETE, rel, key, before, None, None, lsn, txn),)

    def _truncate(self, buf: bytes, pos: int, lsn: int, txn: _Txn) -> tuple[Change, ...]:
        # Options (CASCADE, RESTART IDENTITY) have no place in a Change.
        count, _options = _TRUNCATE_HEAD.unpack_from(buf, pos)
        pos += _TRUNCATE_HEAD.size
        _expect_end(buf, pos + 4 * count)
        relations = [self._relation_at(buf, pos + 4 * i) for i in range(count)]
        return tuple(
            self._change(TRUNCATE, rel, None, None, None, None, lsn, txn) for rel in relations
        )

    def _message(self, buf: bytes, pos: int, lsn: int, txn: _Txn) -> tuple[Change, ...]:
        after, _ = _read_message(buf, pos)
        index = txn.index
        txn.index = index + 1
        change = Change(MESSAGE, self.database, "", "", None, None, after, {}, txn.position,
                        txn.xid, txn.commit_ts, index, (), False, lsn)  # fmt: skip
        return (change,)

    def _message_outside_transaction(self, buf: bytes, lsn: int) -> tuple[Change, Commit]:
        after, message_lsn = _read_message(buf, 1)
        if after["transactional"]:
            raise ValueError("transactional message outside a transaction")
        # A non-transactional message is its own unit: position = its LSN. It
        # carries no timestamp; the decode time is the closest we know.
        now = time.time_ns() // 1000
        change = Change(MESSAGE, self.database, "", "", None, None, after, {}, message_lsn,
                        None, now, 0, (), False, lsn)  # fmt: skip
        # Confirming its LSN while a streamed transaction is open would confirm
        # that transaction's start too, so there is nothing to confirm then.
        position = None if self.in_transaction else message_lsn
        return change, Commit(position, None, now)

    def _change(
        self,
        op: str,
        rel: Relation,
        key: Row | None,
        before: Row | None,
        after: Row | RenderedRow | None,
        unchanged: list[str] | None,
        lsn: int,
        txn: _Txn,
    ) -> Change:
        index = txn.index
        txn.index = index + 1
        # Positional: this runs once per row and keyword binding costs more.
        # (A RenderedRow `after` is only ever read by the format: see RenderedRow.)
        return Change(op, self.database, rel.schema, rel.table, key, before, after,  # type: ignore[arg-type]
                      rel.column_types, txn.position, txn.xid, txn.commit_ts, index,
                      tuple(unchanged) if unchanged else (), False, lsn, txn.source)  # fmt: skip


# --- helpers ------------------------------------------------------------------


def _read_tuple(
    buf: bytes, pos: int, fields: tuple[tuple[str, Converter], ...]
) -> tuple[Row, list[str] | None, int]:
    """Parse TupleData at `pos`: (row, names of unchanged TOAST columns, next pos)."""
    (count,) = _U16.unpack_from(buf, pos)
    if count != len(fields):
        raise ValueError(f"tuple has {count} columns, its Relation {len(fields)}")
    pos += 2
    row: Row = {}
    unchanged: list[str] | None = None
    unpack = _U32.unpack_from
    for name, convert in fields:
        kind = buf[pos]
        if kind == 116:  # 't'
            start = pos + 5
            pos = start + unpack(buf, pos + 1)[0]
            row[name] = convert(buf[start:pos])
        elif kind == 110:  # 'n'
            row[name] = None
            pos += 1
        elif kind == 117:  # 'u'
            # Left out of the row: the log did not carry it (never a fake null).
            if unchanged is None:
                unchanged = [name]
            else:
                unchanged.append(name)
            pos += 1
        elif kind == 98:  # 'b'
            raise ValueError(f"column {name!r} in binary format (binary mode is not requested)")
        else:
            raise ValueError(f"column {name!r} has unknown tuple data kind {bytes((kind,))!r}")
    if pos > len(buf):
        raise ValueError("tuple data runs past the end of the message")
    return row, unchanged, pos


TupleReader = Callable[[bytes, int], tuple[Row, list[str] | None, int]]
# -> (the row as JSON, its key, next pos), or None where the general path must decide
JsonReader = Callable[[bytes, int], tuple[RenderedRow, Row | None, int] | None]


def compile_json_reader(
    fields: tuple[tuple[str, Converter], ...],
    key_names: tuple[str, ...],
    values: Sequence[Callable[[Any], Any] | None],
    shortcuts: Sequence[Callable[[bytes], str | None] | None],
    encode: Callable[[Any], str],
) -> JsonReader:
    """A tuple reader that renders the row as the format's JSON object text.

    Column by column it produces exactly what the format would make of the
    decoded value, `encode(value_converter(convert(text)))`, with shortcuts
    where that is the text itself: integers (their text is a JSON number),
    text-like types (escaped as a JSON string) and booleans, when the format
    passes those values through unchanged, and the format's own `shortcuts`
    from PostgreSQL text (falling back where one returns None). The key columns are also decoded
    to Python values for `Change.key`. Returns None for anything it does not
    handle alone (unchanged TOAST values, a value that fails to convert, a
    malformed tuple): the caller then takes the general path, which decides
    and reports as usual.
    """
    index = {name: i for i, (name, _) in enumerate(fields)}
    if any(name not in index for name in key_names):
        # A key column the relation does not have (the catalog changed since this
        # WAL was written): the general path reports it.
        return _never_renders
    n = len(fields)
    env: dict[str, Any] = {"_unpack": _U32.unpack_from, "_count": _U16.unpack_from,
                           "_esc": encode_basestring, "_enc": encode,
                           "_bools": {b"t": "true", b"f": "false"},
                           "_Rendered": RenderedRow}  # fmt: skip
    keys = set(key_names)
    lines = [
        "def read_json(buf, pos):",
        "  try:",
        f"    if _count(buf, pos)[0] != {n}:",
        "        return None",
        "    pos += 2",
    ]
    parts = []
    columns = zip(fields, values, shortcuts, strict=True)
    for i, ((name, convert), value, shortcut) in enumerate(columns):
        env[f"_c{i}"] = convert
        env[f"_v{i}"] = value
        env[f"_s{i}"] = shortcut
        env[f"_p{i}"] = ("{" if i == 0 else ",") + encode(name) + ":"
        parts.append(f"{{_p{i}}}{{f{i}}}")
        if value is None and convert is int:
            expr = "raw.decode()"
        elif value is None and convert is TEXT_CONVERTER:
            expr = "_esc(raw.decode())"
        elif value is None and convert is BOOL_CONVERTER:
            expr = "_bools[raw]"
        elif value is None:
            expr = f"_enc(_c{i}(raw))"
        else:
            expr = f"_enc(_v{i}(_c{i}(raw)))"
        lines += [
            "    kind = buf[pos]",
            "    if kind == 116:",  # 't'
            "        end = pos + 5 + _unpack(buf, pos + 1)[0]",
            "        raw = buf[pos + 5:end]",
        ]
        if shortcut is None:
            lines.append(f"        f{i} = {expr}")
        else:
            lines += [
                f"        f{i} = _s{i}(raw)",
                f"        if f{i} is None:",
                f"            f{i} = {expr}",
            ]
        if name in keys:
            env[f"_n{i}"] = name
            lines.append(f"        k{i} = _c{i}(raw)")
        lines += [
            "        pos = end",
            "    elif kind == 110:",  # 'n'
            f"        f{i} = 'null'",
        ]
        if name in keys:
            lines.append(f"        k{i} = None")
        lines += [
            "        pos += 1",
            "    else:",
            "        return None",
        ]
    row = "f'" + "".join(parts) + "}}'" if n else "'{}'"
    # The key in key_names' order (a primary key's own order under REPLICA IDENTITY
    # FULL), as the general path builds it: the same bytes for every event of a row.
    key = "{" + ", ".join(f"_n{index[n]}: k{index[n]}" for n in key_names) + "}"
    if not key_names:
        key = "None"
    lines += [
        "    if pos > len(buf):",
        "        return None",
        f"    return _Rendered({row}), {key}, pos",
        "  except Exception:",
        "    return None",
    ]
    exec("\n".join(lines), env)  # noqa: S102 - names and converters are bound, not inlined
    reader: JsonReader = env["read_json"]
    return reader




def compile_tuple_reader(fields: tuple[tuple[str, Converter], ...]) -> TupleReader:
    """`_read_tuple` specialised for one relation's columns, built once per Relation.

    The generated function reads every column inline with its converter bound
    to a local name, and builds the row as one dict display. Rows holding
    anything but text values and nulls (an unchanged TOAST value, a malformed
    tuple) are handed to `_read_tuple`, which handles and reports them.
    """
    n = len(fields)
    env: dict[str, Any] = {"_slow": _read_tuple, "_fields": fields, "_unpack": _U32.unpack_from,
                           "_count": _U16.unpack_from}  # fmt: skip
    lines = [
        "def read_tuple(buf, pos):",
        "    start = pos",
        f"    if _count(buf, pos)[0] != {n}:",
        "        return _slow(buf, start, _fields)",
        "    pos += 2",
    ]
    for i, (name, convert) in enumerate(fields):
        env[f"_n{i}"] = name
        env[f"_c{i}"] = convert
        lines += [
            "    kind = buf[pos]",
            "    if kind == 116:",  # 't'
            "        end = pos + 5 + _unpack(buf, pos + 1)[0]",
            f"        v{i} = _c{i}(buf[pos + 5:end])",
            "        pos = end",
            "    elif kind == 110:",  # 'n'
            f"        v{i} = None",
            "        pos += 1",
            "    else:",
            "        return _slow(buf, start, _fields)",
        ]
    row = ", ".join(f"_n{i}: v{i}" for i in range(n))
    lines += [
        "    if pos > len(buf):",
        "        raise ValueError('tuple data runs past the end of the message')",
        f"    return {{{row}}}, None, pos",
    ]
    exec("\n".join(lines), env)  # noqa: S102 - names and converters are bound, not inlined
    reader: TupleReader = env["read_tuple"]
    return reader


def _never_renders(buf: bytes, pos: int) -> None:
    """The JSON reader of a relation whose rows always take the general path."""
    return None


def _pick(names: tuple[str, ...], row: Row) -> Row:
    return {name: row[name] for name in names}


def _key(
    names: tuple[str, ...], row: Row, unchanged: list[str] | None, fallback: Row | None
) -> Row | None:
    """The replica identity columns of `row`; None for a table without any.

    A key column left out of `row` (unchanged TOAST) is taken from `fallback`,
    the old tuple, when there is one.
    """
    if unchanged is None:
        if len(names) == 1:  # the common single-column primary key, without a loop
            name = names[0]
            return {name: row[name]}
        return {name: row[name] for name in names} if names else None
    other = fallback or {}
    return {name: row[name] if name in row else other.get(name) for name in names} or None


def _read_message(buf: bytes, pos: int) -> tuple[Row, int]:
    """Parse a logical decoding message body: (Change.after, message LSN)."""
    flags, message_lsn = _MESSAGE_HEAD.unpack_from(buf, pos)
    prefix, pos = _cstring(buf, pos + _MESSAGE_HEAD.size)
    (length,) = _U32.unpack_from(buf, pos)
    pos += 4
    _expect_end(buf, pos + length)
    after = {"prefix": prefix, "content": buf[pos : pos + length], "transactional": bool(flags & 1)}
    return after, message_lsn


def _cstring(buf: bytes, pos: int) -> tuple[str, int]:
    end = buf.index(0, pos)
    return buf[pos:end].decode(), end + 1


def _expect_end(buf: bytes, pos: int) -> None:
    if pos != len(buf):
        raise ValueError(f"message length {len(buf)}, expected {pos}")


def _decode_error(payload: bytes, lsn: int, exc: BaseException) -> DecodeError:
    name = _MESSAGE_NAMES.get(payload[0], "unknown") if payload else "empty"
    detail = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
    return DecodeError(f"pgoutput {name} message at LSN {format_lsn(lsn)}: {detail}")
