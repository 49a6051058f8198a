"""Issue 17: the batch path keeps genes from sampling to prediction and gives the same bits as before."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.predictor import LatencyPredictor
from edgenas.spaces import get_space


def _lut(space) -> Lut:
    rng = np.random.default_rng(3)

    def st(ms: float) -> EntryStats:
        return EntryStats(n=1, median_ms=ms, mean_ms=ms, std_ms=0.0, cov=0.0, p90_ms=ms, p99_ms=ms,
                          min_ms=ms, max_ms=ms)

    return Lut(device="t", space=space.name, fingerprint={}, fingerprint_hash="0" * 64, runtime="none",
               precision="fp32", threads=1, protocol={}, overhead=st(0.05),
               entries={k: st(float(v)) for k, v in zip(space.key_vocab(), rng.uniform(0.01, 3, 10_000))},
               created_at=0.0)


def _old_predict(pred, genes: np.ndarray) -> np.ndarray:
    """The pre-issue-17 computation: argsort compaction, then one gather-and-sum."""
    idx = pred.space._key_index_matrix_argsort(pred.space._check_genes(genes))
    return pred._cost[idx].sum(axis=1) + pred.overhead_ms


@pytest.mark.parametrize("name", ["mbv3-small", "ofa-mbv3"])
def test_key_index_matrix_equals_argsort_path_for_every_depth_pattern(name):
    space = get_space(name)
    rng = np.random.default_rng(0)
    genes = space.sample_genes(rng, 3000)
    nd, ns = len(space.config.d_choices), space.config.n_stages
    pats = np.stack(np.meshgrid(*[np.arange(nd)] * ns, indexing="ij"), -1).reshape(-1, ns)
    genes[: len(pats), -ns:] = pats  # every depth pattern at least once
    new, old = space.key_index_matrix(genes), space._key_index_matrix_argsort(space._check_genes(genes))
    assert new.shape == old.shape and np.array_equal(new, old)
    for k in (1, 5, 40):  # the width follows the batch, as before
        assert np.array_equal(space.key_index_matrix(genes[k:2 * k]),
                              space._key_index_matrix_argsort(space._check_genes(genes[k:2 * k])))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.uint64, np.int64])
def test_key_index_matrix_is_the_same_for_every_integer_dtype(dtype):
    """Genes stay in their own dtype for the index arithmetic where that is exact (objects keep
    uint8); any other integer dtype is widened first, so no caller's dtype changes a key."""
    space = get_space("ofa-mbv3")
    genes = space.sample_genes(np.random.default_rng(2), 500)
    old = space._key_index_matrix_argsort(space._check_genes(genes))
    new = space.key_index_matrix(genes.astype(dtype))
    assert new.dtype == np.int64 and np.array_equal(new, old)
    bad = genes.astype(dtype)
    bad[3, 5] = space.gene_sizes()[5]
    with pytest.raises(InputError, match="gene 5"):
        space.key_index_matrix(bad)


@pytest.mark.parametrize("name", ["mbv3-small", "ofa-mbv3"])
def test_predictions_bit_identical_from_genes_objects_and_records(name):
    space = get_space(name)
    pred = LatencyPredictor(_lut(space), space)
    genes = space.sample_genes(np.random.default_rng(1), 2000)
    archs = [space.from_genes(g) for g in genes]
    before = _old_predict(pred, genes)
    assert np.array_equal(pred.predict_raw_many(genes), before)
    assert np.array_equal(pred.predict_raw_many(archs), before)
    fresh = [dataclasses.replace(a) for a in archs[:300]]  # no kept genes: converted, then kept
    assert np.array_equal(pred.predict_raw_many(fresh), _old_predict(pred, genes[:300]))
    assert np.array_equal(space.genes_matrix(fresh), genes[:300])
    records = [space.to_dict(a) for a in archs[:50]]
    assert np.array_equal(pred.predict_raw_many(records), _old_predict(pred, genes[:50]))
    for k in (1, 7):
        assert np.array_equal(pred.predict_raw_many(archs[:k]), _old_predict(pred, genes[:k]))


def test_kept_genes_belong_to_one_space_instance_and_do_not_change_records():
    small = get_space("mbv3-small")
    arch = small.from_genes(small.sample_genes(np.random.default_rng(2), 1)[0])
    twin = dataclasses.replace(arch)
    assert arch == twin and hash(arch) == hash(twin) and repr(arch) == repr(twin)
    assert small.to_dict(arch) == small.to_dict(twin)
    # a copy that went through pickle keeps an attribute name no other space instance uses
    other = type(small)(small.config)
    back = pickle.loads(pickle.dumps(arch))
    assert np.array_equal(other.genes_matrix([back])[0], small.to_genes(arch))
    assert other._gene_attr != small._gene_attr


def test_bad_record_in_a_batch_is_an_input_error():
    space = get_space("mbv3-small")
    pred = LatencyPredictor(_lut(space), space)
    good = space.to_dict(space.sample(np.random.default_rng(0)))
    with pytest.raises(InputError, match="ks"):
        pred.predict_many([good, {**good, "ks": [9] * len(good["ks"])}])
    with pytest.raises(InputError, match="outside"):
        pred.predict_many(np.full((2, space.dim), 7))
