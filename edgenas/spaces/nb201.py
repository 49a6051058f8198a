"""The NAS-Bench-201 cell space (``nb201``): one cell of 6 edges, 5 ops each, 15,625 architectures.

Record: ``{"space": "nb201", "schema": 1, "arch": "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|"}``; the string is
parsed strictly and printed back exactly. Genes: the 6 op indices in NAS-Bench-201 edge order
(1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2). The network (CIFAR, C=16, N=5) is built by
``edgenas.spaces.nb201_net``; its blocks are the stem, one key per (stage, edge op) of every cell, the two
residual reductions and the head, so a latency predictor sums per-key costs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.limits import is_schema
from edgenas.spaces import SPACES
from edgenas.spaces.base import ARCH_SCHEMA, SearchSpace, gene_array, require
from edgenas.spaces.nb201_string import OPS, arch_string, parse_arch_string

EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
C, N, NUM_CLASSES, RES = 16, 5, 10, 32
STAGES = ((C, RES), (2 * C, RES // 2), (4 * C, RES // 4))  # (channels, spatial size)

_KEY = re.compile(r"^nb201-(stem|op|reduction|head)-(.+)\Z")
#: the numbers after each kind of block key (channels, size, classes: counts from 1, at most 6 ASCII digits each,
#: no leading zero, as in mbv3 keys)
_KEY_NUMBERS = {kind: re.compile(pattern.replace("N", "[1-9][0-9]{0,5}") + r"\Z") for kind, pattern in {
    "stem": r"c(?P<c>N)-s(?P<s>N)", "op": r"c(?P<c>N)-s(?P<s>N)",
    "reduction": r"c(?P<c_in>N)to(?P<c>N)-s(?P<s>N)", "head": r"c(?P<c>N)-s(?P<s>N)-k(?P<k>N)"}.items()}


@dataclass(frozen=True)
class NB201Arch:
    ops: tuple[str, ...]  # six edge ops, NAS-Bench-201 order

    @property
    def string(self) -> str:
        return arch_string(self.ops)


class NB201Space(SearchSpace[NB201Arch]):
    name = "nb201"
    description = "NAS-Bench-201 cell (6 edges x 5 ops), CIFAR network C=16 N=5"

    # ----------------------------------------------------------------- records
    def from_dict(self, data: Mapping[str, Any]) -> NB201Arch:
        require(isinstance(data, Mapping), "nb201 architecture: expected a JSON object")
        require(data.get("space") == self.name, f"not an nb201 architecture (space={data.get('space')!r})")
        require(is_schema(data.get("schema"), ARCH_SCHEMA), f"nb201 architecture: unsupported schema "
                                                   f"{data.get('schema')!r}", hint=f"expected {ARCH_SCHEMA}")
        extra = sorted(set(data) - {"space", "schema", "arch"})
        require(not extra, f"nb201 architecture: unknown key(s) {', '.join(extra)}")
        require("arch" in data, 'nb201 architecture: missing "arch" string')
        return NB201Arch(parse_arch_string(data["arch"]))

    def to_dict(self, arch: NB201Arch) -> dict[str, Any]:
        return {"space": self.name, "schema": ARCH_SCHEMA, "arch": arch.string}

    def from_string(self, text: str) -> NB201Arch:
        return NB201Arch(parse_arch_string(text))

    # ------------------------------------------------------------------- genes
    def gene_sizes(self) -> tuple[int, ...]:
        return (len(OPS),) * len(EDGES)

    def to_genes(self, arch: NB201Arch) -> np.ndarray:
        return np.array([OPS.index(o) for o in arch.ops], dtype=np.int64)

    @staticmethod
    def _check_genes(genes: Any, rows: bool) -> np.ndarray:
        """One gene vector (``rows`` false) or a matrix of them as int64, every entry an integer in 0..4;
        floats, rows of different lengths or of another width are an InputError, as in mbv3."""
        what = f"nb201 genes must be {len(EDGES)} integers in 0..{len(OPS) - 1}" + (" per row" if rows else "")
        given = gene_array(genes, what)  # floats were cut to integers (0.7 was gene 0), as mbv3 does not
        if rows:
            given = np.atleast_2d(given)
        require(np.issubdtype(given.dtype, np.integer) and given.ndim == (2 if rows else 1)
                and given.shape[-1:] == (len(EDGES),) and bool(np.all((given >= 0) & (given < len(OPS)))),
                f"{what}, got " + (f"{given.ravel().tolist()}" if given.size <= 4 * len(EDGES)
                                   else f"an array of shape {given.shape} ({given.dtype})"))
        return given.astype(np.int64)

    def from_genes(self, genes: Sequence[int] | np.ndarray) -> NB201Arch:
        g = self._check_genes(genes, rows=False)
        return self._stamp(NB201Arch(tuple(OPS[i] for i in g)), g)

    def all_archs(self) -> list[NB201Arch]:
        """All 15,625 architectures (gene order: first edge slowest)."""
        grid = np.stack(np.meshgrid(*[np.arange(len(OPS))] * len(EDGES), indexing="ij"), -1)
        return [self.from_genes(g) for g in grid.reshape(-1, len(EDGES))]

    # ------------------------------------------------------------------ blocks
    @staticmethod
    def op_key(op: str, stage: int) -> str:
        c, s = STAGES[stage]
        return f"nb201-op-{op}-c{c}-s{s}"

    def block_keys(self, arch: NB201Arch) -> list[str]:
        keys = [f"nb201-stem-c{C}-s{RES}"]
        for stage, (c, s) in enumerate(STAGES):
            if stage:
                c_in, s_in = STAGES[stage - 1]
                keys.append(f"nb201-reduction-c{c_in}to{c}-s{s_in}")
            for _ in range(N):
                keys.extend(self.op_key(op, stage) for op in arch.ops)
        keys.append(f"nb201-head-c{STAGES[-1][0]}-s{STAGES[-1][1]}-k{NUM_CLASSES}")
        return keys

    def key_vocab(self) -> list[str]:
        fixed = self.block_keys(NB201Arch(("none",) * 6))
        vocab = [k for k in dict.fromkeys(fixed) if "-op-" not in k]
        return vocab + [self.op_key(op, st) for st in range(len(STAGES)) for op in OPS]

    def key_index_matrix(self, genes: np.ndarray) -> np.ndarray:
        """Vectorised ``block_keys`` as indices into ``key_vocab()``: shape ``(n, 94)``."""
        g = self._check_genes(genes, rows=True)  # -1 was op 4, 0.7 op 0, rows of 5 gave fewer keys
        vocab = {k: i for i, k in enumerate(self.key_vocab())}
        fixed = lambda k: np.full((len(g), 1), vocab[k], dtype=np.int64)  # noqa: E731
        template = self.block_keys(NB201Arch(("none",) * 6))
        cols = [fixed(template[0])]
        for stage in range(len(STAGES)):
            if stage:
                cols.append(fixed(template[1 + stage * (N * 6 + 1) - 1]))
            op_ids = np.array([vocab[self.op_key(op, stage)] for op in OPS])
            cols.extend([op_ids[g]] * N)
        cols.append(fixed(template[-1]))
        return np.concatenate(cols, axis=1)

    def min_latency(self, key_cost: Mapping[str, float]) -> tuple[float, NB201Arch]:
        """Exact: the cost separates per edge (every edge's op appears N times in each stage)."""
        ops = []
        for _ in EDGES:
            cost = {op: sum(N * key_cost[self.op_key(op, st)] for st in range(len(STAGES))) for op in OPS}
            ops.append(min(OPS, key=lambda o: (cost[o], OPS.index(o))))
        arch = NB201Arch(tuple(ops))
        return float(sum(key_cost[k] for k in self.block_keys(arch))), arch

    def _parse_key(self, key: str) -> tuple[str, dict[str, Any]]:
        m = _KEY.match(key)
        if not m:
            raise InputError(f"not an nb201 block key: {key!r}")
        kind, rest = m.groups()
        if kind == "op":
            op, _, rest = rest.rpartition("-c")
            require(op in OPS, f"unknown op in block key {key!r}")
            rest = "c" + rest
        got = _KEY_NUMBERS[kind].match(rest)
        if got is None:  # int() took "s32 ", "+32" and "x16" for "c16" (the prefix was cut unread)
            raise InputError(f"malformed nb201 block key {key!r}")
        numbers = {k: int(v) for k, v in got.groupdict().items()}
        return kind, dict(op=op, **numbers) if kind == "op" else numbers

    # ------------------------------------------------------------------- torch
    def input_shape(self, arch: NB201Arch) -> tuple[int, ...]:
        return (1, 3, RES, RES)

    def build_model(self, arch: NB201Arch) -> Any:
        from edgenas.spaces.nb201_net import build_nb201_network

        return build_nb201_network(arch.ops, C=C, N=N, num_classes=NUM_CLASSES).eval()

    def build_block(self, key: str) -> Any:
        from torch import nn

        from edgenas.spaces import nb201_net as net

        kind, p = self._parse_key(key)
        if kind == "op":
            return net.make_op(p["op"], p["c"]).eval()
        if kind == "reduction":
            return net.ResidualReduction(p["c_in"], p["c"]).eval()
        if kind == "stem":
            return nn.Sequential(nn.Conv2d(3, p["c"], 3, padding=1, bias=False), nn.BatchNorm2d(p["c"])).eval()
        return nn.Sequential(nn.BatchNorm2d(p["c"]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(p["c"], p["k"])).eval()

    def block_input_shape(self, key: str) -> tuple[int, ...]:
        kind, p = self._parse_key(key)
        if kind == "stem":
            return (1, 3, p["s"], p["s"])
        return (1, p.get("c_in", p["c"]), p["s"], p["s"])


SPACES.register("nb201", NB201Space(), help=NB201Space.description)
