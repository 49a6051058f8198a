"""The evaluator interface: ``CachedEvaluator`` and ``build_evaluator`` (torch-free, on the nb201 space)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate.base import CachedEvaluator, Evaluator, build_evaluator, evaluator_names, make_evaluator
from edgenas.spaces import SPACES

TABLE = "index,arch,cifar10_test,cifar100_test\n0,{a},91.5,70.25\n1,{b},10.0,1.0\n"


class Scripted(Evaluator):
    """Scores from a dict keyed by architecture id; records each batch it is asked for."""

    name, metric = "scripted", "scripted score"

    def __init__(self, space, values) -> None:
        super().__init__(space)
        self.values, self.batches = values, []

    def evaluate(self, archs):
        self.batches.append([self.space.arch_id(a) for a in archs])
        return np.array([self.values[self.space.arch_id(a)] for a in archs])

    def report(self, archs):
        return {"twice": np.array([2 * self.values[self.space.arch_id(a)] for a in archs])}

    def describe(self):
        return {"name": self.name, "metric": self.metric, "option": 1}


def _archs(space, n):
    rng = np.random.default_rng(3)
    out: dict[str, object] = {}
    while len(out) < n:
        a = space.sample(rng)
        out.setdefault(space.arch_id(a), a)
    return list(out.values())


def test_each_architecture_is_scored_once_and_broken_ones_come_back_neg_inf():
    space = SPACES.get("nb201")
    a, b, c, d, e, f = _archs(space, 6)
    ids = [space.arch_id(x) for x in (a, b, c, d, e, f)]
    inner = Scripted(space, dict(zip(ids, [1.5, math.nan, math.inf, -2.0, -math.inf, 7.0])))
    ev = CachedEvaluator(inner)
    assert (ev.name, ev.metric, ev.space, ev.describe()) == ("scripted", "scripted score", space, inner.describe())
    first = ev.evaluate([a, b, a, c, d, e])
    assert first.dtype == np.float64 and first.tolist() == [1.5, -math.inf, 1.5, -math.inf, -2.0, -math.inf]
    assert inner.batches == [ids[:5]] and ev.calls == 5  # a asked for twice, scored once
    second = ev.evaluate([c, a, f])
    assert second.tolist() == [-math.inf, 1.5, 7.0] and inner.batches[1:] == [ids[5:]] and ev.calls == 6
    assert ev.evaluate([f, a]).tolist() == [7.0, 1.5] and len(inner.batches) == 2  # nothing new: no call
    assert ev.report([a, d])["twice"].tolist() == [3.0, -4.0]
    assert ev.evaluate([]).shape == (0,) and len(inner.batches) == 2


def test_a_factory_is_given_only_the_options_it_takes(tmp_path):
    space = SPACES.get("nb201")
    a, b = _archs(space, 2)
    table = tmp_path / "t.csv"
    table.write_text(TABLE.format(a=a.string, b=b.string))
    ev = make_evaluator("tabular", space, seed=3, table=str(table), objective="cifar100_test")
    assert isinstance(ev, CachedEvaluator) and ev.evaluate([b, a]).tolist() == [1.0, 70.25]
    with pytest.raises(InputError, match="evaluator 'tabular': unknown option.s. colour, epochs") as err:
        build_evaluator("tabular", space, 0, {"table": str(table), "epochs": 3, "colour": "red"})
    assert err.value.hint == "its options: objective, report, table"
    with pytest.raises(InputError, match="seed is not an evaluator option"):
        build_evaluator("tabular", space, 0, {"table": str(table), "seed": 1})
    assert {"tabular", "naswot", "ct_prior", "supernet"} <= set(evaluator_names())


def test_the_interface_defaults():
    """An evaluator that states nothing reports no columns and describes itself by name and metric;
    ``make_evaluator`` seeds with 0 unless told."""

    class Bare(Evaluator):
        name, metric = "bare", "nothing"

        def evaluate(self, archs):
            return np.zeros(len(archs))

    space = SPACES.get("nb201")
    bare = Bare(space)
    assert bare.report(_archs(space, 1)) == {} and bare.describe() == {"name": "bare", "metric": "nothing"}
    assert make_evaluator("params", space).describe()["seed"] == 0


class Miscounting(Evaluator):
    """A faulty plugin: its scores are not one number per architecture."""

    name = "miscounting"

    def __init__(self, space, answer) -> None:
        super().__init__(space)
        self.answer = answer

    def evaluate(self, archs):
        return self.answer(archs)


@pytest.mark.parametrize("answer, shown", [(lambda archs: [1.0] * (len(archs) - 1), "of shape (2,)"),
                                           (lambda archs: [[1.0]] * len(archs), "of shape (3, 1)"),
                                           (lambda archs: ["high"] * len(archs), "not numbers (ValueError)"),
                                           (lambda archs: [None, {}, 1.0], "not numbers (TypeError)")])
def test_a_plugin_that_does_not_return_one_score_per_architecture_is_one_error(answer, shown):
    """One score short was cut by zip in the cache (then an internal KeyError), or an IndexError in a search."""
    from edgenas.errors import EdgenasError
    from edgenas.search import Problem

    space = SPACES.get("nb201")
    archs = _archs(space, 3)
    for ev in (CachedEvaluator(Miscounting(space, answer)), Problem(space, Miscounting(space, answer))):
        with pytest.raises(EdgenasError) as exc:
            ev.evaluate(archs)
        assert type(exc.value) is EdgenasError
        assert exc.value.message == f"evaluator 'miscounting' returned scores {shown} for 3 architectures"
    ev = CachedEvaluator(Miscounting(space, lambda archs: [float(len(archs))] * len(archs)))
    assert ev.evaluate(archs).tolist() == [3.0] * 3  # one per architecture: taken
