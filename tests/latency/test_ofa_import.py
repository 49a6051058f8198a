"""Importing Once-for-All's published Note10 latency tables into a ``Lut``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.lut import Lut
from edgenas.latency.ofa_import import import_ofa_lut
from edgenas.spaces import get_space

OFA_DIR = Path(__file__).resolve().parents[2].parent / "shared/data/ofa_note10_lut"
needs_data = pytest.mark.skipif(not OFA_DIR.is_dir(), reason=f"OFA tables not found at {OFA_DIR}")


@pytest.fixture(scope="module")
def lut() -> Lut:
    return import_ofa_lut(OFA_DIR)


@needs_data
def test_record_fields_and_round_trip(lut, tmp_path):
    assert (lut.device, lut.space) == ("note10", "ofa-mbv3-w12")
    assert lut.fingerprint == {"source": "once-for-all note10 tables"}
    assert lut.overhead_ms == 0.0
    assert "mean" in lut.protocol["median_ms"] and lut.protocol["resolutions"] == list(range(160, 225, 4))
    e = lut.entries["Conv-input:224x224x3-output:112x112x24"]
    assert (e.n, e.median_ms, e.mean_ms) == (500, 0.994418, 0.994418)
    assert e.std_ms == pytest.approx(0.01726798413249215)
    assert e.min_ms < e.median_ms < e.p90_ms < e.p99_ms < e.max_ms
    head = lut.entries["Logits-input:1x1x1536-output:1000"]  # in all 17 files: pooled counts
    assert head.n > 500 * 10
    assert Lut.load(lut.save(tmp_path / "ofa.json")) == lut


@needs_data
def test_covers_random_archs_and_sane_sum(lut):
    space = get_space("ofa-mbv3-w12")
    rng = np.random.default_rng(0)
    rs = [r for r in space.config.resolutions if r >= 160]
    for _ in range(200):
        arch = space.sample(rng)
        arch = type(arch)(ks=arch.ks, e=arch.e, d=arch.d, r=int(rng.choice(rs)))
        missing = [k for k in space.block_keys(arch) if k not in lut.entries]
        assert not missing, missing[:3]
    largest = space.from_dict({"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5, "r": 224})
    total = sum(lut.entries[k].median_ms for k in space.block_keys(largest))
    smallest = space.from_dict({"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "r": 160})
    small_total = sum(lut.entries[k].median_ms for k in space.block_keys(smallest))
    assert 30.0 < total < 200.0  # OFA's Note10 models span roughly 20..100 ms
    assert 3.0 < small_total < total / 3


def test_malformed_tables(tmp_path):
    with pytest.raises(InputError, match="not found"):
        import_ofa_lut(tmp_path / "nope")
    with pytest.raises(InputError, match="no '<resolution>_lookup_table.yaml'"):
        import_ofa_lut(tmp_path)
    bad = tmp_path / "224_lookup_table.yaml"
    for text, msg in [("a: [1, 2\n", "malformed YAML"), ("- 1\n- 2\n", "must map block keys"),
                      ("k:\n  count: 5\n  mean: 1.0\n", "count, mean and std"),
                      ("k:\n  count: 5\n  mean: -1.0\n  std: 0.1\n", "negative"),
                      ("k:\n  count: 0\n  mean: 1.0\n  std: 0.1\n", "count 0")]:
        bad.write_text(text)
        with pytest.raises(InputError, match=msg):
            import_ofa_lut(tmp_path)
    with pytest.raises(InputError, match="unknown search space"):
        bad.write_text("k:\n  count: 5\n  mean: 1.0\n  std: 0.1\n")
        import_ofa_lut(tmp_path, space="no-such-space")
    assert import_ofa_lut(tmp_path).entries["k"].median_ms == 1.0


@pytest.mark.parametrize("stats, msg", [("{count: 10, mean: 1.0e+308, std: 1.0e+308}", "mean 1e+308"),
                                        ("{count: 10, mean: 1.5, std: 1.0e+200}", "std 1e+200"),
                                        ("{count: 1.0e+308, mean: 1.5, std: 0.1}", "count 1e+308"),
                                        ("{count: 2.5, mean: 1.5, std: 0.1}", "count 2.5")])
def test_statistics_out_of_range_are_one_input_error_not_an_overflow(tmp_path, stats, msg):
    for res in (160, 192):  # pooled across files, where the sums overflowed
        (tmp_path / f"{res}_lookup_table.yaml").write_text(f"blk-a: {stats}\n")
    with pytest.raises(InputError, match=re.escape(msg)) as exc:
        import_ofa_lut(tmp_path)
    assert "160_lookup_table.yaml" in str(exc.value) and "'blk-a'" in str(exc.value)


@needs_data
def test_cli_import_says_what_it_filed_and_under_which_device(cli, tmp_path, monkeypatch):
    """Its --json named no device (it files under --device, note10 by default)."""
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    res = cli("lut", "import-ofa", str(OFA_DIR), "--device", "n10", "--json")
    assert res.code == 0, res.err
    got = res.json()
    assert (got["device"], got["space"], got["entries"]) == ("n10", "ofa-mbv3-w12", 870)
    assert Path(got["path"]).parent == tmp_path / "luts" / "n10" and Path(got["path"]).is_file()
