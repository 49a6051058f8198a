"""``launch_search``'s checks of the run folder on their own (mutation audit): links among the names a run
writes, a folder that holds a run or files of a run's names, and the warnings of a resume whose tables changed."""

import json

import pytest

from edgenas.errors import InputError
from edgenas.locks import LOCK_NAME
from edgenas.search.launch import RUN_FOLDER_NAMES, _check_new_run_folder, _check_no_links, changed_tables_notes


def test_each_name_a_run_writes_is_refused_as_a_link_and_the_message_says_which(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("x")
    for name in (LOCK_NAME, *RUN_FOLDER_NAMES):
        folder = tmp_path / f"f-{name}"
        folder.mkdir()
        (folder / name).symlink_to(target)
        with pytest.raises(InputError) as exc:
            _check_no_links(folder)
        what = "lock file" if name == LOCK_NAME else "run folder"
        assert exc.value.message == f"{what} {folder}: {name} is a symbolic link (the run would write through it)"
        assert exc.value.hint == "replace each link with the file itself, or use another folder"
    both = tmp_path / "both"
    both.mkdir()
    for name in ("best.json", LOCK_NAME, "evaluations.jsonl"):
        (both / name).symlink_to(target)
    with pytest.raises(InputError) as exc:
        _check_no_links(both)
    assert exc.value.message == (f"run folder {both}: {LOCK_NAME}, evaluations.jsonl, best.json are symbolic links "
                                 "(the run would write through it)")
    plain = tmp_path / "plain"
    plain.mkdir()
    for name in (LOCK_NAME, *RUN_FOLDER_NAMES[:-1]):
        (plain / name).write_text("{}")
    (plain / "notes.txt").symlink_to(target)                      # not a name a run writes
    _check_no_links(plain)
    _check_no_links(tmp_path / "missing")                         # nothing there yet


def test_a_new_run_is_refused_where_a_run_is_or_where_it_would_replace_files(tmp_path):
    for name in ("evaluations.jsonl", "request.json", "config.json"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_text("")
        with pytest.raises(InputError, match="already holds a search run") as exc:
            _check_new_run_folder(folder)
        assert "--resume" in exc.value.hint
    for name in ("best.json", "pareto.json", "checkpoint.json", "warm_start.json", "tables.json"):
        folder = tmp_path / f"one-{name}"
        folder.mkdir()
        (folder / name).write_text("")
        with pytest.raises(InputError) as exc:
            _check_new_run_folder(folder)
        assert exc.value.message == f"{folder} holds {name}, not from a search run (a new run would replace it)"
        assert exc.value.hint == "choose another --out folder"
    folder = tmp_path / "two"
    folder.mkdir()
    (folder / "pareto.json").write_text("")
    (folder / "best.json").write_text("")
    with pytest.raises(InputError) as exc:
        _check_new_run_folder(folder)
    assert exc.value.message == f"{folder} holds best.json, pareto.json, not from a search run (a new run would " \
                                "replace them)"
    (folder / "best.json").unlink()
    (folder / "pareto.json").unlink()
    (folder / "report.html").write_text("")                       # a run writes it, but replaces nobody's
    (folder / "notes.txt").write_text("")
    _check_new_run_folder(folder)
    _check_new_run_folder(tmp_path / "missing")


def test_a_resume_warns_of_each_table_that_changed_and_of_a_record_it_cannot_read(tmp_path):
    path = tmp_path / "tables.json"
    assert changed_tables_notes(path, {"a": "1"}) == []                     # a run made before the record
    path.write_text(json.dumps({"schema": 1, "tables": {"a": "1", "b": "2", "c": None}}))
    assert changed_tables_notes(path, {"a": "1", "b": "2", "c": None}) == []
    notes = changed_tables_notes(path, {"a": "1", "b": "3", "c": "4", "d": "5"})  # d: not in the record
    assert [n.split("'")[1] for n in notes] == ["b", "c"]
    assert notes[0].startswith("warning: the latency table of 'b' changed since this run started")
    assert notes[0].endswith("so the result can differ from an uninterrupted run")
    for text in ("{", "[]", '{"tables": [1]}', '{"tables": {"a": 1}}'):
        path.write_text(text)
        assert changed_tables_notes(path, {"a": "1"}) == [
            f"warning: {path} is unreadable, so whether the latency tables changed since the run started is "
            "unknown"], text


def test_an_out_that_is_a_file_or_under_one_is_refused_before_anything_is_written(tmp_path):
    from pathlib import Path

    from edgenas.errors import InputError, OutputError
    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search

    hw = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
    (tmp_path / "f").write_text("mine\n")
    # the folder to resume is read first: a file there is bad input (exit 2), not an output's problem (6)
    with pytest.raises(InputError, match=f"--resume {tmp_path / 'f'} is a file, not a run folder"):
        launch_search(Project(tmp_path), None, tmp_path / "f", resume=True)
    with pytest.raises(InputError, match=f"{tmp_path / 'f' / 'run'} holds no search to resume"):
        launch_search(Project(tmp_path), None, tmp_path / "f" / "run", resume=True)
    with pytest.raises(InputError, match=f"cannot read --resume {tmp_path / ('r' * 256)}: File name too long"):
        launch_search(Project(tmp_path), None, tmp_path / ("r" * 256), resume=True)
    req = SearchRequest(space="nb201", table=str(hw), latency_column="raspi4_ms", strategy="random", budget=3)
    under = f"--out {tmp_path / 'f' / 'run'} lies under {tmp_path / 'f'}, which is a file"
    with pytest.raises(OutputError, match=under):
        launch_search(Project(tmp_path), req, tmp_path / "f" / "run")             # the database not made either
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"] and (tmp_path / "f").read_text() == "mine\n"


def test_a_rerun_of_a_driver_strategy_records_what_it_reruns_and_takes_no_warm_start(tmp_path):
    from pathlib import Path

    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search

    valid = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_valid.csv"
    req = SearchRequest(space="nb201", strategy="sh", budget=4, seed=3,
                        ladder=(f"nb201-fidelity:table={valid},column=cifar10_valid_12ep",
                                f"nb201-fidelity:table={valid},column=cifar10_valid,cost=2"))
    launch_search(Project(tmp_path), req, tmp_path / "again", record=False, rerun_of="ab0000000001")
    assert json.loads((tmp_path / "again" / "warm_start.json").read_text()) == {
        "transferred": [], "rerun_of": "ab0000000001",
        "note": "a re-run of ab0000000001: 'sh' takes no warm start, so the same search runs again with today's "
                "latency tables"}
    launch_search(Project(tmp_path), req, tmp_path / "first", record=False)
    assert not (tmp_path / "first" / "warm_start.json").exists()
    tables = json.loads((tmp_path / "first" / "tables.json").read_text())
    assert tables["schema"] == 1 and list(tables["tables"]) == []                # no latency device
    launch_search(Project(tmp_path), None, tmp_path / "again", resume=True, record=False, rerun_of="ab0000000001")
    assert json.loads((tmp_path / "again" / "warm_start.json").read_text())["rerun_of"] == "ab0000000001"


def test_a_ladder_or_a_time_budget_given_to_a_strategy_that_cannot_use_it_is_refused(tmp_path):
    from pathlib import Path

    from edgenas.project import Project
    from edgenas.search.launch import SearchRequest, launch_search

    hw = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
    with pytest.raises(InputError, match="--ladder needs --strategy sh or hyperband, not 'random'"):
        launch_search(Project(tmp_path), SearchRequest(space="nb201", table=str(hw), strategy="random", budget=3,
                                                       ladder=("params",)), tmp_path / "r", record=False)
    with pytest.raises(InputError, match="'darts' runs its epochs to the end") as exc:
        launch_search(Project(tmp_path), SearchRequest(space="nb201", strategy="darts", max_wall_s=5.0),
                      tmp_path / "d", record=False)
    assert exc.value.hint == "drop --time-budget, and size the run with --epochs"
    with pytest.raises(InputError, match="'sh' runs its ladder to the end") as exc:
        launch_search(Project(tmp_path), SearchRequest(space="nb201", strategy="sh", max_wall_s=5.0,
                                                       ladder=("params",)), tmp_path / "s", record=False)
    assert exc.value.hint == "drop --time-budget, and size the run with --budget and --ladder"
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_quantile_run_keeps_a_recorded_budget_under_one_millisecond(tmp_path):
    from edgenas.search.launch import SearchRequest, _with_recorded_budgets

    (tmp_path / "config.json").write_text(json.dumps({"space": "nb201", "devices": [["a", 0.5], ["b", 1.0]]}))
    got = _with_recorded_budgets(SearchRequest(space="nb201", max_latency_quantile=0.3), tmp_path)
    assert (got.max_latency_ms, got.max_latency_quantile) == ((0.5, 1.0), None)
