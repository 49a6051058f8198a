"""The predicates a run folder's checks and the experiment database's reader share (``edgenas.kinds``): each
takes what a run records and refuses the values next to it."""

from __future__ import annotations

import pytest

from edgenas.kinds import is_budget_ms, is_run_id, is_scores, is_warm_start


def test_a_run_id_is_1_to_64_lowercase_hex_digits_and_nothing_else():
    for good in ("0", "0123456789ab", "f" * 64):
        assert is_run_id(good), good
    for bad in ("", "f" * 65, "0123456789AB", "abc\n", "ab/cd", "ab cd", "../../etc", 12, None):
        assert not is_run_id(bad), bad


def test_a_budget_is_a_finite_number_from_0():
    for good in (0, 0.0, 5, 12.5):
        assert is_budget_ms(good), good
    for bad in (-5, -0.1, float("nan"), float("inf"), True, "5", None, 10 ** 400):
        assert not is_budget_ms(bad), bad


def test_scores_are_an_object_of_numbers_or_nulls():
    assert is_scores({}) and is_scores({"acc": 0.5, "lat": 3, "nan": None, "inf": float("inf")})
    for bad in ([], None, {"acc": "0.5"}, {"acc": True}, {1: 0.5}, {"acc": [0.5]}):
        assert not is_scores(bad), bad


CAND = {"run_id": "ab", "used": True, "similarity": 0.5, "task_similarity": 1, "device_similarity": 0.0}


def test_a_warm_start_record_and_each_field_it_checks():
    assert is_warm_start({}) and is_warm_start({"transferred": [], "candidates": [], "note": None, "rerun_of": None})
    good = {"transferred": [{"arch": {"k": 1}}], "candidates": [CAND], "note": "n", "rerun_of": "0123456789ab"}
    assert is_warm_start(good)
    assert is_warm_start([good]) is False and is_warm_start(None) is False  # a bool, as the others give


@pytest.mark.parametrize("edit", [
    {"transferred": {}}, {"transferred": ["x"]}, {"transferred": [{"arch": "x"}]}, {"transferred": [{}]},
    {"candidates": {}}, {"candidates": ["x"]}, {"candidates": [{**CAND, "run_id": 1}]},
    {"candidates": [{**CAND, "used": 1}]}, {"candidates": [{**CAND, "similarity": float("nan")}]},
    {"candidates": [{**CAND, "task_similarity": None}]},
    {"candidates": [{k: v for k, v in CAND.items() if k != "device_similarity"}]},
    {"note": 1}, {"rerun_of": ["ab"]}])
def test_a_warm_start_with_one_field_of_the_wrong_kind_is_refused(edit):
    good = {"transferred": [{"arch": {"k": 1}}], "candidates": [CAND, CAND], "note": "n", "rerun_of": "ab"}
    assert not is_warm_start({**good, **edit})
