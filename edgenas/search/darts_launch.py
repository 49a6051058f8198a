"""``edgenas search --strategy darts``: build the latency terms from the devices' LUTs and run DARTS."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from edgenas.errors import InputError
from edgenas.io import read_json
from edgenas.project import Project
from edgenas.search.darts_mbv3_train import MbDartsConfig
from edgenas.search.darts_train import DartsConfig, run_darts


def is_darts_run(folder: Path) -> bool:
    cfg = Path(folder) / "config.json"
    return cfg.exists() and read_json(cfg, "run config").get("kind") == "darts"


def launch_darts(project: Project, config: DartsConfig | MbDartsConfig | None, out_dir: Path, *, resume: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    if resume:
        saved = read_json(Path(out_dir) / "config.json", "run config")
        config = MbDartsConfig.from_json(saved) if saved.get("space") != "nb201" else DartsConfig.from_json(saved)
    assert config is not None
    if isinstance(config, MbDartsConfig):
        from edgenas.search.darts_mbv3_launch import launch_mbv3_darts

        return launch_mbv3_darts(project, config, out_dir, resume=resume, progress=progress)
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
                 seed: int, latency_weight: float, skip_dropout: float) -> DartsConfig | MbDartsConfig:
    b = list(budgets)
    if b and len(b) not in (1, len(devices)):
        raise InputError(f"{len(b)} latency budgets for {len(devices)} devices")
    if b and not devices:
        raise InputError("a latency budget needs a device (--device) with a LUT for the space")
    per = [None] * len(devices) if not b else (b * len(devices) if len(b) == 1 else b)
    if space != "nb201":
        if skip_dropout:
            raise InputError("--skip-dropout applies to nb201's skip connections, not to the mbv3 spaces")
        return MbDartsConfig(space=space, data=data, epochs=epochs, seed=seed, latency_weight=latency_weight,
                             devices=tuple(zip(devices, per)))
    return DartsConfig(space=space, data=data, epochs=epochs, seed=seed, latency_weight=latency_weight,
                       skip_dropout=skip_dropout, devices=tuple(zip(devices, per)))
