"""`type: columns`: drop, mask, hash or truncate column values, per table.

Example::

    - type: columns
      salt_env: CDC_HASH_SALT             # needed by `hash`; unset or empty: refuses to start
      tables:                              # glob patterns; the first that matches applies
        "public.customers":
          exclude: [password_hash]         # or include: [id, name, email]
          mask: [phone]                    # -> "****"; or {phone: "xxx"}
          hash: [email]                    # -> hex SHA-256 of salt + value text
          truncate: {notes: 100}           # str/bytes cut to 100 characters/bytes

Applied consistently to `before`, `after`, `key`, `columns` and `unchanged`:
excluding (or not including) a primary-key column removes it from the key
(a key left empty becomes null); masking or hashing a key column changes the
key, and so the Kafka partition. Hashing is deterministic, so equal values
still join and group. Nulls stay null. Masked and hashed columns become
`text` in `columns`. Other tables, logical messages and schema changes (their
`after` is the DDL statement, not a row) pass through.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from typing import Any

from cdc.model import SCHEMA, Change

from .filter import TableMatcher, pop_reserved, refuse_unknown, str_dict, str_list, text_of
from .formats import LayoutCache

DEFAULT_MASK = "****"
RULE_KEYS = ("include", "exclude", "mask", "hash", "truncate")

Transform = Callable[[Any], Any]


class _Plan:
    """What a rule does to one column layout (one `Change.columns` dict)."""

    __slots__ = ("columns", "keep", "transforms")

    def __init__(self, columns: dict[str, str], keep: frozenset[str] | None,
                 transforms: dict[str, Transform]):  # fmt: skip
        self.columns = columns
        self.keep = keep
        self.transforms = transforms

    def row(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        keep, transforms = self.keep, self.transforms
        out = {}
        for name, value in row.items():
            if keep is not None and name not in keep:
                continue
            fn = transforms.get(name)
            out[name] = value if fn is None or value is None else fn(value)
        return out


class _Rule:
    def __init__(self, spec: Any, where: str, salt: bytes | None):
        spec = str_dict(spec, where)
        refuse_unknown(spec, RULE_KEYS, where)
        if "include" in spec and "exclude" in spec:
            raise ValueError(f"option {where!r}: give include or exclude, not both")
        include = spec.get("include")
        self.include = None if include is None else frozenset(str_list(include, f"{where}.include"))
        self.exclude = frozenset(str_list(spec.get("exclude") or [], f"{where}.exclude"))
        self.transforms: dict[str, Transform] = {}
        self.retyped: set[str] = set()
        owner: dict[str, str] = {}

        def claim(column: str, what: str) -> None:
            if column in owner:
                raise ValueError(
                    f"option {where!r}: column {column!r} is in both {owner[column]} and {what}"
                )
            owner[column] = what

        mask = spec.get("mask") or {}
        if isinstance(mask, list | str):
            mask = dict.fromkeys(str_list(mask, f"{where}.mask"), DEFAULT_MASK)
        for column, text in str_dict(mask, f"{where}.mask").items():
            if not isinstance(text, str):
                raise TypeError(
                    f"option '{where}.mask.{column}': expected the mask text, got {text!r}"
                )
            claim(column, "mask")
            self.transforms[column] = _masker(text)
            self.retyped.add(column)
        hashed = str_list(spec.get("hash") or [], f"{where}.hash")
        if hashed and salt is None:
            raise ValueError(
                f"option '{where}.hash' needs a salt: set `salt_env` to the name of an "
                "environment variable holding it"
            )
        for column in hashed:
            claim(column, "hash")
            assert salt is not None
            self.transforms[column] = _hasher(salt)
            self.retyped.add(column)
        for column, limit in str_dict(spec.get("truncate") or {}, f"{where}.truncate").items():
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
                raise TypeError(
                    f"option '{where}.truncate.{column}': expected a length >= 0, got {limit!r}"
                )
            claim(column, "truncate")
            self.transforms[column] = _truncator(limit)
        self.plans: LayoutCache[_Plan] = LayoutCache(self._plan)

    def _plan(self, columns: dict[str, str]) -> _Plan:
        keep: frozenset[str] | None = None
        if self.include is not None:
            keep = self.include
        elif self.exclude:
            keep = frozenset(c for c in columns if c not in self.exclude)
        new_columns = {
            name: "text" if name in self.retyped else type_name
            for name, type_name in columns.items()
            if keep is None or name in keep
        }
        return _Plan(new_columns, keep, self.transforms)

    def apply(self, change: Change) -> Change:
        plan = self.plans.get(change.columns)
        key = plan.row(change.key)
        keep = plan.keep
        return dataclasses.replace(
            change,
            key=key or None,
            before=plan.row(change.before),
            after=plan.row(change.after),
            columns=plan.columns,
            unchanged=change.unchanged if keep is None
            else tuple(c for c in change.unchanged if c in keep),
        )


def _masker(text: str) -> Transform:
    return lambda value: text


def _hasher(salt: bytes) -> Transform:
    def digest(value: Any) -> str:
        data = value if isinstance(value, bytes) else text_of(value).encode()
        return hashlib.sha256(salt + data).hexdigest()

    return digest


def _truncator(limit: int) -> Transform:
    return lambda value: value[:limit] if isinstance(value, str | bytes) else value


class ColumnsMapper:
    """Column-level include/exclude, mask, hash, truncate (see the module docstring)."""

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        pop_reserved(options)
        refuse_unknown(options, ("tables", "salt_env"))
        salt_env = options.get("salt_env")
        salt: bytes | None = None
        if salt_env is not None:
            if not isinstance(salt_env, str) or not salt_env:
                raise TypeError(
                    f"option 'salt_env': expected an environment variable name, got {salt_env!r}"
                )
            value = os.environ.get(salt_env)
            if not value:
                raise ValueError(
                    f"option 'salt_env': environment variable {salt_env} is "
                    f"{'empty' if value == '' else 'not set'}; it must hold the hash salt"
                )
            salt = value.encode()
        tables = options.get("tables")
        if not tables:
            raise ValueError(
                "option 'tables': expected a mapping of table pattern -> "
                "{include, exclude, mask, hash, truncate}"
            )
        tables = str_dict(tables, "tables")
        self.rules = [
            _Rule(spec, f"tables.{pattern}", salt) for pattern, spec in tables.items()
        ]
        self.matcher = TableMatcher(tables)

    def map(self, change: Change) -> Change:
        i = self.matcher.index(change.database, change.schema, change.table)
        if i is None or change.op == SCHEMA:
            return change
        return self.rules[i].apply(change)
