"""``edgenas runs list|show|compare|stale`` and ``edgenas db upgrade`` as text, on two real nb201 runs whose
latency budgets need more digits than the report keeps (``--json`` keeps the number)."""

from __future__ import annotations

import json
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
