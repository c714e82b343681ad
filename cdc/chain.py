"""The mapper chain: user and built-in mappers run in YAML order.

A mapper is any callable `Change -> None | Change | Event | iterable of them`,
or a class taking `options` whose instances have `map(change)` (and optionally
`close()`). A Change that comes out of one mapper goes into the next; an Event
passes the rest of the chain untouched.

Example::

    def order_events(change):
        if change.table == "orders" and change.op == "insert":
            return Event(topic="orders", key=str(change.key["id"]),
                         value={"type": "OrderCreated", **change.after})
        return None     # drop everything else
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .errors import ConfigError, MapperError
from .model import Change, Event

MapperFn = Callable[[Change], Any]


# What a chain does with a mapper's failure, given the MapperError and the policy
# ("skip" or "dead_letter"); see `MapperChain.on_failure`.
FailureHandler = Callable[[MapperError, str], None]


class LoadedMapper:
    """A mapper ready to run: its name, callable, optional close() and error policy.

    `on_error` is "fail", "skip" or "dead_letter" (the pipeline's default is
    filled in by the runtime).
    """

    __slots__ = ("name", "fn", "close", "on_error")

    def __init__(
        self,
        name: str,
        fn: MapperFn,
        close: Callable[[], None] | None = None,
        on_error: str = "fail",
    ):
        self.name = name
        self.fn = fn
        self.close = close
        self.on_error = on_error


def import_object(path: str, where: str) -> Any:
    """Import `module:attr` (attr may be dotted)."""
    module_name, colon, attr = path.partition(":")
    if not colon or not module_name or not attr:
        raise ConfigError(f"expected 'module:attribute', got {path!r}", key=where)
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(
            f"cannot import module {module_name!r}: {e} (sys.path: {', '.join(sys.path[:4])}…)",
            key=where,
        ) from e
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no attribute {attr!r}", key=where
            ) from None
    return obj


def instantiate(obj: Any, options: dict[str, Any], name: str, where: str) -> LoadedMapper:
    """Turn a class or callable into a LoadedMapper."""
    if inspect.isclass(obj):
        cls: Any = obj  # isclass narrows to type[object]; mapper classes take options
        try:
            instance = cls(options)
        except Exception as e:
            raise ConfigError(f"mapper {name!r} rejected its options: {e}", key=where) from e
        fn = getattr(instance, "map", None)
        if not callable(fn):
            raise ConfigError(f"mapper class {obj.__name__} has no map(change) method", key=where)
        close = getattr(instance, "close", None)
        return LoadedMapper(name, fn, close if callable(close) else None)
    if callable(obj):
        if options:
            raise ConfigError(
                f"mapper {name!r} is a plain function and takes no options; "
                "make it a class with __init__(options) to accept them",
                key=where,
            )
        return LoadedMapper(name, obj)
    raise ConfigError(f"{name!r} is neither a class nor a callable", key=where)


class MapperChain:
    """Runs changes through the mappers; returns what comes out at the end.

    A mapper that raises (or returns something that is not a Change or an
    Event) raises MapperError, unless its `on_error` is "skip" or
    "dead_letter" and `on_failure` is set: then whatever it produced for that
    change is dropped, `on_failure(error, policy)` is called, and the chain
    goes on with the other items.
    """

    def __init__(self, mappers: list[LoadedMapper], on_failure: FailureHandler | None = None):
        self.mappers = mappers
        self.on_failure = on_failure

    def __bool__(self) -> bool:
        return bool(self.mappers)

    def apply(self, change: Change) -> list[Change | Event]:
        items: list[Change | Event] = [change]
        for mapper in self.mappers:
            out: list[Change | Event] = []
            fn = mapper.fn
            for item in items:
                if type(item) is Event:
                    out.append(item)
                    continue
                assert type(item) is Change
                mark = len(out)
                try:
                    result = fn(item)
                    if result is not None:
                        _collect(result, out)
                except Exception as e:
                    error = MapperError(mapper.name, item, e)
                    if mapper.on_error == "fail" or self.on_failure is None:
                        raise error from e
                    del out[mark:]  # a generator may have yielded some before raising
                    self.on_failure(error, mapper.on_error)
            if not out:
                return out
            items = out
        return items

    def close(self) -> None:
        for mapper in self.mappers:
            if mapper.close is not None:
                mapper.close()


def _collect(result: Any, out: list[Change | Event]) -> None:
    cls = result.__class__
    if cls is Change or cls is Event:
        out.append(result)
        return
    if isinstance(result, Iterable) and not isinstance(result, (str, bytes, dict)):
        for r in result:  # a generator mapper raising mid-way raises here
            if r is None:
                continue
            if r.__class__ is not Change and r.__class__ is not Event:
                raise TypeError(f"returned a {type(r).__name__} in its results")
            out.append(r)
        return
    raise TypeError(
        f"returned {type(result).__name__}; expected None, Change, Event or a list of them"
    )
