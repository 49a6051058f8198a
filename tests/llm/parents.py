"""Sampled nb201 parents and what the engine tests generate from for them."""

from typing import Sequence

import numpy as np

from edgenas.llm.codec import mutation_prefix, valid_mutations
from edgenas.llm.prompt import build_prompt, static_prompt
from edgenas.spaces import get_space


def nb201_prompts(n: int, seed: int, first: float,
                  history: Sequence = ()) -> tuple[list, list[str], list[list[str]], str]:
    """``n`` nb201 parents sampled with ``seed``; their prompts (objective ``first``, ``first + 1``, ..., and the
    search's ``history``); each one's valid mutations after the mutation prefix; and the static prompt."""
    space = get_space("nb201")
    rng = np.random.default_rng(seed)
    parents = [space.sample(rng) for _ in range(n)]
    prompts = [build_prompt(space, p, objective="cifar100_test", objectives={"cifar100_test": first + i},
                            history=history) for i, p in enumerate(parents)]
    head = len(mutation_prefix())
    choices = [[m.to_text()[head:] for m in valid_mutations(space, p)] for p in parents]
    return parents, prompts, choices, static_prompt(space, "cifar100_test")
