"""Sandwich training on digits, checkpoints and exact resume, malformed checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from edgenas.errors import InputError
from edgenas.supernet import TrainConfig, load_checkpoint, load_supernet, train_supernet


def test_sandwich_training_reduces_loss(trained):
    path, metrics = trained
    assert [m["step"] for m in metrics] == list(range(1, 21))
    first = np.mean([m["loss_largest"] for m in metrics[:4]])
    last = np.mean([m["loss_largest"] for m in metrics[-4:]])
    first_small = np.mean([m["loss_smallest"] for m in metrics[:4]])
    last_small = np.mean([m["loss_smallest"] for m in metrics[-4:]])
    assert last < 0.75 * first, (first, last)
    assert last_small < 0.85 * first_small, (first_small, last_small)
    assert metrics[0]["lr"] == pytest.approx(0.1) and metrics[-1]["lr"] < 0.01  # cosine schedule
    meta = load_checkpoint(path).meta
    assert meta["step"] == 20 and meta["space"] == "mbv3-small" and len(meta["history"]) == 20


def _cfg(out, **kw):
    base = dict(space="mbv3-small", steps=4, batch_size=8, lr=0.05, n_random=1, checkpoint_every=2,
                out=str(out), seed=3)
    return TrainConfig(**{**base, **kw})


class _Stop(Exception):
    pass


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    full = train_supernet(_cfg(tmp_path / "full"))

    def stop_at_3(step, total, metrics):
        if step == 3:  # checkpoint at step 2; step 3 is lost
            raise _Stop

    with pytest.raises(_Stop):
        train_supernet(_cfg(tmp_path / "cut"), progress=stop_at_3)
    assert load_checkpoint(tmp_path / "cut").meta["step"] == 2
    with pytest.raises(InputError, match="already exists"):
        train_supernet(_cfg(tmp_path / "cut"))
    with pytest.raises(InputError, match="different settings"):
        train_supernet(_cfg(tmp_path / "cut", lr=0.1), resume=True)
    resumed = train_supernet(_cfg(tmp_path / "cut"), resume=True)
    files = json.loads(resumed.read_text())["files"]
    assert sorted(p.name for p in resumed.parent.glob("*.safetensors")) == sorted(files.values())
    a = load_file(str(full.parent / "weights-00000004.safetensors"))
    b = load_file(str(resumed.parent / files["weights"]))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    loaded, reference = load_supernet(resumed).state_dict(), load_supernet(full).state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())
    ma, mb = (json.loads(p.read_text()) for p in (full, resumed))
    assert ma["history"] == mb["history"] and ma["rng"] == mb["rng"]


def test_training_into_a_folder_of_other_files_is_refused(tmp_path):
    """``supernet train --out`` wrote its checkpoint files into any folder, a search run's included."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    with pytest.raises(InputError, match="is not empty and holds no supernet checkpoint"):
        train_supernet(_cfg(run))
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]


def test_train_config_is_validated():
    with pytest.raises(InputError):
        TrainConfig(steps=10, epochs=1.0)
    with pytest.raises(InputError):
        TrainConfig(steps=10, batch_size=0)
    with pytest.raises(InputError, match="unknown search space"):
        TrainConfig(space="nope", steps=10)
    cfg = TrainConfig(epochs=2.0, batch_size=100)
    assert cfg.total_steps(1437) == 29
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_malformed_checkpoints_raise_input_error(trained, tmp_path):
    path, _ = trained
    with pytest.raises(InputError, match="no supernet checkpoint"):
        load_supernet(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "supernet.json").write_text("{not json")
    with pytest.raises(InputError, match="malformed"):
        load_supernet(bad)
    meta = json.loads(path.read_text())
    (bad / "supernet.json").write_text(json.dumps({**meta, "sha256": {}}))
    for name in meta["files"].values():
        (bad / name).write_bytes((path.parent / name).read_bytes()[:500])
    with pytest.raises(InputError, match="safetensors"):
        load_supernet(bad)
    (bad / "supernet.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="SHA-256"):
        load_supernet(bad)
    (bad / "supernet.json").write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(InputError, match="not an edgenas supernet"):
        load_supernet(bad)


def test_a_run_that_diverges_stops_and_keeps_its_last_checkpoint(tmp_path):
    """At the largest learning rate allowed the weights of mbv3-tiny turn NaN within 16 steps: training went on,
    saved them over the last good checkpoint, and that file was then refused by every load."""
    from edgenas.errors import EdgenasError

    out = tmp_path / "ck"
    cfg = TrainConfig(space="mbv3-tiny", steps=16, checkpoint_every=2, batch_size=8, n_random=0, out=str(out),
                      seed=0, lr=10.0)
    with pytest.raises(EdgenasError, match=r"supernet training diverged at step \d+ \((a loss|weights) that (is|are) "
                                           r"NaN or infinite\); the checkpoint of step \d+ in .* is unchanged") as exc:
        train_supernet(cfg)
    assert exc.value.hint == "train again with a lower --lr (this run's is 10)"
    kept = int(exc.value.message.split("the checkpoint of step ")[1].split()[0])
    assert load_checkpoint(out).meta["step"] == kept < 16  # the last good one loads
    assert sorted(p.name for p in out.iterdir()) == [f"optimizer-{kept:08d}.safetensors", "supernet.json",
                                                      f"weights-{kept:08d}.safetensors"]
