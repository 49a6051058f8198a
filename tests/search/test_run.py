"""The run loop: run folder contents, budgets, progress, and exact resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate.tabular import TableLatency, make_tabular
from edgenas.search import DeviceTarget, Problem, SearchConfig, run_search

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def full_table(tmp_path_factory):
    """A synthetic table over all 15,625 nb201 archs (accuracy and latency from fixed formulas)."""
    from edgenas.spaces import SPACES
    from edgenas.spaces import nb201  # noqa: F401

    space = SPACES.get("nb201")
    rng = np.random.default_rng(0)
    w_acc, w_lat = rng.uniform(0, 3, size=(6, 5)), rng.uniform(0, 2, size=(6, 5))
    path = tmp_path_factory.mktemp("table") / "t.csv"
    lines = ["index,arch,cifar10_test,cifar100_test,imagenet16_test,dev_ms"]
    for i, a in enumerate(space.all_archs()):
        g = space.to_genes(a)
        acc = 70 + w_acc[np.arange(6), g].sum() + 0.001 * i % 1
        lat = 1 + w_lat[np.arange(6), g].sum()
        lines.append(f"{i},{a.string},{acc:.4f},{acc - 20:.4f},{acc - 40:.4f},{lat:.5f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def problem_for(table, budget_ms=None):
    from edgenas.spaces import SPACES

    space = SPACES.get("nb201")
    return Problem(space, make_tabular(space, table=table),
                   [DeviceTarget("dev", TableLatency(table, "dev_ms", space), budget_ms)])


def config(strategy, budget=40, budget_ms=None, **kw):
    return SearchConfig(space="nb201", strategy=strategy, budget_evals=budget, seed=3,
                        devices=(("dev", budget_ms),), checkpoint_every=5, **kw)


def log_seq(out):
    rows = [json.loads(x) for x in (Path(out) / "evaluations.jsonl").read_text().splitlines()]
    return [(r["number"], r["arch"]["arch"], r["objectives"], r["latency_ms"]) for r in rows]


def test_run_folder_contents_and_progress(full_table, tmp_path):
    seen = []
    res = run_search(config("evolution", 30, budget_ms=8.0), problem_for(full_table, 8.0), tmp_path,
                     progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (30, 30) and len(seen) == 30
    assert res.n_evaluations == 30 and len(log_seq(tmp_path)) == 30
    best = json.loads((tmp_path / "best.json").read_text())
    assert best["evaluations"] == 30 and best["arch"]["space"] == "nb201"
    assert best["latency_ms"]["dev"] <= 8.0
    assert best["objectives"]["accuracy"] == max(t.objectives["accuracy"] for t in res.trials if t.feasible)
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    front = pareto["devices"]["dev"]
    assert front and all(p["latency_ms"]["dev"] <= 8.0 for p in front)
    accs = [p["accuracy"] for p in front]
    lats = [p["latency_ms"]["dev"] for p in front]
    assert accs == sorted(accs, reverse=True) and lats == sorted(lats, reverse=True)  # a trade-off curve
    ck = json.loads((tmp_path / "checkpoint.json").read_text())
    assert ck["status"] == "complete" and ck["n_evaluations"] == 30
    assert ck["log_bytes"] == (tmp_path / "evaluations.jsonl").stat().st_size
    assert json.loads((tmp_path / "config.json").read_text())["strategy"] == "evolution"


def test_existing_run_needs_resume_and_same_config(full_table, tmp_path):
    run_search(config("random", 10), problem_for(full_table), tmp_path)
    with pytest.raises(InputError, match="already holds a search run"):
        run_search(config("random", 10), problem_for(full_table), tmp_path)
    with pytest.raises(InputError, match="config differs in seed"):
        run_search(SearchConfig(space="nb201", strategy="random", budget_evals=10, seed=4,
                                devices=(("dev", None),), checkpoint_every=5),
                   problem_for(full_table), tmp_path, resume=True)


def test_wall_time_budget_stops_early(full_table, tmp_path):
    from edgenas.evaluate.base import Evaluator

    class Slow(Evaluator):
        def __init__(self, inner):
            super().__init__(inner.space)
            self.inner = inner

        def evaluate(self, archs):
            time.sleep(0.05 * len(archs))
            return self.inner.evaluate(archs)

    p = problem_for(full_table)
    p.evaluator = Slow(p.evaluator)
    res = run_search(config("evolution", 1000, max_wall_s=0.5), p, tmp_path)
    assert res.stopped == "wall_time" and 3 <= res.n_evaluations < 30
    # a resume stops at once (its time is spent), unless given more: then it goes on, as an uninterrupted
    # run would, for about that long (`--resume RUN --time-budget S`; there was no way to continue it)
    again = run_search(config("evolution", 1000, max_wall_s=0.5), p, tmp_path, resume=True)
    assert again.stopped == "wall_time" and again.n_evaluations == res.n_evaluations
    more = run_search(config("evolution", 1000, max_wall_s=0.5), p, tmp_path, resume=True, more_wall_s=0.5)
    assert more.stopped == "wall_time" and res.n_evaluations + 3 <= more.n_evaluations < res.n_evaluations + 30
    whole = run_search(config("evolution", more.n_evaluations), problem_for(full_table), tmp_path / "whole")
    assert [t.arch for t in whole.trials] == [t.arch for t in more.trials]
    cfg = json.loads((tmp_path / "config.json").read_text())
    elapsed = json.loads((tmp_path / "checkpoint.json").read_text())["elapsed_s"]
    assert cfg["max_wall_s"] == pytest.approx(elapsed, abs=0.5)


def test_a_resume_given_more_time_spends_it_on_new_evaluations_not_on_the_replay(full_table, tmp_path, monkeypatch):
    """``--resume RUN --time-budget S``: the replay (the strategy told again what it was told; minutes for
    TPE after a thousand evaluations) counted against the S seconds, and a resume added nothing. Here every
    ``tell`` takes 30 ms, replayed or not: the replay of the first 0.3 s no longer eats a 0.2 s extension."""
    import edgenas.search.run as run_mod

    real_build = run_mod.build_strategy

    def slow_tells(*args, **kwargs):
        strategy, batch = real_build(*args, **kwargs)
        tell = strategy.tell

        def slow_tell(archs, results):
            time.sleep(0.03)
            return tell(archs, results)

        strategy.tell = slow_tell
        return strategy, batch

    monkeypatch.setattr(run_mod, "build_strategy", slow_tells)
    one_by_one = dict(max_wall_s=0.3, batch_size=1)
    first = run_search(config("random", 1000, **one_by_one), problem_for(full_table), tmp_path)
    assert first.stopped == "wall_time" and first.n_evaluations >= 5
    more = run_search(config("random", 1000, **one_by_one), problem_for(full_table), tmp_path, resume=True,
                      more_wall_s=0.2)
    assert more.n_evaluations >= first.n_evaluations + 3, (first.n_evaluations, more.n_evaluations)
    wall = [json.loads(x)["wall_s"] for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert wall == sorted(wall) and wall[-1] <= 0.3 + 0.2 + 0.1  # the replay is not in the wall time either


@pytest.mark.parametrize("strategy", ["random", "evolution", "nsga2", "woa", "ri-iwoa", "hgm", "tpe", "cmaes"])
def test_resume_from_torn_log_is_exact(full_table, tmp_path, strategy):
    ref = run_search(config(strategy, 45, budget_ms=9.0), problem_for(full_table, 9.0), tmp_path / "ref")
    part = tmp_path / "part"
    part.mkdir()
    lines = (tmp_path / "ref" / "evaluations.jsonl").read_bytes().splitlines(keepends=True)
    (part / "evaluations.jsonl").write_bytes(b"".join(lines[:23]) + lines[23][:17])  # torn line
    (part / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())
    res = run_search(config(strategy, 45, budget_ms=9.0), problem_for(full_table, 9.0), part, resume=True)
    assert log_seq(part) == log_seq(tmp_path / "ref")
    assert (part / "best.json").read_text() == (tmp_path / "ref" / "best.json").read_text()
    assert (part / "pareto.json").read_text() == (tmp_path / "ref" / "pareto.json").read_text()
    assert res.best.number == ref.best.number


SCRIPT = textwrap.dedent("""
    import sys, time
    from edgenas.evaluate.base import Evaluator
    from edgenas.evaluate.tabular import TableLatency, make_tabular
    from edgenas.search import DeviceTarget, Problem, SearchConfig, run_search
    from edgenas.spaces import SPACES
    from edgenas.spaces import nb201

    table, out, strategy, resume = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"

    class Slow(Evaluator):
        def __init__(self, inner):
            super().__init__(inner.space)
            self.inner = inner
        def evaluate(self, archs):
            time.sleep(0.03 * len(archs))
            return self.inner.evaluate(archs)

    space = SPACES.get("nb201")
    problem = Problem(space, Slow(make_tabular(space, table=table)),
                      [DeviceTarget("dev", TableLatency(table, "dev_ms", space), 9.0)])
    cfg = SearchConfig(space="nb201", strategy=strategy, budget_evals=60, seed=11, population=10,
                       devices=(("dev", 9.0),), checkpoint_every=4)
    run_search(cfg, problem, out, resume=resume)
