"""The ``supernet`` evaluator: accuracy (%) inherited from a trained weight-sharing supernet."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.evaluate.base import EVALUATORS, Evaluator


class SupernetEvaluator(Evaluator):
    """Top-1 accuracy of each sub-network with the supernet's weights, BN recalibrated."""

    name = "supernet"

    def __init__(self, space: Any, *, seed: int = 0, checkpoint: str | os.PathLike, data: str | None = None,
                 calib_batches: int = 4, calib_batch_size: int = 64, batch_size: int = 256) -> None:
        super().__init__(space)
        from edgenas.supernet.checkpoint import load_checkpoint
        from edgenas.supernet.evaluate import SubnetScorer, check_space_matches

        checkpoint, data = (str(v) if isinstance(v, int) and not isinstance(v, bool) else v  # --eval-opt data=5:
                            for v in (checkpoint, data))  # the command line made a number of the name
        if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint):
            raise InputError("the supernet evaluator needs checkpoint=PATH",
                             hint="train one with 'edgenas supernet train'")
        state = load_checkpoint(checkpoint)
        if state.meta.get("space") != getattr(space, "name", None):
            raise InputError(f"supernet checkpoint {checkpoint} is for space '{state.meta.get('space')}', "
                             f"not '{getattr(space, 'name', space)}'",
                             hint="train a supernet for this space or search the checkpoint's space")
        check_space_matches(state.supernet.config, space, f"supernet checkpoint {checkpoint}")
        tc = state.meta.get("train_config") or {}
        if data is not None and not isinstance(data, (str, os.PathLike)):
            raise InputError(f"supernet evaluator: data must be 'digits', a .npz file or an image folder, got {data!r}")
        data = str(data or tc.get("data") or "digits")
        for name, v, low in (("calib_batches", calib_batches, 0), ("calib_batch_size", calib_batch_size, 1),
                             ("batch_size", batch_size, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise InputError(f"supernet evaluator: {name} must be an integer >= {low}, got {v!r}")
        self.options = {"checkpoint": str(checkpoint), "data": data, "calib_batches": calib_batches,
                        "calib_batch_size": calib_batch_size, "batch_size": batch_size, "seed": seed}
        self.metric = f"{data} held-out accuracy (%) inherited from the supernet"
        self.scorer = SubnetScorer(state.supernet, space, data,
                                   val_fraction=tc.get("val_fraction", 0.2), calib_batches=calib_batches,
                                   calib_batch_size=calib_batch_size, batch_size=batch_size, seed=seed)

    def evaluate(self, archs: Sequence[Any]) -> np.ndarray:
        return self.scorer.score(archs)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "metric": self.metric, **self.options}


_OPTIONS = ("checkpoint", "data", "calib_batches", "calib_batch_size", "batch_size")


@EVALUATORS.register("supernet", help="accuracy inherited from a trained weight-sharing supernet (mbv3 spaces)")
def make_supernet_evaluator(space: Any, *, seed: int = 0, **options: Any) -> SupernetEvaluator:
    """Options: checkpoint (required), data, calib_batches, calib_batch_size, batch_size."""
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InputError(f"supernet evaluator: unknown option(s) {', '.join(unknown)}",
                         hint=f"known: {', '.join(_OPTIONS)}")
    if "checkpoint" not in options:
        raise InputError("the supernet evaluator needs checkpoint=PATH",
                         hint="train one with 'edgenas supernet train'")
    return SupernetEvaluator(space, seed=seed, **options)
