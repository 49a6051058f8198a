"""``llm-evolution``: regularised evolution whose children all come from the language model.

The same aging population and tournaments as ``evolution``; ``llm_share`` defaults to 1, so every child
is the model's proposal (the usual mutation only stands in when a proposal is not novel or not
feasible, or when the model failed and ``--llm-fallback`` allowed it).
"""

from __future__ import annotations

from typing import Any

from edgenas.errors import InputError
from edgenas.search.base import STRATEGIES, Option
from edgenas.search.evolution import RegularizedEvolution


@STRATEGIES.register("llm-evolution", help="regularised evolution with a language model as the mutation")
class LLMEvolution(RegularizedEvolution):
    name = "llm-evolution"
    options = {**RegularizedEvolution.options,
               "llm_share": Option(1.0, float, lambda v: 0.0 < v <= 1.0, "must be in (0, 1]")}

    def __init__(self, space: Any, rng: Any, *, llm_operator: Any = None, **kwargs: Any) -> None:
        if llm_operator is None:
            raise InputError("strategy llm-evolution needs a language model",
                             hint="run it through edgenas search (--llm-model, default smollm2) or pass llm_operator")
        super().__init__(space, rng, llm_operator=llm_operator, **kwargs)
