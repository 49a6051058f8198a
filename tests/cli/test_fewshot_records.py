"""``fleet.fewshot`` called from Python, without a device: which stored measurements a run skips
(``_measured_ids``), how they are stored (``_keep``), the refit after a deploy (``refit_after_deploy``, the
pool seed it chooses on) and the record check a deploy makes first (``check_record``). nb201 with no
references: each fit takes well under a second."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

FP, OTHER_FP = "a" * 64, "b" * 64


@pytest.fixture
def project(tmp_path, monkeypatch):
    from edgenas.project import Project

    monkeypatch.delenv("EDGENAS_DB", raising=False)  # the project's own SQLite database
    return Project(tmp_path)


def _measurements(space, archs, rows):
    """One ``Measurement`` of ``archs[i]`` per (i, device, fingerprint hash, runtime, median ms)."""
    from tests.store.conftest import make_measurement

    return [dataclasses.replace(make_measurement(device, space.name, fp, ms), arch=space.to_dict(archs[i]),
                                runtime=runtime)
            for i, device, fp, runtime, ms in rows]


def test_measured_ids_read_the_store_without_creating_it_and_keep_stores_every_measurement(project, tmp_path):
    """``_measured_ids``: the architectures measured on (device, fingerprint, runtime) alone; with no database
    yet, none, and no database is created. ``_keep`` stores them all and returns the store."""
    from edgenas.fleet.fewshot import _keep, _measured_ids, _pool
    from edgenas.spaces import get_space

    space = get_space("nb201")
    archs = _pool(space, [], 0, n=5)[0]
    assert _measured_ids(project, "local", space, FP, "onnxruntime") == set()
    assert list(tmp_path.iterdir()) == []  # read only: no database, no state folder
    ms = _measurements(space, archs, [(0, "local", FP, "onnxruntime", 2.0), (1, "local", FP, "onnxruntime", 3.0),
                                      (2, "local", FP, "torch", 4.0), (3, "other", FP, "onnxruntime", 5.0),
                                      (4, "local", OTHER_FP, "onnxruntime", 6.0)])
    store = _keep(project, ms)
    assert sorted(m.stats["median_ms"] for m in store.list(space=space.name)) == [2.0, 3.0, 4.0, 5.0, 6.0]
    assert _measured_ids(project, "local", space, FP, "onnxruntime") == {space.arch_id(a) for a in archs[:2]}
    assert _measured_ids(project, "local", space, FP, "torch") == {space.arch_id(archs[2])}
    assert _measured_ids(project, "other", space, OTHER_FP, "onnxruntime") == set()


def test_a_deploy_refits_only_the_record_of_its_fingerprint_and_runtime_on_the_same_pool(project, tmp_path):
    """``refit_after_deploy``: no record, or one of another fingerprint or runtime, is left as it is (False);
    the device's record is refitted on every stored measurement (True), choosing on the pool seed the record
    keeps; a record from before the seed was kept is refitted on the pool of seed 0."""
    from edgenas.fleet.fewshot import _keep, _pool, _save, refit_after_deploy
    from edgenas.spaces import get_space

    space = get_space("nb201")
    archs = _pool(space, [], 0, n=3)[0]
    store = _keep(project, _measurements(space, archs, [(i, "local", FP, "onnxruntime", 2.0 + i) for i in range(3)]))
    assert refit_after_deploy(project, "local", space, FP, "onnxruntime", store) is False
    assert not (tmp_path / "luts").exists()
    path, _, _ = _save(project, "local", space, FP, "onnxruntime", archs[:2], np.array([2.0, 3.0]), [], None, 3)
    before = path.read_text()
    for fp, runtime in ((OTHER_FP, "onnxruntime"), (FP, "torch"), (OTHER_FP, "torch")):
        assert refit_after_deploy(project, "local", space, fp, runtime, store) is False, (fp, runtime)
        assert path.read_text() == before
    assert refit_after_deploy(project, "local", space, FP, "onnxruntime", store) is True
    rec = json.loads(path.read_text())
    assert rec["n_points"] == 3 and rec["ensemble"]["inner"]["pool_seed"] == 3
    del rec["ensemble"]["inner"]["pool_seed"]  # a record from before the pool seed was kept
    path.write_text(json.dumps(rec))
    assert refit_after_deploy(project, "local", space, FP, "onnxruntime", store) is True
    assert json.loads(path.read_text())["ensemble"]["inner"]["pool_seed"] == 0


def test_pool_seed_is_the_records_own_or_0_where_it_keeps_none(project):
    """``_pool_seed``: the seed in the ensemble's ``inner``; a record without it, or without ``inner``, 0."""
    from edgenas.fleet.fewshot import _pool, _pool_seed, _save
    from edgenas.latency.fewshot_model import load_model
    from edgenas.spaces import get_space

    space = get_space("nb201")
    archs = _pool(space, [], 0, n=1)[0]
    _save(project, "local", space, FP, "onnxruntime", archs, np.array([2.0]), [], None, 7)
    model = load_model(project.luts_dir, "local", space.name)
    assert _pool_seed(model) == 7
    inner = {k: v for k, v in model.ensemble["inner"].items() if k != "pool_seed"}
    assert _pool_seed(dataclasses.replace(model, ensemble=dict(model.ensemble, inner=inner))) == 0
    assert _pool_seed(dataclasses.replace(model, ensemble={k: v for k, v in model.ensemble.items()
                                                            if k != "inner"})) == 0


