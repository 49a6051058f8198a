"""``edgenas search --strategy darts``: build the latency terms from the devices' LUTs and run DARTS."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edgenas.errors import InputError
from edgenas.io import read_json
from edgenas.project import Project
from edgenas.search.darts_train import DartsConfig, run_darts


def is_darts_run(folder: Path) -> bool:
    cfg = Path(folder) / "config.json"
    return cfg.exists() and read_json(cfg, "run config").get("kind") == "darts"


def launch_darts(project: Project, config: DartsConfig | None, out_dir: Path, *, resume: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    if resume:
        config = DartsConfig.from_json(read_json(Path(out_dir) / "config.json", "run config"))
    assert config is not None
    space = get_space(config.space)
    store = LutStore(project.luts_dir)
    models = [(name, LatencyPredictor(store.latest(name, space.name), space)) for name, _ in config.devices]
    for (name, budget), (_, m) in zip(config.devices, models):
        if budget is not None:
            ms, _ = m.min_latency()
            if budget < ms:
                from edgenas.errors import InfeasibleError

                raise InfeasibleError(f"device '{name}': no nb201 cell meets {budget:g} ms; the fastest is {ms:.4g} ms",
                                      min_latency_ms=ms, hint=f"raise the budget to at least {ms:.4g} ms")
    return run_darts(config, models, out_dir, resume=resume, progress=progress)


def darts_config(space: str, devices: Sequence[str], budgets: Sequence[float], *, data: str, epochs: int,
                 seed: int, latency_weight: float, skip_dropout: float) -> DartsConfig:
    b = list(budgets)
    if b and len(b) not in (1, len(devices)):
        raise InputError(f"{len(b)} latency budgets for {len(devices)} devices")
    if b and not devices:
        raise InputError("a latency budget needs a device (--device) with an nb201 LUT")
    per = [None] * len(devices) if not b else (b * len(devices) if len(b) == 1 else b)
    return DartsConfig(space=space, data=data, epochs=epochs, seed=seed, latency_weight=latency_weight,
                       skip_dropout=skip_dropout, devices=tuple(zip(devices, per)))
