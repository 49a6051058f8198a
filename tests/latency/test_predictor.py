"""The LUT predictor against its one-at-a-time reference, on a tiny space and on mbv3-small."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.calibration import fit_calibration
from edgenas.latency.lut import Calibration, EntryStats, Lut
from edgenas.latency.predictor import LatencyPredictor
from edgenas.spaces.base import SearchSpace

OVERHEAD = 0.05


@dataclass(frozen=True)
class TinyArch:
    d: tuple[int, ...]  # per-stage depth 1..3
    ks: tuple[int, ...]  # per-slot kernel index 0..2 (3 stages x 3 slots)


class TinySpace(SearchSpace[TinyArch]):
    """3 stages of elastic depth and per-slot kernel: variable-length block lists (padding)."""

    name = "tiny-test"

    def from_dict(self, data):
        return TinyArch(tuple(data["d"]), tuple(data["ks"]))

    def to_dict(self, arch):
        return {"space": self.name, "schema": 1, "d": list(arch.d), "ks": list(arch.ks)}

    def gene_sizes(self):
        return (3, 3, 3) + (3,) * 9

    def to_genes(self, arch):
        return np.array([x - 1 for x in arch.d] + list(arch.ks), dtype=np.int64)

    def from_genes(self, genes):
        g = [int(x) for x in genes]
        return TinyArch(tuple(x + 1 for x in g[:3]), tuple(g[3:]))

    def block_keys(self, arch):
        keys = ["stem"]
        for s in range(3):
            keys += [f"s{s}-b{i}-k{arch.ks[3 * s + i]}" for i in range(arch.d[s])]
        return keys + ["head"]

    def key_vocab(self):
        return ["stem", "head"] + [f"s{s}-b{i}-k{k}" for s in range(3) for i in range(3) for k in range(3)]

    def input_shape(self, arch):
        return (1, 3, 8, 8)

    def build_model(self, arch):
        raise NotImplementedError("not needed to predict latency")

    def build_block(self, key):
        raise NotImplementedError("not needed to predict latency")

    def block_input_shape(self, key):
        return (1, 3, 8, 8)


def _stats(ms: float) -> EntryStats:
    return EntryStats(n=20, median_ms=ms, mean_ms=ms, std_ms=0.01 * ms, cov=0.01, p90_ms=ms * 1.02,
                      p99_ms=ms * 1.05, min_ms=ms * 0.98, max_ms=ms * 1.1)


def make_lut(space: SearchSpace, *, calibration: Calibration | None = None, drop: int = 0) -> Lut:
    """Deterministic per-key medians in [0.01, 2.0] ms (some below the overhead, so net = 0)."""
    vocab = space.key_vocab()
    entries = {}
    for k in vocab[drop:]:
        h = int.from_bytes(hashlib.sha256(k.encode()).digest()[:4], "little") / 2**32
        entries[k] = _stats(0.01 + 1.99 * h)
    return Lut(device="testdev", space=space.name, fingerprint={"model": "test"}, fingerprint_hash="f" * 64,
               runtime="onnxruntime", precision="fp32", threads=1, protocol={}, overhead=_stats(OVERHEAD),
               entries=entries, calibration=calibration)


def _spaces():
    from edgenas.spaces import get_space

    yield pytest.param(TinySpace(), id="tiny")
    yield pytest.param(get_space("mbv3-small"), id="mbv3-small")


@pytest.fixture(params=list(_spaces()))
def space(request):
    return request.param


def test_vectorised_equals_loop_on_1000_archs(space):
    pred = LatencyPredictor(make_lut(space), space)
    genes = space.sample_genes(np.random.default_rng(0), 1000)
    archs = [space.from_genes(g) for g in genes]
    fast = pred.predict_many(genes)
    slow = pred.predict_loop(archs)
    assert fast.shape == (1000,)
    np.testing.assert_allclose(fast, slow, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(pred.predict_many(archs), slow, rtol=1e-12, atol=1e-12)
    assert pred.predict(archs[3]) == pytest.approx(slow[3], rel=1e-12)
    assert np.unique(np.round(fast, 9)).size > 100  # the predictions really differ by arch


def test_overhead_counted_once_and_net_costs_clipped():
    space = TinySpace()
    lut = make_lut(space)
    pred = LatencyPredictor(lut, space)
    arch = space.from_genes(np.array([2, 0, 1] + [0, 1, 2] * 3))
    keys = space.block_keys(arch)
    expected = OVERHEAD + sum(max(lut.entries[k].median_ms - OVERHEAD, 0.0) for k in keys)
    assert pred.predict(arch) == pytest.approx(expected, rel=1e-12)
    # naive sum of medians counts the overhead once per block: strictly more
    assert sum(lut.entries[k].median_ms for k in keys) > pred.predict(arch)
    # a LUT whose every block is cheaper than the overhead predicts exactly the overhead
    cheap = Lut(**{**lut.__dict__, "entries": {k: _stats(0.01) for k in lut.entries}})
    assert LatencyPredictor(cheap, space).predict(arch) == pytest.approx(OVERHEAD)


def test_calibration_applied_and_reported(space):
    raw_pred = LatencyPredictor(make_lut(space), space)
    assert raw_pred.calibration_points == 0 and raw_pred.describe()["calibration"] is None
    genes = space.sample_genes(np.random.default_rng(1), 50)
    raw = raw_pred.predict_many(genes)
    cal = fit_calibration(raw[:5], 1.3 * raw[:5])  # the device is 30% slower than the LUT sum
    pred = LatencyPredictor(make_lut(space, calibration=cal), space)
    assert pred.calibration_points == 5
    d = pred.describe()
    assert d["calibration_points"] == 5 and d["calibration"]["model"] == "loglinear"
    np.testing.assert_allclose(pred.predict_raw_many(genes), raw, rtol=1e-12)
    np.testing.assert_allclose(pred.predict_many(genes), 1.3 * raw, rtol=1e-6)
    np.testing.assert_allclose(pred.predict_loop([space.from_genes(g) for g in genes]),
                               pred.predict_many(genes), rtol=1e-12)


def test_min_latency_is_a_lower_bound_reached_by_its_arch(space):
    cal = Calibration(model="loglinear", params={"a": 0.1, "b": 1.2}, n_points=4)
    for lut in (make_lut(space), make_lut(space, calibration=cal)):
        pred = LatencyPredictor(lut, space)
        ms, arch = pred.min_latency()
        assert pred.predict(arch) == pytest.approx(ms, rel=1e-9)
        sampled = pred.predict_many(space.sample_genes(np.random.default_rng(2), 2000))
        assert ms <= sampled.min() + 1e-9


def test_space_mismatch_is_an_input_error():
    space = TinySpace()
    lut = Lut(**{**make_lut(space).__dict__, "space": "mbv3-small"})
    with pytest.raises(InputError, match="space 'mbv3-small', not 'tiny-test'"):
        LatencyPredictor(lut, space)


def test_missing_keys_named_with_count_and_hint(space):
    with pytest.raises(InputError) as err:
        LatencyPredictor(make_lut(space, drop=5), space)
    msg = str(err.value)
    assert f"lacks 5 of the {len(space.key_vocab())} block keys" in msg
    assert space.key_vocab()[0] in msg and "re-profile" in msg


def test_non_monotone_calibration_rejected():
    space = TinySpace()
    bad = Calibration(model="loglinear", params={"a": 0.0, "b": -0.5}, n_points=3)
    with pytest.raises(InputError, match="not monotone"):
        LatencyPredictor(make_lut(space, calibration=bad), space)


def test_bad_genes_matrix_rejected():
    space = TinySpace()
    pred = LatencyPredictor(make_lut(space), space)
    with pytest.raises(InputError, match="shape"):
        pred.predict_many(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(InputError, match="outside"):
        pred.predict_many(np.full((2, space.dim), 7, dtype=np.int64))
    assert pred.predict_many(np.zeros((0, space.dim), dtype=np.int64)).shape == (0,)


def test_a_table_timed_in_runs_adds_the_wait_once_per_inference(space):
    """Entries and overhead timed in runs (torch on CUDA, TensorRT) are per-call costs inside a stream of
    calls; ``sync`` (the overhead model one call at a time) adds the wait for the device once."""
    import dataclasses

    plain = make_lut(space)
    timed = dataclasses.replace(plain, protocol={"runs_per_sample": 10}, sync=_stats(OVERHEAD + 0.03))
    archs = [space.from_genes(g) for g in space.sample_genes(np.random.default_rng(1), 50)]
    a, b = LatencyPredictor(plain, space), LatencyPredictor(timed, space)
    assert timed.sync_extra_ms == pytest.approx(0.03) and plain.sync_extra_ms == 0.0
    assert b.key_cost == a.key_cost  # the blocks' net costs do not change
    np.testing.assert_allclose(b.predict_many(archs), a.predict_many(archs) + 0.03)
    np.testing.assert_allclose(b.predict_loop(archs), b.predict_many(archs))
    assert b.min_latency()[0] == pytest.approx(a.min_latency()[0] + 0.03)
    assert b.describe()["sync_extra_ms"] == pytest.approx(0.03)
    # a sync faster than the overhead in runs (noise) adds nothing, never a negative
    fast = dataclasses.replace(timed, sync=_stats(OVERHEAD * 0.5))
    np.testing.assert_allclose(LatencyPredictor(fast, space).predict_many(archs), a.predict_many(archs))


def test_the_sync_entry_round_trips_and_is_absent_without_it(space, tmp_path):
    import dataclasses

    plain = make_lut(space)
    assert "sync" not in plain.to_dict()
    timed = dataclasses.replace(plain, sync=_stats(0.2))
    back = Lut.load(timed.save(tmp_path / "t.json"))
    assert back.sync == timed.sync and back.sync_extra_ms == pytest.approx(0.2 - OVERHEAD)
    bad = timed.to_dict()
    bad["sync"] = {"n": 3}
    with pytest.raises(InputError, match="sync"):
        Lut.from_dict(bad)


def test_a_gene_at_its_size_or_below_zero_is_outside_and_the_last_choice_is_not(space):
    pred = LatencyPredictor(make_lut(space), space)
    sizes = np.asarray(space.gene_sizes())
    for j in range(space.dim):
        for bad in (sizes[j], -1):
            genes = np.zeros((2, space.dim), dtype=np.int64)
            genes[1, j] = bad
            with pytest.raises(InputError, match="outside"):
                pred.predict_many(genes)
    top = np.tile(sizes - 1, (2, 1))
    assert pred.predict_many(top) == pytest.approx(pred.predict_loop([space.from_genes(g) for g in top]))


def test_describe_counts_the_unstable_keys_of_the_space_only():
    import dataclasses

    space = TinySpace()
    lut = make_lut(space)
    entries = dict(lut.entries)
    for k in ("stem", "s0-b1-k2", "s2-b2-k0"):
        entries[k] = dataclasses.replace(entries[k], stable=False)
    entries["other-space-key"] = dataclasses.replace(_stats(1.0), stable=False)  # no block of this space
    d = LatencyPredictor(dataclasses.replace(lut, entries=entries), space).describe()
    assert d["unstable_keys"] == 3 and d["n_keys"] == len(space.key_vocab())


def test_missing_keys_message_names_the_first_three():
    space = TinySpace()
    with pytest.raises(InputError) as err:
        LatencyPredictor(make_lut(space, drop=5), space)
    assert f"(first: {', '.join(space.key_vocab()[:3])})" in str(err.value)
