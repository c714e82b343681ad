"""Every error the daemon raises on purpose, in one hierarchy.

Each carries what the user needs to fix it; the CLI prints `str(error)` and
maps the class to an exit code.
"""

from __future__ import annotations


class CdcError(Exception):
    """Base of all errors of this daemon."""

    exit_code = 1


class ConfigError(CdcError):
    """The configuration is invalid: `path` names the file, `key` the key path."""

    exit_code = 2

    def __init__(self, message: str, path: str | None = None, key: str | None = None):
        self.path = path
        self.key = key
        self.detail = message
        where = ": ".join(p for p in (path, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SourceSetupError(CdcError):
    """The source database is not set up for log mining; the message says what to change."""

    exit_code = 3


class SourceError(CdcError):
    """The source failed while streaming (connection lost, protocol error)."""


class ConnectionLost(SourceError):
    """The connection to the source broke (server restart, network): retried with backoff."""


class SlotInUse(CdcError):
    """Another process holds the replication slot. Fatal at start; retried on a reconnect,
    where the holder is usually our own previous, dying connection."""

    exit_code = 3


class PositionLostError(CdcError):
    """The stored position can no longer be resumed (slot dropped, binlog purged)."""

    exit_code = 3


class DecodeError(SourceError):
    """A log record could not be decoded."""


class MapperError(CdcError):
    """A mapper raised; carries the mapper's name and the change it failed on."""

    def __init__(self, mapper: str, change: object, cause: BaseException):
        self.mapper = mapper
        self.change = change
        self.cause = cause
        super().__init__(f"mapper {mapper!r} failed: {type(cause).__name__}: {cause}")


class SinkError(CdcError):
    """The broker refused a message for good (the producer gave up or failed fatally)."""


class SinkUnavailable(SinkError):
    """A service the sink needs (the schema registry) is unreachable or overloaded.

    Not about one change, so never handled by `on_error`: the runtime rebuilds
    the pipeline with backoff, as after a lost source connection, and it
    resumes from the last acknowledged position.
    """
