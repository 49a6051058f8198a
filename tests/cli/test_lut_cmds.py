"""``edgenas lut list|show|pull`` as text and JSON on a real profiled ``local`` table, and where ``lut show``
says a table was measured (``_provider``: a file value, so only the known names)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from edgenas.cli.cmd_lut import _provider
from tests.cli.test_bad_input import one_line_error
from tests.latency.test_lut import TABLE


@pytest.mark.parametrize("runtime, fingerprint, said", [
    ("tensorrt", {"settings": {"provider": "cpu"}}, None),  # an engine always runs on the GPU
    ("unknown (OFA published tables)", {}, None),  # lut import-ofa: nothing says where it was measured
    ("onnxruntime", {}, "cpu"), ("onnxruntime", {"settings": "cuda"}, "cpu"),
    ("onnxruntime", {"settings": {}}, "cpu"), ("onnxruntime", {"settings": {"provider": "cpu"}}, "cpu"),
    ("onnxruntime", {"settings": {"provider": "cuda"}}, "cuda"),
    ("onnxruntime", {"settings": {"provider": "tensorrt"}}, "tensorrt"),
    ("onnxruntime", {"settings": {"provider": "[red]x[/red]"}}, "unknown"),
    ("onnxruntime", {"settings": {"provider": ["cuda"]}}, "unknown"),
])
def test_the_provider_a_table_names_is_one_of_the_known_ones(runtime, fingerprint, said):
    assert _provider(SimpleNamespace(runtime=runtime, fingerprint=fingerprint)) == said


def test_lut_list_show_and_pull_as_text_and_json(proj, cli):
    from edgenas.latency.lut import Lut

    path = next((proj / "luts" / "local").glob("mbv3-tiny-*.json"))
    rel = str(path.relative_to(proj))
    listed = cli("lut", "list", "local", "--json").json()
    assert listed["device"] == "local" and rel in listed["in_project"]
    text = cli("lut", "list", "local").out.splitlines()
    assert text[0] == "on local" and text[len(listed["on_device"]) + 1] == "in project"
    for line, e in zip(text[1:], listed["on_device"]):
        assert line.split() == [e["name"], str(e["size"]), "B", "sha256", e["sha256"][:12] + "…"]
    assert f"  {rel}" in text[len(listed["on_device"]) + 2:]

    lut = Lut.load(path)
    shown = cli("lut", "show", str(path), "--json").json()
    assert (shown["device"], shown["space"], shown["provider"]) == ("local", "mbv3-tiny", "cpu")
    assert (shown["entries"], shown["unstable"], shown["calibration"]) == (len(lut.entries), len(lut.unstable_keys),
                                                                          None)
    said = cli("lut", "show", str(path)).out.splitlines()
    assert said == [f"{k:>18}: {v}" for k, v in shown.items()]

    pulled = cli("lut", "pull", "local").out.splitlines()
    assert f"pulled {path.name} -> {path}" in pulled
    assert json.loads(path.read_text())["entries"]


def test_lut_pull_from_a_device_holding_none_says_so(fresh, cli):
    assert cli("lut", "pull", "local", "--json").json() == []
    res = cli("lut", "pull", "local")
    assert (res.code, res.out) == (0, "local holds no LUT to pull (build one there with: edgenas profile local)\n")
    assert not (fresh / "luts").exists()


def test_lut_import_ofa_as_text_and_json(fresh, cli):
    from edgenas.latency.lut import Lut

    (fresh / "ofa").mkdir()
    (fresh / "ofa/160_lookup_table.yaml").write_text("Conv-input:160x160x3-output:80x80x24:\n  count: 498\n"
                                                     "  mean: 1.5\n  std: 0.01\n")
    res = cli("lut", "import-ofa", "ofa", "--device", "n10", "--json")
    assert res.code == 0, res.err
    said = res.json()
    path = fresh / "luts/n10" / Path(said["lut_path"]).name
    assert said == {"device": "n10", "space": "ofa-mbv3-w12", "lut_path": str(path), "entries": 1}
    assert Lut.load(path).entries["Conv-input:160x160x3-output:80x80x24"].median_ms == 1.5
    res = cli("lut", "import-ofa", "ofa", "--device", "n10")
    assert (res.code, res.out) == (0, f"imported 1 entries for ofa-mbv3-w12 -> {path}\n")


@pytest.mark.parametrize("edit, shown", [({"runtime": "onnx\x1b[2Jruntime"}, "'onnx\\x1b[2Jruntime'"),
                                         ({"precision": "fp\u202e32"}, "'fp\\u202e32'"),
                                         ({"runtime": "bogus", "precision": "fp99"}, "'bogus'")])
def test_lut_show_refuses_a_runtime_or_precision_it_does_not_know_and_shows_it_escaped(fresh, cli, edit, shown):
    """``lut show`` printed 'onnx\\x1b[2Jruntime' as onnxruntime and 'fp\\u202e32' as fp32 (controls stripped):
    what it shows differed from the file, and 'bogus' or 'fp99' were shown as read."""
    path = fresh / "t.json"
    path.write_text(json.dumps({**TABLE, **edit}))
    res = cli("lut", "show", "t.json")
    one_line_error(res)
    assert res.code == 2 and res.out == ""
    assert res.err.startswith("error: LUT t.json: unknown ") and shown in res.err, res.err
    assert "\x1b" not in res.err and "\u202e" not in res.err
