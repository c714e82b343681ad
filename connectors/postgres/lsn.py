"""Log sequence numbers and PostgreSQL's time epoch, as the protocol carries them."""

from __future__ import annotations

import time

# Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
PG_EPOCH_OFFSET_US = 946_684_800_000_000


def format_lsn(lsn: int) -> str:
    """0x16B3748 -> '0/16B3748', PostgreSQL's text form."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def now_pg_us() -> int:
    """Now, in microseconds since PostgreSQL's epoch."""
    return int(time.time() * 1_000_000) - PG_EPOCH_OFFSET_US
