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
    assert Path(got["lut_path"]).parent == tmp_path / "luts" / "n10" and Path(got["lut_path"]).is_file()


def _one_file(folder, text, res=160):
    folder.mkdir(exist_ok=True)
    (folder / f"{res}_lookup_table.yaml").write_text(text)
    return folder


def test_the_normal_approximations_and_the_record_are_as_documented(tmp_path):
    """count 4, mean 2, std 0.5: p90 = 2 + 1.2816 x 0.5, p99 = 2 + 2.3263 x 0.5, min/max = 2 -/+ 3 x 0.5 and
    cov = 0.5 / 2; a mean of 0 has cov 0 (no division by 0), a min below 0 is clipped to 0. OFA measured no
    overhead, thread count or time of day: those are 0, so the same files give the same record."""
    lut = import_ofa_lut(_one_file(tmp_path / "t", "a: {count: 4, mean: 2.0, std: 0.5}\n"
                                                   "z: {count: 1, mean: 0.0, std: 0.0}\n"
                                                   "w: {count: 1, mean: 1.0, std: 1.0}\n"))
    a = lut.entries["a"]
    assert (a.n, a.median_ms, a.mean_ms, a.std_ms, a.cov) == (4, 2.0, 2.0, 0.5, 0.25)
    assert (a.p90_ms, a.p99_ms) == (pytest.approx(2.6408), pytest.approx(3.16315))
    assert (a.min_ms, a.max_ms) == (pytest.approx(0.5), pytest.approx(3.5))
    z = lut.entries["z"]
    assert (z.median_ms, z.cov, z.min_ms, z.max_ms) == (0.0, 0.0, 0.0, 0.0)
    w = lut.entries["w"]
    assert (w.min_ms, w.max_ms, w.cov) == (0.0, pytest.approx(4.0), 1.0)
    o = lut.overhead
    assert (o.n, o.median_ms, o.mean_ms, o.std_ms, o.cov, o.p90_ms, o.p99_ms, o.min_ms, o.max_ms) == (1,) + (0.0,) * 8
    assert (lut.threads, lut.created_at) == (0, 0.0)


def test_a_key_in_several_files_gets_the_pooled_statistics(tmp_path):
    """(1 x mean 1, std 3) and (1 x mean 5, std 1): n = 2, mean = 3, variance = ((9 + 2^2) + (1 + 2^2)) / 2 = 9."""
    d = _one_file(tmp_path / "t", "k: {count: 1, mean: 1.0, std: 3.0}\n")
    _one_file(d, "k: {count: 1, mean: 5.0, std: 1.0}\n", res=192)
    k = import_ofa_lut(d).entries["k"]
    assert (k.n, k.mean_ms, k.std_ms) == (2, 3.0, 3.0)


def test_only_files_named_resolution_lookup_table_are_read(tmp_path):
    d = _one_file(tmp_path / "t", "k: {count: 1, mean: 1.0, std: 0.0}\n")
    for junk in ("1 92_lookup_table.yaml", " 176_lookup_table.yaml", "x160_lookup_table.yaml"):
        (d / junk).write_text("k: {count: 1, mean: 9.0, std: 0.0}\n")
    lut = import_ofa_lut(d)
    assert lut.protocol["resolutions"] == [160] and lut.entries["k"].mean_ms == 1.0


@pytest.mark.parametrize("stats, ok", [("{count: 1, mean: 1.0, std: 0.0}", True),
                                       ("{count: 1000000000, mean: 1.0, std: 0.0}", True),
                                       ("{count: 1000000001, mean: 1.0, std: 0.0}", False),
                                       ("{count: 1, mean: 3600000.0, std: 0.0}", True),
                                       ("{count: 1, mean: 3600000.5, std: 0.0}", False),
                                       ("{count: 1, mean: 10.0, std: 3600000.5}", False)])
def test_the_bounds_on_count_and_milliseconds_are_inclusive(tmp_path, stats, ok):
    """A count from 1 to 10^9 and a mean or std up to an hour (3,600,000 ms) are accepted, past them refused."""
    d = _one_file(tmp_path / "t", f"k: {stats}\n")
    if ok:
        assert import_ofa_lut(d).entries["k"].n in (1, 10 ** 9)
    else:
        with pytest.raises(InputError, match="count 1000000001|mean .* ms"):
            import_ofa_lut(d)


def test_a_long_key_or_value_is_cut_short_in_the_error(tmp_path):
    """The key to its first 160 characters, the statistics to their first 120."""
    key = "k" * 159 + "XY" + "z" * 100
    d = _one_file(tmp_path / "t", f"{key}: {{count: 0, mean: 1.0, std: 0.0}}\n")
    with pytest.raises(InputError) as exc:
        import_ofa_lut(d)
    assert f"entry '{'k' * 159}X' has count 0" in str(exc.value)
    _one_file(d, f"k: {{count: {'a' * 200}, mean: 1.0, std: 0.0}}\n")
    with pytest.raises(InputError) as exc:
        import_ofa_lut(d)
    assert f"statistics ['{'a' * 118}" in str(exc.value) and "a" * 119 not in str(exc.value)
