"""Every one-field edit of a supernet checkpoint's ``supernet.json``: one ``InputError`` or a checkpoint
that loads and resumes. The config once went unchecked: a width of 10^30 asked for a network that
grew past 15 GB before anything failed, a negative one was a RuntimeError deep in torch."""

from __future__ import annotations

import json
import shutil

import pytest

from edgenas.errors import InputError
from edgenas.supernet import TrainConfig, load_checkpoint, train_supernet
from tests.mutations import DELETE, field_paths, one_field_edits

VALUES = [None, "x", -1, 10**30, 1e308, [], {}, True, 0.5, "../weights-00000002.safetensors"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "ck"
    cfg = TrainConfig(space="mbv3-tiny", steps=2, batch_size=8, n_random=1, out=str(out), seed=0)
    train_supernet(cfg)
    return out, cfg


def test_every_one_field_edit_is_an_input_error_or_loads(checkpoint, tmp_path):
    src, cfg = checkpoint
    meta0 = json.loads((src / "supernet.json").read_text())
    paths = [p for p in field_paths(meta0, 2) if p[0] not in ("history", "sha256") or len(p) == 1]
    loaded = refused = 0
    for path, value, meta in one_field_edits(meta0, VALUES + [DELETE], paths=paths):
        d = tmp_path / "edit"
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        (d / "supernet.json").write_text(json.dumps(meta))
        try:
            state = load_checkpoint(d)
        except InputError:
            refused += 1
            continue
        loaded += 1
        assert sum(p.numel() for p in state.supernet.parameters()) < 10**7, (path, value)
    assert refused > 300 and loaded > 20, (refused, loaded)


@pytest.mark.parametrize("rng", [{"bit_generator": "PCG64"}, {"bit_generator": "nope", "state": {}}])
def test_resume_with_a_damaged_generator_state_is_one_error(checkpoint, tmp_path, rng):
    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    meta = json.loads((d / "supernet.json").read_text())
    meta["rng"] = rng
    (d / "supernet.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="numpy generator state"):
        train_supernet(TrainConfig(**dict(cfg.to_dict(), out=str(d))), resume=True)
