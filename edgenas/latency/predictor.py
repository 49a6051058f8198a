"""The LUT latency predictor: a sum of per-block costs, vectorised over many architectures.

Costs are the entries' medians, or, for a LUT timed against a speed reference, each entry's ratio to
the reference times the reference's nominal time (``Lut.value_ms``). Every LUT entry was timed as a
stand-alone model, so its median includes the runtime's fixed
per-inference overhead (session dispatch, input/output copies), which the LUT records separately by
timing a trivial model. The predictor therefore uses each block's NET cost
``max(median - overhead, 0)`` and adds the overhead once per network:

    raw(arch)  = overhead + sync extra + sum over blocks of net(key)
    pred(arch) = calibration(raw(arch))        (identity when the LUT has no calibration)

The sync extra is 0 except for tables timed in runs of several calls (runtimes whose calls overlap on
the device: torch on CUDA, TensorRT). There entries and overhead are per-call costs inside a stream of
calls, as a block pays inside a network, and one inference also waits once for the device to finish:
the overhead model timed one call at a time minus timed in runs (``Lut.sync_extra_ms``).

``predict_many`` turns architectures into a ``(n, B)`` matrix of indices into the space's key
vocabulary (``space.key_index_matrix``, ``-1``-padded) and does one gather and one sum; ``-1`` lands
on an extra zero-cost slot appended to the cost vector. ``predict_loop`` is the one-at-a-time
reference (dictionary look-ups over ``block_keys``) the vectorised path is tested against.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.calibration import apply_calibration, check_calibration
from edgenas.latency.lut import Lut
from edgenas.spaces.base import SearchSpace

_CHUNK = 65536  # rows per gather, bounds the temporary (chunk, B) float array


class LatencyPredictor:
    """Predict whole-network latency (ms) on the LUT's device for architectures of ``space``."""

    def __init__(self, lut: Lut, space: SearchSpace) -> None:
        if lut.space != space.name:
            raise InputError(
                f"LUT for device '{lut.device}' is for space '{lut.space}', not '{space.name}'",
                hint=f"use a LUT profiled for '{space.name}' (edgenas profile {lut.device} "
                     f"--space {space.name})")
        vocab = list(space.key_vocab())
        missing = [k for k in dict.fromkeys(vocab) if k not in lut.entries]
        if missing:
            first = ", ".join(missing[:3])
            raise InputError(
                f"LUT for device '{lut.device}' lacks {len(missing)} of the {len(set(vocab))} block keys "
                f"of space '{space.name}' (first: {first})",
                hint=f"re-profile: edgenas profile {lut.device} --space {space.name}")
        if lut.calibration is not None:
            check_calibration(lut.calibration)
        self.lut = lut
        self.space = space
        #: what one inference pays once, whatever its blocks (overhead and sync extra)
        self.overhead_ms = float(lut.per_inference_ms)
        self.vocab = vocab
        self.key_cost: dict[str, float] = {
            k: max(lut.value_ms(lut.entries[k]) - lut.overhead_ms, 0.0) for k in vocab}
        # index -1 (padding) reads the trailing zero
        self._cost = np.array([self.key_cost[k] for k in vocab] + [0.0], dtype=np.float64)
        self._sizes = np.asarray(space.gene_sizes())

    # ---------------------------------------------------------------- properties
    @property
    def calibration_points(self) -> int:
        """How many whole-model measurements the calibration rests on (0 if none)."""
        return self.lut.calibration.n_points if self.lut.calibration is not None else 0

    # ---------------------------------------------------------------- helpers
    def _as_arch(self, arch: Any) -> Any:
        return self.space.from_dict(arch) if isinstance(arch, Mapping) else arch

    def _genes(self, archs: Iterable[Any] | np.ndarray) -> np.ndarray:
        if isinstance(archs, np.ndarray) and archs.dtype.kind in "iu":
            genes = np.atleast_2d(archs)
            if genes.ndim != 2 or genes.shape[1] != self.space.dim:
                raise InputError(f"genes matrix must have shape (n, {self.space.dim}), "
                                 f"got {archs.shape}")
            if genes.size and (genes.min() < 0 or (genes >= self._sizes).any()):
                raise InputError("genes matrix has a choice outside a gene's range")
            return genes
        # architecture objects (or records): genes kept from sampling, see ``SearchSpace.genes_matrix``
        return self.space.genes_matrix(archs)

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return apply_calibration(self.lut.calibration, raw)

    # ---------------------------------------------------------------- prediction
    def predict_raw_many(self, archs: Iterable[Any] | np.ndarray) -> np.ndarray:
        """Uncalibrated predictions (overhead + net block sum) for archs or a genes matrix."""
        genes = self._genes(archs)
        out = np.empty(len(genes), dtype=np.float64)
        for s in range(0, len(genes), _CHUNK):
            idx = self.space.key_index_matrix(genes[s:s + _CHUNK])
            out[s:s + len(idx)] = self._cost[idx].sum(axis=1)
        return out + self.overhead_ms

    def predict_many(self, archs: Iterable[Any] | np.ndarray) -> np.ndarray:
        """Calibrated predictions in ms, shape ``(n,)``; vectorised over the whole batch."""
        return self._calibrate(self.predict_raw_many(archs))

    def predict_raw(self, arch: Any) -> float:
        arch = self._as_arch(arch)
        return self.overhead_ms + float(sum(self.key_cost[k] for k in self.space.block_keys(arch)))

    def predict(self, arch: Any) -> float:
        return float(self._calibrate(np.array([self.predict_raw(arch)]))[0])

    def predict_loop(self, archs: Iterable[Any]) -> np.ndarray:
        """The one-at-a-time reference: dictionary look-ups over each network's block keys."""
        return self._calibrate(np.array([self.predict_raw(a) for a in archs], dtype=np.float64))

    def min_latency(self) -> tuple[float, Any]:
        """The smallest predicted latency over the space and an architecture reaching it.

        Exact when the space's ``min_latency`` is; the calibration is strictly increasing, so the
        minimiser of the raw sum is also the minimiser of the calibrated prediction.
        """
        _, arch = self.space.min_latency(self.key_cost)
        # that network's prediction as predict_many sums it: the space's sum (in another order) could be one
        # bit lower, and then a budget of exactly it, which launches accept, was missed by every network
        return float(self.predict_many([arch])[0]), arch

    def describe(self) -> dict[str, Any]:
        lut, cal = self.lut, self.lut.calibration
        unstable = [k for k in lut.unstable_keys if k in self.key_cost]
        return {
            "device": lut.device,
            "space": self.space.name,
            "fingerprint_hash": lut.fingerprint_hash,
            "runtime": lut.runtime,
            "precision": lut.precision,
            "n_keys": len(self.key_cost),
            "overhead_ms": self.overhead_ms,
            "sync_extra_ms": lut.sync_extra_ms,
            "unstable_keys": len(unstable),
            "calibration": None if cal is None else {
                "model": cal.model, "params": dict(cal.params), "n_points": cal.n_points,
                "residual": cal.residual},
            "calibration_points": self.calibration_points,
        }
