"""``edgenas runs list|show|compare|stale`` and ``edgenas db upgrade`` as text, on two real nb201 runs whose
latency budgets need more digits than the report keeps (``--json`` keeps the number)."""

from __future__ import annotations

import csv
import json
import shutil
import sqlite3
from pathlib import Path

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"


def _search(cli, out: str, seed: int, budget_ms: str) -> None:
    res = cli("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
              "--max-latency-ms", budget_ms, "--strategy", "evolution", "--budget", "6", "--seed", str(seed),
              "--out", out, "--json")
    assert res.code == 0, res.err


def test_runs_as_text_round_what_json_keeps_and_say_what_each_run_is(fresh, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _search(cli, "a", 1, "20")
    _search(cli, "b", 2, "20.123456")
    rows = json.loads(cli("runs", "list", "--json").out)
    assert [r["budgets_ms"] for r in rows] == [{"raspi4_ms": 20.0}, {"raspi4_ms": 20.123456}]
    assert all("budgets" not in r for r in rows)  # the text column only

    listed = cli("runs", "list").out
    for r in rows:
        line = next(x for x in listed.splitlines() if r["id"] in x)
        cells = [c.strip() for c in line.strip("│ \n").split("│")]
        budgets = "raspi4_ms<=20ms" if r["seed"] == 1 else "raspi4_ms<=20.1235ms"
        assert cells == [r["id"], "nb201", "cifar10", "evolution", str(r["seed"]), "complete", "6",
                         format(r["best_value"], ".4g"), budgets, "-"]

    shown = cli("runs", "show", rows[1]["id"]).out.splitlines()
    assert shown[0] == f"run {rows[1]['id']} (complete): nb201 / evolution seed 2, 6 evaluations; folder {fresh / 'b'}"
    assert shown[1] == "task: cifar10 (10 classes, 32 px, 50000 samples)"
    assert shown[2].startswith("device raspi4_ms (table): budget 20.12 ms, fingerprint table:raspi4_ms, table ")
    assert shown[3].startswith(f"best: cifar10_test = {rows[1]['best_value']:.4g} (#{rows[1]['best_number']}) |")
    assert shown[-1].startswith("fronts: * 1, raspi4_ms ")

    compared = cli("runs", "compare", rows[0]["id"], rows[1]["id"]).out
    assert "raspi4_ms<=20.1235" in compared and "raspi4_ms<=20 " in compared

    stale = cli("runs", "stale")
    assert (stale.code, stale.out) == (0, "0 of 2 finished runs are stale\n")
    assert cli("runs", "stale", "--json").json() == {"checked": 2, "stale": []}

    up = cli("db", "upgrade")
    again = cli("db", "upgrade", "--json").json()
    assert again["revision_before"] == again["revision"] and again["imported_measurements"] == 0
    assert up.code == 0 and up.out == f"{again['database']}: already at schema {again['revision']}\n"


def test_values_as_the_tables_print_them():
    from edgenas.cli.cmd_runs import _fmt, _warm_use

    assert [_fmt(None), _fmt(7), _fmt(0.123456), _fmt(20.123456, "g"), _fmt(True)] == \
        ["-", "7", "0.1235", "20.1235", "True"]
    assert _fmt("[red]x[/red]") == r"\[red]x\[/red]"  # text from the database is not markup
    assert _warm_use({"excluded": "other\ntask"}, 0, 0.5) == "excluded: other task"
    assert _warm_use({"used": False}, 0, 0.5) == "not used (similarity below 0.5)"
    assert _warm_use({"used": True, "excluded": None}, 3, 0.5) == "used: 3 transferred"


def test_runs_show_says_what_best_json_reported_and_what_a_warm_start_drew_from(fresh, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    _search(cli, "a", 1, "20")
    src = json.loads(cli("runs", "list", "--json").out)[0]["id"]
    res = cli("search", "--space", "nb201", "--table", str(TABLE), "--latency-column", "raspi4_ms",
              "--max-latency-ms", "20", "--strategy", "random", "--population", "2", "--budget", "4", "--seed", "3",
              "--report", "cifar100_test", "--warm-start", src, "--out", "b", "--json")
    assert res.code == 0, res.err
    rid = res.json()["run_id"]
    shown = cli("runs", "show", rid, "--json").json()
    assert shown["id"] == rid and shown["fronts"] and shown["warm_start"]["candidates"][0]["run_id"] == src
    best = json.loads((fresh / "b" / "best.json").read_text())
    assert shown["best_report"] == {"cifar100_test": best["report"]["cifar100_test"]}
    said = cli("runs", "show", rid).out.splitlines()
    assert f"reported for it (best.json): cifar100_test = {best['report']['cifar100_test']:.4g}" in said
    gave = sum(t["from_run"] == src for t in shown["warm_start"]["transferred"])
    assert f"  {src}: similarity 1.00 (task 1.00, device 1.00) used: {gave} transferred" in said
    assert f"warm start: {shown['warm_start']['note']}" in said
    lut_hash = shown["devices"][0]["lut_hash"]
    assert said[2] == f"device raspi4_ms (table): budget 20 ms, fingerprint table:raspi4_ms, table {lut_hash[:12]}"
    con = sqlite3.connect(fresh / ".edgenas/edgenas.db", isolation_level=None)
    con.execute(f"UPDATE run_devices SET fingerprint_hash='{'0123456789abcdef' * 2}', lut_hash=NULL "
                f"WHERE run_id='{rid}'")
    con.close()
    said = cli("runs", "show", rid).out.splitlines()
    assert said[2] == "device raspi4_ms (table): budget 20 ms, fingerprint 0123456789abcdef, table -"

    for damaged in (dict(best, number=best["number"] + 1), dict(best, report=[1]), dict(best, number="x"), [best],
                    dict(best, report={"cifar100_test": None, "x": True})):  # another run's best, or damaged
        (fresh / "b" / "best.json").write_text(json.dumps(damaged))
        assert cli("runs", "show", rid, "--json").json()["best_report"] is None
        again = cli("runs", "show", rid)
        assert again.code == 0 and not any(x.startswith("reported for it") for x in again.out.splitlines())
    (fresh / "b" / "best.json").unlink()
    assert cli("runs", "show", rid, "--json").json()["best_report"] is None
    again = cli("search", "--rerun", src, "--json")
    assert again.code == 0, again.err
    said = cli("runs", "show", again.json()["run_id"]).out.splitlines()
    assert said[-1] == f"re-run of {src}"
    assert not any(x.startswith("re-run of") for x in cli("runs", "show", src).out.splitlines())

    # a damaged record is a row of its own, under the same ten columns, and one warning line
    con = sqlite3.connect(fresh / ".edgenas/edgenas.db", isolation_level=None)
    con.execute(f"UPDATE runs SET task='null' WHERE id='{src}'")
    con.close()
    listed = cli("runs", "list")
    line = next(x for x in listed.out.splitlines() if src in x)
    assert [c.strip() for c in line.strip("│ \n").split("│")] == [src] + ["-"] * 4 + ["damaged"] + ["-"] * 4
    assert listed.err.count("\n") == 1 and listed.err.startswith("warning: ") and "column task" in listed.err


def test_runs_import_compare_and_db_upgrade_as_text_and_json(fresh, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    up = cli("db", "upgrade", "--json").json()  # no database yet: it is made at this schema
    assert up["revision_before"] is None and up["revision"] and up["imported_measurements"] == 0
    (fresh / ".edgenas/edgenas.db").unlink()
    said = cli("db", "upgrade")
    assert (said.code, said.out) == (0, f"{up['database']}: upgraded from empty to schema {up['revision']}\n")
    _search(cli, "a", 1, "20")
    _search(cli, "b", 2, "20")
    rows = json.loads(cli("runs", "list", "--json").out)
    (fresh / ".edgenas/edgenas.db").unlink()
    before = sorted(p.name for p in (fresh / ".edgenas").iterdir())
    bad = cli("runs", "import", "a", "c")  # every folder is checked first: no database, "a" not imported
    assert bad.code == 2 and bad.err.startswith("error: ") and bad.err.count("\n") == 1, bad.err
    assert not (fresh / ".edgenas/edgenas.db").exists()
    # a damaged record is found by reading the folder, which came after the database was made: it was left
    shutil.copytree(fresh / "a", fresh / "d")
    log = (fresh / "d" / "evaluations.jsonl").read_text().splitlines()
    log[2] = json.dumps({**json.loads(log[2]), "wall_s": -1e308})
    (fresh / "d" / "evaluations.jsonl").write_text("\n".join(log) + "\n")
    bad = cli("runs", "import", "a", "d")
    assert bad.code == 2 and "line 3 is not an evaluation record (malformed 'wall_s'" in bad.err, bad.err
    assert bad.err.count("\n") == 1 and sorted(p.name for p in (fresh / ".edgenas").iterdir()) == before
    imported = cli("runs", "import", "a", "--json").json()
    assert [r["id"] for r in imported] == [rows[0]["id"]] and imported[0]["out_dir"] == str(fresh / "a")
    assert {k: v for k, v in imported[0].items() if k != "created_at"} == \
        {k: v for k, v in rows[0].items() if k != "created_at"}
    said = cli("runs", "import", "b")
    assert (said.code, said.out) == (0, f"imported run {rows[1]['id']}: nb201 / evolution, 6 evaluations, from "
                                        f"{fresh / 'b'}\n")
    compared = cli("runs", "compare", rows[0]["id"], rows[1]["id"], "--json").json()
    assert [r["id"] for r in compared] == [rows[0]["id"], rows[1]["id"]]
    assert [r["budgets_ms"] for r in compared] == [{"raspi4_ms": 20.0}] * 2
    assert [(r["dataset"], r["strategy"], r["evaluations"], r["transferred"]) for r in compared] == \
        [("cifar10", "evolution", 6, 0)] * 2
    text = cli("runs", "compare", rows[0]["id"], rows[1]["id"]).out
    for r in compared:
        line = next(x for x in text.splitlines() if r["id"] in x)
        cells = [c.strip() for c in line.strip("│ \n").split("│")]
        assert cells == [r["id"], "cifar10", "evolution", "6", format(r["best_value"], ".4g"),
                         str(r["best_reached_at"]), "raspi4_ms<=20", "-"]


def test_runs_stale_names_each_stale_run_and_how_to_rerun_it(fresh, cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    table = fresh / "hw.csv"
    rows = list(csv.reader(TABLE.open(newline="")))
    col = rows[0].index("raspi4_ms")
    for r in rows[1:]:
        r[col] = repr(float(r[col]) / 100)  # every network fits 20 ms, until the table is the real one again
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    res = cli("search", "--space", "nb201", "--table", str(table), "--latency-column", "raspi4_ms",
              "--max-latency-ms", "0.2", "--strategy", "evolution", "--budget", "4", "--seed", "1", "--out", "a",
              "--json")
    assert res.code == 0, res.err
    shutil.copy(TABLE, table)  # 100 times slower: over its budget
    stale = cli("runs", "stale", "--json").json()
    [s] = stale["stale"]
    assert stale["checked"] == 1 and s["run_id"] == res.json()["run_id"] and s["status"] == "over_budget"
    # latencies end in _ms (README, --json names): the chosen network's then (under budget) and now (over it)
    assert s["chosen_then_ms"]["raspi4_ms"] <= 0.2 < s["chosen_now_ms"]["raspi4_ms"], s
    said = cli("runs", "stale")
    assert said.code == 0 and said.out.splitlines() == [
        "1 of 1 finished runs are stale", f"{s['run_id']} (over_budget): {' '.join(s['reason'].split())}",
        "re-run one with: edgenas search --rerun RUN_ID"], said.out


def test_a_run_killed_before_it_wrote_best_json_lists_and_shows_its_best_so_far(fresh, cli, monkeypatch):
    """kill -9 leaves no best.json: ``runs import`` recorded the run with no best, and runs list showed "-"
    beside its evaluations. Its best so far is what the search would have chosen of them (the best.json it wrote
    when it ended, removed here), and ``runs show`` says it is a stopped run's."""
    monkeypatch.setenv("COLUMNS", "200")
    _search(cli, "a", 1, "20")
    chosen = json.loads((fresh / "a" / "best.json").read_text())
    for f in ("best.json", "pareto.json"):
        (fresh / "a" / f).unlink()
    (fresh / "a" / "checkpoint.json").write_text(json.dumps({"status": "running"}))  # killed: nobody holds it
    assert cli("runs", "import", "a").code == 0
    [row] = json.loads(cli("runs", "list", "--json").out)
    assert (row["status"], row["best_number"], row["best_value"]) == \
        ("stopped", chosen["number"], chosen["objectives"]["cifar10_test"])
    shown = cli("runs", "show", row["id"]).out.splitlines()
    assert shown[3].startswith(f"best so far (the run stopped): cifar10_test = {row['best_value']:.4g} "
                               f"(#{chosen['number']}) |")