""")


@pytest.mark.parametrize("strategy", ["evolution", "ri-iwoa"])
def test_resume_after_sigkill_matches_uninterrupted_run(full_table, tmp_path, strategy):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(out, resume):
        return subprocess.run([sys.executable, str(script), str(full_table), str(out), strategy, resume],
                              env=env, capture_output=True, text=True, timeout=120)

    ref = run(tmp_path / "ref", "0")
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(full_table), str(out), strategy, "0"], env=env)
    log = out / "evaluations.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and log.read_bytes().count(b"\n") >= 27:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    n_killed = log.read_bytes().count(b"\n")
    assert 27 <= n_killed < 60 and not (out / "best.json").exists()
    resumed = run(out, "1")
    assert resumed.returncode == 0, resumed.stderr
    assert log_seq(out) == log_seq(tmp_path / "ref")
    for name in ("best.json", "pareto.json"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()


#: random search as it drew before draws without replacement (a run recorded then): it could repeat a cell
NOVEL_FIRST = {"strategy_options": {"sampling": "novel-first"}}


@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_a_search_that_has_seen_everything_feasible_stops_instead_of_repeating_it(full_table, tmp_path, strategy):
    """With a tight latency budget, a search spent the rest of its budget re-evaluating what it had seen (on
    nb201, 10,724 of 15,625 evaluations; random and evolution alike), silently, at 5x the cost of a new one.
    (Random search without replacement ends without a repeat: tests/search/test_random_draws.py.)"""
    from edgenas.search.run import EXHAUSTED_AFTER

    lat = np.array([float(x.split(",")[-1]) for x in full_table.read_text().splitlines()[1:]])
    budget_ms = float(np.sort(lat)[59])                              # 60 architectures meet it
    feasible = int((lat <= budget_ms).sum())
    kw = NOVEL_FIRST if strategy == "random" else {}
    res = run_search(config(strategy, 3000, budget_ms=budget_ms, **kw), problem_for(full_table, budget_ms), tmp_path)
    ids = [t.arch["arch"] for t in res.trials]
    assert res.stopped == "exhausted" and res.n_evaluations < 3000
    assert len({a for a, t in zip(ids, res.trials) if t.feasible}) >= 0.9 * feasible   # it had found them
    last = ids[-EXHAUSTED_AFTER:]
    assert all(a in ids[:len(ids) - EXHAUSTED_AFTER + i] for i, a in enumerate(last))  # only repeats at the end
    ck = json.loads((tmp_path / "checkpoint.json").read_text())
    assert ck["status"] == "complete" and ck["n_evaluations"] == res.n_evaluations
    assert json.loads((tmp_path / "best.json").read_text())["stopped"] == "exhausted"
    # a run cut short before it stopped resumes to the same end
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_text((tmp_path / "config.json").read_text())
    lines = (tmp_path / "evaluations.jsonl").read_text().splitlines(keepends=True)
    (cut / "evaluations.jsonl").write_text("".join(lines[:len(lines) // 2]))
    again = run_search(config(strategy, 3000, budget_ms=budget_ms, **kw), problem_for(full_table, budget_ms), cut,
                       resume=True)
    assert again.stopped == "exhausted" and [t.arch for t in again.trials] == [t.arch for t in res.trials]


@pytest.mark.parametrize("sampling", ["without-replacement", "novel-first"])
def test_the_cli_says_why_a_search_stopped_early(table, cli, tmp_path, monkeypatch, sampling):
    """Random search without replacement ends as the last cell within the budget is drawn (all distinct); as it
    drew before (novel-first), after 100 repeats in a row."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    res = cli("search", "--space", "nb201", "--table", str(table), "--objective", "cifar10_test", "--latency-column",
              "raspi4_ms", "--max-latency-ms", "2", "--strategy", "random", "--budget", "1200", "--seed", "0",
              "--strategy-opt", f"sampling={sampling}", "--out", str(tmp_path / "r"), "--json")
    assert res.code == 0, res.err
    s = res.json()
    assert s["stopped"] == "exhausted" and s["evaluations"] < 1200
    if sampling == "novel-first":
        assert s["distinct"] < s["evaluations"]
        assert "warning: the search stopped after" in res.err and f"({s['distinct']} distinct in all)" in res.err
    else:
        rows = [x.split(",") for x in table.read_text().splitlines()]
        col = rows[0].index("raspi4_ms")
        assert s["distinct"] == s["evaluations"] == sum(float(r[col]) <= 2 for r in rows[1:])  # each, once
        assert (f"warning: the search stopped after {s['evaluations']} of 1200 evaluations, all distinct: random "
                "draws are without replacement, and every architecture that meets the latency budget has been "
                "drawn") in " ".join(res.err.split())
    rows = json.loads(cli("runs", "list", "--json").out)
    assert [(r["status"], r["evaluations"]) for r in rows] == [("complete", s["evaluations"])]


