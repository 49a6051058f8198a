"""NAS-Bench-201's architecture strings (``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``) and its five op names: the
one strict parser and its inverse, shared by the space (``nb201``) and the network builder (``nb201_net``)."""

from __future__ import annotations

from typing import Sequence

from edgenas.errors import InputError

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


def arch_string(ops: Sequence[str]) -> str:
    it = iter(ops)
    return "+".join("|" + "|".join(f"{next(it)}~{j}" for j in range(i)) + "|" for i in (1, 2, 3))


def parse_arch_string(text: str) -> tuple[str, ...]:
    """Strict parser: exactly three nodes with 1, 2, 3 ``op~j`` entries, known ops, ``j`` in order."""
    bad = InputError(f"malformed NAS-Bench-201 architecture string {text!r}",
                     hint="expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2| with ops " + ", ".join(OPS))
    if not isinstance(text, str):
        raise bad
    nodes = text.split("+")
    if len(nodes) != 3:
        raise bad
    ops: list[str] = []
    for i, node in enumerate(nodes, start=1):
        if not (node.startswith("|") and node.endswith("|")) or len(node) < 2:
            raise bad
        parts = node[1:-1].split("|")
        if len(parts) != i:
            raise bad
        for j, part in enumerate(parts):
            op, sep, src = part.partition("~")
            if not sep or src != str(j) or op not in OPS:
                raise bad
            ops.append(op)
    return tuple(ops)
