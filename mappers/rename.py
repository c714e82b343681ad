"""`type: rename`: rename tables and columns.

Example::

    - type: rename
      tables:                                  # pattern -> new name
        "public.orders": orders_v2             # keeps the schema
        "public.legacy_*": archive.legacy      # schema.table: schema changes too
      columns:                                 # pattern -> {old: new}
        "public.orders": {amt: amount, cust: customer_id}

Patterns are globs matched against the *original* table (`schema.table`,
`database.table`, or a bare table name); the first that matches applies.
Column renames apply to `before`, `after`, `key`, `columns` and `unchanged`,
so the sink's topic template and key follow the new names. On MySQL, where
there is no schema, a `database.table` target changes the database. A schema
change (op "schema") gets the new table name; its `after` (the DDL
statement) is left as it is.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from cdc.model import SCHEMA, Change

from .filter import TableMatcher, pop_reserved, refuse_unknown, str_dict
from .formats import LayoutCache


class _ColumnRenames:
    def __init__(self, renames: dict[str, str]):
        self.renames = renames
        self.layouts: LayoutCache[dict[str, str]] = LayoutCache(self._columns)

    def _columns(self, columns: dict[str, str]) -> dict[str, str]:
        renamed = {self.renames.get(name, name): t for name, t in columns.items()}
        if len(renamed) != len(columns):
            clashes = sorted(
                new for new in set(self.renames.values()) if new in columns and new not in
                self.renames
            )
            raise ValueError(
                f"column rename {self.renames} would give two columns the same name "
                f"({', '.join(clashes) or 'duplicate targets'})"
            )
        return renamed

    def row(self, row: dict[str, Any] | None) -> dict[str, Any] | None:
        if row is None:
            return None
        renames = self.renames
        return {renames.get(name, name): value for name, value in row.items()}


class RenameMapper:
    """Renames tables and columns (see the module docstring)."""

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        pop_reserved(options)
        refuse_unknown(options, ("tables", "columns"))
        tables = str_dict(options.get("tables") or {}, "tables")
        columns = str_dict(options.get("columns") or {}, "columns")
        if not tables and not columns:
            raise ValueError("expected option 'tables' or 'columns' (or both), each a mapping")
        self.targets: list[tuple[str | None, str]] = []
        for pattern, target in tables.items():
            parts = target.split(".") if isinstance(target, str) else []
            if len(parts) not in (1, 2) or not all(parts):
                raise ValueError(
                    f"option 'tables.{pattern}': expected a new name 'table' or "
                    f"'schema.table', got {target!r}"
                )
            self.targets.append((parts[0], parts[1]) if len(parts) == 2 else (None, parts[0]))
        self.column_rules: list[_ColumnRenames] = []
        for pattern, renames in columns.items():
            renames = str_dict(renames, f"columns.{pattern}")
            for old, new in renames.items():
                if not isinstance(new, str) or not new:
                    raise TypeError(
                        f"option 'columns.{pattern}.{old}': expected the new column name, "
                        f"got {new!r}"
                    )
            if len(set(renames.values())) != len(renames):
                raise ValueError(
                    f"option 'columns.{pattern}': two columns renamed to the same name"
                )
            self.column_rules.append(_ColumnRenames(dict(renames)))
        self.tables = TableMatcher(tables)
        self.columns = TableMatcher(columns)

    def map(self, change: Change) -> Change:
        t = self.tables.index(change.database, change.schema, change.table)
        c = self.columns.index(change.database, change.schema, change.table)
        if t is None and c is None:
            return change
        changes: dict[str, Any] = {}
        if t is not None:
            namespace, table = self.targets[t]
            changes["table"] = table
            if namespace is not None:
                changes["schema" if change.schema else "database"] = namespace
        if c is not None and change.op != SCHEMA:
            rule = self.column_rules[c]
            renames = rule.renames
            changes.update(
                columns=rule.layouts.get(change.columns),
                key=rule.row(change.key),
                before=rule.row(change.before),
                after=rule.row(change.after),
                unchanged=tuple(renames.get(n, n) for n in change.unchanged),
            )
        return dataclasses.replace(change, **changes)
