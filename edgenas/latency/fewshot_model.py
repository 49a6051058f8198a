"""A device's few-shot latency model over a search space: features, the JSON record, the predictor.

Before a device has a LUT, its latency is predicted from ``k`` whole architectures measured on it
(``edgenas device add NAME --fewshot K``). The features of an architecture are what is known without
measuring it on the new device:

* the predictions of every **reference device** that has a LUT for the space (the fleet's other
  devices): the new device as a calibrated combination of devices already profiled; or, with
  ``--table``, the additive and non-additive parts of a latency table's columns (``fewshot_table``);
* **descriptors** of the architecture itself (``arch_descriptors``): for the MobileNetV3 spaces the
  multiply-accumulates, activation volume and block count summed over its block keys; for NAS-Bench-201
  cells the operation counts and the graph-aware live/dead counts of ``graph_descriptors``.

The regressor is ``MetaFewShot`` (``fewshot_meta``), with table references ``TableCorrected``
(``fewshot_table``); older records hold a ``FewShotEnsemble``; ``REGRESSORS`` loads each by its
``kind``. ``FewShotLatency`` serves the model to search like a
``LatencyPredictor`` (``predict_many`` and ``min_latency``). The record (``FewShotModel``) is JSON with
a schema number; no pickle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.latency.fewshot import graph_descriptors, op_counts
from edgenas.latency.fewshot_records import reading_model, record_count, record_number, record_strings
from edgenas.latency.fewshot_ensemble import FewShotEnsemble
from edgenas.latency.fewshot_meta import MetaFewShot
from edgenas.latency.fewshot_table import TableCorrected, TableReferences
from edgenas.limits import MAX_TIME, is_schema
from edgenas.safenames import NAME_RE

MODEL_SCHEMA = 1
# the fitted regressor inside a record, by its ``kind``: the meta-learned model (issue 17, part 1)
# and the first issue-17 ensemble, whose records still load
REGRESSORS: dict[str, Any] = {"fewshot-meta": MetaFewShot, "fewshot-ensemble": FewShotEnsemble,
                              TableCorrected.kind_name: TableCorrected}


def regressor_from_dict(d: Mapping[str, Any]) -> Any:
    """The fitted regressor of a record (``predict(features) -> ms``); an unknown kind is an InputError."""
    kind = d.get("kind") if isinstance(d, Mapping) else None
    if kind not in REGRESSORS:
        raise InputError(f"malformed few-shot latency model: unknown regressor kind {kind!r}",
                         hint="refit it: edgenas device add DEVICE --fewshot 20")
    return REGRESSORS[kind].from_dict(d)


def _block_costs(space: Any) -> tuple[np.ndarray, list[str]] | None:
    """Per vocabulary key: MACs (millions), output activations (thousands), 1 - for MBV3-style keys."""
    from edgenas.spaces.mbv3_keys import BlockSpec

    rows = []
    for key in space.key_vocab():
        try:
            b = BlockSpec.parse(key)
        except InputError:
            return None
        ih, oh = b.in_hw[0] * b.in_hw[1], b.out_hw[0] * b.out_hw[1]
        if b.kind == "expanded_conv":
            mid = b.expand or b.in_ch
            macs = (ih * b.in_ch * mid if mid != b.in_ch else 0) + oh * mid * b.kernel ** 2 + oh * mid * b.out_ch
        elif b.kind == "Conv":
            macs = oh * b.in_ch * b.out_ch * 9
        elif b.kind == "AvgPool2D":
            macs = ih * b.in_ch
        else:  # Conv_1, Conv_2, Logits: 1x1
            macs = oh * b.in_ch * b.out_ch
        rows.append((macs / 1e6, oh * b.out_ch / 1e3, 1.0))
    rows.append((0.0, 0.0, 0.0))  # the -1 padding of key_index_matrix
    return np.asarray(rows), ["macs_m", "activations_k", "n_blocks"]


def arch_descriptors(space: Any, archs: Sequence[Any]) -> tuple[np.ndarray, list[str]]:
    """Device-independent descriptors of ``archs`` (see the module doc); ``(n, 0)`` if none apply."""
    if space.name == "nb201":
        from edgenas.spaces.nb201 import OPS

        strings = [space.to_dict(a)["arch"] for a in archs]
        (c, cn), (g, gn) = op_counts(strings, OPS), graph_descriptors(strings, OPS)
        return np.hstack([c, g]), cn + gn
    costs = _block_costs(space)
    if costs is None:
        return np.zeros((len(archs), 0)), []
    table, names = costs
    idx = space.key_index_matrix(space.genes_matrix(list(archs)))
    return table[idx].sum(axis=1), names


def model_features(space: Any, archs: Sequence[Any], references: Sequence[Any],
                   table: TableReferences | None = None) -> np.ndarray:
    """The features of ``archs``: reference LUT predictions then descriptors; with ``table``, its
    additive parts, descriptors, then its non-additive parts (``TableCorrected``'s layout)."""
    archs = list(archs)
    desc, _ = arch_descriptors(space, archs)
    if table is not None:
        add, nonadd = table.parts(space, archs)
        return np.column_stack([add, desc, nonadd])
    refs = [np.asarray(r.predict_many(archs), dtype=float) for r in references]
    return np.column_stack(refs + [desc]) if refs or desc.shape[1] else np.zeros((len(archs), 0))


@dataclass(frozen=True)
class FewShotModel:
    """The record: which device and space, which reference LUTs feed it, the fitted ensemble."""

    device: str
    space: str
    fingerprint_hash: str
    runtime: str
    references: tuple[tuple[str, str], ...]  # (device, LUT fingerprint hash) in feature order
    descriptor_names: tuple[str, ...]
    ensemble: dict[str, Any]  # the regressor's record (kind "fewshot-meta"; "fewshot-ensemble" before)
    n_points: int
    created_at: float = field(default_factory=time.time)
    #: the references from a latency table instead of fleet LUTs (``TableReferences.to_dict``; then
    #: ``references`` is empty)
    table: dict[str, Any] | None = None
    #: each reference LUT's calibration when the model was fitted (``Calibration.to_dict`` or None), in
    #: feature order: the features are those predictions, so a later refit of a reference's calibration
    #: (a deploy on it) does not move this device's. None in records from before it was kept: their
    #: references' calibrations of the day are used
    reference_calibrations: tuple[dict[str, Any] | None, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"schema": MODEL_SCHEMA, "kind": "fewshot-latency", "device": self.device, "space": self.space,
               "fingerprint_hash": self.fingerprint_hash, "runtime": self.runtime,
               "references": [list(r) for r in self.references], "descriptor_names": list(self.descriptor_names),
               "ensemble": self.ensemble, "n_points": self.n_points, "created_at": self.created_at}
        if self.table is not None:
            out["table"] = self.table
        if self.reference_calibrations is not None:
            out["reference_calibrations"] = list(self.reference_calibrations)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "few-shot model") -> "FewShotModel":
        with reading_model(where):
            if not is_schema(d.get("schema"), MODEL_SCHEMA) or d.get("kind") != "fewshot-latency":
                raise ValueError(f"not a few-shot latency model of schema {MODEL_SCHEMA}")
            words = [d[k] for k in ("device", "space", "fingerprint_hash", "runtime")]
            if not all(isinstance(w, str) for w in words):
                raise ValueError("device, space, fingerprint_hash and runtime must be strings")
            pairs = d["references"]
            if not isinstance(pairs, list) or not all(
                    isinstance(r, list) and len(r) == 2 and all(isinstance(x, str) for x in r) for r in pairs):
                raise ValueError("references must be a list of [device, LUT fingerprint hash] pairs")
            refs = tuple((a, b) for a, b in d["references"])
            if not isinstance(d["ensemble"], dict) or not (d.get("table") is None or isinstance(d["table"], dict)):
                raise ValueError("ensemble and table must be JSON objects")
            m = cls(device=words[0], space=words[1], fingerprint_hash=words[2], runtime=words[3], references=refs,
                    descriptor_names=tuple(record_strings(d["descriptor_names"], "descriptor_names")),
                    ensemble=dict(d["ensemble"]), n_points=record_count(d["n_points"], "n_points", low=1),
                    created_at=record_number(d.get("created_at", 0.0), "created_at", low=0, high=MAX_TIME),
                    table=None if d.get("table") is None else dict(d["table"]),
                    reference_calibrations=_calibrations(d.get("reference_calibrations"), len(refs)))
            for name in (m.device, m.space, *(r[0] for r in refs)):
                if not NAME_RE.match(name):
                    raise ValueError(f"bad device or space name {name[:40]!r}")
            if m.table is not None and (refs or m.table.get("kind") != "table-references"):
                raise ValueError("table references come instead of reference LUTs")
            if (m.table is not None) != (m.ensemble.get("kind") == TableCorrected.kind_name):
                raise ValueError("a table-corrected regressor goes with table references, and only with them")
            _check_width(m, regressor_from_dict(m.ensemble))
            inner = m.ensemble.get("inner")
            if isinstance(inner, dict) and "pool_seed" in inner:  # what a refit chooses on: checked on reading,
                record_count(inner["pool_seed"], "inner pool_seed")  # not after a deploy's measurement
        return m


