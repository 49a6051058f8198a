"""The ProxylessNAS / FBNet-style relaxation of an elastic MobileNetV3 space, with path sampling.

Architecture weights (``MBV3Relaxation``), one categorical distribution per decision:

* ``alpha_ke`` (n_slots, n_ks * n_e): the joint kernel-size x expand-ratio choice of every block slot
  (FBNet's per-block choice; joint because a LUT entry is one (kernel, expand) block);
* ``alpha_d`` (n_stages, n_d): the depth of every stage; slot j of a stage runs with probability
  ``P(d > j)`` (the per-layer "skip" probability);
* ``alpha_r`` (n_r,): the input resolution.

Memory stays at one path: every forward runs ONE sampled sub-network of the weight-sharing
``MBV3Supernet`` (``edgenas.supernet``). The weight step samples it from the current probabilities
(ProxylessNAS); the architecture step samples it by hard Gumbel-softmax with straight-through gates
(GDAS, Dong & Yang 2019; FBNet's Gumbel relaxation): each sampled block's output is multiplied by its
gate, 1 in the forward pass, whose gradient reaches every logit of that decision through the soft
sample. The expected latency (``darts_mbv3_latency``) gives the latency term its exact gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from edgenas.spaces.mbv3_config import MBV3Arch, MBV3Config
from edgenas.supernet.model import MBV3Supernet, resize


@dataclass(frozen=True)
class PathSample:
    """One sampled sub-network: choice indices, and straight-through gates (architecture step only)."""

    ke: tuple[int, ...]
    d: tuple[int, ...]
    r: int
    gates: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None  # (n_slots,), (n_stages,), ()


class MBV3Relaxation(nn.Module):
    def __init__(self, config: MBV3Config) -> None:
        super().__init__()
        c = self.config = config
        self.n_e = len(c.e_choices)
        self.alpha_ke = nn.Parameter(torch.zeros(c.n_slots, len(c.ks_choices) * self.n_e))
        self.alpha_d = nn.Parameter(torch.zeros(c.n_stages, len(c.d_choices)))
        self.alpha_r = nn.Parameter(torch.zeros(len(c.resolutions)))

    def probs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (torch.softmax(self.alpha_ke, -1), torch.softmax(self.alpha_d, -1),
                torch.softmax(self.alpha_r, -1))

    def to_arch(self, ke: tuple[int, ...], d: tuple[int, ...], r: int) -> MBV3Arch:
        c = self.config
        return MBV3Arch(ks=tuple(c.ks_choices[i // self.n_e] for i in ke),
                        e=tuple(c.e_choices[i % self.n_e] for i in ke),
                        d=tuple(c.d_choices[i] for i in d), r=c.resolutions[r])

    def argmax(self) -> PathSample:
        a = [t.detach().argmax(-1) for t in (self.alpha_ke, self.alpha_d, self.alpha_r)]
        return PathSample(tuple(a[0].tolist()), tuple(a[1].tolist()), int(a[2]))

    def sample(self, gen: torch.Generator) -> PathSample:
        """A sub-network drawn from the current probabilities (no gradient): the weight step's path."""
        with torch.no_grad():
            pk, pd, pr = self.probs()
            ke = torch.multinomial(pk, 1, generator=gen).squeeze(1)
            d = torch.multinomial(pd, 1, generator=gen).squeeze(1)
            r = torch.multinomial(pr[None], 1, generator=gen).squeeze()
        return PathSample(tuple(ke.tolist()), tuple(d.tolist()), int(r))

    def gumbel_sample(self, gen: torch.Generator, tau: float) -> PathSample:
        """Hard Gumbel-softmax sample with straight-through gates (the architecture step's path)."""
        idx, gates = [], []
        for alpha in (self.alpha_ke, self.alpha_d, self.alpha_r[None]):
            u = torch.rand(alpha.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
            soft = F.softmax((alpha + (-torch.log(-torch.log(u)))) / tau, dim=-1)
            i = soft.detach().argmax(-1)
            hard = F.one_hot(i, alpha.shape[-1]).to(soft.dtype)
            st = hard - soft.detach() + soft  # value: one-hot; gradient: the soft sample's
            gates.append(st.gather(-1, i[:, None]).squeeze(-1))
            idx.append(i)
        return PathSample(tuple(idx[0].tolist()), tuple(idx[1].tolist()), int(idx[2][0]),
                          (gates[0], gates[1], gates[2][0]))


def sampled_forward(net: MBV3Supernet, relax: MBV3Relaxation, x: torch.Tensor, path: PathSample) -> torch.Tensor:
    """Run only the sampled sub-network (``MBV3Supernet.forward`` with the gates multiplied in)."""
    c = net.config
    arch = relax.to_arch(path.ke, path.d, path.r)
    net.set_active(arch)
    g_ke, g_d, g_r = path.gates if path.gates is not None else (None, None, None)
    x = net.first_conv(resize(x, arch.r))
    x = net.blocks[0](x)
    for s, depth in enumerate(arch.d):
        for j, block in enumerate(net.stage_blocks(s)[:depth]):
            y = block.conv(x)
            if g_ke is not None:
                y = y * g_ke[s * c.max_depth + j]
            x = y + x if block.has_shortcut else y
        if g_d is not None:
            x = x * g_d[s]
    x = net.final_expand_layer(x).mean((2, 3), keepdim=True)
    logits = net.classifier(torch.flatten(net.feature_mix_layer(x), 1))
    return logits * g_r if g_r is not None else logits
