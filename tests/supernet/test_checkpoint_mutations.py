"""Every one-field edit of a supernet checkpoint's ``supernet.json``: one ``InputError`` or a checkpoint
that loads and resumes. The config once went unchecked: a width of 10^30 asked for a network that
grew past 15 GB before anything failed, a negative one was a RuntimeError deep in torch."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from edgenas.errors import InputError
from edgenas.supernet import TrainConfig, load_checkpoint, train_supernet
from edgenas.supernet.checkpoint import TORCH_RNG
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


def _edit_tensors(d, which, edit):
    """Rewrite the checkpoint's ``which`` tensor file with ``edit(tensors)`` applied, its SHA-256 updated (as
    anyone editing a checkpoint can)."""
    from safetensors.torch import load, save

    from edgenas.io import sha256_bytes

    meta = json.loads((d / "supernet.json").read_text())
    path = d / meta["files"][which]
    tensors = load(path.read_bytes())
    edit(tensors)
    data = save(tensors)
    path.write_bytes(data)
    meta["sha256"][which] = sha256_bytes(data)
    (d / "supernet.json").write_text(json.dumps(meta))


def _first(tensors, prefix=""):
    return next(k for k, v in sorted(tensors.items()) if k.startswith(prefix) and v.is_floating_point())


def _set(key_of, value_of):
    def edit(t):
        k = key_of(t)
        t[k] = value_of(t[k])
    return edit


TENSOR_EDITS = {  # a checkpoint once loaded all of these; resuming from the optimizer ones was a torch traceback
    "nan weight": ("weights", _set(_first, lambda v: torch.full_like(v, float("nan"))), "NaN or infinite"),
    "float64 weight past float32": ("weights", _set(_first, lambda v: v.double() * 1e300), "wrong shape or type"),
    "int weight": ("weights", _set(_first, lambda v: v.long()), "wrong shape or type"),
    "inf momentum": ("optimizer", _set(lambda t: _first(t, "momentum/"), lambda v: v + float("inf")),
                     "NaN or infinite"),
    "momentum of another shape": ("optimizer", _set(lambda t: _first(t, "momentum/"), lambda v: v[:1]),
                                  "wrong shape or type"),
    "momentum of no parameter": ("optimizer", lambda t: t.update({"momentum/nope": torch.zeros(2)}), "unexpected"),
    "zero torch rng state": ("optimizer", _set(lambda t: TORCH_RNG, torch.zeros_like), "generator state"),
    "float torch rng state": ("optimizer", _set(lambda t: TORCH_RNG, lambda v: v.float()), "generator state"),
    "short torch rng state": ("optimizer", _set(lambda t: TORCH_RNG, lambda v: v[:7]), "generator state"),
}


@pytest.mark.parametrize("name", TENSOR_EDITS)
def test_a_tensor_file_of_nan_other_dtypes_or_a_bad_optimizer_state_is_one_input_error(checkpoint, tmp_path, name):
    src, cfg = checkpoint
    which, edit, message = TENSOR_EDITS[name]
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    _edit_tensors(d, which, edit)
    with pytest.raises(InputError, match=message) as err:
        load_checkpoint(d)
    assert json.loads((d / "supernet.json").read_text())["files"][which] in str(err.value)


def test_resuming_from_a_bad_momentum_buffer_is_one_input_error(checkpoint, tmp_path):
    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    _edit_tensors(d, "optimizer", TENSOR_EDITS["momentum of another shape"][1])
    meta = json.loads((d / "supernet.json").read_text())
    meta["step"] = 1  # so that training goes on
    (d / "supernet.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="momentum buffers do not fit"):
        train_supernet(TrainConfig(**dict(cfg.to_dict(), out=str(d))), resume=True)


def test_a_record_whose_space_is_not_its_config_is_refused(checkpoint, tmp_path):
    """``space`` said mbv3-small over mbv3-tiny's config: the checkpoint loaded as either, depending on the
    reader, and resuming mbv3-small trained mbv3-tiny."""
    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    meta = json.loads((d / "supernet.json").read_text())
    meta["space"] = meta["train_config"]["space"] = "mbv3-small"
    (d / "supernet.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="'space' is 'mbv3-small' but the config is the mbv3-tiny supernet's"):
        load_checkpoint(d)
    with pytest.raises(InputError, match="'space' is 'mbv3-small'"):
        train_supernet(TrainConfig(**dict(meta["train_config"], out=str(d))), resume=True)


def test_resume_refuses_a_config_other_than_its_spaces(checkpoint, tmp_path):
    """mbv3-tiny's widths under the name mbv3-small: resuming mbv3-small trained that network on."""
    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    meta = json.loads((d / "supernet.json").read_text())
    meta["space"] = meta["config"]["name"] = meta["train_config"]["space"] = "mbv3-small"
    meta["step"] = 1
    (d / "supernet.json").write_text(json.dumps(meta))
    before = sorted((p.name, p.read_bytes()) for p in d.iterdir())
    assert load_checkpoint(d).supernet.config.name == "mbv3-small"  # a config of its own: it loads
    with pytest.raises(InputError, match="another config than the mbv3-small space's"):
        train_supernet(TrainConfig(**dict(meta["train_config"], out=str(d))), resume=True)
    assert sorted((p.name, p.read_bytes()) for p in d.iterdir()) == before


