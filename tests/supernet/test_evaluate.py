"""The ``supernet`` evaluator and ``evaluate_subnets``; loading OFA-named weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from edgenas.errors import InputError
from edgenas.evaluate import make_evaluator
from edgenas.spaces import get_space
from edgenas.supernet import MBV3Supernet, evaluate_subnets, load_ofa_weights, load_supernet


def _small_archs(space, n=3):
    rng = np.random.default_rng(11)
    archs = [space.sample(rng) for _ in range(n)]
    return [type(a)(ks=a.ks, e=a.e, d=(2,) * len(a.d), r=24) for a in archs]  # cheap to evaluate


def test_evaluator_is_deterministic_and_cached(trained, space):
    path, _ = trained
    archs = _small_archs(space, 2)
    ev1 = make_evaluator("supernet", space, seed=0, checkpoint=str(path), calib_batches=2)
    ev2 = make_evaluator("supernet", space, seed=0, checkpoint=str(path), calib_batches=2)
    s1 = ev1.evaluate(archs)
    s2 = ev2.evaluate(list(reversed(archs)))[::-1]
    assert s1.dtype == np.float64 and s1.shape == (2,)
    assert np.array_equal(s1, s2)
    assert np.all((s1 > 10.0) & (s1 <= 100.0)), s1  # trained for 20 steps: better than chance
    again = ev1.evaluate(archs + archs[:1])
    assert np.array_equal(again[:2], s1) and again[2] == s1[0] and ev1.calls == 2
    direct = evaluate_subnets(path, archs[1:], calib_batches=2)
    assert np.array_equal(direct, s1[1:])
    assert ev1.describe()["checkpoint"] == str(path)


def test_bn_recalibration_matters_and_supernet_is_restored(trained, space):
    path, _ = trained
    net = load_supernet(path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = _small_archs(space, 1)[0]
    recal = evaluate_subnets(net, [arch], space=space, calib_batches=2)
    stale = evaluate_subnets(net, [arch], space=space, calib_batches=0)
    assert recal[0] != stale[0]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_evaluator_rejects_bad_checkpoints_and_options(trained, tmp_path, space):
    path, _ = trained
    with pytest.raises(InputError, match="no supernet checkpoint"):
        make_evaluator("supernet", space, checkpoint=str(tmp_path / "none"))
    with pytest.raises(InputError, match="needs checkpoint"):
        make_evaluator("supernet", space)
    with pytest.raises(InputError, match="unknown option"):
        make_evaluator("supernet", space, checkpoint=str(path), epochs=3)
    with pytest.raises(InputError, match="is for space 'mbv3-small'"):
        make_evaluator("supernet", get_space("ofa-mbv3"), checkpoint=str(path))
    with pytest.raises(InputError, match="is for space 'mbv3-small'"):
        evaluate_subnets(path, [], space=get_space("ofa-mbv3"))


def test_a_checkpoint_of_an_older_preset_and_an_architecture_outside_the_space_are_refused(trained, space,
                                                                                              tmp_path):
    """The same space name with other resolutions was refused as "for space 'mbv3-small', not 'mbv3-small'";
    an expand ratio past the largest was scored as the largest (the slice clipped), where extraction refuses."""
    import json
    import shutil

    path, _ = trained
    old = tmp_path / "old"
    shutil.copytree(path if path.is_dir() else path.parent, old)
    meta = json.loads((old / "supernet.json").read_text())
    meta["config"]["resolutions"] = meta["config"]["resolutions"][:2]
    (old / "supernet.json").write_text(json.dumps(meta))
    for call in (lambda: make_evaluator("supernet", space, checkpoint=str(old)),
                 lambda: evaluate_subnets(old, [], space=space)):
        with pytest.raises(InputError, match="another 'mbv3-small'.*resolutions: supernet") as err:
            call()
        assert "not 'mbv3-small'" not in str(err.value)
    a = _small_archs(space, 1)[0]
    with pytest.raises(InputError, match="e"):
        evaluate_subnets(path, [type(a)(ks=a.ks, e=(8,) * len(a.e), d=a.d, r=a.r)], calib_batches=0)


def test_ofa_named_weights_load_by_name(space, tmp_path):
    src = MBV3Supernet(space.config)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01)
    state = {f"module.{k}": v.contiguous() for k, v in src.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_file(state, str(tmp_path / "ofa.safetensors"))
    dst = load_ofa_weights(MBV3Supernet(space.config), tmp_path / "ofa.safetensors")
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items()
               if not k.endswith("num_batches_tracked"))
    with pytest.raises(InputError, match="does not fit"):
        load_ofa_weights(MBV3Supernet(get_space("ofa-mbv3").config), tmp_path / "ofa.safetensors")


@pytest.mark.parametrize("bad", ["nan", "float64 past float32"])
def test_ofa_weights_with_nan_or_infinity_are_refused_and_change_nothing(space, tmp_path, bad):
    """A converted OFA file holding a NaN (or a float64 that is infinite as float32) loaded, and every
    sub-network it scored was garbage."""
    src = MBV3Supernet(space.config)
    state = {k: v.contiguous() for k, v in src.state_dict().items() if not k.endswith("num_batches_tracked")}
    key = "classifier.linear.weight"
    state[key] = state[key].clone().fill_(float("nan")) if bad == "nan" else state[key].double() * 1e300
    save_file(state, str(tmp_path / "ofa.safetensors"))
    dst = MBV3Supernet(space.config)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(InputError, match=r"NaN or infinite values in \['classifier.linear.weight'\]"):
        load_ofa_weights(dst, tmp_path / "ofa.safetensors")
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())


def _ofa_edits():
    first = "first_conv.conv.weight"
    return {
        "missing": (lambda s: s.pop(first), rf"missing \['{first}'\], unexpected \[\], wrong shape \[\]"),
        "unexpected": (lambda s: s.update({"head.weight": torch.zeros(2)}),
                       r"missing \[\], unexpected \['head.weight'\], wrong shape \[\]"),
        "wrong shape": (lambda s: s.update({first: s[first][:1].clone()}),
                        rf"missing \[\], unexpected \[\], wrong shape \['{first}'\]"),
        "complex": (lambda s: s.update({first: s[first].to(torch.complex64)}), rf"wrong shape \['{first}'\]"),
        # one weight under its DataParallel name too: the file's order decided which of the two was loaded
        "twice": (lambda s: s.update({f"module.{first}": s[first] + 1}),
                  rf"names 1 weight\(s\) twice, with and without 'module.': \['module.{first}'\]"),
    }


@pytest.mark.parametrize("name", list(_ofa_edits()) + ["no file", "not safetensors"])
def test_each_misfit_of_ofa_weights_is_named_and_changes_nothing(tmp_path, name):
    tiny = get_space("mbv3-tiny").config
    state = {k: v.clone() for k, v in MBV3Supernet(tiny).state_dict().items()}
    path = tmp_path / "ofa.safetensors"
    if name == "no file":
        message = "OFA weights not found"
    elif name == "not safetensors":
        path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not js}")
        message = "not a readable safetensors file"
    else:
        edit, message = _ofa_edits()[name]
        edit(state)
        save_file(state, str(path))
    dst = MBV3Supernet(tiny)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(InputError, match=message):
        load_ofa_weights(dst, path)
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())
