"""The elastic MobileNetV3 search space (Once-for-All style): records, genes, block keys, models.

Genes are ``[r] + ks(n_slots) + e(n_slots) + d(n_stages)``, each an index into the config's choice
tuple. Block keys follow Once-for-All's LUT format (see ``mbv3_keys``); all keys of the space are
precomputed once per space into a table indexed by ``[resolution, slot, kernel, expand]``, which makes
``block_keys``, ``key_index_matrix`` (vectorised) and the exact ``min_latency`` cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.limits import is_schema
from edgenas.spaces import SPACES
from edgenas.spaces.base import ARCH_SCHEMA, SearchSpace, gene_array, require
from edgenas.spaces.mbv3_keys import BlockSpec, conv_out
from edgenas.spaces.mbv3_config import (MBV3_SMALL, MBV3_TINY, OFA_MBV3, OFA_MBV3_W12, MBV3Arch, MBV3Config,
                                         make_divisible)

_FIELDS = ("ks", "e", "d", "r")
#: gene dtypes kept as they are for index arithmetic (with int32 offsets it stays integer and exact)
_INDEX_SAFE = frozenset(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16))


def _choices(values: Sequence[int]) -> str:
    v = list(values)
    if len(v) > 6 and len({b - a for a, b in zip(v, v[1:])}) == 1:
        return f"{v[0]}, {v[1]}, ..., {v[-1]}"
    return ", ".join(map(str, v))


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise InputError(f"{name}={v!r} is not an integer")
    return int(v)


@dataclass(frozen=True)
class _Tables:
    vocab: list[str]
    slot: np.ndarray  # (n_r, n_slots, n_ks, n_e) -> vocab index
    fixed: np.ndarray  # (n_r, 6): stem, first block, Conv_1, AvgPool2D, Conv_2, Logits


class MBV3Space(SearchSpace[MBV3Arch]):
    """Elastic MobileNetV3 from an ``MBV3Config``: per-slot kernel/expand, per-stage depth, resolution."""

    def __init__(self, config: MBV3Config, *, aliases: tuple[str, ...] = (), description: str = "") -> None:
        self.config = config
        self.name = config.name
        self.aliases = aliases
        self.description = description
        c = config
        self._stage = np.arange(c.n_slots) // c.max_depth
        self._pos = np.arange(c.n_slots) % c.max_depth

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    # ----------------------------------------------------------------- records
    def from_dict(self, data: Mapping[str, Any]) -> MBV3Arch:
        c = self.config
        require(isinstance(data, Mapping), f"{self.name} architecture must be an object, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - {"space", "schema", "wid", *_FIELDS})
        require(not unknown, f"unknown key(s) {', '.join(unknown)} in {self.name} architecture",
                hint="expected ks, e, d, r (and optionally space, schema)")
        if "space" in data:
            require(data["space"] in (self.name, *self.aliases),
                    f"architecture is for space {data['space']!r}, not {self.name!r}")
        if "schema" in data:
            require(is_schema(data["schema"], ARCH_SCHEMA), f"unsupported architecture schema {data['schema']!r}",
                    hint=f"this edgenas reads schema {ARCH_SCHEMA}")
        require(data.get("wid") is None, "only wid=None (no width choice) is supported")
        missing = [f for f in _FIELDS if f not in data]
        require(not missing, f"missing key(s) {', '.join(missing)} in {self.name} architecture",
                hint="e.g. " + ", ".join(self._example(f) for f in missing))
        r = data["r"]
        if isinstance(r, (list, tuple)):
            require(len(r) == 1, f"r must be an integer or a one-element list, got {len(r)} entries")
            r = r[0]
        arch = MBV3Arch(ks=self._seq("ks", data["ks"], c.n_slots), e=self._seq("e", data["e"], c.n_slots),
                        d=self._seq("d", data["d"], c.n_stages), r=_int("r", r))
        self._check(arch)
        return arch

    def _example(self, name: str) -> str:
        """``"name": value`` of the space's largest network: a missing key's example ("r": 224 was given for every
        space, and mbv3-small's resolutions are 24, 28, 32)."""
        c = self.config
        choices, n = {"ks": (c.ks_choices, c.n_slots), "e": (c.e_choices, c.n_slots), "d": (c.d_choices, c.n_stages),
                      "r": (c.resolutions, 0)}[name]
        return f'"{name}": {max(choices) if not n else [max(choices)] * n}'

    def _seq(self, name: str, v: Any, n: int) -> tuple[int, ...]:
        require(isinstance(v, (list, tuple)), f"{name} must be a list, got {type(v).__name__}")
        require(len(v) == n, f"{name} has {len(v)} entries, expected {n}",
                hint="ks and e have one entry per block slot (n_stages * max_depth), d one per stage")
        return tuple(_int(f"{name}[{i}]", x) for i, x in enumerate(v))

    @cached_property
    def _index_of(self) -> dict[str, dict[int, int]]:
        """Choice value -> gene value, per field (the gene codec's look-up tables)."""
        c = self.config
        return {name: {v: i for i, v in enumerate(vals)} for name, vals in
                (("ks", c.ks_choices), ("e", c.e_choices), ("d", c.d_choices), ("r", c.resolutions))}

    def _check(self, arch: MBV3Arch) -> None:
        c, idx = self.config, self._index_of
        for name, vals, choices, n in (("ks", arch.ks, c.ks_choices, c.n_slots),
                                       ("e", arch.e, c.e_choices, c.n_slots),
                                       ("d", arch.d, c.d_choices, c.n_stages)):
            require(len(vals) == n, f"{name} has {len(vals)} entries, expected {n}")
            for i, v in enumerate(vals):
                if v not in idx[name]:  # the message is only formatted for a bad value
                    require(False, f"{name}[{i}]={v} is not one of {_choices(choices)}")
        if arch.r not in idx["r"]:
            require(False, f"r={arch.r} is not one of {_choices(c.resolutions)}")

    def to_dict(self, arch: MBV3Arch) -> dict[str, Any]:
        return {"space": self.name, "schema": ARCH_SCHEMA, "ks": list(arch.ks), "e": list(arch.e),
                "d": list(arch.d), "r": arch.r}

    def canonical(self, arch: MBV3Arch) -> MBV3Arch:
        c = self.config
        active = self._pos < np.asarray(arch.d)[self._stage]
        ks = tuple(int(k) if a else min(c.ks_choices) for k, a in zip(arch.ks, active))
        e = tuple(int(x) if a else min(c.e_choices) for x, a in zip(arch.e, active))
        return MBV3Arch(ks=ks, e=e, d=tuple(arch.d), r=arch.r)

    # ------------------------------------------------------------------- genes
    def gene_sizes(self) -> tuple[int, ...]:
        c = self.config
        return (len(c.resolutions),) + (len(c.ks_choices),) * c.n_slots + (len(c.e_choices),) * c.n_slots \
            + (len(c.d_choices),) * c.n_stages

    def to_genes(self, arch: MBV3Arch) -> np.ndarray:
        self._check(arch)
        idx = self._index_of
        ks, e, d = idx["ks"], idx["e"], idx["d"]
        g = [idx["r"][arch.r], *(ks[k] for k in arch.ks), *(e[x] for x in arch.e), *(d[v] for v in arch.d)]
        genes = np.asarray(g, dtype=np.int64)
        self._stamp(arch, genes)
        return genes

    @cached_property
    def _sizes(self) -> np.ndarray:
        return np.asarray(self.gene_sizes())

    def _check_genes(self, genes: Any, cast: bool = True) -> np.ndarray:
        """Gene vectors as a 2-D array, range-checked; as int64 unless ``cast`` is false (then in the
        caller's dtype where index arithmetic on it cannot overflow or turn to floats, else int64)."""
        sizes = self._sizes
        g = np.atleast_2d(gene_array(genes, f"gene vectors must have {len(sizes)} entries each"))
        require(g.ndim == 2 and g.shape[1] == len(sizes),
                f"gene vectors must have {len(sizes)} entries, got shape {g.shape}")
        require(np.issubdtype(g.dtype, np.integer), f"genes must be integers, got {g.dtype}")
        if g.size and (g.min() < 0 or (g >= sizes).any()):
            bad = np.argwhere((g < 0) | (g >= sizes))
            i = int(bad[0, 1])
            raise InputError(f"gene {i} = {int(g[bad[0, 0], i])} is outside 0..{sizes[i] - 1}")
        if cast or g.dtype not in _INDEX_SAFE:
            return g.astype(np.int64)
        return g

    def from_genes(self, genes: Sequence[int] | np.ndarray) -> MBV3Arch:
        rows = self._check_genes(genes)
        require(len(rows) == 1, f"one gene vector makes one architecture, got {len(rows)}")  # others were dropped
        g = rows[0]
        c, s = self.config, self.config.n_slots
        arch = MBV3Arch(ks=tuple(c.ks_choices[i] for i in g[1:1 + s]),
                        e=tuple(c.e_choices[i] for i in g[1 + s:1 + 2 * s]),
                        d=tuple(c.d_choices[i] for i in g[1 + 2 * s:]), r=c.resolutions[g[0]])
        return self._stamp(arch, g)

    # ------------------------------------------------------------------ blocks
    def _keys_at(self, r: int) -> tuple[list[str], list[list[list[str]]]]:
        """Fixed keys (stem, first block, Conv_1, AvgPool2D, Conv_2, Logits) and slot keys [slot][ks][e]."""
        c = self.config
        h = conv_out(r, c.stem_stride)
        stem = BlockSpec("Conv", (r, r), c.in_channels, (h, h), c.stem_width)
        first = BlockSpec("expanded_conv", (h, h), c.stem_width, (h, h), c.first_block_width, c.stem_width, 3, 1,
                          idskip=c.stem_width == c.first_block_width)
        slots, cin = [], c.first_block_width
        for s in range(c.n_stages):
            w, hs, se = c.stage_widths[s], c.stage_act[s] == "hswish", c.stage_se[s]
            for p in range(c.max_depth):
                stride = c.stage_strides[s] if p == 0 else 1
                i_ch, ho = (cin if p == 0 else w), conv_out(h, stride)
                slots.append([[BlockSpec("expanded_conv", (h, h), i_ch, (ho, ho), w,
                                         make_divisible(round(i_ch * e), 8), k, stride,
                                         stride == 1 and i_ch == w, se, hs).key
                               for e in c.e_choices] for k in c.ks_choices])
                h = ho
            cin = w
        head = [BlockSpec("Conv_1", (h, h), cin, (h, h), c.final_expand_width),
                BlockSpec("AvgPool2D", (h, h), c.final_expand_width, (1, 1), c.final_expand_width),
                BlockSpec("Conv_2", (1, 1), c.final_expand_width, (1, 1), c.feature_mix_width),
                BlockSpec("Logits", (1, 1), c.feature_mix_width, (1, 1), c.num_classes)]
        return [b.key for b in (stem, first, *head)], slots

    @cached_property
    def _tables(self) -> _Tables:
        index: dict[str, int] = {}
        fixed, slot = [], []
        for r in self.config.resolutions:
            fk, sk = self._keys_at(r)
            fixed.append([index.setdefault(k, len(index)) for k in fk])
            slot.append([[[index.setdefault(k, len(index)) for k in row] for row in s] for s in sk])
        return _Tables(list(index), np.asarray(slot, dtype=np.int64), np.asarray(fixed, dtype=np.int64))

    def key_vocab(self) -> list[str]:
        return list(self._tables.vocab)

    @cached_property
    def _compaction(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Per depth pattern (``d`` genes read as a mixed-radix number): where each output column of
        ``key_index_matrix`` comes from in ``[fixed0, fixed1, slots..., fixed2..5, pad]``, and how many
        columns are real. ``None`` when there are too many patterns to tabulate (then: argsort)."""
        c, n = self.config, self.config.n_slots
        nd = len(c.d_choices)
        if nd ** c.n_stages > 50_000:
            return None
        radix = nd ** np.arange(c.n_stages, dtype=np.int64)
        pad, width = n + 6, n + 6
        cols = np.full((nd ** c.n_stages, width), pad, dtype=np.int64)
        count = np.zeros(nd ** c.n_stages, dtype=np.int64)
        for pid in range(nd ** c.n_stages):
            depth = np.asarray(c.d_choices)[(pid // radix) % nd]
            active = np.flatnonzero(self._pos < depth[self._stage]) + 2
            src = np.concatenate([[0, 1], active, np.arange(n + 2, n + 6)])
            cols[pid, :len(src)], count[pid] = src, len(src)
        return radix, cols, count

    @cached_property
    def _slot_base(self) -> tuple[np.ndarray, np.dtype]:
        """Where slot ``s`` of resolution ``ri`` starts in the flattened slot table (``[ri, s]``), and the
        narrowest index dtype that holds every offset (int32 in practice)."""
        nr, n, nk, ne = self._tables.slot.shape
        dtype = np.dtype(np.int32 if nr * n * nk * ne < 2**31 else np.int64)
        base = (np.arange(nr)[:, None] * n + np.arange(n)[None, :]) * (nk * ne)
        return base.astype(dtype), dtype

    def key_index_matrix(self, genes: np.ndarray) -> np.ndarray:
        comp = self._compaction
        if comp is None:
            return self._key_index_matrix_argsort(self._check_genes(genes))
        # the genes stay in their small dtype (objects keep uint8), offsets in int32: issue 17, part 2
        g = self._check_genes(genes, cast=False)
        t, n = self._tables, self.config.n_slots
        ne = t.slot.shape[3]
        radix, cols, count = comp
        base, dtype = self._slot_base
        ri = g[:, 0]
        flat = base[ri] + g[:, 1:1 + n] * dtype.type(ne) + g[:, 1 + n:1 + 2 * n]
        fixed = t.fixed[ri]
        full = np.empty((len(g), n + 7), dtype=np.int64)
        full[:, :2] = fixed[:, :2]
        full[:, 2:n + 2] = t.slot.reshape(-1)[flat]
        full[:, n + 2:n + 6] = fixed[:, 2:]
        full[:, n + 6] = -1
        pid = g[:, 1 + 2 * n:] @ radix
        width = int(count[pid].max()) if len(g) else 0
        return np.take_along_axis(full, cols[pid, :width], axis=1)

    def _key_index_matrix_argsort(self, g: np.ndarray) -> np.ndarray:
        """The general path (any number of depth patterns): mask inactive slots, stable-sort them last."""
        t, c, n = self._tables, self.config, self.config.n_slots
        ri, ksi, ei = g[:, 0], g[:, 1:1 + n], g[:, 1 + n:1 + 2 * n]
        depth = np.asarray(c.d_choices)[g[:, 1 + 2 * n:]]
        active = self._pos[None, :] < depth[:, self._stage]
        slots = np.where(active, t.slot[ri[:, None], np.arange(n)[None, :], ksi, ei], -1)
        full = np.concatenate([t.fixed[ri, :2], slots, t.fixed[ri, 2:]], axis=1)
        full = np.take_along_axis(full, np.argsort(full < 0, axis=1, kind="stable"), axis=1)
        return full[:, : int((full >= 0).sum(axis=1).max(initial=0))]  # no genes: (0, 0), as the tables give

    def block_labels(self, arch: MBV3Arch) -> list[tuple[str, str]]:
        """(label, LUT block key) of every block in network order; a slot's label names its genes
        (``ks_3/e_3``), fixed blocks are named (``stem``, ``first``, ``Conv_1`` ...). The keys are
        ``block_keys(arch)``, in a different order."""
        c = self.config
        fk, sk = self._keys_at(arch.r)
        ks, e = self._index_of["ks"], self._index_of["e"]
        out = list(zip(("stem", "first"), fk[:2]))
        for s in range(c.n_stages):
            for p in range(arch.d[s]):
                i = s * c.max_depth + p
                out.append((f"ks_{i}/e_{i}", sk[i][ks[arch.ks[i]]][e[arch.e[i]]]))
        return out + list(zip(("Conv_1", "AvgPool2D", "Conv_2", "Logits"), fk[2:]))

    def block_keys(self, arch: MBV3Arch) -> list[str]:
        vocab = self._tables.vocab
        return [vocab[i] for i in self.key_index_matrix(self.to_genes(arch))[0] if i >= 0]

    def cost_tables(self, key_cost: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Per-block costs laid out by choice: ``fixed`` (n_r,) = the sum of the fixed blocks at each
        resolution, ``slot`` (n_r, n_slots, n_ks, n_e) = the cost of slot i with kernel k, expand e.
        A network's cost is ``fixed[r] + sum over its active slots of slot[r, i, k, e]``."""
        t = self._tables
        missing = [k for k in t.vocab if k not in key_cost]
        if missing:
            raise InputError(f"no cost for {len(missing)} of {len(t.vocab)} block keys of {self.name}, "
                             f"e.g. '{missing[0]}'", hint="profile every key of the space (key_vocab())")
        cost = np.asarray([float(key_cost[k]) for k in t.vocab])
        return cost[t.fixed].sum(axis=1), cost[t.slot]

    def min_latency(self, key_cost: Mapping[str, float]) -> tuple[float, MBV3Arch]:
        """Exact: per resolution, fixed blocks + per stage the best depth over per-slot minima."""
        c = self.config
        fixed, slot = self.cost_tables(key_cost)
        n_r, n, nk, ne = slot.shape
        per = slot.reshape(n_r, n, nk * ne)
        best_ke, slot_min = per.argmin(axis=2), per.min(axis=2)  # (n_r, n_slots)
        cum = np.cumsum(slot_min.reshape(n_r, c.n_stages, c.max_depth), axis=2)
        by_depth = cum[:, :, np.asarray(c.d_choices) - 1]  # (n_r, n_stages, n_d)
        d_idx = by_depth.argmin(axis=2)
        totals = fixed + by_depth.min(axis=2).sum(axis=1)
        ri = int(totals.argmin())
        ks = [c.ks_choices[i // ne] for i in best_ke[ri]]
        e = [c.e_choices[i % ne] for i in best_ke[ri]]
        arch = MBV3Arch(ks=tuple(ks), e=tuple(e), d=tuple(c.d_choices[i] for i in d_idx[ri]), r=c.resolutions[ri])
        return float(totals[ri]), self.canonical(arch)

    # ------------------------------------------------------------------- torch
    def input_shape(self, arch: MBV3Arch) -> tuple[int, ...]:
        return (1, self.config.in_channels, arch.r, arch.r)

    def build_model(self, arch: MBV3Arch) -> Any:
        """``nn.Sequential`` of ``build_block(key)`` per block key (eval mode)."""
        from torch import nn

        return nn.Sequential(*(self.build_block(k) for k in self.block_keys(arch))).eval()

    def build_block(self, key: str) -> Any:
        from edgenas.spaces.mbv3_blocks import build_block  # torch, imported when a network is built

        return build_block(key)

    def block_input_shape(self, key: str) -> tuple[int, ...]:
        return BlockSpec.parse(key).input_shape


for _cfg, _aliases, _help in (
    (OFA_MBV3, ("mbv3",), "Once-for-All elastic MobileNetV3 (width 1.0, r 128..224, ImageNet head)"),
    (OFA_MBV3_W12, (), "OFA MobileNetV3 width 1.2: the network of OFA's published Note10 latency tables"),
    (MBV3_SMALL, (), "small elastic MobileNetV3 for CPU demos on 24..32 px inputs, 10 classes"),
    (MBV3_TINY, (), "two-stage elastic MobileNetV3 on 16 px inputs, for smoke tests (profiles in seconds)"),
):
    SPACES.register(_cfg.name, MBV3Space(_cfg, aliases=_aliases, description=_help), aliases=_aliases, help=_help)