def test_save_returns_the_record_and_keeps_only_the_files_of_its_step(tmp_path):
    from edgenas.spaces import get_space
    from edgenas.supernet import MBV3Supernet
    from edgenas.supernet.checkpoint import save_checkpoint

    net = MBV3Supernet(get_space("mbv3-tiny").config)
    momentum = {"momentum/classifier.linear.bias": torch.arange(10.0)}
    (tmp_path / "notes.txt").write_text("kept")
    for step in (1, 2):
        with torch.no_grad():
            net.classifier.linear.bias.fill_(step)
        path = save_checkpoint(tmp_path, net, {"step": step}, momentum)
        assert path == tmp_path / "supernet.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "optimizer-00000002.safetensors",
                                                          "supernet.json", "weights-00000002.safetensors"]
    state = load_checkpoint(path)
    assert state.meta["step"] == 2 and state.path == tmp_path and not state.supernet.training
    assert all(torch.equal(v, state.supernet.state_dict()[k]) for k, v in net.state_dict().items())
    assert sorted(state.optimizer_tensors) == sorted([*momentum, TORCH_RNG])
    assert torch.equal(state.optimizer_tensors["momentum/classifier.linear.bias"], torch.arange(10.0))


def _write(d, meta, files=None):
    (d / "supernet.json").write_text(json.dumps(meta))
    for name, data in (files or {}).items():
        (d / name).write_bytes(data)


def _flip_last_byte(data):
    return data[:-1] + bytes([data[-1] ^ 1])


def test_a_missing_changed_or_unreadable_tensor_file_is_one_input_error(checkpoint, tmp_path):
    src, cfg = checkpoint
    meta = json.loads((src / "supernet.json").read_text())
    weights = meta["files"]["weights"]
    cases = [
        (lambda d: (d / weights).unlink(), "supernet checkpoint file missing"),
        (lambda d: (d / weights).write_bytes(_flip_last_byte((d / weights).read_bytes())), "SHA-256 differs"),
        (lambda d: _write(d, {**meta, "sha256": {}}, {weights: b"\x00" * 64}), "not a readable safetensors file"),
        (lambda d: _write(d, {**meta, "sha256": {}, "files": {**meta["files"], "weights": meta["files"]["optimizer"]}}),
         "weights of the mbv3-tiny supernet do not fit"),
    ]
    for i, (damage, message) in enumerate(cases):
        d = tmp_path / str(i)
        shutil.copytree(src, d)
        damage(d)
        with pytest.raises(InputError, match=message):
            load_checkpoint(d / "supernet.json")


def test_load_supernet_and_a_tensor_file_past_the_limit(checkpoint, tmp_path):
    """``load_supernet`` is the checkpoint's supernet; a tensor file over ``MAX_TENSOR_BYTES`` (1 GiB) is refused
    from its size, unread (a sparse file: nothing is written or read)."""
    from edgenas.supernet import load_supernet
    from edgenas.supernet.checkpoint import MAX_TENSOR_BYTES

    src, cfg = checkpoint
    net = load_supernet(src)
    assert not net.training
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in load_checkpoint(src).supernet.state_dict().items())
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    weights = d / json.loads((d / "supernet.json").read_text())["files"]["weights"]
    assert MAX_TENSOR_BYTES == 1 << 30
    with open(weights, "r+b") as fh:
        fh.truncate(MAX_TENSOR_BYTES + 1)
    # a byte over: in bytes, where "1024.0 MB, over the 1024 MB limit" hid which is larger
    with pytest.raises(InputError, match="is 1,073,741,825 bytes, over the 1,073,741,824-byte limit"):
        load_supernet(d)


@pytest.mark.parametrize("edit, message", [
    (lambda d: (d / "supernet.json").unlink(), "no supernet checkpoint at .*supernet.json not found"),
    (lambda d: _write(d, [1, 2]), "is not an edgenas supernet checkpoint"),
    (lambda d: _write(d, {**json.loads((d / "supernet.json").read_text()), "format": "edgenas-run"}),
     "is not an edgenas supernet checkpoint"),
    (lambda d: _write(d, {**json.loads((d / "supernet.json").read_text()), "schema": 2}),
     "unsupported checkpoint schema 2"),
    (lambda d: _write(d, {**json.loads((d / "supernet.json").read_text()), "schema": True}),
     "unsupported checkpoint schema True"),  # True == 1 in Python
])
def test_a_record_of_another_format_or_schema_is_refused_by_name(checkpoint, tmp_path, edit, message):
    """(The one-field edits above only count refusals: a format or schema no longer checked still loaded.)"""
    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    edit(d)
    with pytest.raises(InputError, match=message):
        load_checkpoint(d)


def test_a_config_of_a_network_larger_than_a_weights_file_may_hold_is_refused_before_it_is_built(checkpoint, tmp_path):
    """A config within every per-field limit could still describe a 31 GiB network (mbv3-tiny's stages at width
    4096, expansion 16, kernel 15): it was built, weights and all, before it was compared with the weights file
    (at most 1 GiB), and the process ran out of memory instead of refusing the file."""
    import resource

    src, cfg = checkpoint
    d = tmp_path / "ck"
    shutil.copytree(src, d)
    meta = json.loads((d / "supernet.json").read_text())
    n = len(meta["config"]["stage_widths"])
    meta["config"].update(stage_widths=[4096] * n, e_choices=[16], ks_choices=[15])
    (d / "supernet.json").write_text(json.dumps(meta))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=r"its config is a supernet of \d+\.\d GiB, more than a weights file may hold"):
        load_checkpoint(d)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000   # KiB: nothing of it was allocated
