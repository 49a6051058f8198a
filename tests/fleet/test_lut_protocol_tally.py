"""Issue 17, part 3: the tally of committed LUT protocol runs keeps only today's protocol as the
profiler runs it, counts the product's wins over fixed-500 per figure, and its sign test is exact."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from edgenas.fleet.measure import LUT_PROTOCOL, LUT_PROTOCOL_BEFORE, LUT_PROTOCOL_FIXED_500

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tally():
    spec = importlib.util.spec_from_file_location("lut_protocol_tally", ROOT / "bench" / "lut_protocol_tally.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_output(adaptive: dict, chunk: int, errors: list[tuple[float, float]], noise: float = 0.01,
               long_n: int = 2000) -> dict:
    """A bench/lut_protocol.py output with one repeat per (fixed-500, product) median error."""
    spaces = [{"space": "mbv3-small", "resolution": None, "repeat": i, "long_pass_to_pass_median_rel_diff": noise,
               "results": {"fixed_500": {"median_rel_diff_vs_long": f, "p90_rel_diff_vs_long": 0.1,
                                         "max_rel_diff_vs_long": 0.5, "speedup_vs_fixed_500": 1.0},
                           "adaptive": {"median_rel_diff_vs_long": p, "p90_rel_diff_vs_long": 0.1,
                                        "max_rel_diff_vs_long": 0.4, "speedup_vs_fixed_500": 3.5 + i / 10}}}
              for i, (f, p) in enumerate(errors)]
    protocols = {"adaptive": adaptive, "fixed_500": dict(LUT_PROTOCOL_FIXED_500),
                 "long": dict(LUT_PROTOCOL_BEFORE, fixed_n=long_n // 4)}
    return {"chunk": chunk, "protocols": protocols, "spaces": spaces,
            "long": f"{long_n} single runs per block in 4 pass(es) of {long_n // 4} (each after the warm-up)"}


def test_tally_keeps_todays_protocol_and_counts_wins(tally, tmp_path):
    today = run_output(dict(LUT_PROTOCOL), 24, [(0.02, 0.01), (0.02, 0.03), (0.02, 0.02)])
    older = run_output(dict(LUT_PROTOCOL, min_n=150), 24, [(0.02, 0.01)] * 5)
    batch96 = run_output(dict(LUT_PROTOCOL), 96, [(0.02, 0.01)] * 5)
    short_long = run_output(dict(LUT_PROTOCOL), 24, [(0.02, 0.01)] * 5, long_n=400)
    calm = run_output(dict(LUT_PROTOCOL), 24, [(0.003, 0.002)], noise=0.002)
    (tmp_path / "a.json").write_text(json.dumps({"runs": [{"run": "A", "output": today},
                                                          {"run": "B", "output": older}]}))
    (tmp_path / "b.json").write_text(json.dumps({"runs": {"C": {"result": batch96}, "D": {"result": short_long}}}))
    (tmp_path / "c.json").write_text(json.dumps(calm))
    rows, left_out = tally.collect([str(tmp_path / n) for n in ("a.json", "b.json", "c.json")])
    assert [(r["run"], r["repeat"]) for r in rows] == [("A", 0), ("A", 1), ("A", 2), ("run", 0)]
    assert {entry["run"]: entry["why"].split(" (")[0] for entry in left_out} == {
        "B": "an earlier protocol", "C": "calls of 96 blocks", "D": "another long reference"}
    counts = tally.tally(rows)
    assert counts["repeats"] == 4
    assert counts["median_below_fixed_500"] == 2  # the tie (0.02, 0.02) is not a win
    assert counts["max_below_fixed_500"] == 4
    assert counts["p90_below_fixed_500"] == 0
    assert counts["max_sign_test_p"] == pytest.approx(1 / 16)


def test_sign_test_is_exact(tally):
    assert tally.sign_test_p(5, 5) == pytest.approx(1 / 32)
    assert tally.sign_test_p(0, 7) == 1.0
    assert tally.sign_test_p(27, 34) == pytest.approx(sum(math.comb(34, i) for i in range(27, 35)) / 2 ** 34)
    assert tally.sign_test_p(0, 0) == 1.0
