"""The PostgreSQL source: setup checks, publication and slot, and the change stream.

Confirmation rule (the whole point of the checkpointer): the slot's
confirmed_flush_lsn is only ever moved to

- the end LSN of a transaction whose every event, and every earlier one's, the
  broker acknowledged (`ack()`), or
- the wal end of a keepalive, when nothing at all is in flight: no transaction
  half received or waiting for the broker (`tick(idle=True)`). Without this an
  idle or fully filtered slot would pin WAL forever.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg

from cdc.config import PostgresSourceConfig
from cdc.errors import PositionLostError, SlotInUse, SourceError, SourceSetupError
from cdc.model import (
    EVENT_ID_HEADER,
    MESSAGE,
    QUOTES_PLAIN_NUMERIC,
    UTC_MICROS_TIMESTAMPTZ,
    Change,
    Commit,
    JsonValues,
    RecordFormat,
    RowRecords,
)
from cdc.source import snapshot_owed
from connectors.accel import accelerator

from .lsn import format_lsn, parse_lsn
from .pgoutput import PgoutputDecoder, Relation
from .replication import ReplicationStream, classify, quote_ident
from .snapshot import PublishedTable, TableSnapshot
from .spill import remove_stale
from .types import BOOL_CONVERTER, TEXT_CONVERTER, numeric_precision_scale

log = logging.getLogger("cdc.postgres")

HEARTBEAT_PREFIX = "cdc_heartbeat"
ACK_INTERVAL = 1.0  # seconds between status updates while the confirmed LSN moves
SNAPSHOT_BURST = 5000  # snapshot rows handed out per read()
SLOT_RELEASE_WAIT = 5.0  # seconds to wait for a slot whose holder is going away


def _split_table(name: str) -> tuple[str, str]:
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


def _proto_version(server_version: int) -> int:
    if server_version >= 160000:
        return 4
    if server_version >= 150000:
        return 3
    if server_version >= 140000:
        return 2
    return 1


class PostgresSource:
    """Streams committed changes of one database through a pgoutput slot."""

    def __init__(self, config: PostgresSourceConfig, name: str = "postgres"):
        self.name = name
        self.config = config
        self.database = ""
        self._stream = ReplicationStream(config.dsn, application_name=f"cdc-{name}")
        self._decoder: PgoutputDecoder | None = None
        # Messages received but not decoded yet (a burst ended early): read() takes
        # them first, and no keepalive position is confirmed while there are any.
        self._held: list[tuple[int, bytes]] = []
        # Set (before open) by a pipeline without mappers whose format can take
        # rows rendered by the decoder: see RenderedRow.
        self.json_values: JsonValues | None = None
        # Set (before open) by a pipeline without mappers whose error policy is
        # `fail` and whose format gives record templates: whole transactions
        # rendered in C (_scan, RowRecords).
        self.record_format: RecordFormat | None = None
        self._scanner: Any = None
        self._excluded = {".".join(_split_table(t)) for t in config.exclude_tables}
        self._acked = 0
        self._conn: psycopg.Connection | None = None
        self._last_heartbeat = time.monotonic()
        self.proto_version = 0
        self._options: dict[str, str] = {}
        self._spill_prefix = f"cdc-stream-{config.slot}-"
        self._status_interval = config.status_interval
        self._snapshot: TableSnapshot | None = None
        self._snapshot_rows: Iterator[Change] | None = None
        # Acknowledging this position means the snapshot is in Kafka (None: none owed).
        self._snapshot_position: int | None = None
        self.finished = False  # initial_only: set once the snapshot is read
        self.start_position = None  # the slot keeps the position

    # -- setup ----------------------------------------------------------------------

    def open(self, stored_position: Any | None) -> None:
        cfg = self.config
        snapshot_only = cfg.snapshot == "initial_only"
        owed = snapshot_owed(self.config.snapshot, stored_position)
        try:
            with psycopg.Connection.connect(cfg.dsn, autocommit=True) as conn:
                self.database = conn.info.dbname
                server_version = conn.info.server_version
                self._check_server(conn)
                tables = self._check_tables(conn)
                self._ensure_publication(conn, tables)
                snapshot_tables = self._published_tables(conn, server_version) if owed else None
                if snapshot_only:
                    # No slot: nothing streams after the snapshot, and a slot
                    # left behind would pin WAL forever.
                    row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
                    slot_lsn: int | None = parse_lsn(row[0]) if row else 0
                else:
                    slot_lsn = self._check_slot(conn, stored_position)
        except psycopg.Error as e:
            raise classify(e, "cannot check the database") from e
        self.proto_version = _proto_version(server_version)
        if snapshot_only:
            self._snapshot_only(snapshot_tables, slot_lsn or 0)
            return
        self._decoder = PgoutputDecoder(
            self.database,
            spill_dir=cfg.spill_dir,
            spill_threshold=cfg.spill_threshold,
            primary_key=self._primary_key,
            base_type=self._domain_base_type,
            spill_prefix=self._spill_prefix,
            json_values=self.json_values,
        )
        if (self.record_format is not None and self.json_values is not None
                and accelerator is not None):  # fmt: skip
            self._scanner = self._decoder.scanner = accelerator.PgScanner()
            self._decoder.on_relation = self._learn
        self._stream.connect()
        snapshot_name = None
        if slot_lsn is None:
            slot_lsn, snapshot_name = self._stream.create_slot(
                cfg.slot, export_snapshot=snapshot_tables is not None
            )
            log.info("created replication slot %s at %s", cfg.slot, format_lsn(slot_lsn))
        if snapshot_tables is not None:
            # Imported before the replication connection runs another command.
            self._begin_snapshot(snapshot_tables, slot_lsn, snapshot_name)
        options = {
            "proto_version": str(self.proto_version),
            "publication_names": quote_ident(cfg.publication),
            "messages": "true",
        }
        if cfg.streaming and self.proto_version >= 2:
            options["streaming"] = "on"
        self._options = options
        if self._snapshot is None:
            self._start_streaming()

    def _begin_snapshot(
        self, tables: list[PublishedTable], position: int, snapshot_name: str | None
    ) -> None:
        self._snapshot = TableSnapshot(
            self.config.dsn, self.database, tables, position, snapshot_name,
            base_type=self._domain_base_type,
        )
        self._snapshot_rows = self._snapshot.changes()
        self._snapshot_position = position
        how = (
            "exported by the new slot" if snapshot_name
            else "no slot: snapshot only" if self.config.snapshot == "initial_only"
            else "the slot existed: changes may arrive twice"
        )
        log.info("snapshot of %d table(s) at %s (%s)", len(tables), format_lsn(position), how)

    def _snapshot_only(self, tables: list[PublishedTable] | None, position: int) -> None:
        if tables is None:
            log.info("snapshot already complete (snapshot: initial_only): nothing to do")
            self.finished = True
            return
        self._begin_snapshot(tables, position, None)

    def _start_streaming(self) -> None:
        cfg = self.config
        # 0/0: resume at the slot's confirmed_flush_lsn, the last acknowledged commit.
        self._stream.start(cfg.slot, 0, self._options)
        # Spill files are named after the slot and we now hold it: leftovers
        # of a predecessor (killed mid-transaction) are ours to remove.
        for name in remove_stale(cfg.spill_dir, self._spill_prefix):
            log.info("removed spill file %s left by an earlier run", name)
        log.info(
            "streaming slot %s of database %s (pgoutput v%d%s)",
            cfg.slot, self.database, self.proto_version,
            ", streaming" if "streaming" in self._options else "",
        )

    def _wait_slot_released(self, conn: psycopg.Connection, pid: int) -> int | None:
        """Give a walsender that is going away (our killed predecessor) time to let go."""
        deadline = time.monotonic() + SLOT_RELEASE_WAIT
        while time.monotonic() < deadline:
            time.sleep(0.5)
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
                (self.config.slot,),
            ).fetchone()
            if row is None or row[0] is None:
                return None
            pid = row[0]
        return pid

    def _published_tables(
        self, conn: psycopg.Connection, server_version: int
    ) -> list[PublishedTable]:
        """The tables the snapshot reads, with the publication's column lists and row
        filters (PostgreSQL 15+), so snapshot rows have the shape streamed rows have."""
        extra = ", attnames::text[], rowfilter" if server_version >= 150000 else ", NULL, NULL"
        rows = conn.execute(
            f"SELECT schemaname, tablename{extra} FROM pg_publication_tables "
            "WHERE pubname = %s ORDER BY 1, 2",
            (self.config.publication,),
        ).fetchall()
        return [
            PublishedTable(s, t, tuple(cols) if cols is not None else None, rowfilter)
            for s, t, cols, rowfilter in rows
            if f"{s}.{t}" not in self._excluded
        ]

    def _check_server(self, conn: psycopg.Connection) -> None:
        def show(name: str) -> str:
            row = conn.execute(f"SHOW {name}").fetchone()
            return str(row[0]) if row else ""

        wal_level = show("wal_level")
        if wal_level != "logical":
            raise SourceSetupError(
                f"wal_level is {wal_level!r}, logical decoding needs 'logical': run "
                "ALTER SYSTEM SET wal_level = logical; and restart PostgreSQL"
            )
        row = conn.execute(
            "SELECT rolreplication, rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not row or not (row[0] or row[1]):
            user = conn.info.user
            raise SourceSetupError(
                f"user {user!r} lacks the REPLICATION attribute: run "
                f"ALTER ROLE {user} WITH REPLICATION;"
            )
        if int(show("max_wal_senders")) < 1:
            raise SourceSetupError(
                "max_wal_senders is 0: set max_wal_senders = 10 (or more) and restart PostgreSQL"
            )
        # The server ends a walsender that sends no status for wal_sender_timeout;
        # keep well inside it even when status_interval is set too high.
        timeout_ms = int(
            conn.execute(
                "SELECT setting::int * CASE unit WHEN 's' THEN 1000 ELSE 1 END "
                "FROM pg_settings WHERE name = 'wal_sender_timeout'"
            ).fetchone()[0]  # type: ignore[index]
        )
        if timeout_ms > 0 and self._status_interval > timeout_ms / 3000:
            self._status_interval = timeout_ms / 3000
            log.info(
                "status_interval lowered to %.1fs (wal_sender_timeout is %dms)",
                self._status_interval, timeout_ms,
            )
        if int(show("max_replication_slots")) < 1:
            raise SourceSetupError(
                "max_replication_slots is 0: set max_replication_slots = 10 (or more) "
                "and restart PostgreSQL"
            )

    def _check_tables(self, conn: psycopg.Connection) -> list[tuple[str, str]] | None:
        """Check the configured tables exist and carry keys for updates and deletes."""
        cfg = self.config
        wanted = [_split_table(t) for t in cfg.tables] if cfg.tables is not None else None
        rows = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relreplident,
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg_toast%%'
            """
        ).fetchall()
        found = {(r[0], r[1]): (r[2], r[3]) for r in rows}
        if wanted is not None:
            missing = [f"{s}.{t}" for s, t in wanted if (s, t) not in found]
            if missing:
                raise SourceSetupError(
                    f"tables not found in database {self.database!r}: {', '.join(missing)}; "
                    "fix source.tables or create them"
                )
        checked = wanted if wanted is not None else sorted(found)
        for schema, table in checked:
            if f"{schema}.{table}" in self._excluded:
                continue
            identity, has_pk = found[(schema, table)]
            if identity == "n" or (identity == "d" and not has_pk):
                what = "REPLICA IDENTITY NOTHING" if identity == "n" else "no primary key"
                raise SourceSetupError(
                    f"table {schema}.{table} has {what}: its updates and deletes would carry "
                    f"no key. Add a primary key, or run ALTER TABLE {schema}.{table} "
                    "REPLICA IDENTITY FULL; (or exclude it with source.exclude_tables)"
                )
        return wanted

    def _ensure_publication(
        self, conn: psycopg.Connection, tables: list[tuple[str, str]] | None
    ) -> None:
        cfg = self.config
        pub = cfg.publication
        row = conn.execute(
            "SELECT puballtables FROM pg_publication WHERE pubname = %s", (pub,)
        ).fetchone()
        targets = ", ".join(f"{quote_ident(s)}.{quote_ident(t)}" for s, t in tables or [])
        if row is None:
            if not cfg.create:
                raise SourceSetupError(
                    f"publication {pub!r} does not exist: create it "
                    f"(CREATE PUBLICATION {quote_ident(pub)} FOR TABLE ...) "
                    "or set source.create: true"
                )
            what = f"FOR TABLE {targets}" if tables is not None else "FOR ALL TABLES"
            conn.execute(f"CREATE PUBLICATION {quote_ident(pub)} {what}")
            log.info("created publication %s %s", pub, what)
            return
        if row[0] or tables is None:
            if tables is None and not row[0]:
                log.warning(
                    "publication %s lists tables; only those are streamed (source.tables "
                    "is not set)", pub,
                )
            return
        covered = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s",
                (pub,),
            ).fetchall()
        }
        missing = [(s, t) for s, t in tables if (s, t) not in covered]
        if not missing:
            return
        names = ", ".join(f"{quote_ident(s)}.{quote_ident(t)}" for s, t in missing)
        if not cfg.create:
            raise SourceSetupError(
                f"publication {pub!r} does not cover {names}: run "
                f"ALTER PUBLICATION {quote_ident(pub)} ADD TABLE {names}; "
                "or set source.create: true"
            )
        conn.execute(f"ALTER PUBLICATION {quote_ident(pub)} ADD TABLE {names}")
        log.info("added %s to publication %s", names, pub)

    def _check_slot(self, conn: psycopg.Connection, stored: Any | None) -> int | None:
        """Check the slot; return its confirmed_flush_lsn, or None when it must be created."""
        cfg = self.config
        row = conn.execute(
            """
            SELECT plugin, database, active_pid, confirmed_flush_lsn::text
            FROM pg_replication_slots WHERE slot_name = %s
            """,
            (cfg.slot,),
        ).fetchone()
        if row is None:
            if stored and stored.get("lsn"):
                raise PositionLostError(
                    f"replication slot {cfg.slot!r} is gone, but the offset store says this "
                    f"pipeline had confirmed {stored['lsn']}: changes made since then are lost "
                    "to log mining. Re-snapshot the tables (or accept the gap), then remove the "
                    "offsets file so the slot is created anew"
                )
            if not cfg.create:
                raise SourceSetupError(
                    f"replication slot {cfg.slot!r} does not exist: create it with "
                    f"SELECT pg_create_logical_replication_slot('{cfg.slot}', 'pgoutput'); "
                    "or set source.create: true"
                )
            used, limit = conn.execute(
                "SELECT (SELECT count(*) FROM pg_replication_slots), "
                "current_setting('max_replication_slots')::int"
            ).fetchone() or (0, 0)
            if used >= limit:
                raise SourceSetupError(
                    f"all {limit} replication slots are in use: raise max_replication_slots "
                    "and restart PostgreSQL, or drop an unused slot"
                )
            return None
        plugin, database, active_pid, confirmed = row
        if plugin != "pgoutput":
            raise SourceSetupError(
                f"slot {cfg.slot!r} uses plugin {plugin!r}, not pgoutput: drop it or choose "
                "another source.slot"
            )
        if database != self.database:
            raise SourceSetupError(
                f"slot {cfg.slot!r} belongs to database {database!r}, not {self.database!r}"
            )
        if active_pid is not None:
            active_pid = self._wait_slot_released(conn, active_pid)
        if active_pid is not None:
            raise SlotInUse(
                f"replication slot {cfg.slot!r} is in use by another process (pid "
                f"{active_pid}): stop the other consumer or choose another source.slot"
            )
        if stored and stored.get("lsn") and confirmed:
            if parse_lsn(stored["lsn"]) > parse_lsn(confirmed):
                log.warning(
                    "slot %s is at %s, behind the stored offset %s: resuming from the slot "
                    "(changes in between are delivered again)", cfg.slot, confirmed,
                    stored["lsn"],
                )
        return parse_lsn(confirmed) if confirmed else 0

    # -- streaming ------------------------------------------------------------------

    def read(self, timeout: float) -> Iterable[Change | Commit | RowRecords]:
        if self._snapshot_rows is not None:
            return self._read_snapshot()
        if not self._stream.streaming:
            time.sleep(timeout)  # initial_only: done, the pipeline is draining
            return ()
        decoder = self._decoder
        assert decoder is not None, "open() first"
        decode = decoder.decode
        excluded = self._excluded
        # A list, not a generator: one append per item instead of a generator
        # switch per item, on the hottest path.
        out: list[Change | Commit | RowRecords] = []
        append = out.append
        batch = self._held or self._stream.messages(timeout)
        self._held = []
        scanner = self._scanner
        i, n = 0, len(batch)
        while i < n:
            if scanner is not None and not decoder.in_block:
                i = self._scan(batch, i, out)  # whole transactions, rendered in C
                if i == n:
                    break
            wal_start, payload = batch[i]
            i += 1
            items = decode(wal_start, payload)
            if type(items) is not tuple:
                # A streamed transaction read back lazily from its buffer: it ends
                # the burst, since it must be consumed before the next decode. The
                # messages already received after it wait for the next read().
                self._held = batch[i:]
                return itertools.chain(out, self._kept(items))
            for item in items:
                if (
                    item.__class__ is Change
                    and (excluded or item.op == MESSAGE)
                    and not self._keep(item)
                ):
                    continue
                append(item)
        return out

    def _scan(self, batch: list[tuple[int, bytes]], start: int,
              out: list[Change | Commit | RowRecords]) -> int:  # fmt: skip
        """The whole transactions from batch[start] the scanner takes: their records
        (RowRecords) and one Commit for them all; the first message it left."""
        decoder = self._decoder
        assert decoder is not None
        following, _, records, commit_times, rows, end_lsn, xid, last_commit = (
            self._scanner.scan(batch, start, decoder.last_commit, len(batch))
        )
        if commit_times:
            if records:
                out.append(RowRecords(records, rows))
            out.append(Commit(end_lsn, xid, commit_times[-1], commit_times[:-1]))
            decoder.last_commit = last_commit
        return int(following)

    def _learn(self, relation: Relation) -> None:
        """Teach the scanner a relation a Relation message described: its rows
        rendered in C (PgTable). An excluded table, or one with a column or key
        it cannot render, is forgotten: its transactions take the decoder's
        path (which reads, reports anything malformed, then drops an excluded
        table's rows)."""
        scanner = self._scanner
        table = None
        if f"{relation.schema}.{relation.table}" not in self._excluded:
            table = self._pg_table(relation)
        if table is None:
            scanner.forget(relation.oid)
        else:
            scanner.learn(relation.oid, table)

    def _pg_table(self, relation: Relation) -> Any | None:
        """The C renderer of a relation's changes as whole records (PgTable): each
        column's kind as the format renders its text (compile_json_reader's
        shortcuts), the key's columns, the format's templates and the topics;
        None where a column or the key is of another kind."""
        spec, json_values, acc = self.record_format, self.json_values, accelerator
        assert spec is not None and json_values is not None and acc is not None
        values, shortcuts, encode = json_values(relation.column_types)
        program: list[tuple[int, bytes, int]] = []
        fields = relation.fields
        for k, ((name, convert), value, shortcut) in enumerate(
            zip(fields, values, shortcuts, strict=True)
        ):
            scale = 0
            if getattr(shortcut, QUOTES_PLAIN_NUMERIC, False):  # numeric(p, s), s >= 0
                kind = acc.PG_NUMERIC
                _, scale = numeric_precision_scale(relation.columns[k].type_modifier)
                if not 0 <= scale <= 1000:
                    return None
            elif getattr(shortcut, UTC_MICROS_TIMESTAMPTZ, False):
                kind = acc.PG_TIMESTAMPTZ
            elif shortcut is not None or value is not None:
                return None
            elif convert is int:
                kind = acc.PG_INT
            elif convert is TEXT_CONVERTER:
                kind = acc.PG_TEXT
            elif convert is BOOL_CONVERTER:
                kind = acc.PG_BOOL
            else:
                return None
            prefix = (("{" if k == 0 else ",") + encode(name) + ":").encode()
            program.append((kind, prefix, scale))
        index = {name: k for k, (name, _) in enumerate(fields)}
        if any(name not in index for name in relation.key_names):
            return None
        keys = tuple(index[name] for name in relation.key_names)
        if any(program[k][0] not in (acc.PG_INT, acc.PG_TEXT) for k in keys):
            return None
        per_op = spec.per_op(self.database, relation.schema, relation.table,
                             relation.column_types, {})  # fmt: skip
        if per_op is None:
            return None
        templates, topics = per_op
        return acc.PgTable(tuple(program), keys, templates, topics, spec.tombstones,
                           EVENT_ID_HEADER)  # fmt: skip

    def _kept(
        self, items: Iterable[Change | Commit | RowRecords]
    ) -> Iterator[Change | Commit | RowRecords]:
        for item in items:
            if item.__class__ is not Change or self._keep(item):
                yield item

    def _keep(self, change: Change) -> bool:
        """False for our own heartbeats and changes of excluded tables."""
        if change.op == MESSAGE:
            return not (change.after and change.after["prefix"] == HEARTBEAT_PREFIX)
        return change.table_id not in self._excluded

    def _read_snapshot(self) -> Iterator[Change | Commit]:
        rows = self._snapshot_rows
        assert rows is not None and self._snapshot is not None
        for _ in range(SNAPSHOT_BURST):
            change = next(rows, None)
            if change is None:
                break
            yield change
        else:
            return
        snapshot = self._snapshot
        self._snapshot_rows = None
        self._snapshot = None
        log.info("snapshot read: %d rows", snapshot.rows_read)
        # Confirms nothing new (the slot is at this position already); once
        # acknowledged, the offsets record the snapshot as complete.
        yield Commit(snapshot.position)
        if self.config.snapshot == "initial_only":
            self.finished = True
        else:
            self._start_streaming()

    def ack(self, position: Any) -> None:
        if position is not None and position > self._acked:
            self._acked = position

    def tick(self, idle: bool) -> None:
        stream = self._stream
        if not stream.streaming:
            return
        decoder = self._decoder
        flush = self._acked
        if idle and decoder is not None and not decoder.in_transaction and not self._held:
            flush = max(flush, stream.keepalive_lsn)
        now = time.monotonic()
        since = now - stream.last_status
        if (
            stream.reply_requested
            or (flush > stream.confirmed_lsn and since >= ACK_INTERVAL)
            or since >= self._status_interval
        ):
            stream.send_status(flush)
        if self.config.heartbeat_interval and now - self._last_heartbeat >= (
            self.config.heartbeat_interval
        ):
            self._last_heartbeat = now
            self._heartbeat()

    def _primary_key(self, schema: str, table: str) -> tuple[str, ...] | None:
        """Primary key columns of a table, for Relations that flag every column as key.

        Reads today's catalog for WAL that may be older: if the table is gone or
        renamed, None makes the decoder fall back to the Relation's key flags.
        """
        try:
            conn = self._catalog()
            rows = conn.execute(
                """
                SELECT a.attname FROM pg_index i
                JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
                WHERE i.indisprimary
                  AND i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass
                ORDER BY array_position(i.indkey::int2[], a.attnum)
                """,
                (schema, table),
            ).fetchall()
        except psycopg.OperationalError as e:
            raise classify(e, f"cannot read the primary key of {schema}.{table}") from e
        except psycopg.Error as e:
            log.warning(
                "primary key of %s.%s unknown (%s): keying by the replica identity",
                schema, table, str(e).strip(),
            )
            return None
        return tuple(r[0] for r in rows) or None

    def _domain_base_type(self, oid: int) -> int | None:
        """The base type of a domain (following domains over domains), else None."""
        try:
            row = self._catalog().execute(
                """
                WITH RECURSIVE chain(oid, base, kind) AS (
                    SELECT oid, typbasetype, typtype FROM pg_type WHERE oid = %s
                  UNION ALL
                    SELECT t.oid, t.typbasetype, t.typtype
                    FROM pg_type t JOIN chain c ON t.oid = c.base WHERE c.kind = 'd'
                )
                SELECT oid FROM chain WHERE kind <> 'd'
                """,
                (oid,),
            ).fetchone()
        except psycopg.OperationalError as e:
            raise classify(e, f"cannot look up type {oid}") from e
        except psycopg.Error as e:
            log.warning("type %d unknown (%s): its values pass as text", oid, str(e).strip())
            return None
        return int(row[0]) if row and row[0] != oid else None

    def _catalog(self) -> psycopg.Connection:
        """A regular connection for catalog look-ups and heartbeats, opened on demand."""
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.Connection.connect(self.config.dsn, autocommit=True)
        return self._conn

    def _heartbeat(self) -> None:
        """Write a tiny non-transactional message so an idle slot keeps moving."""
        try:
            self._catalog().execute(
                "SELECT pg_logical_emit_message(false, %s, '')", (HEARTBEAT_PREFIX,)
            )
        except psycopg.Error as e:
            log.warning("heartbeat failed: %s", str(e).strip())
            if self._conn is not None:
                self._conn.close()
            self._conn = None

    def position_to_store(self, position: Any) -> dict[str, Any]:
        snapshot_done = self._snapshot_position is None or position >= self._snapshot_position
        if self.config.snapshot == "initial_only":  # no slot, so no "lsn" to resume from
            return {"source": "postgres", "database": self.database,
                    "snapshot_lsn": format_lsn(position), "snapshot_complete": snapshot_done}
        return {
            "source": "postgres",
            "database": self.database,
            "slot": self.config.slot,
            "lsn": format_lsn(position),
            "snapshot_complete": snapshot_done,
        }

    @property
    def confirmed_lsn(self) -> int:
        return self._stream.confirmed_lsn

    def close(self) -> None:
        """Confirm what is acknowledged, then disconnect."""
        if self._snapshot is not None:
            self._snapshot.close()
        try:
            if self._stream.streaming and self._stream.confirmed_lsn < self._acked:
                self._stream.send_status(self._acked)
        except SourceError as e:
            log.warning("final status update failed: %s", e)
        self._stream.close()
        if self._conn is not None:
            self._conn.close()
        if self._decoder is not None:
            self._decoder.close()
        self._held = []