def _calibrations(value: Any, n: int) -> tuple[dict[str, Any] | None, ...] | None:
    """A record's ``reference_calibrations``: absent, or one checked calibration (or null) per reference."""
    from edgenas.latency.lut import Calibration

    if value is None:
        return None
    if not isinstance(value, list) or len(value) != n:
        raise ValueError(f"reference_calibrations must be a list of {n} calibrations (or nulls), one per reference")
    out = []
    for i, c in enumerate(value):
        try:
            out.append(None if c is None else Calibration.from_dict(c).to_dict())
        except InputError as exc:  # its words are a LUT's
            raise ValueError(f"reference_calibrations[{i}] is not a calibration ({exc.message[:120]})") from None
    return tuple(out)


def _check_width(model: FewShotModel, reg: Any) -> None:
    """The regressor takes the features the record's references and descriptors make (``model_features``)."""
    n_desc = len(model.descriptor_names)
    if isinstance(reg, TableCorrected):
        columns = model.table.get("columns") if model.table is not None else None
        n = len(columns) if isinstance(columns, list) else -1
        ok = reg.n_refs == n and reg.meta._width == n + n_desc
    elif isinstance(reg, MetaFewShot):
        ok = reg.n_refs == len(model.references) and reg._width == len(model.references) + n_desc
    else:  # FewShotEnsemble
        ok = reg.is_latency.size == len(model.references) + n_desc
    if not ok:
        raise ValueError(f"the regressor does not take the features of {len(model.references)} reference LUTs "
                         f"or table columns and {n_desc} descriptors")


