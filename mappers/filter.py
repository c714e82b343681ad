"""`type: filter`: keep or drop changes by table, op and column conditions.

Example::

    - type: filter
      tables: ["public.orders", "public.order_*"]   # glob patterns; omitted: all
      ops: [insert, update]                         # omitted: all
      conditions:                                   # omitted: none
        - {column: status, op: "==", value: paid}
        - {column: total, op: ">=", value: 100}
      match: all                                    # all | any (of the conditions)
      action: keep                                  # keep | drop

A change *matches* when its table matches one of `tables`, its op is one of
`ops`, and the conditions hold (all of them, or any with `match: any`).
`action: keep` publishes matching changes and drops the rest; `action: drop`
drops matching changes and publishes the rest. Conditions are evaluated
against `after` (`before` for deletes); a column absent from that row (an
unchanged TOAST value, a truncate, a logical message) satisfies no
condition. Condition ops: == != < <= > >= in, not in, is null, is not null.
Ordering comparisons with a null value are false, as in SQL. No code from
the YAML is ever evaluated.

This module also holds the option helpers the other built-ins share.
"""

from __future__ import annotations

import fnmatch
import operator
import string
from collections.abc import Callable, Iterable
from typing import Any

from cdc.jsonenc import dumps, json_default
from cdc.model import DELETE, OPS, Change

RESERVED_OPTIONS = ("_sink", "_type", "_pipeline")  # added by cdc.runtime._load_mapper


def pop_reserved(options: dict[str, Any]) -> dict[str, Any]:
    """Remove the runtime's reserved keys from `options`; return them by name."""
    return {name: options.pop(name) for name in RESERVED_OPTIONS if name in options}


def refuse_unknown(options: dict[str, Any], known: Iterable[str], where: str = "") -> None:
    """Unknown option keys are errors, never silently ignored."""
    allowed = set(known)
    unknown = sorted(str(k) for k in options if k not in allowed)
    if unknown:
        prefix = f"option {where!r}: " if where else ""
        raise ValueError(
            f"{prefix}unknown option(s) {', '.join(unknown)}: expected "
            f"{', '.join(sorted(allowed))}"
        )


def str_list(value: Any, name: str) -> list[str]:
    """A string or a list of strings, as a list (for options like `tables: [a, b]`)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise TypeError(f"option {name!r}: expected a string or a list of strings, got {value!r}")


def str_dict(value: Any, name: str) -> dict[str, Any]:
    """A mapping with string keys (values checked by the caller)."""
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise TypeError(f"option {name!r}: expected a mapping, got {value!r}")
    return value


def text_of(value: Any) -> str:
    """A value as plain text for keys, headers and templates.

    Strings as they are, bytes decoded (UTF-8), numbers, Decimals, dates and
    UUIDs in their usual text form, JSON containers as compact JSON.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if value is None or isinstance(value, (bool, dict, list)):
        return dumps(value).decode()
    if isinstance(value, (int, float)):
        return str(value)
    try:
        return str(json_default(value))
    except TypeError:
        return str(value)


def template_fields(template: Any, name: str) -> list[str]:
    """The field names of a `str.format` template; TypeError/ValueError if malformed."""
    if not isinstance(template, str):
        raise TypeError(f"option {name!r}: expected a template string, got {template!r}")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:
        raise ValueError(f"option {name!r}: bad template {template!r}: {e}") from None
    fields = []
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec:
            raise ValueError(
                f"option {name!r}: template {template!r} has field {{{field}}}; "
                "expected plain names such as {table}"
            )
        fields.append(field)
    return fields


class TableMatcher:
    """Finds the first of several glob patterns that matches a change's table.

    A pattern with a dot is matched against `schema.table` (Change.table_id)
    and `database.table` (MySQL, or a PostgreSQL database name); a pattern
    without a dot against the bare table name. Logical messages (no table)
    match nothing. Results are cached per table: one dict lookup per row.

    >>> TableMatcher(["public.order*", "customers"]).index("shop", "public", "orders")
    0
    """

    def __init__(self, patterns: Iterable[str]):
        self.patterns = list(patterns)
        self._cache: dict[tuple[str, str, str], int | None] = {}

    def index(self, database: str, schema: str, table: str) -> int | None:
        k = (database, schema, table)
        try:
            return self._cache[k]
        except KeyError:
            pass
        found: int | None = None
        names = (f"{schema or database}.{table}", f"{database}.{table}")
        for i, pattern in enumerate(self.patterns if table else ()):
            if "." in pattern:
                hit = any(fnmatch.fnmatchcase(n, pattern) for n in names)
            else:
                hit = fnmatch.fnmatchcase(table, pattern)
            if hit:
                found = i
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[k] = found
        return found