def test_check_record_passes_no_record_and_a_good_one_and_refuses_a_damaged_one(project, tmp_path):
    """``check_record`` (what a deploy calls before its export): nothing for a device with no record (and
    nothing written), nothing for a sound record, one ``InputError`` naming the file for a damaged one.
    ``latency_model``: the record's model, None for a device without one."""
    from edgenas.errors import InputError
    from edgenas.fleet.fewshot import _pool, _save, check_record, latency_model
    from edgenas.spaces import get_space

    space = get_space("nb201")
    assert check_record(project, "local", space) is None and list(tmp_path.iterdir()) == []
    path, _, _ = _save(project, "local", space, FP, "onnxruntime", _pool(space, [], 0, n=1)[0], np.array([2.0]),
                       [], None, 0)
    assert check_record(project, "local", space) is None
    assert latency_model(project, "local", space).predict(_pool(space, [], 0, n=1)[0][0]) > 0
    assert latency_model(project, "other", space) is None
    rec = json.loads(path.read_text())
    path.write_text(json.dumps(dict(rec, n_points=0)))
    with pytest.raises(InputError, match="nb201.json") as exc:
        check_record(project, "local", space)
    assert "n_points" in str(exc.value)


def test_the_result_is_a_frozen_record_whose_dict_holds_every_field():
    """``FewShotResult``: what ``device add --fewshot --json`` prints is every field, and the record is frozen."""
    from edgenas.fleet.fewshot import FewShotResult

    fields = dict(device="local", space="nb201", measured_now=2, n_points=5, references=["ref-a"],
                  model_path="luts/local/fewshot/nb201.json", loo_within10=0.6, model={"model": "meta"})
    res = FewShotResult(**fields)
    assert res.to_dict() == fields
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.n_points = 6


@pytest.fixture
def small_tables(tmp_path, monkeypatch):
    """Two small latency tables of nb201 (``TableReferences``: 120 and 50 cells) and empty ``table_config``
    caches."""
    import edgenas.fleet.fewshot as ff
    from edgenas.latency.fewshot_table import MIN_ROWS, TableReferences
    from edgenas.spaces import get_space
    from tests.latency.test_fewshot_table import make_table

    monkeypatch.setattr(ff, "_TABLE_CONFIGS", {})
    monkeypatch.setattr(ff, "_TABLE_FEATURES", {})
    space = get_space("nb201")
    return [TableReferences.build(make_table(tmp_path / f"hw{seed}.csv", n=n, seed=seed)[0], space)
            for seed, n in ((0, 120), (1, MIN_ROWS))]


def test_table_config_remembers_64_answers_and_the_features_of_one_table_at_a_time(small_tables):
    """``table_config``'s memory: the features of the last table asked about only (they are large), and at
    most 64 answers (the 65th starts it afresh); an answer remembered is the same, and the default model is
    the table-corrected one, not the plain one."""
    import edgenas.fleet.fewshot as ff
    from edgenas.latency.fewshot_meta import choose_config, config_grid
    from edgenas.latency.fewshot_table import TableCorrected
    from edgenas.spaces import get_space

    space, (a, b) = get_space("nb201"), small_tables
    first = ff.table_config(space, a, 6)
    assert first == ff.table_config(space, a, 6, plain=False) and ff.table_config(space, a, 6) == first
    assert list(ff._TABLE_FEATURES) == [(a.sha256, a.columns, "nb201")]
    assert ff.table_config(space, a, 6, plain=True) != first  # chosen for the plain model: another answer
    # each column in turn the new device, its non-additive part left out of its task too (paired)
    X, measured = ff._TABLE_FEATURES[(a.sha256, a.columns, "nb201")]
    assert first == choose_config(X, 3, 6, targets=measured, paired=True, configs=config_grid("huber"),
                                  model=lambda n, c: TableCorrected(n, None, c))
    ff.table_config(space, b, 3)
    assert list(ff._TABLE_FEATURES) == [(b.sha256, b.columns, "nb201")]
    assert len(ff._TABLE_CONFIGS) == 3
    for i in range(61):
        ff._TABLE_CONFIGS[("other", i)] = first
    assert len(ff._TABLE_CONFIGS) == 64
    ff.table_config(space, b, 4)
    assert list(ff._TABLE_CONFIGS) == [(False, "huber", b.sha256, b.columns, "nb201", 4)]


def test_the_hint_after_an_interrupted_run_counts_what_is_kept_and_what_is_left():
    from edgenas.fleet.fewshot import _kept_text

    assert _kept_text(2, 5) == ("the 2 of 5 architectures measured before are kept: the same command measures "
                                "the other 3 and fits the model")
