"""Generation without a search (``edgenas.llm.engine``): the text the model reads, seeds, the reasoning budget,
the cached prefix and the time per proposal (found by the mutation audit, 6 December)."""

import time

import numpy as np
import pytest

from edgenas.errors import LLMInputError
from edgenas.llm.codec import mutation_prefix, valid_mutations
from edgenas.llm.prompt import ANSWER_HEAD, MUTATION_HEAD, build_prompt, static_prompt
from edgenas.spaces import get_space


@pytest.fixture(scope="module")
def parts(tiny_model):
    """(model, tokenizer, prompts, choices, static) for three nb201 parents."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)
    space = get_space("nb201")
    rng = np.random.default_rng(1)
    parents = [space.sample(rng) for _ in range(3)]
    prompts = [build_prompt(space, p, objective="cifar100_test", objectives={"cifar100_test": 61.0 + i})
               for i, p in enumerate(parents)]
    head = len(mutation_prefix())
    choices = [[m.to_text()[head:] for m in valid_mutations(space, p)] for p in parents]
    return model, tok, prompts, choices, static_prompt(space, "cifar100_test")


def _engine(parts, **kw):
    from edgenas.llm.engine import Engine

    return Engine(parts[0], parts[1], **{"threads": 1, "think_tokens": 4, "temperature": 1.5, **kw})


def test_the_head_is_the_prompt_then_the_answer_head_in_the_chat_template_when_there_is_one(parts):
    import copy

    eng = _engine(parts)
    assert eng.head("Hi.") == "Hi.\n" + ANSWER_HEAD
    assert eng.middle(" think") == " think" + MUTATION_HEAD
    tok = copy.copy(parts[1])
    tok.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}<assistant>"
    assert _engine((parts[0], tok)).head("Hi.") == "<user>Hi.<assistant>" + ANSWER_HEAD


def test_the_same_seed_gives_the_same_proposals_and_other_seeds_other_ones(parts):
    _, _, prompts, choices, static = parts
    eng = _engine(parts)
    runs = {seed: [(p.think, p.completion) for p in eng.propose_many(prompts[:2], choices[:2], seed, static=static)]
            for seed in range(3)}
    assert [(p.think, p.completion) for p in eng.propose_many(prompts[:2], choices[:2], 2, static=static)] == runs[2]
    assert len({tuple(r) for r in runs.values()}) > 1
    for run in runs.values():
        assert all(c in ch and not c.startswith(MUTATION_HEAD) for (_, c), ch in zip(run, choices))


def test_the_reasoning_stays_within_its_token_budget_and_is_one_line(parts):
    _, tok, prompts, choices, _ = parts
    for think_tokens in (0, 2, 6):
        eng = _engine(parts, think_tokens=think_tokens)
        for seed in range(2):
            p = eng.propose(prompts[0], choices[0], seed)
            n = len(tok(p.think, add_special_tokens=False).input_ids)
            assert n <= think_tokens and "\n" not in p.think and p.completion in choices[0]
            assert p.tokens > 0 and p.dead_ends == 0
        if think_tokens == 0:
            assert p.think == ""


def test_a_batch_tells_each_proposal_its_share_of_the_time(parts):
    _, _, prompts, choices, static = parts
    eng = _engine(parts)
    t0 = time.perf_counter()
    props = eng.propose_many(prompts, choices, 5, static=static)
    wall = time.perf_counter() - t0
    assert len({p.seconds for p in props}) == 1 and 0 < props[0].seconds * len(props) <= wall


def test_the_fixed_prefix_is_computed_once_until_the_weights_change(parts):
    _, _, prompts, choices, static = parts
    eng = _engine(parts)
    eng.propose(prompts[0], choices[0], 1, static="text that is in no prompt")
    assert eng._cache is None and eng._cache_key is None
    eng.propose(prompts[0], choices[0], 1, static=static)
    first, key = eng._cache, eng._cache_key
    assert first is not None and len(key) >= 2 and list(key) == eng.encode(prompts[0])[0].tolist()[: len(key)]
    eng.propose_many(prompts[1:], choices[1:], 2, static=static)
    assert eng._cache is first   # reused (generate extends a copy, never the cached one)
    eng.invalidate()
    assert eng._cache is None and eng._cache_key is None


def test_a_finite_model_passes_its_check_and_an_infinite_weight_is_named(parts):
    import copy

    import torch

    eng = _engine(parts)
    eng.check_finite()
    model = copy.deepcopy(parts[0])
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight[3, 2] = float("-inf")
    with pytest.raises(LLMInputError, match="weight model.layers.1.mlp.up_proj.weight is not finite"):
        _engine((model, parts[1])).check_finite()