def test_of_equally_accurate_networks_the_fastest_is_chosen(full_table, tmp_path):
    """Ties were decided by evaluation order: with every accuracy equal, best.json named the first evaluation
    (2.9 ms) while the front held an equally accurate one at 0.011 ms; on nb201, 13,794 of 15,625 cifar10_test
    values are tied with another."""
    lines = full_table.read_text().splitlines()
    tied = tmp_path / "tied.csv"
    rows = [x.split(",") for x in lines[1:]]
    tied.write_text("\n".join([lines[0]] + [",".join([*r[:2], "50", "30", "10", r[5]]) for r in rows]) + "\n")
    res = run_search(config("random", 40, budget_ms=8.0), problem_for(tied, 8.0), tmp_path / "r")
    feasible = [t for t in res.trials if t.feasible]
    assert res.best.latency_ms["dev"] == min(t.latency_ms["dev"] for t in feasible)
    front = json.loads((tmp_path / "r" / "pareto.json").read_text())["devices"]["dev"]
    assert res.best.number in [p["number"] for p in front]


def test_a_latency_column_that_is_not_a_time_is_refused(full_table, tmp_path):
    """A negated or zeroed latency column was taken as a budget: every network feasible at "-21.2 ms"."""
    lines = full_table.read_text().splitlines()
    for name, value in (("neg", lambda v: -float(v)), ("zero", lambda v: 0.0)):  # NaN: refused as the table loads
        bad = tmp_path / f"{name}.csv"
        rows = [x.split(",") for x in lines[1:]]
        bad.write_text("\n".join([lines[0]] + [",".join([*r[:5], repr(value(r[5]))]) for r in rows]) + "\n")
        with pytest.raises(InputError, match="not positive finite times"):
            TableLatency(bad, "dev_ms")


