"""``edgenas list`` and ``edgenas profile`` as text: each registry under its heading, a strategy's options
with their per-space defaults, and a profile's summary line and table path. Found by mutation testing: the
text of both commands was checked by no test (only ``--json``)."""

from __future__ import annotations

import re


def test_list_shows_each_registry_and_each_strategys_options(fresh, cli):
    reg = cli("list", "--json").json()
    res = cli("list")
    assert res.code == 0 and res.err == "", res.err
    lines = res.out.splitlines()
    headings = [line for line in lines if not line.startswith(" ")]
    assert headings == ["spaces", "evaluators", "strategies", "runtimes"]
    for kind in headings:
        for name, help_ in reg[kind].items():
            assert f"  {name:<16} {help_}" in lines, name
    pad = " " * 19 + "options: "
    hyperband = lines.index(f"  {'hyperband':<16} {reg['strategies']['hyperband']}")
    assert lines[hyperband + 1] == pad + "ladder=[], eta=3, sampling=without-replacement"  # a tuple: JSON's list
    darts = lines[lines.index(f"  {'darts':<16} {reg['strategies']['darts']}") + 1]
    assert darts.startswith(pad) and "skip_dropout=0.0 (not for mbv3)" in darts and "lr=0.025 (mbv3: 0.05)" in darts
    random = lines.index(f"  {'random':<16} {reg['strategies']['random']}")
    assert lines[random + 1] == pad + "sampling=without-replacement"
    for name in ("evolution", "llm-evolution", "nsga2", "hgm", "woa", "ri-iwoa"):  # their first population's draws
        shown = lines[lines.index(f"  {name:<16} {reg['strategies'][name]}") + 1]
        assert shown.startswith(pad) and "sampling=without-replacement" in shown.split(", "), name
        assert reg["strategy_options"][name]["sampling"] == "without-replacement"
    assert not any(line.startswith(pad) for line in lines[:lines.index("strategies")])  # no options: no line
    assert reg["strategy_options"]["hyperband"] == {"ladder": [], "eta": 3, "sampling": "without-replacement"}
    assert reg["strategy_options_per_space"]["darts"]["skip_dropout"] == {"mbv3": None}


def test_profile_says_what_it_measured_or_reused_and_where_the_table_is(fresh, cli):
    res = cli("profile", "local", "--space", "mbv3-tiny")
    assert res.code == 0, res.err
    first, lut = res.out.splitlines()[:2]
    again = cli("profile", "local", "--space", "mbv3-tiny", "--json").json()
    assert again["reused_lut"] and lut == f"LUT: {again['lut_path']}"
    assert re.fullmatch(rf"local / mbv3-tiny: {again['entries']} entries, measured {again['entries']} blocks, "
                        r"\d+ unstable, \d+\.\d s", first), first
    said = cli("profile", "local", "--space", "mbv3-tiny")
    assert re.fullmatch(rf"local / mbv3-tiny: {again['entries']} entries, reused existing LUT, "
                        rf"{again['unstable']} unstable, \d+\.\d s", said.out.splitlines()[0]), said.out
    assert said.out.splitlines()[1:] == [lut] and said.err == ""


def test_list_shows_n_objectives_as_the_searchs_count_and_not_for_cma_es(fresh, cli):
    """It showed n_objectives=1 for TPE, GP and optuna's NSGA-II, whose search optimises all its objectives unless
    the option is given, and for CMA-ES, which optimises one scalar whatever it is."""
    reg = cli("list", "--json").json()
    lines = cli("list").out.splitlines()

    def options(name):
        return lines[lines.index(f"  {name:<16} {reg['strategies'][name]}") + 1]

    for name in ("tpe", "gp", "optuna-nsga2"):
        assert "options: n_objectives=(the search's objective count), " in options(name), options(name)
        assert reg["strategy_options"][name]["n_objectives"] is None
    assert "n_objectives" not in options("cmaes") and options("cmaes").endswith("options: sigma0=None, popsize=None")
    assert reg["strategy_options"]["cmaes"] == {"sigma0": None, "popsize": None}
    assert reg["strategy_options"]["tpe"]["n_startup_trials"] == 10
