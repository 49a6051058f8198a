"""Bad input to ``edgenas report`` / ``edgenas serve``: one red line, non-zero exit, nothing written."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("args, needle", [
    (["report", "no-such-run"], "not a search run"),
    (["report", "\x1b[31mruns/evo"], "error: \\x1b[31mruns/evo is not a search run"),  # named runs/evo itself
    (["report"], "give one run folder"),
    (["report", "runs/evo", "runs/rnd"], "give one run folder"),
    (["report", "--compare", "runs/evo"], "at least two runs"),
    (["report", "--fleet", "runs/evo"], "--fleet takes no run folder"),
    (["report", "--fleet", "--device", "local"], "give one of"),
    (["report", "--device", "../luts"], "invalid device name"),
    (["report", "--device", "nope"], "no device 'nope'"),
    (["serve", "--host", "0.0.0.0"], "needs a token"),
    (["serve", "--token", "short"], "too short"),
    (["serve", "--port", "70000"], "--port must be"),
    (["serve", "--host", "[::1]"], "--host takes an address without brackets"),  # it said "needs a token"
    (["serve", "--host", "\x1b[31mhost"], "--host '\\x1b[31mhost' is not an address"),  # "serving on host"
])
def test_bad_input(rproj, cli, snapshot, monkeypatch, args, needle):
    monkeypatch.chdir(rproj)
    monkeypatch.delenv("EDGENAS_TOKEN", raising=False)
    before = snapshot(rproj)
    res = cli(*args)
    assert res.code == 2, (res.code, res.out, res.err)
    assert needle in res.err and "Traceback" not in res.err and len(res.err.strip().splitlines()) <= 2
    assert snapshot(rproj) == before


def test_compare_refuses_different_objectives(rproj, cli, monkeypatch, snapshot):
    if not (rproj / "runs/nb201").exists():
        pytest.skip("needs ../shared/data/nb201/nb201_hw.csv")
    monkeypatch.chdir(rproj)
    before = snapshot(rproj)
    res = cli("report", "--compare", "runs/evo", "runs/nb201")
    assert res.code == 2 and "different objectives" in res.err
    assert snapshot(rproj) == before