def test_a_population_the_strategy_refuses_writes_no_run_folder(cli, table, tmp_path, monkeypatch):
    """``--population 3`` of nsga2 (which needs 4) was refused after config.json, request.json and tables.json
    were written: the same command with a good population was then refused as "already holds a search run"."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    for pop in ("3", "2"):
        res = cli("search", "--space", "nb201", "--table", str(table), "--strategy", "nsga2", "--population", pop,
                  "--budget", "12", "--out", str(tmp_path / "r"))
        assert res.code == 2 and "population" in res.err and "must be from 4 to 100000" in res.err, res.err
        assert not (tmp_path / "r").exists()
    res = cli("search", "--space", "nb201", "--table", str(table), "--strategy", "nsga2", "--population", "4",
              "--budget", "12", "--out", str(tmp_path / "r"))
    assert res.code == 0, res.err


def test_a_time_budget_spent_before_the_first_evaluation_is_said_as_such(cli, table, tmp_path, monkeypatch):
    """It said "no feasible architecture found" of a search with no latency budget and no evaluation."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("search", "--space", "nb201", "--table", str(table), "--strategy", "random", "--budget", "5",
              "--time-budget", "1e-9", "--out", str(tmp_path / "r"))
    assert res.code == 0, res.err
    assert "ran out before the first evaluation" in res.out and "no feasible" not in res.out


