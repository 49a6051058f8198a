"""Shared pieces for the search tests: the nb201 space, a key-cost latency model, a formula evaluator."""

from pathlib import Path

import numpy as np
import pytest

from edgenas.evaluate.base import Evaluator
from edgenas.spaces import SPACES
from edgenas.spaces import nb201  # noqa: F401

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
VALID = TABLE.with_name("nb201_valid.csv")


@pytest.fixture
def valid():
    if not VALID.exists():
        pytest.skip(f"reference table not found at {VALID}")
    return str(VALID)


class KeyCostLatency:
    """A LUT-like latency model: the sum of per-block-key costs (exact minimum from the space)."""

    def __init__(self, space, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.space = space
        self.cost = {k: float(rng.uniform(0.1, 1.0)) for k in space.key_vocab()}
        for k in self.cost:
            if "-op-none-" in k:
                self.cost[k] = 0.0

    def predict_many(self, archs):
        return np.array([sum(self.cost[k] for k in self.space.block_keys(a)) for a in archs])

    def min_latency(self):
        return self.space.min_latency(self.cost)


class FormulaEvaluator(Evaluator):
    """Accuracy-like score: a fixed weighted sum of op choices (optimum known: all nor_conv_3x3)."""

    name = "formula"
    metric = "formula score"
    weights = np.array([0.0, 1.0, 2.0, 3.0, 1.5])

    def evaluate(self, archs):
        return np.array([self.weights[self.space.to_genes(a)].sum() + 0.01 * self.space.to_genes(a)[0]
                         for a in archs], dtype=float)


@pytest.fixture
def space():
    return SPACES.get("nb201")


@pytest.fixture
def table():
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    return TABLE


@pytest.fixture
def Lat():
    return KeyCostLatency


@pytest.fixture
def formula(space):
    return FormulaEvaluator(space)


@pytest.fixture
def interrupt_darts_after(monkeypatch):
    """``interrupt_darts_after(epoch)`` makes the DARTS trainers (both relaxations write their checkpoints
    through ``darts_train``) raise KeyboardInterrupt right after that epoch's checkpoint; the function it
    returns undoes that."""
    from edgenas.search import darts_train

    real = darts_train.atomic_write_json

    def arm(epoch: int):
        def write(path, obj):
            real(path, obj)
            if path.name == "checkpoint.json" and obj["epoch"] == epoch:
                raise KeyboardInterrupt

        monkeypatch.setattr(darts_train, "atomic_write_json", write)
        return lambda: monkeypatch.setattr(darts_train, "atomic_write_json", real)

    return arm
