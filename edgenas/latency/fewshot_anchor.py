"""The nearest reference as an anchor for a new device's few-shot latency (issue 17, part 1): ``Anchor``.

A device measured on ``k`` architectures often has a close relative among the references: another ARM
board, another GPU of the same generation. On NAS-Bench-201 the Raspberry Pi 4 and the Pixel 3 share
most of what is not additive in their latencies, and so do the 1080 Ti and the Titan RTX. A
combination of all references, fitted on ``k`` points, spends them on weights that such a pair does
not need. The anchor is the one-relative model:

    log y = log S_src + c + beta . z(D)

* ``S_src``: the reference's own smoothed latency (for table references, the additive part times
  ``exp`` of the non-additive part: what its measured column says, without its noise);
* ``src``: the reference whose log ratio to the ``k`` measured points varies least (the median
  absolute deviation around its median), chosen from those points alone;
* ``c``, ``beta``: Huber's loss on the log ratio (``fewshot_meta.huber_irls``, via a ``MetaFewShot``
  without references), ridge ``lam`` on ``beta``; ``z(D)``: the descriptors standardised over the
  ``k`` points. The slope on ``log S_src`` is 1: the relative's shape is kept, not re-fitted;
* ``lam``: of ``LAMS``, the one with the smallest median absolute leave-one-out log residual on the
  ``k`` points (``DEFAULT_LAM`` below ``MIN_LOO`` points), unless given. ``TableCorrected`` fits no
  anchor below ``MIN_LOO`` points.

``TableCorrected`` averages its prediction with the anchor's (geometric mean), and shrinks its own
weights on the references' non-additive parts toward the same reference (``Anchor.source``). The
anchor alone is worse where a device has no relative (the Xeon's nearest reference is a GPU); averaged,
it lifted the median share within +-10% over 20 draws on four of five devices at every k and cost the
Xeon 0.5-1.4 points (bench/RESULTS.md). JSON record (kind ``fewshot-anchor``), no pickle.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.fewshot_records import reading_model, record_count, record_number, record_vector
from edgenas.latency.fewshot_meta import MetaConfig, MetaFewShot
from edgenas.limits import is_schema

ANCHOR_SCHEMA = 1
LAMS = (3.0, 10.0, 30.0, 100.0)
DEFAULT_LAM = 30.0
MIN_LOO = 5  # points at least to choose lam by leave-one-out


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x))))


def nearest_reference(log_refs: np.ndarray, y: np.ndarray) -> int:
    """The reference whose log ratio to the measured latencies ``y`` varies least (median absolute
    deviation around its median): the new device's nearest relative, judged from the measured points
    alone."""
    logr = np.log(y)[:, None] - log_refs
    return int(np.argmin([_mad(logr[:, j]) for j in range(log_refs.shape[1])]))


class Anchor:
    """``fit(log_refs, descriptors, y_ms)`` / ``predict(log_refs, descriptors) -> ms``; ``log_refs`` are
    the references' smoothed log latencies, one column each."""

    kind_name = "fewshot-anchor"

    def __init__(self, lam: float | None = None) -> None:
        if lam is not None and not lam > 0:
            raise InputError(f"the anchor's ridge penalty must be > 0, got {lam}")
        self.lam = lam  # None: chosen by leave-one-out in fit
        self.source = -1
        self._mu, self._scale = np.zeros(0), np.zeros(0)
        self.ratio: MetaFewShot | None = None

    @staticmethod
    def _check(log_refs: Any, descriptors: Any) -> tuple[np.ndarray, np.ndarray]:
        L, D = np.asarray(log_refs, dtype=float), np.asarray(descriptors, dtype=float)
        if L.ndim != 2 or D.ndim != 2 or L.shape[0] != D.shape[0] or L.shape[1] < 1:
            raise InputError(f"need log references (n, >= 1) and descriptors (n, d), got {L.shape}, {D.shape}")
        if not (np.isfinite(L).all() and np.isfinite(D).all()):
            raise InputError("log references and descriptors must be finite")
        return L, D

    def _ratio_model(self, Z: np.ndarray, t: np.ndarray, lam: float) -> MetaFewShot:
        """Huber ridge of the ratio ``exp(t)`` to the source on the standardised descriptors ``Z``."""
        config = MetaConfig(space="log", lam_desc=lam, selection="random", loss="huber")
        return MetaFewShot(0, None, config).fit(Z, np.exp(t))

    def _choose_lam(self, Z: np.ndarray, t: np.ndarray) -> float:
        if t.size < MIN_LOO:
            return DEFAULT_LAM
        scores = []
        for lam in LAMS:
            res = [float(np.log(self._ratio_model(np.delete(Z, i, 0), np.delete(t, i), lam).predict(Z[i:i + 1])[0])
                         - t[i]) for i in range(t.size)]
            scores.append(float(np.median(np.abs(res))))
        return LAMS[int(np.argmin(scores))]  # first of equals: the least shrunk

    def fit(self, log_refs: Any, descriptors: Any, y_ms: Any) -> "Anchor":
        L, D = self._check(log_refs, descriptors)
        y = np.asarray(y_ms, dtype=float).ravel()
        if y.size != L.shape[0] or y.size == 0 or not np.isfinite(y).all() or (y <= 0).any():
            raise InputError("need one finite target latency > 0 per row")
        self.source = nearest_reference(L, y)
        self._mu = D.mean(axis=0)
        sd = D.std(axis=0)
        self._scale = np.where(sd > 0, sd, 1.0)
        Z, t = (D - self._mu) / self._scale, np.log(y) - L[:, self.source]
        if self.lam is None:
            self.lam = self._choose_lam(Z, t)
        self.ratio = self._ratio_model(Z, t, self.lam)
        return self

    def predict(self, log_refs: Any, descriptors: Any) -> np.ndarray:
        if self.ratio is None:
            raise InputError("Anchor.predict called before fit")
        L, D = self._check(log_refs, descriptors)
        if L.shape[1] <= self.source or D.shape[1] != self._mu.size:
            raise InputError(f"features do not match the anchor: source {self.source}, {self._mu.size} descriptors")
        return np.exp(L[:, self.source]) * self.ratio.predict((D - self._mu) / self._scale)

    def to_dict(self) -> dict[str, Any]:
        if self.ratio is None:
            raise InputError("Anchor.to_dict called before fit")
        return {"schema": ANCHOR_SCHEMA, "kind": self.kind_name, "source": self.source, "lam": self.lam,
                "mu": self._mu.tolist(), "scale": self._scale.tolist(), "ratio": self.ratio.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], n_refs: int) -> "Anchor":
        """Rebuild from ``to_dict``'s record, checked against ``n_refs`` references."""
        with reading_model("few-shot anchor"):
            if not is_schema(d.get("schema"), ANCHOR_SCHEMA) or d.get("kind") != cls.kind_name:
                raise ValueError(f"not a {cls.kind_name} record of schema {ANCHOR_SCHEMA}")
            a = cls(record_number(d["lam"], "lam", positive=True))
            a.source = record_count(d["source"], "source")
            if not a.source < n_refs:
                raise ValueError(f"source {a.source} is not one of {n_refs} references")
            a._mu = record_vector(d["mu"], "mu")
            a._scale = record_vector(d["scale"], "scale", a._mu.size, positive=True)
            a.ratio = MetaFewShot.from_dict(d["ratio"])
            if a.ratio.n_refs != 0 or a.ratio._width != a._mu.size:
                raise ValueError("descriptor statistics do not match the ratio model")
        return a

    def describe(self) -> dict[str, Any]:
        return {"anchor_source": self.source, "anchor_lam": self.lam}
