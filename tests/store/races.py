"""Two processes released at the same moment, again and again: races on opening a fresh store."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any, Callable, Iterator


def _child(fn: Callable[..., Any], args: tuple, barrier, q) -> None:
    try:
        barrier.wait()
        q.put(fn(*args))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        q.put(repr(exc))


def races(fn: Callable[..., Any], args_of: Callable[[int], tuple], n: int = 100) -> Iterator[tuple[int, list]]:
    """For race ``i`` in ``0..n-1``: ``fn(*args_of(i))`` in two forked processes released together by a
    barrier; yields ``(i, [what each returned, or the repr of what it raised])``."""
    ctx = mp.get_context("fork")
    for i in range(n):
        barrier, q = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_child, args=(fn, args_of(i), barrier, q)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        yield i, [q.get(timeout=5) for _ in procs]
