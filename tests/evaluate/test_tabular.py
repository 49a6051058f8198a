"""The tabular evaluator and table latency model: real NAS-Bench-201 data and small hand-made CSVs."""

from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, make_evaluator
from edgenas.evaluate.tabular import TableLatency, load_table
from edgenas.spaces import SPACES
from edgenas.spaces import nb201  # noqa: F401

TABLE = Path(__file__).resolve().parents[2].parent / "shared/data/nb201/nb201_hw.csv"
HEAD = "index,arch,cifar10_test,cifar100_test,imagenet16_test"
A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
B = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture
def space():
    return SPACES.get("nb201")


def small(tmp_path, text, name="t.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_real_table(space):
    if not TABLE.exists():
        pytest.skip(f"reference table not found at {TABLE}")
    ev = make_evaluator("tabular", space, table=TABLE, objective="cifar10_test")
    best = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|"
                             "nor_conv_3x3~1|nor_conv_3x3~2|")
    scores = ev.evaluate([best, space.from_string(A)])
    assert scores[1] == pytest.approx(93.66)
    assert scores[0] == pytest.approx(94.37, abs=0.01)  # the CIFAR-10 optimum
    assert load_table(TABLE).columns["cifar10_test"].max() == pytest.approx(94.37, abs=0.01)
    lat = TableLatency(TABLE, "raspi4_ms", space)
    ms, arch = lat.min_latency()
    assert ms == pytest.approx(load_table(TABLE).columns["raspi4_ms"].min())
    assert lat.predict_many([arch])[0] == ms


def test_small_table_any_ms_column(tmp_path, space):
    p = small(tmp_path, f"{HEAD},my_board_ms\n0,{A},93.5,70,40,12.5\n1,{B},10.0,1,1,0.5\n")
    assert "tabular" in EVALUATORS
    ev = make_evaluator("tabular", space, table=p, objective="cifar100_test")
    assert ev.evaluate([space.from_string(A), space.from_string(B)]).tolist() == [70.0, 1.0]
    other = space.from_string(A.replace("skip_connect~2", "none~2"))
    assert ev.evaluate([other])[0] == -np.inf  # not in the table
    lat = TableLatency(p, "my_board_ms", space)
    assert lat.predict_many([space.from_string(A)]).tolist() == [12.5]
    assert lat.min_latency() == (0.5, space.from_string(B))
    with pytest.raises(InputError, match="not in the table"):
        lat.predict_many([other])


def test_errors_are_clear(tmp_path, space):
    with pytest.raises(InputError, match="not found"):
        make_evaluator("tabular", space, table=tmp_path / "nope.csv")
    p = small(tmp_path, f"{HEAD},x_ms\n0,{A},93.5,70,40,12.5\n")
    with pytest.raises(InputError, match=r"no column 'top1'.*cifar10_test, cifar100_test, imagenet16_test, x_ms"):
        make_evaluator("tabular", space, table=p, objective="top1")
    with pytest.raises(InputError, match=r"no latency column 'y_ms'.*x_ms"):
        TableLatency(p, "y_ms", space)
    bad_head = small(tmp_path, f"index,arch,cifar10_test\n0,{A},93.5\n", "h.csv")
    with pytest.raises(InputError, match="missing: cifar100_test, imagenet16_test"):
        load_table(bad_head)
    short = small(tmp_path, f"{HEAD}\n0,{A},93.5,70\n", "s.csv")
    with pytest.raises(InputError, match="line 2: 4 fields, expected 5"):
        load_table(short)
    nan = small(tmp_path, f"{HEAD}\n0,{A},abc,70,40\n", "n.csv")
    with pytest.raises(InputError, match="line 2: a value is not a number"):
        load_table(nan)
    odd = small(tmp_path, f"{HEAD},power_w\n0,{A},93.5,70,40,3\n", "o.csv")
    with pytest.raises(InputError, match=r"\*_ms"):
        load_table(odd)
    with pytest.raises(InputError, match="needs a table"):
        make_evaluator("tabular", space)