def model_path(luts_dir: Path, device: str, space: str) -> Path:
    """``luts/DEVICE/fewshot/SPACE.json`` (a sub-folder: LUT listings never see it)."""
    for what, v in (("device", device), ("space", space)):
        if not NAME_RE.match(v):
            raise InputError(f"invalid {what} name {v!r}", hint="letters, digits, '.', '_' and '-' only")
    return Path(luts_dir) / device / "fewshot" / f"{space}.json"


def check_not_linked(luts_dir: Path, path: Path) -> None:
    """Neither the record ``path`` nor a folder between it and ``luts_dir`` is a symbolic link, and it resolves
    inside the project (the folder above ``luts_dir``): as for LUT files (``store.check_inside``), a planted
    link must neither feed search a record from elsewhere nor have a refit write outside the project."""
    from edgenas.latency.store import check_inside

    root = Path(luts_dir)
    project_root = root.parent.resolve()
    for p in (root, path.parent.parent, path.parent):
        check_inside(p, project_root, "few-shot model folder")
    check_inside(path, project_root, "few-shot model file")


def save_model(luts_dir: Path, model: FewShotModel) -> Path:
    """Write the record (indented JSON; compact when it carries table references, 1-2 MB)."""
    from edgenas.io import atomic_write_json

    path = model_path(luts_dir, model.device, model.space)
    FewShotModel.from_dict(model.to_dict())  # validate before touching anything
    check_not_linked(luts_dir, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, model.to_dict(), compact=model.table is not None)
    return path


