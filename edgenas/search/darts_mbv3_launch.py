"""``edgenas search --strategy darts`` on an mbv3 space: load each device's LUT and check the budgets.

Everything is checked before the run folder is created: a device without a LUT for the space, or a
budget below the fastest network of the space on that device (exact, ``min_latency``), is refused.
"""

from __future__ import annotations

from typing import Any, Callable

from edgenas.errors import InfeasibleError, InputError
from edgenas.project import Project
from edgenas.search.darts_mbv3_train import MbDartsConfig


def latency_models(project: Project, config: MbDartsConfig,
                   note: Callable[[str], None] | None = None) -> list[tuple[str, Any]]:
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    space = get_space(config.space)
    store = LutStore(project.luts_dir)
    models = []
    for name, budget in config.devices:
        if not store.list(name, space.name):
            raise InputError(f"device '{name}' has no LUT for the {space.name} space",
                             hint=f"profile it first: edgenas profile {name} --space {space.name}")
        m = store.predictor(name, space, note)
        if budget is not None:
            ms, _ = m.min_latency()
            if budget < ms:
                raise InfeasibleError(f"device '{name}': no {space.name} network meets {budget:g} ms; "
                                      f"the fastest is {ms:.4g} ms", min_latency_ms=ms,
                                      hint=f"raise the budget to at least {ms:.4g} ms")
        models.append((name, m))
    return models

