"""The line ``edgenas deploy`` adds for a multi-fidelity run's best.json: the accuracy it measured next to the
latency predicted and measured (``_print_accuracy``); nothing for any other architecture file."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from edgenas.cli.cmd_deploy import _print_accuracy


def _best(tmp_path, acc, metric="validation accuracy (%)"):
    path = tmp_path / "best.json"
    path.write_text(json.dumps({"arch": {}, "objectives": {"val_acc": acc, "latency": 3.0}, "accuracy_name": "val_acc",
                                "metric": metric}))
    return path


def _said(capsys, arch_file, predicted=None, nominal=None, measured=3.14159) -> str:
    capsys.readouterr()
    _print_accuracy(arch_file, SimpleNamespace(predicted_ms=predicted, measured_nominal_ms=nominal,
                                               measured_ms=measured))
    return " ".join(capsys.readouterr().out.split())


def test_the_accuracy_line_of_a_multi_fidelity_best(tmp_path, capsys):
    best = _best(tmp_path, 91.2345)
    assert _said(capsys, best, predicted=1.234567, nominal=2.0) == \
        "chosen network: validation accuracy 91.2%; latency predicted 1.235 ms, measured 2 ms at nominal speed"
    assert _said(capsys, best) == "chosen network: validation accuracy 91.2%; latency measured 3.142 ms"
    best = _best(tmp_path, 0.25, "negative loss")  # a metric that is no percentage: no % sign
    assert _said(capsys, best, predicted=1.0) == "chosen network: negative loss 0.2; latency predicted 1 ms, " \
                                                 "measured 3.142 ms"
    best = _best(tmp_path, 50, "x" * 500 + " (%)")  # a file's text: at most 200 characters of it
    assert _said(capsys, best) == f"chosen network: {'x' * 200} 50.0; latency measured 3.142 ms"


@pytest.mark.parametrize("content", [
    {"arch": {}},                                                          # an ordinary architecture file
    {"objectives": {"val_acc": "NaN"}, "accuracy_name": "val_acc", "metric": "m"},  # not finite: nothing
    {"objectives": {"val_acc": 1e999}, "accuracy_name": "val_acc", "metric": "m"},
    {"objectives": {"val_acc": 90.0}, "accuracy_name": ["val_acc"], "metric": "m"},  # a damaged file
    {"objectives": {"val_acc": 90.0}, "accuracy_name": "val_acc"},
])
def test_nothing_is_added_for_other_files(tmp_path, capsys, content):
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(content))
    assert _said(capsys, path, predicted=1.0) == ""
    assert _said(capsys, tmp_path / "missing.json") == ""
