# Types of the C accelerator (connectors/accel/*.c), for mypy.
from collections.abc import Callable
from typing import Any

from cdc.model import KafkaRecord

INT: int
STR: int
DECIMAL: int
EPOCH: int
HOLE_BEFORE: int
HOLE_AFTER: int
HOLE_TS_MS: int
HOLE_TS_US: int
HOLE_TS_NS: int
HOLE_SERVER_ID: int
HOLE_GTID: int
HOLE_FILE: int
HOLE_POS: int
HOLE_ROW: int
HOLE_NOW_MS: int
HOLE_NOW_US: int
HOLE_NOW_NS: int
SCAN_END: int
SCAN_PYTHON: int
SCAN_INCOMPLETE: int
SCAN_FULL: int

class Image:
    def __init__(
        self,
        program: tuple[tuple[int, bytes, int, int], ...],
        keys: tuple[tuple[int, str], ...],
        rendered: type[str],
        fallback: Callable[[bytes, int], Any],
    ) -> None: ...
    def __call__(self, data: bytes, pos: int) -> Any: ...

class RecordPlan:
    def __init__(
        self,
        image: Image,
        templates: tuple[tuple[bytes | int, ...], ...],
        topics: tuple[str, ...],
        tombstones: bool,
        id_header: str,
    ) -> None: ...
    def render(
        self,
        body: bytes,
        event_type: int,
        context: tuple[int, int, bytes, bytes, int, bytes, int],
    ) -> list[KafkaRecord] | None: ...

class Scanner:
    def __init__(self, checksum: bool) -> None: ...
    def learn(self, table_id: bytes, table_map: bytes, plan: RecordPlan | None) -> None: ...
    def forget(self) -> None: ...
    def scan(
        self,
        buf: bytes,
        pos: int,
        file: bytes,
        id_file: bytes,
        gtid_state: dict[int, str],
        max_rows: int,
    ) -> tuple[int, int, list[KafkaRecord], list[int], int, int, int]: ...

HOLE_TXID: int
HOLE_LAST_COMMIT: int
PG_INT: int
PG_TEXT: int
PG_BOOL: int
PG_NUMERIC: int
PG_TIMESTAMPTZ: int

class PgTable:
    def __init__(
        self,
        program: tuple[tuple[int, bytes, int], ...],
        keys: tuple[int, ...],
        templates: tuple[tuple[bytes | int, ...], ...],
        topics: tuple[str, ...],
        tombstones: bool,
        id_header: str,
    ) -> None: ...

class PgScanner:
    def __init__(self) -> None: ...
    def learn(self, oid: int, table: PgTable) -> None: ...
    def forget(self, oid: int) -> None: ...
    def scan(
        self,
        messages: list[tuple[int, bytes]],
        start: int,
        last_commit: int | None,
        max_rows: int,
    ) -> tuple[int, int, list[KafkaRecord], list[int], int, int, int, int | None]: ...
