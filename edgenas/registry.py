"""A tiny name -> object registry for pluggable parts (spaces, strategies, evaluators, runtimes)."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

from edgenas.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects; unknown names raise one clear ``InputError``."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: T | None = None, *, aliases: tuple[str, ...] = (),
                 help: str = "") -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(value: T) -> T:
            if name in self._items or name in self._aliases:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = value
            self._help[name] = help or (getattr(value, "__doc__", "") or "").strip().split("\n")[0]
            for alias in aliases:
                self._aliases[alias] = name
            return value

        return add(obj) if obj is not None else add

    def canonical(self, name: str) -> str:
        name = self._aliases.get(name, name)
        if name not in self._items:
            known = ", ".join(self.names()) or "none"
            raise InputError(f"unknown {self.kind} '{name}'", hint=f"known: {known}")
        return name

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, for ``edgenas list``."""
        return {n: self._help[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
