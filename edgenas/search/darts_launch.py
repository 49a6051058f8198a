"""``edgenas search --strategy darts``: build the latency terms from the devices' LUTs, validate, run DARTS.

``prepare_darts`` is what the ``darts`` driver (``edgenas.search.drivers``) calls: it turns a
``SearchRequest`` and the driver's options into a ``DartsConfig`` (read back from ``config.json`` on
resume), loads each device's nb201 LUT and refuses a budget below the fastest cell, all before the
run folder is touched; ``launch_search`` then runs it under the usual lock and indexes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgenas.errors import InputError
from edgenas.io import read_json
from edgenas.project import Project
from edgenas.search.base import DriverRun
from edgenas.search.darts_mbv3_train import MbDartsConfig
from edgenas.search.darts_train import DartsConfig, run_darts
from edgenas.search.problem import DeviceTarget


@dataclass(frozen=True)
class DartsProblem:
    """What the experiment database records of a DARTS run: its devices (LUT, budget) and objective."""

    devices: tuple[DeviceTarget, ...]
    accuracy_name: str = "accuracy"   # DARTS measures no accuracy of the derived cell: none is recorded


def device_budgets(devices: Sequence[str], budgets: Sequence[float]) -> tuple[tuple[str, float | None], ...]:
    """(device, budget or None) pairs: no budget, one for every device, or one per device."""
    b = list(budgets)
    if len(set(devices)) != len(devices):  # the run's records are keyed by name: one budget was lost
        raise InputError(f"device listed twice: {', '.join(devices)}", hint="give each device once")
    if b and len(b) not in (1, len(devices)):
        raise InputError(f"{len(b)} latency budgets for {len(devices)} devices")
    if b and not devices:
        raise InputError("a latency budget needs a device (--device) with a LUT for the space")
    per = [None] * len(devices) if not b else (b * len(devices) if len(b) == 1 else b)
    return tuple(zip(devices, per))


def darts_config(space: str, devices: Sequence[str], budgets: Sequence[float], *, seed: int,
                 **options: Any) -> DartsConfig:
    return DartsConfig(space=space, seed=seed, devices=device_budgets(devices, budgets), **options)


def prepare_darts(project: Project, req: Any, options: Mapping[str, Any], out_dir: Path, *,
                  resume: bool = False, note: Callable[[str], None] | None = None) -> DriverRun:
    from edgenas.datasets import check_dataset
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    if resume:
        saved = read_json(Path(out_dir) / "config.json", "run config")
        if not isinstance(saved, dict):
            raise InputError(f"{Path(out_dir) / 'config.json'}: not a DARTS run config (a JSON object)",
                             hint="the run folder is damaged; start a new search with the options you want")
        if saved.get("space", "nb201") != "nb201":
            return _prepare_mbv3(project, MbDartsConfig.from_json(saved), note)
        config = DartsConfig.from_json(saved)
    elif req.space != "nb201":
        return _prepare_mbv3(project, mbv3_darts_config(req, options), note)
    else:
        if dict(req.strategy_options).get("lambda_rule") not in (None, "derived"):
            raise InputError("darts: lambda_rule applies to the mbv3 spaces; nb201 uses the derived rule")
        nb = {k: v for k, v in options.items() if k != "lambda_rule"}
        config = darts_config(req.space, req.devices, req.max_latency_ms, seed=req.seed, **nb)
    check_dataset(config.data)  # a bad --data is refused before the run folder exists
    space = get_space(config.space)
    store = LutStore(project.luts_dir)
    models = [(name, store.predictor(name, space, note)) for name, _ in config.devices]
    for (name, budget), (_, m) in zip(config.devices, models):
        if budget is not None:
            ms, _ = m.min_latency()
            if budget < ms:
                from edgenas.errors import InfeasibleError

                raise InfeasibleError(f"device '{name}': no nb201 cell meets {budget:g} ms; the fastest is {ms:.4g} ms",
                                      min_latency_ms=ms, hint=f"raise the budget to at least {ms:.4g} ms")
    problem = DartsProblem(tuple(DeviceTarget(n, m, b) for (n, b), (_, m) in zip(config.devices, models)))

    def run(folder: Path, resume: bool, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        return {**run_darts(config, models, folder, resume=resume, progress=progress), "out_dir": str(folder)}

    return DriverRun(problem, config, run)


_NB201_ONLY = ("skip_dropout", "selection", "pt_samples")
#: options the mbv3 relaxation takes from --strategy-opt only when given (else its own defaults)
_MBV3_KEYS = ("lr", "arch_lr", "batch_size", "lambda_lr", "arch_warmup", "latency_warmup", "lambda_rule")


def mbv3_darts_config(req: Any, options: Mapping[str, Any]) -> MbDartsConfig:
    """The mbv3 relaxation's config (``darts_mbv3_train``) from a request and the driver's options."""
    given = dict(req.strategy_options)
    for key in _NB201_ONLY:
        if given.get(key):
            raise InputError(f"darts: {key} applies to the nb201 cell, not to the mbv3 spaces")
    devices = device_budgets(req.devices, req.max_latency_ms)
    extra = {k: options[k] for k in _MBV3_KEYS if k in given}
    return MbDartsConfig(space=req.space, data=options["data"], epochs=options["epochs"], seed=req.seed,
                         latency_weight=options["latency_weight"], devices=devices, **extra)


def _prepare_mbv3(project: Project, config: MbDartsConfig, note: Callable[[str], None] | None = None) -> DriverRun:
    from edgenas.datasets import check_dataset
    from edgenas.search.darts_mbv3_launch import latency_models
    from edgenas.search.darts_mbv3_train import run_mbv3_darts

    check_dataset(config.data)  # a bad --data is refused before the run folder exists
    models = latency_models(project, config, note)  # no LUT, or a budget below the fastest network: refused here
    problem = DartsProblem(tuple(DeviceTarget(n, m, b) for (n, b), (_, m) in zip(config.devices, models)))

    def run(folder: Path, resume: bool, progress: Callable[[int, int], None] | None) -> dict[str, Any]:
        return {**run_mbv3_darts(config, models, folder, resume=resume, progress=progress), "out_dir": str(folder)}

    return DriverRun(problem, config, run)