_MISSING = object()

_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
CONDITION_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null")

Condition = Callable[[dict[str, Any]], bool]


def _condition(spec: Any, where: str) -> Condition:
    """Compile one `{column, op, value}` condition into a row predicate."""
    spec = str_dict(spec, where)
    refuse_unknown(spec, ("column", "op", "value"), where)
    column = spec.get("column")
    if not isinstance(column, str) or not column:
        raise TypeError(f"option '{where}.column': expected a column name, got {column!r}")
    op = spec.get("op", "==")
    if op not in CONDITION_OPS:
        raise ValueError(
            f"option '{where}.op': expected one of {', '.join(CONDITION_OPS)}, got {op!r}"
        )
    has_value = "value" in spec
    value = spec.get("value")
    if op in ("is null", "is not null"):
        if has_value:
            raise ValueError(f"option '{where}.value': op {op!r} takes no value")
        wanted_null = op == "is null"
        return lambda row: (v := row.get(column, _MISSING)) is not _MISSING and (
            (v is None) == wanted_null
        )
    if not has_value:
        raise ValueError(f"option '{where}.value': op {op!r} needs a value")
    if op in ("in", "not in"):
        if not isinstance(value, list):
            raise TypeError(f"option '{where}.value': op {op!r} needs a list, got {value!r}")
        values = list(value)
        inside = op == "in"
        return lambda row: (v := row.get(column, _MISSING)) is not _MISSING and (
            (v in values) == inside
        )
    if op in ("==", "!="):
        equal = op == "=="
        return lambda row: (v := row.get(column, _MISSING)) is not _MISSING and (
            (v == value) == equal
        )
    if value is None:
        raise ValueError(f"option '{where}.value': op {op!r} cannot compare with null")
    compare = _ORDERING[op]

    def ordered(row: dict[str, Any]) -> bool:
        v = row.get(column)
        if v is None:  # absent or null: false, as SQL's comparisons with NULL
            return False
        try:
            return compare(v, value)
        except TypeError:
            raise ValueError(
                f"filter condition {column} {op} {value!r}: cannot compare the row's "
                f"{type(v).__name__} with {type(value).__name__}"
            ) from None

    return ordered


class FilterMapper:
    """Keeps or drops changes (see the module docstring)."""

    def __init__(self, options: dict[str, Any]):
        options = dict(options)
        pop_reserved(options)
        refuse_unknown(options, ("tables", "ops", "conditions", "match", "action"))
        tables = options.get("tables")
        self.tables = None if tables is None else TableMatcher(str_list(tables, "tables"))
        ops = options.get("ops")
        self.ops: frozenset[str] | None = None
        if ops is not None:
            op_list = str_list(ops, "ops")
            bad = [o for o in op_list if o not in OPS]
            if bad:
                raise ValueError(
                    f"option 'ops': unknown op(s) {', '.join(bad)}: expected some of "
                    f"{', '.join(OPS)}"
                )
            self.ops = frozenset(op_list)
        conditions = options.get("conditions") or []
        if not isinstance(conditions, list):
            raise TypeError(
                f"option 'conditions': expected a list of {{column, op, value}}, "
                f"got {conditions!r}"
            )
        self.conditions = [_condition(c, f"conditions[{i}]") for i, c in enumerate(conditions)]
        match = options.get("match", "all")
        if match not in ("all", "any"):
            raise ValueError(f"option 'match': expected all or any, got {match!r}")
        self.any = match == "any"
        action = options.get("action", "keep")
        if action not in ("keep", "drop"):
            raise ValueError(f"option 'action': expected keep or drop, got {action!r}")
        self.keep = action == "keep"

    def matches(self, change: Change) -> bool:
        """Whether `change` matches the tables, ops and conditions."""
        if self.ops is not None and change.op not in self.ops:
            return False
        if self.tables is not None and (
            self.tables.index(change.database, change.schema, change.table) is None
        ):
            return False
        if not self.conditions:
            return True
        row = change.before if change.op == DELETE else change.after
        if row is None:
            return False
        if self.any:
            return any(c(row) for c in self.conditions)
        return all(c(row) for c in self.conditions)

    def map(self, change: Change) -> Change | None:
        return change if self.matches(change) == self.keep else None
