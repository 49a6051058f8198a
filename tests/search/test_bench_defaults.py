"""Issue 10: the search figures a user is shown must be the ones the CLI's defaults give.

``bench/search_nb201.py`` reports ``best_accuracy_cli_defaults`` by driving each strategy with no
options (``CLI_DEFAULTS``); this checks, seed by seed, that ``edgenas search`` with its defaults finds
exactly what that bench function finds, so the printed figure is the CLI's."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"


@pytest.fixture(scope="module")
def bench():
    if not TABLE.exists():
        pytest.skip(f"needs the reference data {TABLE}")
    spec = importlib.util.spec_from_file_location("search_nb201", ROOT / "bench" / "search_nb201.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("strategy", ["ri-iwoa", "nsga2", "evolution"])
def test_cli_defaults_find_what_the_bench_reports(bench, cli, tmp_path, monkeypatch, strategy):
    from edgenas.evaluate.tabular import make_tabular
    from edgenas.search import Problem
    from edgenas.spaces import SPACES

    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    space = SPACES.get("nb201")
    single = Problem(space, make_tabular(space, table=str(TABLE), objective="cifar10_test"))
    for seed in (0, 1):
        res = cli("search", "--space", "nb201", "--table", str(TABLE), "--objective", "cifar10_test",
                  "--strategy", strategy, "--budget", "100", "--seed", str(seed), "--out", str(tmp_path / f"{strategy}{seed}"),
                  "--json")
        assert res.code == 0, res.err
        recs = bench.drive(strategy, single, 100, seed, bench.CLI_DEFAULTS[strategy])
        assert res.json()["objective_value"] == pytest.approx(max(r["objectives"]["accuracy"] for r in recs))
