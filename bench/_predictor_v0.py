"""The predictor's batch path as it was before issue 17 - the named baseline of ``predictor_throughput``.

A verbatim copy of the old code path for MobileNetV3 spaces: per-object ``to_genes`` in Python, a
range check with ``argwhere``, ``key_index_matrix`` by masking inactive slots and a stable argsort,
then one gather-and-sum per 65,536 rows. Kept here (not in the package) so the benchmark can time
"before" and "after" in the same run and check that the results are identical to the last bit.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

_CHUNK = 65536


def _to_genes(space, arch) -> np.ndarray:
    space._check(arch)
    idx = space._index_of
    ks, e, d = idx["ks"], idx["e"], idx["d"]
    g = [idx["r"][arch.r], *(ks[k] for k in arch.ks), *(e[x] for x in arch.e), *(d[v] for v in arch.d)]
    return np.asarray(g, dtype=np.int64)


def _check_genes(space, genes) -> np.ndarray:
    g = np.atleast_2d(np.asarray(genes))
    sizes = space._sizes
    assert g.ndim == 2 and g.shape[1] == len(sizes) and np.issubdtype(g.dtype, np.integer)
    bad = np.argwhere((g < 0) | (g >= sizes))
    if bad.size:
        raise ValueError("gene out of range")
    return g.astype(np.int64)


def key_index_matrix(space, genes: np.ndarray) -> np.ndarray:
    g = _check_genes(space, genes)
    t, c, n = space._tables, space.config, space.config.n_slots
    ri, ksi, ei = g[:, 0], g[:, 1:1 + n], g[:, 1 + n:1 + 2 * n]
    depth = np.asarray(c.d_choices)[g[:, 1 + 2 * n:]]
    active = space._pos[None, :] < depth[:, space._stage]
    slots = np.where(active, t.slot[ri[:, None], np.arange(n)[None, :], ksi, ei], -1)
    full = np.concatenate([t.fixed[ri, :2], slots, t.fixed[ri, 2:]], axis=1)
    full = np.take_along_axis(full, np.argsort(full < 0, axis=1, kind="stable"), axis=1)
    return full[:, : int((full >= 0).sum(axis=1).max())]


def _genes(pred, archs: Any) -> np.ndarray:
    space = pred.space
    if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
        genes = np.atleast_2d(archs)
        sizes = np.asarray(space.gene_sizes())
        if genes.size and ((genes < 0).any() or (genes >= sizes).any()):
            raise ValueError("genes matrix has a choice outside a gene's range")
        return genes.astype(np.int64, copy=False)
    rows = [_to_genes(space, space.from_dict(a) if isinstance(a, Mapping) else a) for a in archs]
    return np.stack(rows).astype(np.int64, copy=False)


def predict_many_v0(pred, archs: Any) -> np.ndarray:
    """``LatencyPredictor.predict_many`` before issue 17."""
    genes = _genes(pred, archs)
    out = np.empty(len(genes), dtype=np.float64)
    for s in range(0, len(genes), _CHUNK):
        idx = key_index_matrix(pred.space, genes[s:s + _CHUNK])
        out[s:s + len(idx)] = pred._cost[idx].sum(axis=1)
    return pred._calibrate(out + pred.overhead_ms)
