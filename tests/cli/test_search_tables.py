"""`edgenas search` over joined benchmark tables: optimise one column, report another (real NB-201 data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared/data/nb201"
HW, VALID = DATA / "nb201_hw.csv", DATA / "nb201_valid.csv"


@pytest.fixture
def bare(tmp_path, monkeypatch):
    if not (HW.exists() and VALID.exists()):
        pytest.skip(f"reference tables not found in {DATA}")
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    return tmp_path


def test_objective_valid_report_test_two_tables(bare, cli):
    run = bare / "run"
    res = cli("search", "--space", "nb201", "--table", str(HW), "--table", str(VALID),
              "--objective", "cifar10_valid", "--report", "cifar10_test", "--latency-column", "raspi4_ms",
              "--max-latency-ms", "20", "--budget", "30", "--seed", "1", "--out", str(run), "--json")
    assert res.code == 0, res.err
    s = json.loads(res.out)
    assert s["objective"] == "cifar10_valid"
    assert set(s["report"]) == {"cifar10_test"}
    # both numbers belong to the chosen architecture: look them up in the tables ourselves
    from edgenas.evaluate.tabular import join_tables

    t = join_tables([HW, VALID])
    row = t.row[s["best"]["arch"]]
    assert s["objective_value"] == pytest.approx(t.columns["cifar10_valid"][row])
    assert s["report"]["cifar10_test"] == pytest.approx(t.columns["cifar10_test"][row])
    assert s["latency_ms"]["raspi4_ms"] <= 20
    best = json.loads((run / "best.json").read_text())
    assert best["report"] == s["report"]
    lines = [json.loads(x) for x in (run / "evaluations.jsonl").read_text().splitlines()]
    assert len(lines) == 30 and all(set(x["report"]) == {"cifar10_test"} for x in lines)
    # the chosen one is the best by the objective, not by the reported column
    feas = [x for x in lines if x["feasible"]]
    assert s["objective_value"] == max(x["objectives"]["cifar10_valid"] for x in feas)
    # resume reads the request (both tables) back and ends the same
    res2 = cli("search", "--resume", str(run), "--json")
    assert res2.code == 0, res2.err
    assert json.loads(res2.out)["report"] == s["report"]


def test_report_errors_are_one_line(bare, cli):
    for args, frag in (
        (["--table", str(HW), "--table", str(VALID), "--objective", "cifar10_valid", "--report", "nope"],
         "no column 'nope'"),
        (["--table", str(HW), "--table", str(HW)], "appears in more than one table"),
        (["--report", "cifar10_test"], "--report needs the tabular evaluator"),
    ):
        res = cli("search", "--space", "nb201", *args, "--budget", "5", "--out", str(bare / "r"))
        assert res.code != 0
        assert "Traceback" not in res.err
        lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and frag.lower() in lines[0].lower(), res.err
        assert not (bare / "r").exists()


def test_a_new_run_does_not_replace_files_it_did_not_write(bare, cli):
    folder = bare / "mine"
    folder.mkdir()
    (folder / "best.json").write_text("my own notes\n")
    (folder / "notes.txt").write_text("kept\n")
    res = cli("search", "--space", "nb201", "--table", str(HW), "--budget", "5", "--out", str(folder))
    assert res.code != 0 and "Traceback" not in res.err
    lines = res.err.rstrip("\n").splitlines()
    assert len(lines) == 1 and "holds best.json, not from a search run" in lines[0], res.err
    assert sorted(p.name for p in folder.iterdir()) == ["best.json", "notes.txt"]
    assert (folder / "best.json").read_text() == "my own notes\n"
    (folder / "best.json").unlink()  # other files are no obstacle: the run goes beside them
    assert cli("search", "--space", "nb201", "--table", str(HW), "--budget", "5", "--out", str(folder)).code == 0
    assert (folder / "notes.txt").read_text() == "kept\n" and (folder / "best.json").exists()


@pytest.mark.parametrize("strategy", ["hgm", "tpe", "cmaes"])
def test_new_strategies_from_the_cli_and_resume(bare, cli, strategy):
    run = bare / strategy
    args = ["search", "--space", "nb201", "--table", str(HW), "--table", str(VALID), "--objective",
            "cifar10_valid", "--report", "cifar10_test", "--latency-column", "pixel3_ms", "--max-latency-ms", "8",
            "--strategy", strategy, "--budget", "20", "--seed", "2", "--out", str(run), "--json"]
    res = cli(*args)
    assert res.code == 0, res.err
    s = json.loads(res.out)
    assert s["evaluations"] == 20 and s["latency_ms"]["pixel3_ms"] <= 8
    log = (run / "evaluations.jsonl").read_text()
    # cut the run after 11 evaluations (a torn 12th line) and resume: the same 20 evaluations
    lines = log.splitlines(keepends=True)
    (run / "evaluations.jsonl").write_text("".join(lines[:11]) + lines[11][:20])
    (run / "checkpoint.json").unlink()
    res2 = cli("search", "--resume", str(run), "--json")
    assert res2.code == 0, res2.err
    assert (run / "evaluations.jsonl").read_text() == log or \
        [json.loads(x)["arch"] for x in (run / "evaluations.jsonl").read_text().splitlines()] == \
        [json.loads(x)["arch"] for x in lines]
    assert json.loads(res2.out)["best"] == s["best"]


def test_default_strategy_is_the_one_help_names_and_the_cli_starts_light(bare, cli):
    import subprocess
    import sys

    from edgenas.search.launch import DEFAULT_STRATEGY

    assert f"default {DEFAULT_STRATEGY}" in cli("search", "--help").out
    res = cli("search", "--space", "nb201", "--table", str(HW), "--budget", "5", "--out", str(bare / "r"), "--json")
    assert res.code == 0, res.err
    assert json.loads((bare / "r" / "config.json").read_text())["strategy"] == DEFAULT_STRATEGY
    # loading the CLI (e.g. for --help) does not import the search stack
    code = "import sys, edgenas.cli; print('edgenas.search.launch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2]).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("args, fragment", [
    (["--space", "nb201", "--table", str(HW), "--eval-opt", "a=1"], "evaluator 'tabular': unknown option(s) a"),
    (["--space", "nb201", "--table", str(HW), "--eval-opt", "a=1", "--executor", "process", "--workers", "1"],
     "evaluator 'tabular': unknown option(s) a"),
    (["--space", "nb201", "--evaluator", "nb201-fidelity", "--eval-opt", "colum=x"], "unknown option(s) colum"),
    # zero-cost proxies: a dataset that will not load and a torch device that cannot run a network were
    # found at the first evaluation (a run folder left behind) or not at all (every network scored -inf)
    (["--space", "mbv3-tiny", "--eval-opt", "data=DATA"], "not an image folder"),
    (["--space", "mbv3-tiny", "--eval-opt", "device=meta"], "cannot run a network"),
    (["--space", "mbv3-tiny", "--eval-opt", "device=xpu"], "is not available on this machine"),
    # the hint listed the proxy's own options ("none") where it takes data, batch_size and device; seed was an
    # internal error (the factory given it twice)
    (["--space", "mbv3-tiny", "--evaluator", "naswot", "--eval-opt", "batchsize=16"],
     "evaluator 'naswot': unknown option(s) batchsize (its options: batch_size, data, device)"),
    (["--space", "mbv3-tiny", "--evaluator", "ct_prior", "--eval-opt", "x=1"],
     "(its options: batch_size, data, device, groups, lr, max_rows)"),
    (["--space", "mbv3-tiny", "--evaluator", "naswot", "--eval-opt", "seed=3"], "seed is not an evaluator option"),
    (["--space", "mbv3-tiny", "--evaluator", "naswot", "--eval-opt", "seed=3", "--executor", "process"],
     "seed is not an evaluator option"),
    (["--space", "nb201", "--table", str(HW), "--eval-opt", "seed=1"], "seed is not an evaluator option"),
])
def test_bad_evaluator_options_are_one_line_before_the_run_folder(bare, cli, args, fragment):
    data = bare / "images"
    (data / "cat").mkdir(parents=True)  # a class folder without images
    args = [a.replace("DATA", str(data)) for a in args]
    res = cli("search", *args, "--budget", "3", "--out", str(bare / "r"))
    assert res.code == 2 and "Traceback" not in res.err, res.err
    lines = res.err.rstrip("\n").splitlines()
    assert len(lines) == 1 and fragment in lines[0], res.err
    assert not (bare / "r").exists()


def _scale_column(table, factor):
    """Multiply the raspi4_ms values of ``table`` (a copy of nb201_hw.csv) by ``factor(value)``."""
    import csv

    rows = list(csv.reader(table.open()))
    col = rows[0].index("raspi4_ms")
    for r in rows[1:]:
        r[col] = repr(float(r[col]) * factor(float(r[col])))
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


@pytest.mark.parametrize("strategy", ["evolution", "sh"])
def test_a_quantile_budget_resumes_after_its_table_changed(bare, cli, strategy):
    """`--max-latency-quantile` was recomputed from today's table on `--resume`: after a table changed (a
    deploy's calibration refit does that) the budget moved and the resume was refused ("the config differs
    in devices"). A resume keeps the budgets the run started with and warns; where the change turns
    candidates feasible or not, the replay cannot be exact, and the refusal says that, not "the code changed"."""
    table = bare / "hw.csv"
    table.write_bytes(HW.read_bytes())
    run = bare / "run"
    ladder = ["--ladder", f"nb201-fidelity:table={VALID},column=cifar10_valid_12ep",
              "--ladder", f"nb201-fidelity:table={VALID},column=cifar10_valid,cost=16.67"] if strategy == "sh" else []
    first = cli("search", "--space", "nb201", "--table", str(table), "--latency-column", "raspi4_ms",
                "--max-latency-quantile", "0.3", "--strategy", strategy, *ladder, "--budget", "18", "--seed", "2",
                "--out", str(run), "--json")
    assert first.code == 0, first.err
    budget = first.json()["budgets_ms"]["raspi4_ms"]
    lines = (run / "evaluations.jsonl").read_text().splitlines()
    # every cell 10% further from the budget, on its own side: the quantile moves, no decision does
    _scale_column(table, lambda v: 0.9 if v <= budget else 1.1)
    again = cli("search", "--resume", str(run), "--json")
    assert again.code == 0, again.err
    assert again.json()["budgets_ms"]["raspi4_ms"] == pytest.approx(budget)
    assert "latency table of 'raspi4_ms' changed" in again.err
    assert (run / "evaluations.jsonl").read_text().splitlines() == lines
    _scale_column(table, lambda v: 1.5)  # now most cells under the budget are over it
    refused = cli("search", "--resume", str(run))
    assert refused.code == 2 and "a latency table changed since the run started" in refused.err, refused.err
    # one line: the resume's notes (the table changed) wait until its replay is through, and the error says it
    assert "the code or the seed changed" not in refused.err and len(refused.err.strip().splitlines()) == 1