def test_a_search_config_checks_its_counts_and_time_and_round_trips():
    good = SearchConfig(space="nb201", strategy="rea", budget_evals=1, population=2, checkpoint_every=1, batch_size=1,
                        devices=[("d", 5), ("e", None)], objectives=["accuracy"], max_wall_s=0.5)
    assert good.strategy == "evolution" and good.devices == (("d", 5.0), ("e", None))
    assert isinstance(good.devices[0][1], float) and good.objectives == ("accuracy",)
    d = good.to_json()
    assert d["schema"] == 1 and d["devices"] == [["d", 5.0], ["e", None]] and d["objectives"] == ["accuracy"]
    assert SearchConfig.from_json(json.loads(json.dumps(d))) == good
    for name, low in (("budget_evals", 1), ("checkpoint_every", 1), ("population", 2), ("batch_size", 1)):
        for bad in (low - 1, float(low), str(low), True, False):  # a bool is an int to Python, not a count
            with pytest.raises(InputError, match=f"search config: {name} must be an integer >= {low}, got"):
                SearchConfig(space="nb201", **{name: bad})
    for wall in (0, -1.0, float("nan"), True, "5"):  # "5" was a TypeError of the comparison
        with pytest.raises(InputError, match="max_wall_s must be > 0"):
            SearchConfig(space="nb201", max_wall_s=wall)
    with pytest.raises(InputError, match="malformed search config"):
        SearchConfig.from_json({**d, "budget": 5})
    with pytest.raises(InputError, match="search config: seed must be an integer"):
        SearchConfig(space="nb201", seed=-1)


@pytest.mark.parametrize("field, value, missing", [("latency_ms", {"dev": None}, "latency on 'dev'"),
                                                   ("latency_ms", {}, "latency on 'dev'"),
                                                   ("objectives", {"acc": 1.0}, "number for objective 'accuracy'")])
