"""A run folder is a set of files a user can edit, copy or damage. One-field edits of each of them
(a field set to null, a string, a huge number, NaN, a list, or deleted) must each be one ``InputError``
or an import, a report and a resume that work: ``runs import`` once stored seeds of 1e308 (SQLite overflow) and
crashed on a ``strategy_options`` that was not an object; the report crashed on budgets, scores and
evaluation numbers of the wrong type; a resume on a log record without its score. All now check the files
in one place (``search/run_files.py``)."""

from __future__ import annotations

import copy
import json
import shutil

import pytest

from edgenas.errors import InputError
from edgenas.project import Project
from edgenas.report import pages
from edgenas.report.source import FolderSource, load_run_dir
from edgenas.search import run_files as rf
from edgenas.search.launch import SearchRequest, import_run, launch_search
from edgenas.store import ExperimentDB

from .conftest import TABLE

VALUES = [None, "x", 1e308, float("nan"), [], "DELETE"]
FILES = ("config.json", "request.json", "best.json", "pareto.json", "checkpoint.json", "evaluations.jsonl",
         "warm_start.json", "tables.json")
#: the files ``search --resume`` reads (the others it writes anew)
RESUMED = ("config.json", "request.json", "checkpoint.json", "evaluations.jsonl", "warm_start.json", "tables.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    root = tmp_path_factory.mktemp("proj")
    req = SearchRequest(space="nb201", table=str(TABLE), objective="cifar10_test", budget=12, seed=0,
                        latency_column="raspi4_ms", max_latency_ms=(20.0,), strategy="evolution")
    launch_search(Project(root), req, root / "runs" / "r1", db=None)
    return root


def _edits(good):
    """(path, value, edited copy) for every top-level field and every field one level below."""
    keys = [(k,) for k in good] + [(k, j) for k, v in good.items() if isinstance(v, dict) for j in list(v)[:4]]
    keys += [(k, 0) for k, v in good.items() if isinstance(v, list) and v]
    for p in keys:
        for v in VALUES:
            d = copy.deepcopy(good)
            target = d
            for k in p[:-1]:
                target = target[k]
            if v == "DELETE":
                if isinstance(target, dict):
                    del target[p[-1]]
                    yield p, v, d
                continue
            target[p[-1]] = copy.deepcopy(v)
            yield p, v, d


@pytest.mark.parametrize("name", FILES)
def test_each_edit_is_one_input_error_or_imports_and_reports(run, tmp_path, name):
    src = run / "runs" / "r1"
    if name == "warm_start.json":  # what a warm-started search writes (this one was not)
        first = json.loads((src / "evaluations.jsonl").read_text().splitlines()[0])
        (src / name).write_text(json.dumps({"note": "1 transferred", "rerun_of": None,
                                            "transferred": [{"arch": first["arch"], "from": "abc"}]}))
    lines = (src / name).read_text().splitlines()
    good = json.loads(lines[0] if name.endswith(".jsonl") else (src / name).read_text())
    bad, n = [], 0
    for p, v, d in _edits(good):
        out = tmp_path / f"run{n}"
        shutil.copytree(src, out)
        text = json.dumps(d)
        (out / name).write_text("\n".join([text] + lines[1:]) + "\n" if name.endswith(".jsonl") else text)
        db = ExperimentDB(f"sqlite:///{tmp_path / f'db{n}.sqlite'}")
        n += 1
        jobs = [("import", lambda: import_run(db, Project(run), out)),
                ("report", lambda: pages.run_page(load_run_dir(out), FolderSource(Project(run))))]
        if name in RESUMED:  # last: a resume may finish the run
            jobs.append(("resume", lambda: launch_search(Project(run), None, out, resume=True, db=None)))
        for what, job in jobs:
            try:
                job()
            except InputError:
                pass
            except Exception as exc:  # noqa: BLE001 - what the test looks for
                bad.append(f"{what} {p} = {v!r}: {type(exc).__name__}: {str(exc)[:80]}")
        db.close()
        shutil.rmtree(out)
    (src / "warm_start.json").unlink(missing_ok=True)
    assert n > (15 if name == "tables.json" else 20) and bad == []  # tables.json has three fields


# ------------------------------------------------------------------ each check, one field at a time
# (the edits above need only an InputError or a working import; these say which field each check refuses)

GOOD_EVAL = {"number": 0, "arch": {"space": "nb201"}, "objectives": {"accuracy": 90.0}, "latency_ms": {"d": None},
             "constraints": {"d": -1.0}, "feasible": True, "wall_s": 0.5}


def test_read_jsonl_gives_the_complete_lines_from_a_line_on_and_their_length(tmp_path):
    path = tmp_path / "log.jsonl"
    assert rf.read_jsonl(path) == ([], 0)                                  # no file
    path.write_bytes(b'{"a": 0}\n\n{"a": 1}\n{"a": 2}\n{"a": ')             # a blank line, a torn last line
    assert rf.read_jsonl(path) == ([{"a": 0}, {"a": 1}, {"a": 2}], 28)
    assert rf.read_jsonl(path, since=2) == ([{"a": 1}, {"a": 2}], 28)     # lines counted from 0, the blank one too
    path.write_bytes(b'{"a": 0}\n{"a": 1}\n{"a"\n{"a": 3}\n')
    with pytest.raises(InputError, match=r"malformed line 3 in .*log.jsonl"):
        rf.read_jsonl(path)
    assert rf.read_jsonl(path, since=3) == ([{"a": 3}], 32)               # the bad line is not read again


def test_read_evaluations_numbers_the_records_from_since(tmp_path):
    path = tmp_path / "evaluations.jsonl"
    recs = [{**GOOD_EVAL, "number": i} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    assert rf.read_evaluations(path) == (recs, path.stat().st_size)
    assert rf.read_evaluations(path, since=1)[0] == recs[1:]
    recs[1]["number"] = 2
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(InputError, match="record 2 is evaluation number 2, expected 1"):
        rf.read_evaluations(path)
    path.write_text(json.dumps(GOOD_EVAL) + "\n" + json.dumps({**GOOD_EVAL, "number": 1, "feasible": 1}) + "\n")
    with pytest.raises(InputError, match=r"line 2 is not an evaluation record \(malformed 'feasible'\)"):
        rf.read_evaluations(path)


@pytest.mark.parametrize("edit, field", [
    ({"number": -1}, "'number'"), ({"number": 1.5}, "'number'"), ({"number": True}, "'number'"),
    ({"arch": "x"}, "'arch'"), ({"objectives": {"accuracy": "9"}}, "'objectives'"),
    ({"latency_ms": []}, "'latency_ms'"),
    ({"constraints": {"d": "x"}}, "'constraints'"), ({"feasible": None}, "'feasible'"),
    ({"wall_s": float("nan")}, "'wall_s'"), ({"wall_s": "1"}, "'wall_s'")])
def test_each_field_of_an_evaluation_record_is_checked(edit, field):
    assert rf.bad_evaluation_field(GOOD_EVAL) is None
    assert rf.bad_evaluation_field({k: v for k, v in GOOD_EVAL.items() if k not in ("constraints", "wall_s")}) is None
    assert rf.bad_evaluation_field({**GOOD_EVAL, **edit}) == field
    assert rf.bad_evaluation_field([GOOD_EVAL]) == "record (not a JSON object)"
    assert rf.check_evaluation(GOOD_EVAL, "e.jsonl", 1) is GOOD_EVAL


@pytest.mark.parametrize("edit, why", [
    ({"wall_s": -1e308}, "'wall_s' (-1e+308"), ({"wall_s": -0.001}, "'wall_s'"), ({"wall_s": 2e9}, "'wall_s'"),
    ({"latency_ms": {"d": float("nan")}}, "'latency_ms' (nan ms on 'd' for a feasible evaluation)"),
    ({"latency_ms": {"d": -1.0}}, "'latency_ms' (-1.0 ms"), ({"latency_ms": {"d": float("-inf")}}, "'latency_ms'"),
    ({"latency_ms": {"d": 1.0, "\x1b[31mEVIL": 1.0}},
     "'latency_ms' (a latency for '\\x1b[31mEVIL', not one of the run's devices: 'd')"),
    ({"objectives": {"\x1b[31mEVIL\nline": 1.0}}, "'objectives' ('\\x1b[31mEVIL\\nline', not the run's 'accuracy')"),
    ({"objectives": {}}, "'objectives' (none, not the run's 'accuracy')")])
def test_a_record_no_run_writes_is_refused_by_its_value(edit, why):
    shape = rf.LogShape(devices=frozenset({"d"}), objectives=frozenset({"accuracy"}))
    assert rf.bad_evaluation_value(GOOD_EVAL, shape) is None
    assert rf.bad_evaluation_value({**GOOD_EVAL, **edit}, shape).startswith(why)


def test_a_run_writes_null_or_infinite_latencies_only_where_they_are_its_own():
    """A null latency, NaN ms on an infeasible evaluation, wall_s 0 and, where the run's devices and objectives
    are not known (no config.json, request.json), any names are left alone."""
    shape = rf.LogShape(devices=frozenset({"d"}), objectives=frozenset({"accuracy", "params"}))
    ok = {**GOOD_EVAL, "objectives": {"params": 1.0, "accuracy": float("-inf")}, "wall_s": 0}
    for edit in ({}, {"latency_ms": {"d": None}}, {"latency_ms": {}}, {"wall_s": 1e9},
                 {"feasible": False, "latency_ms": {"d": float("nan")}}, {"feasible": False, "latency_ms": {"d": -1}}):
        assert rf.bad_evaluation_value({**ok, **edit}, shape) is None, edit
    assert rf.bad_evaluation_value({**ok, "latency_ms": {"x": 1.0}, "objectives": {"y": 2.0}}) is None


def test_the_shape_of_a_run_comes_from_its_config_and_request(tmp_path):
    assert rf.log_shape(tmp_path) == rf.LogShape()
    (tmp_path / "config.json").write_text(json.dumps({"space": "nb201", "devices": [["a", 5.0], ["b", None]]}))
    assert rf.log_shape(tmp_path) == rf.LogShape(frozenset({"a", "b"}))
    request = {"space": "nb201", "strategy": "tpe", "table": "t.csv", "objective": "cifar10_valid",
               "minimise": ["flops"]}
    (tmp_path / "request.json").write_text(json.dumps(request))
    assert rf.log_shape(tmp_path).objectives == frozenset({"cifar10_valid", "flops"})
    (tmp_path / "request.json").write_text(json.dumps({**request, "table": None}))  # the default evaluator's name
    assert rf.log_shape(tmp_path).objectives == frozenset({"compression", "flops"})
    (tmp_path / "request.json").write_text(json.dumps({**request, "evaluator": "synflow"}))
    assert rf.log_shape(tmp_path).objectives == frozenset({"synflow", "flops"})
    # each rung of a multi-fidelity run scores under a name of its own; a damaged request names its damage elsewhere
    # a driver (sh; a plugin's, or one not installed here) writes records of its own
    for other in ({**request, "ladder": ["nb201-fidelity:epochs=12"]}, {**request, "minimise": 5}, [1],
                  {**request, "strategy": "sh"}, {**request, "strategy": "a-plugin-not-installed"},
                  {**request, "strategy": None}):
        (tmp_path / "request.json").write_text(json.dumps(other))
        assert rf.log_shape(tmp_path) == rf.LogShape(frozenset({"a", "b"}))
    (tmp_path / "config.json").write_text(json.dumps({"space": "nb201"}))  # no devices recorded: not known
    assert rf.log_shape(tmp_path) == rf.LogShape()



def test_resume_or_new_quotes_the_folder():
    hint = "resume it: edgenas search --resume 'my runs/a'; or choose another --out folder"
    assert rf.resume_or_new("my runs/a") == hint


GOOD_CONFIG = {"space": "nb201", "seed": 0, "budget_evals": 5, "devices": [["d", 5.0], ["e", None]],
               "strategy": "random"}


@pytest.mark.parametrize("edit, match", [
    ({"space": 3}, "is not a search config"), ({"seed": -1}, "malformed 'seed'"), ({"seed": "1"}, "malformed 'seed'"),
    ({"budget_evals": 1.5}, "malformed 'budget_evals'"), ({"devices": {"d": 5}}, "malformed 'devices'"),
    ({"devices": [["d"]]}, "malformed 'devices'"), ({"devices": [[1, 5.0]]}, "malformed 'devices'"),
    ({"devices": [["d", -1.0]]}, "malformed 'devices'"), ({"devices": [("d", 5.0)]}, "malformed 'devices'"),
    ({"devices": [["d", 5.0], "e"]}, "malformed 'devices'"), ({"strategy": 1}, "malformed 'strategy'"),
    ({"mode": []}, "malformed 'mode'"), ({"kind": 0}, "malformed 'kind'")])
def test_check_config_names_the_field(edit, match):
    assert rf.check_config(GOOD_CONFIG, "c.json") == GOOD_CONFIG
    assert rf.check_config({"space": "nb201", "seed": None}, "c.json") == {"space": "nb201", "seed": None}
    with pytest.raises(InputError, match=match):
        rf.check_config({**GOOD_CONFIG, **edit}, "c.json")
    with pytest.raises(InputError, match="is not a search config"):
        rf.check_config(["nb201"], "c.json")


@pytest.mark.parametrize("edit, match", [
    ({"number": -1}, "'number'"), ({"epoch": "2"}, "'epoch'"), ({"objectives": {"a": "x"}}, "'objectives'"),
    ({"latency_ms": [1]}, "'latency_ms'"), ({"arch": 5}, "'arch'")])
def test_check_best_names_the_field(edit, match):
    good = {"number": 3, "epoch": None, "objectives": {"a": 1.0}, "latency_ms": {"d": 2.0}, "arch": "|x~0|"}
    assert rf.check_best(good, "b.json") == good and rf.check_best({**good, "arch": {"k": 1}}, "b.json")
    with pytest.raises(InputError, match=f"b.json: malformed {match}"):
        rf.check_best({**good, **edit}, "b.json")
    with pytest.raises(InputError, match="expected a JSON object"):
        rf.check_best([good], "b.json")


@pytest.mark.parametrize("edit, match", [
    ({"objectives": "accuracy"}, "'objectives'"), ({"objectives": ["a", 1]}, "'objectives'"),
    ({"front": {}}, "front"), ({"front": [{"number": -1}]}, "front"), ({"front": [3]}, "front"),
    ({"devices": []}, "front"), ({"devices": {"d": [{"n": 1}]}}, "front")])
def test_check_pareto_names_the_field(edit, match):
    good = {"objectives": ["a"], "front": [{"number": 1}], "devices": {"d": [{"number": 2}], "e": []}}
    assert rf.check_pareto(good, "p.json") == good
    with pytest.raises(InputError, match=f"p.json: malformed {match}"):
        rf.check_pareto({**good, **edit}, "p.json")
    with pytest.raises(InputError, match="expected a JSON object"):
        rf.check_pareto(None, "p.json")


def test_check_checkpoint_takes_a_word_and_seconds_from_0():
    assert rf.check_checkpoint({}, "k.json") == {}
    assert rf.check_checkpoint({"status": "running", "elapsed_s": 0}, "k.json")["elapsed_s"] == 0
    for bad, match in (({"status": 1}, "'status'"), ({"elapsed_s": -0.5}, "'elapsed_s'"),
                       ({"elapsed_s": float("inf")}, "'elapsed_s'"), ({"elapsed_s": None}, "'elapsed_s'"),
                       ({"elapsed_s": 1e308}, "'elapsed_s'")):  # a resume's records' wall_s would go on from it
        with pytest.raises(InputError, match=f"k.json: malformed {match}"):
            rf.check_checkpoint(bad, "k.json")
    with pytest.raises(InputError, match="expected a JSON object"):
        rf.check_checkpoint("complete", "k.json")


@pytest.mark.parametrize("edit, match", [
    ({"transferred": {}}, "'transferred'"), ({"transferred": [{"arch": "x"}]}, "'transferred'"),
    ({"transferred": ["x"]}, "'transferred'"), ({"note": 1}, "'note'"), ({"rerun_of": "../x"}, "'rerun_of'"),
    ({"candidates": "x"}, "'candidates'")])
def test_check_warm_start_names_the_field(edit, match):
    good = {"transferred": [{"arch": {"k": 1}}], "candidates": [], "note": None, "rerun_of": "0123456789ab"}
    assert rf.check_warm_start(good, "w.json") == good and rf.check_warm_start({}, "w.json") == {}
    with pytest.raises(InputError, match=f"w.json: malformed {match}"):
        rf.check_warm_start({**good, **edit}, "w.json")
    with pytest.raises(InputError, match="expected a JSON object"):
        rf.check_warm_start([], "w.json")


def test_check_tables_takes_device_names_to_a_hash_or_null():
    assert rf.check_tables({"tables": {"d": "ab", "e": None}}, "t.json") == {"d": "ab", "e": None}
    for bad in ({"tables": {"d": 1}}, {"tables": ["d"]}, {}, ["tables"]):
        with pytest.raises(InputError, match="t.json: malformed 'tables'"):
            rf.check_tables(bad, "t.json")


@pytest.mark.parametrize("edit, match", [
    ({"zzz": 1}, "unknown field 'zzz'"), ({"budget": True}, "malformed 'budget'"),
    ({"budget": 1.0}, "malformed 'budget'"),
    ({"population": "4"}, "malformed 'population'"), ({"max_wall_s": float("nan")}, "malformed 'max_wall_s'"),
    ({"table": ["a", 1]}, "malformed 'table'"), ({"table": 3}, "malformed 'table'"),
    ({"devices": "d"}, "malformed 'devices'"),
    ({"llm": []}, "malformed 'llm'"), ({"strategy_options": {"k": ["a\x00"]}}, "'strategy_options' holds a NUL byte"),
    ({"evaluator_options": {"a\x00": 1}}, "'evaluator_options' holds a NUL byte"),
    ({"devices": ["a", "b\x00"]}, "'devices' holds a NUL byte")])
def test_check_request_fields_names_the_field(edit, match):
    good = {"schema": 1, "space": "nb201", "budget": 5, "population": None, "max_wall_s": None, "table": ["a", "b"],
            "devices": ["d"], "llm": {}, "strategy_options": {"k": ["a"]}, "evaluator_options": {}}
    assert rf.check_request_fields(good, "r.json") is good and rf.check_request_fields({**good, "table": "t"}, "r")
    with pytest.raises(InputError, match=f"r.json: {match}"):
        rf.check_request_fields({**good, **edit}, "r.json")
    with pytest.raises(InputError, match="r.json: no 'space' field"):
        rf.check_request_fields({"budget": 5}, "r.json")



def test_a_request_of_another_schema_or_no_object_is_one_error_and_a_good_one_round_trips():
    from edgenas.search.launch import SearchRequest

    for bad in ({"schema": 2, "space": "nb201"}, {"space": "nb201"}, ["schema", 1], "x", None):
        with pytest.raises(InputError, match="r.json: not a search request of schema 1"):
            SearchRequest.from_json(bad, "r.json")
    req = SearchRequest(space="nb201", devices=("a", "b"), max_latency_ms=(5.0, 7.5), table=("t1", "t2"),
                        report=("cifar10_test",), minimise=("params",), warm_start=("auto",), ladder=("compression",),
                        evaluator_options={"keep": 3}, llm={"model": "m"}, strategy_options={"k": 1})
    assert SearchRequest.from_json(json.loads(json.dumps(req.to_json())), "r.json") == req

def test_a_request_fields_name_or_value_is_cut_to_60_characters_in_the_message():
    with pytest.raises(InputError, match=r"r.json: unknown field '(z){60}'"):
        rf.check_request_fields({"space": "nb201", "z" * 100: 1}, "r.json")
    with pytest.raises(InputError, match=r"r.json: malformed 'budget' \('(x){60}'\)"):
        rf.check_request_fields({"space": "nb201", "budget": "x" * 100}, "r.json")
