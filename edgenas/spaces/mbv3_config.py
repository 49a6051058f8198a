"""Frozen records of the elastic MobileNetV3 family (Once-for-All style).

``MBV3Config`` describes a family (a preset); variants are derived with ``dataclasses.replace`` or
``scaled``. ``MBV3Arch`` is one architecture, with Once-for-All's key names: per-block kernel size
``ks`` and expand ratio ``e`` (one entry per block slot, ``n_stages * max_depth`` slots, slots past a
stage's depth are ignored), per-stage depth ``d`` and input resolution ``r``.

Network layout (as in OFA's ``MobileNetV3``): stem conv 3x3 (BN, h-swish) -> a fixed first MBConv
(expand 1, kernel 3, ReLU) -> elastic stages (first block of a stage has the stage stride) -> final
expand 1x1 conv (BN, h-swish) -> global average pool -> feature-mix 1x1 conv (no BN, h-swish) ->
linear classifier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels as MobileNet/OFA do (never down by more than 10%)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class MBV3Config:
    name: str
    stem_width: int = 16
    stem_stride: int = 2
    first_block_width: int = 16
    stage_widths: tuple[int, ...] = (24, 40, 80, 112, 160)
    stage_strides: tuple[int, ...] = (2, 2, 2, 1, 2)
    stage_act: tuple[str, ...] = ("relu", "relu", "hswish", "hswish", "hswish")
    stage_se: tuple[bool, ...] = (False, True, False, True, True)
    final_expand_width: int = 960
    feature_mix_width: int = 1280
    num_classes: int = 1000
    in_channels: int = 3
    ks_choices: tuple[int, ...] = (3, 5, 7)
    e_choices: tuple[int, ...] = (3, 4, 6)
    d_choices: tuple[int, ...] = (2, 3, 4)
    resolutions: tuple[int, ...] = tuple(range(128, 225, 4))

    @property
    def n_stages(self) -> int:
        return len(self.stage_widths)

    @property
    def max_depth(self) -> int:
        return max(self.d_choices)

    @property
    def n_slots(self) -> int:
        return self.n_stages * self.max_depth

    def scaled(self, width_mult: float, name: str) -> "MBV3Config":
        """OFA's width multiplier (e.g. 1.2 for the network of the Note10 tables)."""
        md = make_divisible
        return dataclasses.replace(
            self,
            name=name,
            stem_width=md(self.stem_width * width_mult),
            first_block_width=md(self.first_block_width * width_mult),
            stage_widths=tuple(md(w * width_mult) for w in self.stage_widths),
            final_expand_width=md(self.final_expand_width * width_mult),
            feature_mix_width=md(self.feature_mix_width * width_mult),
        )


@dataclass(frozen=True)
class MBV3Arch:
    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int


#: Once-for-All's elastic MobileNetV3, width 1.0, resolutions 128..224 step 4, ImageNet head.
OFA_MBV3 = MBV3Config(name="ofa-mbv3")
#: Width 1.2: the network whose latency tables OFA published for the Samsung Note10; resolutions
#: 160..224, the range those tables cover, so the imported Note10 LUT predicts every architecture.
OFA_MBV3_W12 = dataclasses.replace(OFA_MBV3.scaled(1.2, name="ofa-mbv3-w12"),
                                   resolutions=tuple(range(160, 225, 4)))
#: Sized for CPU demos on 32x32 inputs (digits upsampled), 10 classes.
MBV3_SMALL = MBV3Config(
    name="mbv3-small",
    stem_width=16,
    stem_stride=1,
    first_block_width=16,
    stage_widths=(16, 24, 40, 48, 64),
    stage_strides=(2, 2, 2, 1, 2),
    final_expand_width=192,
    feature_mix_width=256,
    num_classes=10,
    resolutions=(24, 28, 32),
)

#: For smoke tests and CI: two stages, profiled in seconds.
MBV3_TINY = MBV3Config(
    name="mbv3-tiny",
    stem_width=8,
    stem_stride=1,
    first_block_width=8,
    stage_widths=(8, 16),
    stage_strides=(2, 2),
    stage_act=("relu", "hswish"),
    stage_se=(False, True),
    final_expand_width=32,
    feature_mix_width=32,
    num_classes=10,
    ks_choices=(3, 5),
    e_choices=(3, 4),
    d_choices=(1, 2),
    resolutions=(16,),
)

PRESETS: dict[str, MBV3Config] = {c.name: c for c in (OFA_MBV3, OFA_MBV3_W12, MBV3_SMALL, MBV3_TINY)}