def test_a_logged_evaluation_without_what_the_problem_reads_refuses_the_resume(full_table, tmp_path, field, value,
                                                                                 missing):
    """A record the log checks pass (a null latency is what a search writes for an unmeasured device) but the
    problem cannot replay (no latency on its device, no number for its objective) refuses the resume and changes
    nothing in the folder."""
    run_search(config("random", 6), problem_for(full_table), tmp_path)
    log = tmp_path / "evaluations.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    rows[3][field] = value
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(InputError, match=f"evaluation 3 in the log has no {missing}"):
        run_search(config("random", 6), problem_for(full_table), tmp_path, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_search_stops_after_exactly_100_repeats_in_a_row(full_table, tmp_path):
    """One architecture a round: the run stops as the 100th repeat in a row is told, not one later (the
    evaluation before those 100 was a new architecture)."""
    from edgenas.search.run import exhausted_after

    lat = np.array([float(x.split(",")[-1]) for x in full_table.read_text().splitlines()[1:]])
    budget_ms = float(np.sort(lat)[19])                              # 20 architectures meet it
    seen = []
    res = run_search(config("random", 3000, budget_ms=budget_ms, batch_size=1, **NOVEL_FIRST),
                     problem_for(full_table, budget_ms), tmp_path, progress=lambda d, t: seen.append((d, t)))
    ids = [t.arch["arch"] for t in res.trials]
    assert res.stopped == "exhausted"
    # complete short of its budget: the progress ends at what was done (it stayed at N/3000)
    assert seen[-1] == (len(ids), len(ids)) and all(t == 3000 for _, t in seen[:-1])
    assert all(a in ids[:len(ids) - 100 + i] for i, a in enumerate(ids[-100:]))
    assert ids[-101] not in ids[:-101]
    # resumed (killed as it wrote its results), it stops where it stopped, evaluating nothing more
    log = (tmp_path / "evaluations.jsonl").read_bytes()
    again = run_search(config("random", 3000, budget_ms=budget_ms, batch_size=1, **NOVEL_FIRST),
                       problem_for(full_table, budget_ms), tmp_path, resume=True)
    assert again.stopped == "exhausted" and (tmp_path / "evaluations.jsonl").read_bytes() == log
    # rounds of more than 50 architectures: the run stops after two rounds of repeats in a row
    assert [exhausted_after(b) for b in (1, 50, 51, 60)] == [100, 100, 102, 120]


def slow_tells(monkeypatch, seconds):
    """Every strategy the run loop builds takes ``seconds`` for each ``tell``, replayed or not."""
    import edgenas.search.run as run_mod

    real_build = run_mod.build_strategy

    def build(*args, **kwargs):
        strategy, batch = real_build(*args, **kwargs)
        tell = strategy.tell
        strategy.tell = lambda archs, results: (time.sleep(seconds), tell(archs, results))[1]
        return strategy, batch

    monkeypatch.setattr(run_mod, "build_strategy", build)


def test_a_resume_that_only_replays_keeps_the_runs_time_and_records_its_new_limit(full_table, tmp_path, monkeypatch):
    """A resume of a run whose log is whole evaluates nothing: its checkpoint's time is the run's (not the run's
    plus the replay's, here four tells of 0.3 s, the last one included) and config.json records the limit it was
    given."""
    run_search(config("random", 4, batch_size=1), problem_for(full_table), tmp_path)
    elapsed = json.loads((tmp_path / "checkpoint.json").read_text())["elapsed_s"]
    slow_tells(monkeypatch, 0.3)
    res = run_search(config("random", 4, batch_size=1), problem_for(full_table), tmp_path, resume=True,
                     more_wall_s=100.0)
    assert res.n_evaluations == 4 and len(log_seq(tmp_path)) == 4
    assert json.loads((tmp_path / "config.json").read_text())["max_wall_s"] == elapsed + 100.0
    assert json.loads((tmp_path / "checkpoint.json").read_text())["elapsed_s"] < elapsed + 0.15


def _killed_after(cfg, full_table, tmp_path, n):
    """A whole run of ``cfg`` in ``ref/``, and the log's lines; ``r/`` holds its config and first ``n`` records
    only, as a run killed before its first checkpoint leaves them."""
    run_search(cfg, problem_for(full_table), tmp_path / "ref")
    lines = (tmp_path / "ref" / "evaluations.jsonl").read_text().splitlines(keepends=True)
    out = tmp_path / "r"
    out.mkdir()
    (out / "evaluations.jsonl").write_text("".join(lines[:n]))
    (out / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())
    return lines, out


def test_a_round_that_ends_past_the_log_times_its_new_evaluations_from_the_end_of_the_replay(full_table, tmp_path,
                                                                                              monkeypatch):
    """Random asks 16 a round; a log of 20 replays one round (a tell of 0.5 s) and part of the next: the new
    evaluations of that round are timed from where the run was, not from before the replay."""
    _, out = _killed_after(config("random", 32), full_table, tmp_path, 20)
    slow_tells(monkeypatch, 0.5)
    run_search(config("random", 32), problem_for(full_table), out, resume=True)
    wall = [json.loads(x)["wall_s"] for x in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(wall) == 32 and all(wall[19] <= w < wall[19] + 0.25 for w in wall[20:])


def test_a_runs_strategy_gets_its_population_budget_and_objectives_from_the_config(full_table):
    """``build_strategy`` (the run loop's and the benchmarks'): the config's population and budget reach a strategy
    with those options, a round is the population when the strategy has no preference, and an optuna sampler is
    told how many objectives the problem has (accuracy and, with no budget, the device's latency: two)."""
    from edgenas.search.run import build_strategy

    problem = problem_for(full_table)
    woa, batch = build_strategy(config("woa", 30, population=6), problem)
    assert (woa.opts["population"], woa.opts["budget"], batch) == (6, 30, 6)
    tpe, batch = build_strategy(config("tpe", 30), problem)
    assert tpe.opts["n_objectives"] == 2 and batch == 1
    cma, _ = build_strategy(config("cmaes", 30), problem)  # one scalar: not told two (its option must be 1)
    assert cma.opts["n_objectives"] == 1 and cma.n_obj == 1


def test_a_run_killed_before_its_first_evaluation_resumes_as_a_new_run(full_table, tmp_path):
    """A folder with only config.json (killed before the log was opened) resumes, and ends as a run never
    interrupted does."""
    ref = run_search(config("random", 8), problem_for(full_table), tmp_path / "ref")
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "config.json").write_bytes((tmp_path / "ref" / "config.json").read_bytes())
    res = run_search(config("random", 8), problem_for(full_table), cut, resume=True)
    assert log_seq(cut) == log_seq(tmp_path / "ref") and res.best.number == ref.best.number
    wall = [json.loads(x)["wall_s"] for x in (cut / "evaluations.jsonl").read_text().splitlines()]
    assert all(0 <= w < 0.5 for w in wall)                          # its clock starts at 0, as a new run's does


def test_each_evaluation_is_in_the_log_before_the_run_goes_on(full_table, tmp_path):
    """The log is written through, not buffered: a kill after a round loses none of it (the resume would
    evaluate the lost records again)."""
    lines, out = [], tmp_path / "runs" / "r"                                # its parent made too
    log = out / "evaluations.jsonl"
    run_search(config("random", 40), problem_for(full_table), out,
               progress=lambda done, total: lines.append((done, log.read_text().count("\n"))))
    assert [done for done, _ in lines] == [16, 32, 40] and all(done == n for done, n in lines)  # random: 16 a round
    wall = [json.loads(x)["wall_s"] for x in log.read_text().splitlines()]
    assert all(round(w, 6) == w for w in wall)                                 # to the microsecond


@pytest.mark.parametrize("devices", [(("dev", 8.0),), (("other", None),), (("dev", None), ("dev2", None))])
def test_a_config_whose_devices_are_not_the_problems_is_refused_before_anything_is_written(full_table, tmp_path,
                                                                                           devices):
    cfg = SearchConfig(space="nb201", strategy="random", budget_evals=4, devices=devices)
    with pytest.raises(InputError, match="do not match the problem's"):
        run_search(cfg, problem_for(full_table), tmp_path / "r")      # its one device "dev" has no budget
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_a_run_stopped_before_its_first_evaluation_resumes_with_its_time_going_on(full_table, tmp_path):
    """A run stopped by its time limit with nothing logged (here after 50 s, as its checkpoint says) resumed with
    100 s more: its clock goes on from 50 s, in its records and its checkpoint."""
    first = run_search(config("random", 4, max_wall_s=1e-9), problem_for(full_table), tmp_path)
    assert first.stopped == "wall_time" and first.n_evaluations == 0
    ckpt = json.loads((tmp_path / "checkpoint.json").read_text())
    (tmp_path / "checkpoint.json").write_text(json.dumps({**ckpt, "elapsed_s": 50.0}))
    res = run_search(config("random", 4, max_wall_s=1e-9), problem_for(full_table), tmp_path, resume=True,
                     more_wall_s=100.0)
    assert res.n_evaluations == 4 and json.loads((tmp_path / "config.json").read_text())["max_wall_s"] == 150.0
    wall = [json.loads(x)["wall_s"] for x in (tmp_path / "evaluations.jsonl").read_text().splitlines()]
    assert len(wall) == 4 and all(50.0 <= w < 60.0 for w in wall)
    assert 50.0 <= json.loads((tmp_path / "checkpoint.json").read_text())["elapsed_s"] < 60.0


@pytest.mark.parametrize("left", ["evaluations.jsonl", "checkpoint.json"])
def test_a_folder_with_a_log_or_a_checkpoint_is_not_started_anew(full_table, tmp_path, left):
    """Either file is a run (a run killed before its first checkpoint has only its log): a new run there is refused
    and the file is left as it was."""
    run_search(config("random", 4), problem_for(full_table), tmp_path / "ref")
    out = tmp_path / "r"
    out.mkdir()
    (out / left).write_bytes((tmp_path / "ref" / left).read_bytes())
    with pytest.raises(InputError, match="already holds a search run"):
        run_search(config("random", 4), problem_for(full_table), out)
    assert [p.name for p in out.iterdir()] == [left]
    assert (out / left).read_bytes() == (tmp_path / "ref" / left).read_bytes()


def test_a_resumes_new_time_limit_is_on_disk_once_the_log_has_replayed(full_table, tmp_path):
    """Once the replay is done, config.json holds the limit the resume was given (a run killed after that and
    resumed again keeps it), not only once the run ends; checkpoints are written as the run goes on."""
    lines, out = _killed_after(config("random", 12, batch_size=1), full_table, tmp_path, 5)
    limit = json.loads(lines[4])["wall_s"] + 100.0                      # no checkpoint: the last record's time
    seen, ckpt = [], out / "checkpoint.json"

    def progress(done, total):
        saved = json.loads(ckpt.read_text())["n_evaluations"] if ckpt.exists() else None
        seen.append((done, json.loads((out / "config.json").read_text()).get("max_wall_s"), saved))

    run_search(config("random", 12, batch_size=1), problem_for(full_table), out, resume=True, more_wall_s=100.0,
               progress=progress)
    assert [d for d, _, _ in seen] == list(range(1, 13))
    assert [limit for _, limit, _ in seen] == [None] * 5 + [limit] * 7
    # a checkpoint every 5 evaluations, none while replaying
    assert [saved for _, _, saved in seen] == [None] * 9 + [10] * 3


def test_a_resumed_strategy_is_told_every_evaluation_once_in_order(full_table, tmp_path, monkeypatch):
    """The replayed records and the new ones alike reach the strategy's ``tell``, each once, in the log's order and
    with the log's scores (a strategy told nothing proposes blind, and its runs resume just as exactly)."""
    import edgenas.search.run as run_mod

    lines, out = _killed_after(config("evolution", 12, population=4), full_table, tmp_path, 6)
    told, real_build = [], run_mod.build_strategy

    def recording(*args, **kwargs):
        strategy, batch = real_build(*args, **kwargs)
        tell = strategy.tell

        def record(archs, results):
            told.extend((a.string, r.values) for a, r in zip(archs, results))
            return tell(archs, results)

        strategy.tell = record
        return strategy, batch

    monkeypatch.setattr(run_mod, "build_strategy", recording)
    run_search(config("evolution", 12, population=4), problem_for(full_table), out, resume=True)
    logged = [json.loads(x) for x in (out / "evaluations.jsonl").read_text().splitlines()]
    # minimised: the accuracy negated, and the latency on "dev" (no budget: an objective)
    assert told == [(r["arch"]["arch"], (-r["objectives"]["accuracy"], r["latency_ms"]["dev"])) for r in logged]
    assert len(told) == 12


def test_a_log_whose_architecture_is_not_what_the_strategy_proposes_refuses_the_resume(full_table, tmp_path):
    run_search(config("random", 6), problem_for(full_table), tmp_path)
    log = tmp_path / "evaluations.jsonl"
    rows = [json.loads(x) for x in log.read_text().splitlines()]
    rows[2]["arch"] = rows[4]["arch"]                                  # a real architecture, not the third proposed
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"number": 6, "ar')  # and a torn last line
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(InputError, match="evaluation 2 in the log is not what the strategy proposes on replay"):
        run_search(config("random", 6), problem_for(full_table), tmp_path, resume=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_the_summary_says_a_warm_starts_note_or_nothing(tmp_path):
    """A warm_start.json without a note (checked as allowed) printed "warm start: None"."""
    from edgenas.search.summary import _warm_note

    path = tmp_path / "warm_start.json"
    assert _warm_note(tmp_path) is None  # no warm start
    for record, want in (({"note": "3 architectures from 1 past run(s)"}, "3 architectures from 1 past run(s)"),
                         ({"transferred": []}, None), ({"note": None}, None), ({"note": 5}, None), ([], None)):
        path.write_text(json.dumps(record))
        assert _warm_note(tmp_path) == want, record
