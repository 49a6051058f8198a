"""The measurement-store interface (one interface, several back ends, as Optuna's storages).

Every implementation keeps measurements in insertion order, refuses a second measurement with an id it
already holds (``InputError``), and filters ``list``/``count`` by device, space and fingerprint hash
(``None`` means any). ``InMemoryStore`` is the reference implementation; ``SQLiteStore`` is the
default on disk, ``JsonlStore`` an append-only journal that a person can read and ``grep``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any, Sequence

from edgenas.errors import InputError
from edgenas.store.record import Measurement


def measured_archs(space: Any, ms: Sequence[Measurement]) -> list[Any]:
    """The architectures of the measurements ``ms`` of ``space``; one that is not of the space (a record edited)
    is one ``InputError`` naming the measurement: ``lut calibrate`` said only "r=99 is not one of 24, 28, 32"."""
    out = []
    for m in ms:
        try:
            out.append(space.from_dict(m.arch))
        except InputError as exc:
            raise InputError(f"measurement {m.id} ({m.device}, {m.space}): {exc.message}",
                             hint="the measurement store was edited or damaged: delete that measurement, or "
                                  "restore the store from a backup") from None
    return out


class MeasurementStore(ABC):
    @abstractmethod
    def add(self, m: Measurement) -> None:
        """Store ``m`` durably; ``InputError`` if a measurement with its id is already stored."""

    @abstractmethod
    def list(self, device: str | None = None, space: str | None = None,
             fingerprint_hash: str | None = None) -> list[Measurement]:
        """Matching measurements, oldest first (insertion order)."""

    def count(self, device: str | None = None, space: str | None = None,
              fingerprint_hash: str | None = None) -> int:
        return len(self.list(device=device, space=space, fingerprint_hash=fingerprint_hash))

    def get(self, id: str) -> Measurement:
        for m in self.list():
            if m.id == id:
                return m
        raise InputError(f"no measurement with id '{id}' in {self!r}")

    def close(self) -> None:
        """Release resources (nothing to do for most implementations)."""

    def __enter__(self) -> "MeasurementStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def matches(m: Measurement, device: str | None, space: str | None, fingerprint_hash: str | None) -> bool:
    return ((device is None or m.device == device) and (space is None or m.space == space)
            and (fingerprint_hash is None or m.fingerprint_hash == fingerprint_hash))


def duplicate(m: Measurement) -> InputError:
    return InputError(f"a measurement with id '{m.id}' is already stored",
                      hint="measurements are immutable; store a new one with a fresh id")


class InMemoryStore(MeasurementStore):
    """Measurements in a list (tests, dry runs); thread-safe, gone when the process ends."""

    def __init__(self) -> None:
        self._items: list[Measurement] = []
        self._ids: set[str] = set()
        self._lock = threading.Lock()

    def add(self, m: Measurement) -> None:
        with self._lock:
            if m.id in self._ids:
                raise duplicate(m)
            self._ids.add(m.id)
            self._items.append(m)

    def list(self, device=None, space=None, fingerprint_hash=None) -> list[Measurement]:
        with self._lock:
            return [m for m in self._items if matches(m, device, space, fingerprint_hash)]

    def __repr__(self) -> str:
        return "InMemoryStore()"