def load_model(luts_dir: Path, device: str, space: str) -> FewShotModel | None:
    """The record of ``device`` and ``space`` (None if there is none), checked: a link, a record of another
    device or space, or a malformed one is one ``InputError``."""
    from edgenas.io import read_json

    from edgenas.spaces import get_space

    path = model_path(luts_dir, device, space)
    check_not_linked(luts_dir, path)
    if not path.exists():
        return None
    refit = f"refit it: edgenas device add {device} --fewshot 20 --space {space}, or remove {path}"
    try:
        model = FewShotModel.from_dict(read_json(path, "few-shot model"), where=str(path))
        if (model.device, model.space) != (device, space):
            raise InputError(f"{path}: the few-shot model of device '{model.device[:40]}' and space "
                             f"'{model.space[:40]}' lies where that of '{device}' and '{space}' belongs")
        if model.table is not None:  # checked here too, where the file is known
            with reading_model(str(path)):
                TableReferences.from_dict(model.table, get_space(space))
    except InputError as exc:
        raise InputError(exc.message, hint=refit) from None
    return model


class FewShotLatency:
    """``predict_many``/``min_latency`` from a ``FewShotModel`` and its reference predictors."""

    def __init__(self, model: FewShotModel, space: Any, references: Sequence[Any]) -> None:
        if len(references) != len(model.references):
            raise InputError(f"few-shot model of '{model.device}' needs {len(model.references)} reference "
                             f"LUTs, got {len(references)}")
        self.model, self.space, self.references = model, space, list(references)
        self.ensemble = regressor_from_dict(model.ensemble)
        self.table = None if model.table is None else TableReferences.from_dict(model.table, space)
        self.calibration_points = model.n_points

    def features(self, archs: Sequence[Any]) -> np.ndarray:
        return model_features(self.space, archs, self.references, self.table)

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray:
        with np.errstate(all="ignore"):
            out = np.asarray(self.ensemble.predict(self.features(archs)), dtype=float)
        if not np.all(np.isfinite(out) & (out > 0)):  # a fitted model never does this; an edited record can
            raise InputError(f"the few-shot model of '{self.model.device}' predicts a latency that is not a "
                             "finite positive number", hint=f"refit it: edgenas device add {self.model.device} "
                                                            f"--fewshot 20 --space {self.space.name}")
        return out

    def predict(self, arch: Any) -> float:
        return float(self.predict_many([arch])[0])

    def min_latency(self, n: int = 4096, seed: int = 0) -> tuple[float, Any]:
        """The smallest prediction over a seeded sample and the references' fastest architectures.

        An estimate (the ensemble has no exact minimiser): it can be above the true minimum."""
        rng = np.random.default_rng(seed)
        archs = [self.space.from_genes(g) for g in self.space.sample_genes(rng, n)]
        archs += [r.min_latency()[1] for r in self.references if hasattr(r, "min_latency")]
        pred = self.predict_many(archs)
        i = int(np.argmin(pred))
        return float(pred[i]), archs[i]


def matching_references(luts_dir: Path, space: Any, model: FewShotModel) -> list[tuple[str, str, Any]]:
    """(device, fingerprint hash, predictor) of the exact reference LUTs ``model`` was fitted with, each
    with the calibration it had then (``FewShotModel.reference_calibrations``) where the record keeps it."""
    from dataclasses import replace

    from edgenas.latency.lut import Calibration
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore

    store, out = LutStore(Path(luts_dir)), []
    kept = model.reference_calibrations or (None,) * len(model.references)
    for (dev, fph), cal in zip(model.references, kept):
        lut = store.find(dev, space.name, fph)
        if lut is None:
            raise InputError(f"few-shot model of '{model.device}' rests on the LUT of '{dev}' "
                             f"({fph[:12]}), which is gone",
                             hint=f"refit: edgenas device add {model.device} --fewshot 20 --space {space.name}")
        if model.reference_calibrations is not None:
            lut = replace(lut, calibration=None if cal is None else Calibration.from_dict(cal))
        out.append((dev, fph, LatencyPredictor(lut, space)))
    return out


def load_latency_model(luts_dir: Path, device: str, space: Any) -> FewShotLatency | None:
    """The device's few-shot latency model for ``space``, or None if it has none."""
    model = load_model(luts_dir, device, space.name)
    if model is None:
        return None
    return FewShotLatency(model, space, [r[2] for r in matching_references(luts_dir, space, model)])
