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
