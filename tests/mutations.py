"""One-field edits of a JSON record, for the mutation tests of records users can edit and devices send.

``one_field_edits(good, values)`` yields ``(path, value, edited copy)`` for every field of ``good`` (dict
keys, and the first ``list_items`` items of each list, at any depth) set to each of ``values``; the value
``DELETE`` removes a dict key instead (list items are not deleted).
"""

from __future__ import annotations

import copy
from typing import Any, Iterator, Sequence


class _Delete:
    def __repr__(self) -> str:
        return "DELETE"


DELETE = _Delete()


def field_paths(obj: Any, list_items: int = 3, path: tuple = ()) -> Iterator[tuple]:
    """Every path below ``obj`` (not the empty one), parents before their children."""
    if path:
        yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from field_paths(v, list_items, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:list_items]):
            yield from field_paths(v, list_items, path + (i,))


def one_field_edits(good: dict, values: Sequence[Any], *, list_items: int = 3,
                    paths: Sequence[tuple] | None = None) -> Iterator[tuple[tuple, Any, dict]]:
    for p in field_paths(good, list_items) if paths is None else paths:
        for v in values:
            d = copy.deepcopy(good)
            target = d
            for k in p[:-1]:
                target = target[k]
            if v is DELETE:
                if not isinstance(target, dict):
                    continue
                del target[p[-1]]
            else:
                target[p[-1]] = copy.deepcopy(v)
            yield p, v, d
