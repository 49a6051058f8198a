"""``build_problem`` from Python (the request ``--resume`` reads back, or a script's), where no CLI check ran
before it (mutation audit of search/launch.py): the seed and budget checks name their flags, a budget past the
space's size is capped with a warning, a quantile budget is that quantile of 2,000 seeded random architectures,
and ``minimise`` adds its objectives."""

from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.search.launch import SearchRequest, build_problem

HW = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def request(**kw):
    return SearchRequest(**{"space": "nb201", "table": str(HW), "strategy": "random", "budget": 4, **kw})


@pytest.mark.parametrize("kw, message", [
    ({"seed": -1}, "--seed must be an integer from 0 to 2**63-1, got -1"),
    ({"budget": 0}, "--budget must be an integer >= 1, got 0"),
    ({"max_latency_quantile": 0.0, "latency_column": "raspi4_ms"}, "--max-latency-quantile must be in (0, 1], got 0.0"),
    ({"max_latency_quantile": 1.5, "latency_column": "raspi4_ms"}, "--max-latency-quantile must be in (0, 1], got 1.5"),
    ({"latency_column": "raspi4_ms", "table": None}, "--latency-column needs --table"),
    ({"max_latency_ms": (5.0,)}, "a latency budget needs a device (--device) or a table column (--latency-column)"),
    ({"max_latency_quantile": 0.5}, "a latency budget needs a device"),
    ({"evaluator": "tabular", "table": None}, "the tabular evaluator needs --table"),
    ({"evaluator_options": {"report": ["x"], "objective": "y"}}, "--eval-opt objective, report of the tabular "),
    ({"report": ("cifar10_valid",), "table": None, "evaluator": "params"}, "--report needs the tabular evaluator"),
    ({"minimise": ("params", "energy", "area")}, "unknown objective(s) to minimise: area, energy"),
])
def test_a_request_built_from_python_is_refused_with_the_flag_it_came_from(tmp_path, kw, message):
    notes = []
    with pytest.raises(InputError) as exc:
        build_problem(Project(tmp_path), request(**kw), notes.append)
    assert exc.value.message.startswith(message), exc.value.message
    assert notes == [] and list(tmp_path.iterdir()) == []


def test_a_budget_past_the_spaces_size_is_capped_with_a_warning(tmp_path):
    notes = []
    _, config = build_problem(Project(tmp_path), request(budget=20_000), notes.append)
    assert config.budget_evals == 15_625
    assert notes == ["warning: --budget 20000 is more than space 'nb201' has architectures (15625 at most): "
                     "capped at 15625"]
    _, config = build_problem(Project(tmp_path), request(budget=15_625), notes.append)
    assert config.budget_evals == 15_625 and len(notes) == 1
    _, config = build_problem(Project(tmp_path), request(budget=1), notes.append)
    assert config.budget_evals == 1 and len(notes) == 1


@pytest.mark.parametrize("q", [0.3, 1.0])
def test_a_quantile_budget_is_that_quantile_of_2000_random_architectures_of_the_seed(tmp_path, q):
    problem, config = build_problem(Project(tmp_path), request(latency_column="raspi4_ms", max_latency_quantile=q,
                                                               seed=7))
    (target,) = problem.devices
    rng = np.random.default_rng(7)
    sample = [problem.space.sample(rng) for _ in range(2000)]
    want = float(np.quantile(target.model.predict_many(sample), q))
    assert target.budget_ms == want and config.devices == (("raspi4_ms", want),)
    more = float(np.quantile(target.model.predict_many(sample + [problem.space.sample(rng)]), q))
    assert q == 1.0 or more != want  # one sample more would move it: the count is what is pinned


def test_minimise_adds_params_and_flops_as_objectives(tmp_path):
    plain, _ = build_problem(Project(tmp_path), request())
    problem, _ = build_problem(Project(tmp_path), request(minimise=("flops", "params")))
    assert plain.objective_names == ["cifar10_test"]
    assert problem.objective_names == ["cifar10_test", "params", "flops"]
    arch = problem.space.sample(np.random.default_rng(0))
    assert problem.extra["params"](arch) > 0 and problem.extra["flops"](arch) > 0


def test_a_device_with_a_lut_is_a_target_after_the_table_column_with_its_budget(tmp_path):
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space
    from tests.latency.test_predictor import make_lut

    LutStore(Project(tmp_path).luts_dir).save(make_lut(get_space("nb201")))
    notes = []
    problem, config = build_problem(Project(tmp_path), request(devices=("testdev",), latency_column="raspi4_ms",
                                                               max_latency_ms=(50.0, 600.0)), notes.append)
    assert [(d.name, d.budget_ms) for d in problem.devices] == [("raspi4_ms", 50.0), ("testdev", 600.0)]
    assert config.devices == (("raspi4_ms", 50.0), ("testdev", 600.0))
    assert len(notes) == 1 and notes[0].startswith("LUT for testdev: "), notes
    arch = problem.space.sample(np.random.default_rng(0))
    assert problem.devices[1].model.predict_many([arch])[0] > 0


def test_a_future_dated_lut_is_used_with_a_warning(tmp_path):
    import dataclasses
    import time

    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space
    from tests.latency.test_predictor import make_lut

    lut = dataclasses.replace(make_lut(get_space("nb201")), created_at=time.time() + 30 * 86400)
    LutStore(Project(tmp_path).luts_dir).save(lut)
    notes = []
    problem, _ = build_problem(Project(tmp_path), request(devices=("testdev",)), notes.append)
    assert [d.name for d in problem.devices] == ["testdev"]
    assert notes[0].startswith("LUT for testdev: ") and len(notes) == 2, notes
    assert notes[1].startswith("warning: LUT testdev/nb201 is dated ") and "in the future" in notes[1], notes
