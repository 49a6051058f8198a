"""Loading Once-for-All's pretrained elastic MobileNetV3 weights into ``MBV3Supernet``.

The supernet's module names mirror OFA's ``OFAMobileNetV3`` one for one, so the key mapping is the
identity: ``first_conv.conv.weight``, ``blocks.{i}.conv.inverted_bottleneck.conv.conv.weight``,
``blocks.{i}.conv.depth_conv.conv.conv.weight``, ``...depth_conv.conv.7to5_matrix``/``5to3_matrix``,
``...depth_conv.bn.bn.*``, ``...depth_conv.se.fc.reduce|expand.*``, ``...point_linear.conv.conv.weight``,
``final_expand_layer.*``, ``feature_mix_layer.conv.weight``, ``classifier.linear.*``. A ``module.``
prefix (DataParallel) is stripped. Use the presets ``ofa-mbv3`` (``ofa_mbv3_d234_e346_k357_w1.0``)
or ``ofa-mbv3-w12`` (``..._w1.2``).

edgenas never unpickles, and OFA publishes pickled ``.pth`` files, so convert once, outside edgenas,
with torch's restricted loader::

    python -c "import torch; from safetensors.torch import save_file; \\
      sd = torch.load('ofa_mbv3_d234_e346_k357_w1.0', map_location='cpu', weights_only=True); \\
      save_file(sd.get('state_dict', sd), 'ofa_mbv3_w1.0.safetensors')"

then ``load_ofa_weights(MBV3Supernet(OFA_MBV3), "ofa_mbv3_w1.0.safetensors")``. Architectures then
use OFA's ``ks``/``e``/``d``/``r`` records unchanged. BN statistics should be recalibrated per
sub-network (``recalibrate_bn``), as OFA itself does.
"""

from __future__ import annotations

from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file

from edgenas.errors import InputError
from edgenas.supernet.model import MBV3Supernet


def load_ofa_weights(supernet: MBV3Supernet, path: str | Path) -> MBV3Supernet:
    """Load an OFA state dict (converted to safetensors) into ``supernet``; strict by name and shape."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"OFA weights not found: {path}")
    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})",
                         hint="convert OFA's .pth as described in edgenas.supernet.ofa") from None
    twice = sorted(k for k in raw if k.startswith("module.") and k.removeprefix("module.") in raw)
    if twice:  # a DataParallel name and a plain one for the same weight: which one is OFA's cannot be told
        raise InputError(f"{path} names {len(twice)} weight(s) twice, with and without 'module.': {twice[:3]}",
                         hint="convert OFA's .pth again, from one state dict")
    state = {k.removeprefix("module."): v for k, v in raw.items()}
    expected = supernet.state_dict()
    missing = sorted(k for k in expected if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in expected)
    wrong = sorted(k for k in state if k in expected and (state[k].shape != expected[k].shape or state[k].is_complex()))
    if missing or unexpected or wrong:
        raise InputError(f"{path} does not fit the {supernet.config.name} supernet: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}",
                         hint="check the preset (width 1.0 -> ofa-mbv3, 1.2 -> ofa-mbv3-w12)")
    nonfinite = sorted(k for k, v in state.items()  # as the supernet's dtype: a float64 1e300 is inf in float32
                       if expected[k].is_floating_point() and not bool(v.to(expected[k].dtype).isfinite().all()))
    if nonfinite:
        raise InputError(f"{path}: NaN or infinite values in {nonfinite[:3]}", hint="convert OFA's .pth again")
    supernet.load_state_dict(state, strict=False)
    return supernet
