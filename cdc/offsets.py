"""Offset stores: where a pipeline keeps its last acknowledged source position.

For PostgreSQL the replication slot is the source of truth and the store is an
audit trail (and the way to notice that a slot was dropped); for MySQL the store
is the only record of where to resume.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Protocol

from .errors import CdcError


class OffsetStore(Protocol):
    def load(self) -> dict[str, Any] | None: ...

    def save(self, offsets: dict[str, Any]) -> None: ...


class FileOffsetStore:
    """A JSON file replaced atomically: write a temp file, fsync, rename, fsync the directory.

    A crash at any point leaves either the old or the new file, never a torn one.
    """

    def __init__(self, path: str):
        self.path = path

    def load(self) -> dict[str, Any] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise CdcError(
                f"cannot read offsets file {self.path}: {e}; fix or remove it "
                "(removing it makes the pipeline start from the slot's position)"
            ) from e
        if not isinstance(data, dict):
            raise CdcError(f"offsets file {self.path} does not hold a JSON object")
        return data

    def save(self, offsets: dict[str, Any]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".offsets-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(offsets, f, sort_keys=True)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
