"""``llm-evolution`` without a real model (mutation audit): its llm_share option, that it needs a model, and
that by default every child is the model's (the tiny-model searches are in tests/llm)."""

import numpy as np
import pytest

from edgenas.errors import InputError
from edgenas.search import make_strategy
from edgenas.search.base import Result
from edgenas.search.llm_evolution import LLMEvolution
from tests.search.test_strategies import ScriptedOperator, _genes_arch


def test_llm_evolution_share_defaults_to_every_child_and_is_in_0_exclusive_to_1():
    assert LLMEvolution.validate_options({})["llm_share"] == 1.0
    for ok in (1.0, 0.5, 1e-9):
        assert LLMEvolution.validate_options({"llm_share": ok})["llm_share"] == ok
    for bad in (0.0, -0.5, 1.0000001, 2.0):
        with pytest.raises(InputError, match=r"must be in \(0, 1\]"):
            LLMEvolution.validate_options({"llm_share": bad})


def test_llm_evolution_needs_a_model_and_then_asks_it_for_every_child(space):
    with pytest.raises(InputError, match="needs a language model") as exc:
        make_strategy("llm-evolution", space, np.random.default_rng(0))
    assert "--llm-model" in exc.value.hint
    pop = [_genes_arch(space, i, 1, 1, 1, 1, 1) for i in range(3)]
    novel = [_genes_arch(space, 4, 4, 4, 4, i, 4) for i in range(3)]
    op = ScriptedOperator(list(novel))
    s = make_strategy("llm-evolution", space, np.random.default_rng(0), llm_operator=op, population=3,
                      tournament=3, llm_batch=3)
    s.tell(pop, [Result((-1.0,)), Result((-2.0,)), Result((-9.0,))])
    children = s.ask(3)
    assert op.calls == [3] and [space.arch_id(c) for c in children] == [space.arch_id(a) for a in novel]
