"""Model-size objectives: parameter count and multiply-accumulates of an architecture (cached).

Used as extra search objectives (``edgenas search --minimise params --minimise flops``); built from the
real PyTorch model of the space, so every space gets them for free.
"""

from __future__ import annotations

from typing import Any, Callable


def cost_functions(space: Any) -> dict[str, Callable[[Any], float]]:
    """``{"params": fn, "flops": fn}`` for ``space``; each builds the model once per architecture."""
    cache: dict[str, tuple[float, float]] = {}

    def measure(arch: Any) -> tuple[float, float]:
        key = space.arch_id(arch)
        if key not in cache:
            import torch

            from edgenas.evaluate.proxies.zero_cost import count_macs

            with torch.no_grad():
                model = space.build_model(arch).eval()
                params = float(sum(p.numel() for p in model.parameters()))
                macs = float(count_macs(model, tuple(space.input_shape(arch))))
            cache[key] = (params, macs)
        return cache[key]

    return {"params": lambda a: measure(a)[0], "flops": lambda a: measure(a)[1]}
