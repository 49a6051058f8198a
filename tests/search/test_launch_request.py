"""``SearchRequest`` as ``request.json`` holds it, and the request's plain numbers at their bounds (mutation
audit): a request file of schema 1 with only a space reads back with the defaults a search documents, anything
else is refused as not a request, and [0, 1] / > 0 include and exclude what they say."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.search.launch import SearchRequest, _check_numbers

HW = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def test_a_request_json_with_only_a_space_reads_back_with_the_documented_defaults():
    req = SearchRequest.from_json({"schema": 1, "space": "nb201"})
    assert req == SearchRequest(space="nb201")
    assert (req.strategy, req.budget, req.seed, req.checkpoint_every, req.eta) == ("tpe", 100, 0, 10, 3)
    assert (req.transfer_ratio, req.min_similarity, req.max_wall_s) == (0.5, 0.6, None)
    full = SearchRequest(space="nb201", devices=("a", "b"), max_latency_ms=(5.0, 7.5), table=(str(HW), str(HW)),
                         minimise=("params",), warm_start=("auto",), ladder=("params",), strategy_options={"x": 1})
    assert full.to_json()["schema"] == 1
    assert SearchRequest.from_json(full.to_json()) == full
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.budget = 5  # type: ignore[misc]


@pytest.mark.parametrize("record", [[1, 2], "nb201", None, {"schema": 2, "space": "nb201"}, {"space": "nb201"},
                                    {"schema": "1", "space": "nb201"}, {"schema": True, "space": "nb201"},
                                    {"schema": 1.0, "space": "nb201"}])
def test_anything_but_a_request_of_schema_1_is_refused(record):
    with pytest.raises(InputError, match="^r.json: not a search request of schema 1$"):
        SearchRequest.from_json(record, "r.json")


@pytest.mark.parametrize("v", [0.0, 1.0, 0.25])
def test_a_ratio_and_a_similarity_of_0_or_1_are_in_range(v):
    assert _check_numbers(SearchRequest(space="nb201", transfer_ratio=v, min_similarity=v)) is None  # no refusal


@pytest.mark.parametrize("field, flag", [("transfer_ratio", "--transfer-ratio"),
                                         ("min_similarity", "--min-similarity")])
@pytest.mark.parametrize("v", [1.5, -0.01, float("nan"), True])
def test_a_ratio_or_a_similarity_outside_0_1_is_refused(field, flag, v):
    with pytest.raises(InputError, match=f"^{flag} must be in \\[0, 1\\], got ") as exc:
        _check_numbers(SearchRequest(space="nb201", **{field: v}))
    assert exc.value.hint == f"e.g. {flag} 0.5"


def test_a_time_budget_is_any_number_of_seconds_above_0():
    for ok in (None, 0.5, 1e-3, 600):
        _check_numbers(SearchRequest(space="nb201", max_wall_s=ok))
    for bad in (0, 0.0, -1.0, np.inf, np.nan):
        with pytest.raises(InputError, match="^--time-budget must be a number of seconds > 0") as exc:
            _check_numbers(SearchRequest(space="nb201", max_wall_s=bad))
        assert exc.value.hint == "e.g. --time-budget 600"


@pytest.mark.parametrize("kw, msg", [
    ({"minimise": ("params", "flops", "params")}, "--minimise params is given twice (give it once)"),
    ({"report": ("cifar100_test", "cifar100_test")}, "--report cifar100_test is given twice (give it once)"),
    ({"warm_start": ("ab0000000001", "ab0000000001")}, "--warm-start ab0000000001 is given twice (give it once)"),
    ({"strategy": "evolution", "population": 6, "strategy_options": {"population": 4}},
     "--population 6 and --strategy-opt population=4 both set evolution's population (give it once, as --population)"),
    ({"strategy": "ri-iwoa", "llm_share": 0.5, "strategy_options": {"llm_share": 0.9}},
     "--llm-share 0.5 and --strategy-opt llm_share=0.9 both set ri-iwoa's llm_share (give it once, as --llm-share)"),
    ({"strategy": "sh", "table": None, "ladder": ("params", "params:keep=1")}, "--ladder rung 2 repeats rung 1"),
    # a strategy that takes no ladder says so, not that a rung it would never run repeats another
    ({"strategy": "evolution", "ladder": ("params", "params:keep=1")},
     "--ladder needs --strategy sh or hyperband, not 'evolution'"),
])
def test_a_new_request_from_python_that_gives_a_setting_twice_is_refused_before_the_folder(tmp_path, kw, msg):
    """The checks are the library's (``edgenas.search.repeats``): a request built in Python is refused as the CLI's
    is, before anything is written; a re-run's recorded request is not checked (it runs as recorded)."""
    from edgenas.project import Project
    from edgenas.search.launch import launch_search

    req = SearchRequest(**{"space": "nb201", "table": str(HW), "strategy": "random", "budget": 2, **kw})
    with pytest.raises(InputError) as exc:
        launch_search(Project(tmp_path / "proj"), req, tmp_path / "r", record=False)
    assert str(exc.value).startswith(msg), str(exc.value)
    assert list(tmp_path.iterdir()) == []
    if "minimise" in kw:
        launch_search(Project(tmp_path / "proj"), req, tmp_path / "r", record=False, rerun_of="ab0000000001")
        assert (tmp_path / "r" / "best.json").exists()
