"""Every zero-cost proxy on ``device=cuda`` scores what it scores on the CPU.

A proxy that made a tensor on the CPU while the network was on the GPU failed on every architecture,
and the evaluator, which turns a failure into ``-inf`` so that one broken network cannot stop a search,
scored a whole search ``-inf`` (seen on an H200, bench/gpu_runtimes.py). Runs where CUDA exists."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgenas.evaluate.base import make_evaluator  # noqa: E402
from edgenas.evaluate.proxies.base import PROXIES  # noqa: E402
from edgenas.spaces import get_space  # noqa: E402


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA")
@pytest.mark.parametrize("proxy", sorted(PROXIES.names()) + ["ct_prior"])
def test_proxy_on_cuda_matches_cpu(proxy):
    space = get_space("mbv3-tiny")
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    cpu = make_evaluator(proxy, space, seed=0, device="cpu").evaluate(archs)
    cuda = make_evaluator(proxy, space, seed=0, device="cuda").evaluate(archs)
    assert np.isfinite(cpu).all() and np.isfinite(cuda).all(), (cpu, cuda)
    # float32 kernels differ between CPU and GPU: scores agree closely, not to the bit
    np.testing.assert_allclose(cuda, cpu, rtol=2e-2, atol=1e-3)
