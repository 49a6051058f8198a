"""A tiny name -> object registry for pluggable parts (spaces, strategies, evaluators, runtimes).

A registry knows the modules that hold its built-in plug-ins (``builtins``, dotted module names) and
imports them when it is asked, so a plug-in module registers itself at import and nobody writes a
``_load_builtin`` of their own. A lookup by name imports them in their order until the name is known
(``search --table`` then never imports the torch of the proxies); a listing imports them all. A plug-in
class states its name once, in ``@REG.register("name")``: the registry sets the class's ``name`` attribute.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Generic, Iterator, TypeVar

from edgenas.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names (and aliases) to objects; unknown names raise one clear ``InputError``."""

    def __init__(self, kind: str, *, builtins: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.builtins = tuple(builtins)
        self._next = 0  # builtins[:_next] are imported (or being imported)
        self._items: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._help: dict[str, str] = {}

    def load_builtins(self) -> None:
        """Import the built-in plug-in modules once (each registers itself). A module missing from this
        build is passed over; any other import error propagates."""
        self._load_until(None)

    def _load_until(self, name: str | None) -> None:
        """Import the next built-in modules until ``name`` is registered (all of them for None)."""
        while self._next < len(self.builtins) and (name is None or not self._known(name)):
            module = self.builtins[self._next]
            self._next += 1  # first: a plug-in module that asks this registry while it loads is fine
            self._import(module)
        if name is None or not self._known(name):
            # another thread may still be importing a module it took (the API's requests run in threads): an
            # import waits for it to finish (a fresh server answered "unknown search space 'nb201' (known: none)")
            for module in self.builtins[:self._next]:
                self._import(module)

    @staticmethod
    def _import(module: str) -> None:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise

    def _known(self, name: object) -> bool:
        return name in self._items or name in self._aliases

    def register(self, name: Any = None, obj: T | None = None, *, aliases: tuple[str, ...] = (),
                 help: str = "") -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted.

        A class gets ``name`` as its ``name`` attribute (it may state the same name itself; a different
        one is an error). Without a name (``@REG.register()``), the class's own ``name`` is used."""
        if name is not None and not isinstance(name, str):  # bare ``@REG.register``
            return self.register(None, name, aliases=aliases, help=help)

        def add(value: T) -> T:
            key = name if name is not None else getattr(value, "name", None)
            if not isinstance(key, str) or not key:
                raise ValueError(f"{self.kind} {value!r} has no name: give one to register()")
            for taken in (key, *aliases):  # an alias shadowing a name would hijack its look-ups
                if taken in self._items or taken in self._aliases:
                    raise ValueError(f"{self.kind} '{taken}' is registered twice")
            if isinstance(value, type):
                own = vars(value).get("name")
                if own not in (None, "", key):
                    raise ValueError(f"{self.kind} '{key}': class {value.__name__} says its name is {own!r}")
                value.name = key  # type: ignore[attr-defined]
            self._items[key] = value
            self._help[key] = help or (getattr(value, "__doc__", "") or "").strip().split("\n")[0]
            for alias in aliases:
                self._aliases[alias] = key
            return value

        return add(obj) if obj is not None else add

    def canonical(self, name: str) -> str:
        self._load_until(name)
        name = self._aliases.get(name, name)
        if name not in self._items:
            known = ", ".join(self.names()) or "none"
            raise InputError(f"unknown {self.kind} '{name}'", hint=f"known: {known}")
        return name

    def get(self, name: str) -> T:
        return self._items[self.canonical(name)]

    def names(self) -> list[str]:
        self.load_builtins()
        return sorted(self._items)

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, for ``edgenas list``."""
        return {n: self._help[n] for n in self.names()}

    def __contains__(self, name: object) -> bool:
        self._load_until(name if isinstance(name, str) else None)
        return self._known(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
