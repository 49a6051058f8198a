"""``edgenas search``'s own layer (edgenas/cli/cmd_search.py; mutation audit): KEY=VALUE flags, flags a search
would ignore, where a re-run's evaluations run, the library's notes on stderr, and the lines it prints."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_bad_input import one_line_error
from tests.cli.test_hostile_files import tree

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
NB201 = ("search", "--space", "nb201", "--table", str(TABLE))


@pytest.fixture
def table(fresh):
    if not TABLE.exists():
        pytest.skip(f"reference table not found: {TABLE}")
    return TABLE


@pytest.mark.parametrize("args, fragment", [
    (["--eval-opt", "batch_size"], "evaluator option 'batch_size' is not KEY=VALUE (e.g. --eval-opt batch_size=32)"),
    (["--eval-opt", " =3"], "evaluator option ' =3' has no KEY before '='"),
    (["--strategy-opt", "=0.1"], "strategy option '=0.1' has no KEY before '=' (e.g. --strategy-opt lambda_lr=0.01)"),
    (["--strategy", "evolution", "--llm-share", "0.5", "--llm-opt", "think_tokens"],
     "LLM option 'think_tokens' is not KEY=VALUE (e.g. --llm-opt think_tokens=16)"),
    # a strategy without a population recorded --population and read nothing
    (["--strategy", "random", "--population", "8"], "--strategy random has no population: --population would be"),
    (["--strategy", "tpe", "--population", "8", "--seed", "2"], "--strategy tpe has no population"),
    (["--strategy", "evolution", "--eta", "2"], "--eta is an option of --strategy sh or hyperband, not 'evolution'"),
    (["--strategy", "darts", "--budget", "5"], "--strategy darts does not read --budget (drop --budget; size the run "
                                              "with --epochs)"),
    (["--workers", "2"], "--workers needs --executor process or ray (add --executor process, or drop --workers)"),
    (["--ray-address", "127.0.0.1:1"], "--ray-address needs --executor ray"),
    # a setting given twice: one was kept and the other dropped without a word (edgenas/once.py)
    (["--eval-opt", "epochs=1", "--eval-opt", "epochs=2"], "--eval-opt epochs is given twice: 1 and 2 (give it once)"),
    (["--strategy", "evolution", "--strategy-opt", "tournament=2", "--strategy-opt", "tournament=3"],
     "--strategy-opt tournament is given twice: 2 and 3 (give it once)"),
    (["--strategy", "evolution", "--llm-share", "0.5", "--llm-opt", "think_tokens=8", "--llm-opt", "think_tokens=8",
      "--llm-opt", "think_tokens=9"], "--llm-opt think_tokens is given 3 times: 8, 8 and 9 (give it once)"),
    (["--minimise", "params", "--minimise", "params"], "--minimise params is given twice (give it once)"),
    (["--report", "cifar100_test", "--report", "cifar100_test"], "--report cifar100_test is given twice (give it"),
    (["--strategy", "sh", "--ladder", "params:keep=2,keep=1"],
     "--ladder rung 'params:keep=2,keep=1': keep is given twice: 2 and 1 (give each key of a rung once)"),
    (["--strategy", "hyperband", "--ladder", "params", "--ladder", "params:cost=2"],
     "--ladder rung 2 repeats rung 1 ('params'): the same evaluator and options score alike (give each rung once"),
    # a dedicated flag and its twin option, as --eta with --strategy-opt eta= (tests/search/test_drivers.py)
    (["--strategy", "evolution", "--strategy-opt", "population=4", "--population", "6"],
     "--population 6 and --strategy-opt population=4 both set evolution's population (give it once, as --population)"),
    (["--strategy", "evolution", "--llm-share", "0.5", "--strategy-opt", "llm_share=0.9"],
     "--llm-share 0.5 and --strategy-opt llm_share=0.9 both set evolution's llm_share (give it once, as --llm-share)"),
    (["--strategy", "darts", "--epochs", "3", "--strategy-opt", "epochs=1"],
     "--epochs 3 and --strategy-opt epochs=1 both set darts's epochs (give it once, as --epochs)"),
    (["--strategy", "darts", "--data", "digits", "--strategy-opt", "data=digits"], "both set darts's data"),
    (["--strategy", "evolution", "--llm-share", "0.5", "--llm-model", "a", "--llm-opt", "model=b"],
     "--llm-model a and --llm-opt model=b both set the language model's model (give it once, as --llm-model)"),
    (["--strategy", "evolution", "--llm-share", "0.5", "--llm-fallback", "--llm-opt", "fallback=1"],
     "--llm-fallback and --llm-opt fallback=1 both set the language model's fallback"),
])
def test_bad_search_flags_are_one_line_and_create_nothing(table, cli, fresh, args, fragment):
    one_line_error(cli(*NB201, *args, "--out", "r"), fragment)
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_key_values_are_numbers_where_they_parse():
    from edgenas.cli.cmd_search import _llm_settings, _options, _strategy_options

    opts = _strategy_options(["a=3", "b=0.5", "c=x=y", "d=1e3"])
    assert opts == {"a": 3, "b": 0.5, "c": "x=y", "d": 1000.0} and type(opts["a"]) is int
    assert _options(["batch_size=32", "column=1e3", "lr=0.1"]) == {"batch_size": 32, "column": "1e3", "lr": "0.1"}
    assert _llm_settings(None, None, False, []) == {}
    assert _llm_settings("m", "a", True, ["think_tokens=16"]) == {"think_tokens": 16, "model": "m", "adapter": "a",
                                                                  "fallback": True}


def test_the_defaults_budget_100_seed_0_and_a_folder_named_after_them(table, cli, fresh):
    res = cli(*NB201, "--strategy", "random", "--json")
    assert res.code == 0, res.err
    assert res.json()["evaluations"] == 100 and res.json()["out_dir"].endswith("runs/nb201-random-s0")
    req = json.loads((fresh / "runs/nb201-random-s0/request.json").read_text())
    assert (req["seed"], req["transfer_ratio"], req["min_similarity"], req["eta"]) == (0, 0.5, 0.6, 3)
    assert req["table"] == str(TABLE)  # one --table is recorded as a path, two or more as a list


def test_help_shows_the_darts_defaults(cli):
    """What --strategy darts trains with when its flags are not given (a DARTS run is too slow to check here)."""
    text = " ".join(cli("search", "--help").out.split())
    for flag, default in (("--epochs <int>", "10"), ("--latency-weight <float>", "0.0"),
                          ("--skip-dropout <float>", "0.0"), ("--data <str>", "digits")):
        assert flag in text and f"[default: {default}]" in text.split(flag, 1)[1].split(" --", 1)[0], flag
    assert "[default:" not in text.split("--strategy <str>", 1)[1].split(" --", 1)[0]  # not "None": it names tpe


def test_a_search_without_a_space_is_one_line(fresh, cli):
    one_line_error(cli("search", "--budget", "3", "--seed", "1"), "missing --space (e.g. --space mbv3-small")
    assert sorted(p.name for p in fresh.iterdir()) == []


def test_a_warm_start_may_size_its_share_with_population(table, cli, fresh):
    """--population with --warm-start sizes the transferred share of the first asks, population or not."""
    first = cli(*NB201, "--budget", "4", "--out", "a", "--json")
    assert first.code == 0, first.err
    res = cli(*NB201, "--strategy", "random", "--population", "2", "--warm-start", first.json()["run_id"],
              "--budget", "4", "--out", "b")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[1].startswith("warm start: ") and "from 1 past run(s)" in lines[1], res.out
    assert lines[2].startswith("4 evaluations; ")


def test_a_warm_start_share_is_of_the_population_set_with_strategy_opt(table, cli, fresh):
    """--strategy-opt population=4 is the population as --population 4 is: the transferred share was of the
    default population of 20 (6 of the past run's 6 architectures, not 2)."""
    first = cli(*NB201, "--strategy", "random", "--budget", "6", "--out", "a", "--json")
    assert first.code == 0, first.err
    for out, how in (("b", ("--population", "4")), ("c", ("--strategy-opt", "population=4"))):
        res = cli(*NB201, "--strategy", "evolution", *how, "--warm-start", first.json()["run_id"], "--budget", "8",
                  "--out", out)
        assert res.code == 0, res.err
        assert len(json.loads((fresh / out / "warm_start.json").read_text())["transferred"]) == 2, how


def _live_workers() -> list[str]:
    """This process's children that are pool workers and still running (not exited, not zombies)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if stat[1] == str(os.getpid()) and stat[0] != "Z" and b"spawn_main" in cmd:
            out.append(pid)
    return out


def test_a_rerun_runs_where_executor_says(table, cli, fresh):
    """--rerun accepted --executor, --workers and --ray-address and ignored them all: a --workers that a new
    search refused ran the re-run in this process anyway."""
    first = cli(*NB201, "--budget", "3", "--out", "runs/a", "--json")
    assert first.code == 0, first.err
    rid = first.json()["run_id"]
    before = tree(fresh)
    one_line_error(cli("search", "--rerun", rid, "--workers", "2"), "--workers needs --executor process or ray")
    one_line_error(cli("search", "--rerun", rid, "--ray-address", "127.0.0.1:1"), "--ray-address needs --executor ray")
    one_line_error(cli("search", "--rerun", rid, "--executor", "process", "--workers", "0"),
                   "--workers must be an integer from 1 to")
    one_line_error(cli("search", "--rerun", rid, "--resume", "runs/a"), "--rerun repeats a recorded search; give no")
    assert tree(fresh) == before
    res = cli("search", "--rerun", rid, "--executor", "process", "--workers", "1", "--json")
    assert res.code == 0, res.err
    assert _live_workers() == []  # the pool was shut down when the search ended
    s = res.json()
    assert s["evaluations"] == 3 and s["out_dir"].endswith("runs/a-rerun-1") and s["run_id"] != rid
    assert json.loads((fresh / "runs/a-rerun-1/warm_start.json").read_text())["rerun_of"] == rid


def test_a_recorded_request_that_gives_a_setting_twice_resumes_and_reruns_as_recorded(table, cli, fresh, monkeypatch):
    """A run of an earlier edgenas may have recorded --minimise params twice, or --population beside --strategy-opt
    population=: its resume and its re-run read that request back and run it as it ran. Only a new request is
    checked for settings given twice."""
    from edgenas.search import repeats

    args = ("--strategy", "evolution", "--population", "6", "--strategy-opt", "population=4", "--minimise", "params",
            "--minimise", "params", "--budget", "3")
    with monkeypatch.context() as m:
        m.setattr(repeats, "check_new_request", lambda req: None)  # as an earlier edgenas recorded it
        first = cli(*NB201, *args, "--out", "runs/a", "--json")
    assert first.code == 0, first.err
    req = json.loads((fresh / "runs/a/request.json").read_text())
    assert (req["minimise"], req["population"], req["strategy_options"]) == (["params", "params"], 6,
                                                                        {"population": 4, "mutation": "one",
                                                                         "sampling": "without-replacement"})
    one_line_error(cli(*NB201, *args, "--out", "runs/b"), "--minimise params is given twice")
    res = cli("search", "--resume", "runs/a", "--json")
    assert res.code == 0 and res.json()["evaluations"] == 3, res.err
    res = cli("search", "--rerun", first.json()["run_id"], "--json")
    assert res.code == 0 and res.json()["out_dir"].endswith("runs/a-rerun-1"), res.err
    assert json.loads((fresh / "runs/a-rerun-1/request.json").read_text())["minimise"] == ["params", "params"]


def test_notes_go_to_stderr_and_warnings_in_their_own_words(capsys):
    from edgenas.cli.cmd_search import _say

    capsys.readouterr()
    _say("LUT for local: [x].json")
    _say("warning: the table [y] changed")
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines() == ["LUT for local: [x].json", "warning: the table [y] changed"]


def test_the_human_summary_names_the_budget_the_best_and_the_run(table, cli, fresh):
    args = (*NB201, "--latency-column", "raspi4_ms", "--max-latency-ms", "20", "--report", "cifar100_test",
            "--budget", "4", "--seed", "3")
    s = cli(*args, "--out", "j", "--json").json()  # the same seed: the same search
    res = cli(*args, "--out", "r")
    assert res.code == 0 and res.err == "", res.err  # no note, no warning (it stopped at its --budget)
    lines = res.out.splitlines()
    assert lines[0] == f"budget on raspi4_ms: 20 ms (fastest possible {s['min_latency_ms']['raspi4_ms']:.4g} ms)"
    assert lines[1] == (f"best cifar10_test = {s['objective_value']:.4g}; cifar100_test = "
                        f"{s['report']['cifar100_test']:.4g}; predicted latency: raspi4_ms "
                        f"{s['latency_ms']['raspi4_ms']:.4g} ms")
    n = s["front_sizes"]["raspi4_ms"]
    assert lines[-1].startswith("4 evaluations; Pareto front (cifar10_test vs predicted latency): raspi4_ms "
                                f"{n} point{'' if n == 1 else 's'}; ")
    run_id = json.loads(cli("runs", "list", "--json").out)
    assert lines[-1].endswith("run folder r (best.json, pareto.json, evaluations.jsonl), run id "
                              + next(r["id"] for r in run_id if r["out_dir"].endswith("/r")))
    assert len(lines) == 3


def test_a_time_budget_that_ran_out_at_once_says_so(table, cli, fresh):
    res = cli(*NB201, "--time-budget", "0.000001", "--out", "r")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == ("the --time-budget ran out before the first evaluation; raise it (or resume with "
                        "--time-budget S)")
    assert lines[1].startswith("0 evaluations; Pareto front (cifar10_test vs predicted latency): 0 points; "
                               "run folder r ")
    assert len(lines) == 2


def test_one_evaluation_is_one_point_in_the_summary(table, cli, fresh):
    res = cli(*NB201, "--budget", "1", "--out", "r")
    assert res.code == 0, res.err
    assert res.out.splitlines()[-1].startswith(
        "1 evaluation; Pareto front (cifar10_test vs predicted latency): 1 point; run folder r ")


def test_a_multi_fidelity_summary_names_its_rungs_and_a_percent_metric(table, cli, fresh):
    valid = TABLE.parent / "nb201_valid.csv"
    args = ("search", "--space", "nb201", "--strategy", "sh", "--budget", "9",
            "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
            "--ladder", f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2")
    s = cli(*args, "--out", "j", "--json").json()
    res = cli(*args, "--out", "r")
    assert res.code == 0, res.err
    lines = res.out.splitlines()
    assert lines[0] == f"best cifar10_valid = {s['objective_value']:.4g}%; predicted latency: n/a (no --device)"
    rungs = ", ".join(f"{r}: {n}" for r, n in zip(s["ladder"], (9, 3)))
    assert s["ladder"][0].endswith("column=cifar10_valid_12ep") and len(s["ladder"]) == 2
    assert lines[1] == f"sh over the ladder (evaluations per rung) {rungs}; cost {s['cost']:.4g}"
    assert lines[2].startswith("12 evaluations; Pareto front (cifar10_valid vs predicted latency): ")


def _darts_text(rec, monkeypatch):
    import io

    from rich.console import Console

    from edgenas.cli import cmd_search

    buf = io.StringIO()
    monkeypatch.setattr(cmd_search, "out", Console(file=buf, width=300, color_system=None))
    cmd_search._print_darts(rec, json_out=False)
    return buf.getvalue().splitlines()


def test_the_darts_summary_of_an_mbv3_space_and_of_budgets(monkeypatch, tmp_path, capsys):
    from edgenas.cli import cmd_search

    rec = {"arch": {"r": 160, "d": [2, 3], "ks": [3, 5], "e": [4, 6]}, "latency_ms": {"pi": 3.14159, "jet": 1.5},
           "budgets_ms": {"pi": 4.0, "jet": None}, "derivation": "argmax", "within_budget": True,
           "out_dir": str(tmp_path / "r")}
    assert _darts_text(rec, monkeypatch) == [
        "derived r=160 d=[2, 3] ks=[3, 5] e=[4, 6]; predicted latency: pi 3.142 ms (budget 4), jet 1.5 ms",
        f"run folder {tmp_path / 'r'} (best.json, history.json, checkpoint)"]
    rec = {**rec, "derivation": "repaired", "repair_steps": 3, "within_budget": False, "latency_ms": {}}
    lines = _darts_text(rec, monkeypatch)
    assert lines[0] == ("derived r=160 d=[2, 3] ks=[3, 5] e=[4, 6]; predicted latency: n/a (the argmax network "
                        "missed the budget: repaired, 3 steps)")
    assert lines[1] == "no cell meets every budget"
    cell = {"arch": {"arch": "|none~0|"}, "skip_edges": 1, "latency_ms": {}, "budgets_ms": {}, "derivation": "argmax",
            "argmax_arch": "|none~0|", "within_budget": True, "out_dir": "r"}
    assert _darts_text(cell, monkeypatch)[0] == "derived |none~0|; skip edges 1; predicted latency: n/a"
    capsys.readouterr()
    cmd_search._print_darts(rec, json_out=True)
    assert json.loads(capsys.readouterr().out) == {**rec, "run_id": None}  # no config.json in the folder
