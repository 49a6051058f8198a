"""What a search is about, as a record: the task (dataset and its meta-features) and how alike two are.

A task is ``{"dataset", "modality", "classes", "input_size", "channels", "samples", "meta"}``. For the
benchmark tables the dataset follows from the objective column (``cifar100_test`` -> CIFAR-100, whose
card is known); for evaluators reading data (``data=digits``, an ``.npz`` file, an image folder) the
numbers come from the data when it is at hand, else from the known cards.

Task similarity (``task_similarity``) is 0 across modalities and 1 for the same dataset; otherwise it
is ``exp(-d^2 / (2 sigma^2))`` of the distance ``d`` between meta-feature vectors
``(log10 classes, log10 samples, log2 input size, channels / 3)`` with ``sigma = 2``: a dataset with 10x
the classes at half the resolution (CIFAR-10 -> ImageNet16-120) stays similar (0.74), a 30x smaller
grey-scale set at a quarter of the resolution (CIFAR-10 -> digits) does not (0.44).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

SIGMA = 2.0

#: dataset cards: classes, input size (side, px), channels, training samples
CARDS: dict[str, dict[str, Any]] = {
    "cifar10": {"classes": 10, "input_size": 32, "channels": 3, "samples": 50000},
    "cifar100": {"classes": 100, "input_size": 32, "channels": 3, "samples": 50000},
    "imagenet16": {"classes": 120, "input_size": 16, "channels": 3, "samples": 151700},
    "imagenet": {"classes": 1000, "input_size": 224, "channels": 3, "samples": 1281167},
    "digits": {"classes": 10, "input_size": 8, "channels": 1, "samples": 1797},
}


def _card(name: str, modality: str = "image", **kw: Any) -> dict[str, Any]:
    card = dict(CARDS.get(name, {}), **{k: v for k, v in kw.items() if v is not None})
    task = {"dataset": name, "modality": modality, **card}
    task["meta"] = meta_features(task)
    return task


def dataset_of_column(column: str) -> str:
    """``cifar100_test`` / ``cifar10_valid_12ep`` -> ``cifar100`` / ``cifar10``."""
    return column.split("_", 1)[0]


def is_test_column(column: str) -> bool:
    """``cifar10_test`` / ``cifar100_test_12ep``: a benchmark table's test accuracy, which the standard
    protocol (optimise a validation column, report the test one) must never let choose an architecture."""
    return "_test" in column


def request_getter(request: Any) -> Any:
    """``get(key, default)`` over a ``SearchRequest`` or its JSON."""
    if isinstance(request, Mapping):
        return lambda k, d=None: request.get(k, d)
    return lambda k, d=None: getattr(request, k, d)


def describe_task(request: Any) -> dict[str, Any]:
    """The task of a ``SearchRequest`` (or its JSON) as a record with meta-features."""
    get = request_getter(request)
    options = get("evaluator_options") or {}
    if get("strategy") == "darts":  # it trains on its own data: a --table gives its latency only (it was
        options = get("strategy_options") or {}  # recorded as the table's CIFAR-10 while it trained on digits)
    elif get("table"):
        return _card(dataset_of_column(str(get("objective") or "cifar10_test")), source="table")
    if get("ladder"):  # multi-fidelity: the last rung's evaluator says what the run is about
        from edgenas.search.ladder import Rung

        last = Rung.parse(str(list(get("ladder"))[-1]))
        if last.evaluator == "nb201-fidelity":  # NAS-Bench-201's CIFAR-10 validation columns: not digits
            return _card(dataset_of_column(str(last.options.get("column", "cifar10_valid_12ep"))), source="table")
        options = last.options
    data = options.get("data", "digits")
    name = Path(str(data)).stem if str(data) not in CARDS else str(data)
    if str(data) in CARDS:
        return _card(str(data), source="card")
    return _card(name, **_measure(str(data)))


def _measure(spec: str) -> dict[str, Any]:
    """Classes, samples, size and channels read from the data itself (nothing when unreadable)."""
    try:
        from edgenas.datasets import load_dataset

        d = load_dataset(spec)
    except Exception:  # noqa: BLE001 - the task is then known by name only
        return {"source": "name"}
    return {"classes": int(d.num_classes), "samples": len(d), "input_size": int(d.x.shape[-1]),
            "channels": int(d.x.shape[1]), "source": "data"}


def meta_features(task: Mapping[str, Any]) -> list[float] | None:
    try:
        return [math.log10(float(task["classes"])), math.log10(float(task["samples"])),
                math.log2(float(task["input_size"])), float(task["channels"]) / 3.0]
    except (KeyError, TypeError, ValueError):
        return None


def task_similarity(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    if a.get("modality", "image") != b.get("modality", "image"):
        return 0.0
    if a.get("dataset") == b.get("dataset") and a.get("dataset"):
        return 1.0
    fa, fb = a.get("meta") or meta_features(a), b.get("meta") or meta_features(b)
    if not fa or not fb or len(fa) != len(fb):
        return 0.0  # nothing known to compare: no transfer
    d2 = float(np.sum((np.asarray(fa) - np.asarray(fb)) ** 2))
    return math.exp(-d2 / (2 * SIGMA ** 2))
