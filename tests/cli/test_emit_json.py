"""`--json` output is standard JSON (jq, JavaScript): no NaN or Infinity, which Python's json writes."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest


@dataclasses.dataclass
class Fit:
    spearman: float
    where: Path


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_become_null(capsys, value):
    from edgenas.cli._common import emit_json

    emit_json({"fit": Fit(value, Path("/x")), "per_k": [0.5, value], "note": "NaN stays a string"})
    text = capsys.readouterr().out
    parsed = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert parsed == {"fit": {"spearman": None, "where": "/x"}, "per_k": [0.5, None], "note": "NaN stays a string"}


def test_finite_output_is_unchanged(capsys):
    from edgenas.cli._common import emit_json

    obj = {"a": 1.5, "b": [1, 2], "c": {"d": None}}
    emit_json(obj)
    assert capsys.readouterr().out == json.dumps(obj, indent=2) + "\n"
