# Types of the C accelerator (_rowjson.c), for mypy.
from collections.abc import Callable
from typing import Any

INT: int
STR: int
DECIMAL: int
EPOCH: int

class Image:
    def __init__(
        self,
        program: tuple[tuple[int, bytes, int, int], ...],
        keys: tuple[tuple[int, str], ...],
        rendered: type[str],
        fallback: Callable[[bytes, int], Any],
    ) -> None: ...
    def __call__(self, data: bytes, pos: int) -> Any: ...
    def records(
        self, data: bytes, pos: int, op: int, head: bytes, tail: bytes, tombstones: bool
    ) -> list[tuple[bytes | None, bytes | None]] | None: ...
