"""MobileNetV3 block keys (Once-for-All's LUT key format): parsed and checked into a ``BlockSpec``.

No torch here: the keys are what a LUT, a search and a latency prediction use; ``mbv3_blocks`` builds the
torch module of a key. The formats are exactly those of Once-for-All's published latency tables::

    Conv-input:224x224x3-output:112x112x24                      stem: 3x3 conv, BN, h-swish
    expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:5-stride:2-idskip:0-se:0-hs:0
    Conv_1-input:7x7x160-output:7x7x960                         final expand: 1x1 conv, BN, h-swish
    AvgPool2D-input:7x7x960-output:1x1x960                      global average pool
    Conv_2-input:1x1x960-output:1x1x1280                        feature mix: 1x1 conv (no BN), h-swish
    Logits-input:1x1x1280-output:1000                           flatten + linear

In an ``expanded_conv`` key, ``expand`` is the middle channel count; ``expand`` equal to the input
channels means no 1x1 expansion conv (OFA's first block).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgenas.errors import InputError
from edgenas.spaces.mbv3_config import make_divisible

KINDS = ("Conv", "expanded_conv", "Conv_1", "AvgPool2D", "Conv_2", "Logits")

_INT = r"([1-9][0-9]*)"
_HWC = rf"{_INT}x{_INT}x{_INT}"
_PATTERNS = {
    "Conv": re.compile(rf"Conv-input:{_HWC}-output:{_HWC}"),
    "Conv_1": re.compile(rf"Conv_1-input:{_HWC}-output:{_HWC}"),
    "AvgPool2D": re.compile(rf"AvgPool2D-input:{_HWC}-output:{_HWC}"),
    "Conv_2": re.compile(rf"Conv_2-input:{_HWC}-output:{_HWC}"),
    "Logits": re.compile(rf"Logits-input:{_HWC}-output:{_INT}"),
    "expanded_conv": re.compile(
        rf"expanded_conv-input:{_HWC}-output:{_HWC}-expand:{_INT}-kernel:{_INT}-stride:{_INT}"
        r"-idskip:([01])-se:([01])-hs:([01])"),
}
_HINT = ("block keys look like 'expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:5-"
         "stride:2-idskip:0-se:0-hs:0' (Once-for-All's LUT format)")


def conv_out(size: int, stride: int) -> int:
    """Output size of a conv with odd kernel k, padding k//2 and this stride: ceil(size / stride)."""
    return -(-size // stride)


@dataclass(frozen=True)
class BlockSpec:
    """One block, as its key describes it. ``hw`` are (height, width); channels are counts."""

    kind: str
    in_hw: tuple[int, int]
    in_ch: int
    out_hw: tuple[int, int]
    out_ch: int
    expand: int = 0  # middle channels (expanded_conv only)
    kernel: int = 1
    stride: int = 1
    idskip: bool = False
    se: bool = False
    hs: bool = False

    @property
    def key(self) -> str:
        i = f"input:{self.in_hw[0]}x{self.in_hw[1]}x{self.in_ch}"
        if self.kind == "Logits":
            return f"Logits-{i}-output:{self.out_ch}"
        o = f"output:{self.out_hw[0]}x{self.out_hw[1]}x{self.out_ch}"
        if self.kind != "expanded_conv":
            return f"{self.kind}-{i}-{o}"
        return (f"expanded_conv-{i}-{o}-expand:{self.expand}-kernel:{self.kernel}-stride:{self.stride}"
                f"-idskip:{int(self.idskip)}-se:{int(self.se)}-hs:{int(self.hs)}")

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, self.in_ch, *self.in_hw)

    @property
    def se_channels(self) -> int:
        return make_divisible(self.expand // 4, 8)

    @classmethod
    def parse(cls, key: str) -> "BlockSpec":
        """Parse and check a key; anything malformed or inconsistent raises ``InputError``."""
        if not isinstance(key, str):
            raise InputError(f"block key must be a string, got {type(key).__name__}", hint=_HINT)
        kind = key.split("-", 1)[0]
        pat = _PATTERNS.get(kind)
        m = pat.fullmatch(key) if pat else None
        if m is None:
            raise InputError(f"malformed block key '{key}'", hint=_HINT)
        v = [int(g) for g in m.groups()]
        ih, iw, ic = v[0:3]
        if kind == "Logits":
            spec = cls(kind, (ih, iw), ic, (1, 1), v[3])
            _check(key, (ih, iw) == (1, 1), "Logits input must be 1x1")
            return spec
        oh, ow, oc = v[3:6]
        if kind == "expanded_conv":
            exp, k, s, idskip, se, hs = v[6:12]
            spec = cls(kind, (ih, iw), ic, (oh, ow), oc, exp, k, s, bool(idskip), bool(se), bool(hs))
            _check(key, k % 2 == 1, f"kernel {k} must be odd")
            _check(key, s in (1, 2), f"stride {s} must be 1 or 2")
            _check(key, (oh, ow) == (conv_out(ih, s), conv_out(iw, s)),
                   f"output {oh}x{ow} does not follow from input {ih}x{iw} and stride {s}")
            _check(key, not idskip or (s == 1 and ic == oc), "idskip:1 needs stride 1 and in == out channels")
            return spec
        spec = cls(kind, (ih, iw), ic, (oh, ow), oc)
        if kind == "Conv":
            s = 1 if (oh, ow) == (ih, iw) else 2
            _check(key, (oh, ow) == (conv_out(ih, s), conv_out(iw, s)),
                   f"output {oh}x{ow} is neither stride 1 nor stride 2 of input {ih}x{iw}")
            return cls(kind, (ih, iw), ic, (oh, ow), oc, kernel=3, stride=s, hs=True)
        if kind == "Conv_1":
            _check(key, (oh, ow) == (ih, iw), "Conv_1 keeps the spatial size")
        elif kind == "AvgPool2D":
            _check(key, (oh, ow) == (1, 1) and oc == ic, "AvgPool2D output must be 1x1 with the input channels")
        elif kind == "Conv_2":
            _check(key, (ih, iw, oh, ow) == (1, 1, 1, 1), "Conv_2 works on 1x1 inputs")
        return spec


def _check(key: str, cond: bool, what: str) -> None:
    if not cond:
        raise InputError(f"inconsistent block key '{key}': {what}", hint=_HINT)
