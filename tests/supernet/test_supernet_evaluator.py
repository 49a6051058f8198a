"""The ``supernet`` evaluator's options, defaults and what it takes from the checkpoint (a one-step mbv3-tiny one)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgenas.errors import InputError
from edgenas.evaluate import make_evaluator
from edgenas.evaluate.base import EVALUATORS
from edgenas.evaluate.supernet_eval import SupernetEvaluator
from edgenas.spaces import get_space
from edgenas.supernet import TrainConfig, train_supernet

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny-supernet")
    cfg = TrainConfig(space="mbv3-tiny", data="digits", steps=1, batch_size=4, n_random=0, checkpoint_every=1,
                      out=str(out), seed=0)
    return get_space("mbv3-tiny"), train_supernet(cfg).parent


def _edited(src, dst, **train_config):
    """A copy of the checkpoint whose train_config has these entries (None: the entry removed)."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "supernet.json").read_text())
    for k, v in train_config.items():
        meta["train_config"].pop(k) if v is None else meta["train_config"].__setitem__(k, v)
    (dst / "supernet.json").write_text(json.dumps(meta))
    return dst


def test_defaults_and_description(tiny):
    space, path = tiny
    d = make_evaluator("supernet", space, checkpoint=str(path)).describe()
    assert d == {"name": "supernet", "metric": "digits held-out accuracy (%) inherited from the supernet",
                 "checkpoint": str(path), "data": "digits", "calib_batches": 4, "calib_batch_size": 64,
                 "batch_size": 256, "seed": 0}
    assert SupernetEvaluator(space, checkpoint=path).describe()["seed"] == 0
    assert EVALUATORS.get("supernet")(space, checkpoint=str(path)).describe()["seed"] == 0
    with pytest.raises(InputError, match="unknown option.s. epochs") as err:
        make_evaluator("supernet", space, checkpoint=str(path), epochs=3)
    assert err.value.hint == "known: checkpoint, data, calib_batches, calib_batch_size, batch_size"


def test_a_checkpoint_of_the_space_as_it_was_is_refused(tiny, tmp_path):
    space, path = tiny
    old = tmp_path / "old"
    shutil.copytree(path, old)
    meta = json.loads((old / "supernet.json").read_text())
    meta["config"]["resolutions"] = [20]  # mbv3-tiny runs at 16 today
    (old / "supernet.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="trained for another 'mbv3-tiny'.*resolutions: supernet"):
        make_evaluator("supernet", space, checkpoint=str(old))


@pytest.mark.parametrize("checkpoint", ["", None, 2.5, True])
def test_an_empty_or_missing_checkpoint_is_refused(tiny, checkpoint):
    with pytest.raises(InputError, match="the supernet evaluator needs checkpoint=PATH"):
        make_evaluator("supernet", tiny[0], checkpoint=checkpoint)
    with pytest.raises(InputError, match="the supernet evaluator needs checkpoint=PATH"):
        make_evaluator("supernet", tiny[0])


@pytest.mark.parametrize("name, bad, low", [
    ("calib_batches", -1, 0), ("calib_batches", True, 0), ("calib_batches", 2.0, 0), ("calib_batches", "2", 0),
    ("calib_batch_size", 0, 1), ("calib_batch_size", False, 1), ("batch_size", 0, 1), ("batch_size", 1.5, 1)])
def test_bad_sizes_are_refused(tiny, name, bad, low):
    space, path = tiny
    with pytest.raises(InputError, match=f"supernet evaluator: {name} must be an integer >= {low}, got {bad!r}"):
        make_evaluator("supernet", space, checkpoint=str(path), **{name: bad})


def test_the_smallest_sizes_are_taken(tiny):
    space, path = tiny
    ev = make_evaluator("supernet", space, checkpoint=str(path), calib_batches=0, calib_batch_size=1, batch_size=1)
    assert (ev.describe()["calib_batches"], ev.describe()["calib_batch_size"], ev.describe()["batch_size"]) == (0, 1, 1)


def test_data_comes_from_the_checkpoint_unless_given(tiny, tmp_path):
    space, path = tiny
    gone = str(tmp_path / "gone.npz")
    moved = _edited(path, tmp_path / "moved", data=gone)
    with pytest.raises(InputError, match="gone.npz"):  # the data it was trained on, not digits
        make_evaluator("supernet", space, checkpoint=str(moved))
    assert make_evaluator("supernet", space, checkpoint=str(moved), data="digits").describe()["data"] == "digits"


def test_a_checkpoint_without_val_fraction_holds_out_a_fifth(tiny, tmp_path):
    space, path = tiny
    arch = space.sample(np.random.default_rng(0))

    def score(**train_config):
        ckpt = _edited(path, tmp_path / str(len(list(tmp_path.iterdir()))), **train_config)
        return make_evaluator("supernet", space, checkpoint=str(ckpt), calib_batches=0).evaluate([arch])[0]

    fifth = score(val_fraction=0.2)
    assert score(val_fraction=None) == fifth and score(val_fraction=0.4) != fifth


def test_numbers_the_command_line_made_of_names_are_names(tiny, tmp_path, monkeypatch):
    """``--eval-opt checkpoint=123 --eval-opt data=5`` arrive as the integers 123 and 5: a folder 123 was refused as
    no checkpoint at all, data=5 raised pathlib's TypeError and data=0 took the checkpoint's data unasked."""
    from edgenas.cli.cmd_search import _options

    space, path = tiny
    shutil.copytree(path, tmp_path / "123")
    monkeypatch.chdir(tmp_path)
    opts = _options(["checkpoint=123", "data=5"])
    assert opts == {"checkpoint": 123, "data": 5}
    with pytest.raises(InputError, match="unknown dataset '5'"):
        make_evaluator("supernet", space, **opts)
    with pytest.raises(InputError, match="unknown dataset '0'"):
        make_evaluator("supernet", space, checkpoint=123, data=0)
    assert make_evaluator("supernet", space, checkpoint=123).describe()["checkpoint"] == "123"
    for bad in (["digits"], 2.5, True):
        with pytest.raises(InputError, match="supernet evaluator: data must be 'digits', a .npz file or an image "
                                             "folder, got"):
            make_evaluator("supernet", space, checkpoint=123, data=bad)
