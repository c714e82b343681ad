"""Which MySQL/MariaDB errors are worth a reconnect, and which need a fix."""

from __future__ import annotations

from cdc.errors import CdcError, ConnectionLost, SourceSetupError

# Server errors a new connection may not see again: too many connections,
# shutdown in progress, lock wait timeout, query interrupted, deadlock,
# connection killed. Client-side errors (2000-2999: cannot connect, server has
# gone away, lost connection) are transient too.
_TRANSIENT = frozenset({1040, 1053, 1205, 1213, 1317, 1927})


def is_transient(code: int) -> bool:
    return code in _TRANSIENT or 2000 <= code < 3000


def classify(e: BaseException, what: str) -> CdcError:
    """A driver or socket error as ConnectionLost (retried) or SourceSetupError (exit 3).

    pymysql raises OperationalError for most server errors, access denied
    included, so the error number decides, not the class.
    """
    import pymysql

    if isinstance(e, CdcError):
        return e
    if isinstance(e, (OSError, EOFError, pymysql.err.InterfaceError)):
        return ConnectionLost(f"{what}: {e}")
    if isinstance(e, pymysql.err.MySQLError):
        code = e.args[0] if e.args and isinstance(e.args[0], int) else 0
        text = f"{what}: {e}"
        return ConnectionLost(text) if is_transient(code) else SourceSetupError(text)
    return ConnectionLost(f"{what}: {e}")
