"""Generation without a search (``edgenas.llm.engine``): the text the model reads, seeds, the reasoning budget,
the cached prefix and the time per proposal (found by the mutation audit, 6 December)."""

import time

import pytest

from edgenas.errors import LLMError, LLMInputError
from edgenas.llm.codec import mutation_prefix
from edgenas.llm.prompt import ANSWER_HEAD, MUTATION_HEAD, Outcome, shared_prompt
from edgenas.spaces import get_space
from tests.llm.parents import nb201_prompts


@pytest.fixture(scope="module")
def parts(tiny_model):
    """(model, tokenizer, prompts, choices, static) for three nb201 parents."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)
    _, prompts, choices, static = nb201_prompts(3, 1, 61.0)
    return model, tok, prompts, choices, static


def _engine(parts, **kw):
    from edgenas.llm.engine import Engine

    return Engine(parts[0], parts[1], **{"threads": 1, "think_tokens": 4, "temperature": 1.5, **kw})


def test_the_head_is_the_prompt_then_the_answer_head_in_the_chat_template_when_there_is_one(parts):
    import copy

    eng = _engine(parts)
    assert eng.head("Hi.") == "Hi.\n" + ANSWER_HEAD
    assert eng.middle(" think") == " think" + MUTATION_HEAD
    tok = copy.copy(parts[1])
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
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


def test_generation_runs_on_the_engines_thread_count(parts):
    import torch

    _, _, prompts, choices, _ = parts
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _engine(parts, threads=1).propose(prompts[0], choices[0], 0)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(1)
        _engine(parts, threads=2).propose(prompts[0], choices[0], 0)
        assert torch.get_num_threads() == 2
        _engine(parts, threads=1).check_finite()   # its forward pass too
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_batchs_shared_history_is_cached_on_top_of_the_fixed_prefix_and_changes_no_proposal(parts):
    import torch

    model, tok, _, _, static = parts
    history = [Outcome('{"gene": "edge_1_0", "value": "none"}', "llm", True, 1.5),
               Outcome('{"gene": "edge_2_1", "value": "skip_connect"}', "usual", False, -0.5)]
    _, prompts, choices, _ = nb201_prompts(3, 1, 61.0, history)   # the fixture's parents, with the history
    shared = shared_prompt(get_space("nb201"), "cifar100_test", history=history)
    eng = _engine(parts, think_tokens=6)
    heads = [eng.head(p) for p in prompts]
    rows = [eng.encode(h)[0].tolist() for h in heads]
    n, cache = eng._prefix(static, shared, heads, rows)
    n_static = len(eng._cache_key)
    assert n_static == len(eng.encode(static)[0]) - 1   # less the last token, which could merge with what follows
    assert 2 <= n_static < n < len(rows[0]) and cache.get_seq_length() == n
    assert eng._cache.get_seq_length() == n_static   # the cached fixed prefix is not extended
    with torch.no_grad():
        whole = model(input_ids=torch.tensor([rows[0][:n]]), use_cache=True).past_key_values
    for mine, ref in zip(cache.layers, whole.layers):
        assert torch.allclose(mine.keys, ref.keys, atol=1e-5) and torch.allclose(mine.values, ref.values, atol=1e-5)
    # a shared text that is not in every prompt (or no longer than the fixed one) falls back to the fixed prefix
    assert eng._prefix(static, shared + " and more", heads, rows)[0] == n_static
    assert eng._prefix(static, static, heads, rows)[0] == n_static
    plain = [(p.think, p.completion) for p in eng.propose_many(prompts, choices, 3)]
    assert [(p.think, p.completion) for p in eng.propose_many(prompts, choices, 3, static=static)] == plain
    assert [(p.think, p.completion) for p in eng.propose_many(prompts, choices, 3, static=static, shared=shared)] \
        == plain


def test_a_prefix_is_cached_only_where_every_row_starts_with_its_tokens(parts):
    _, _, prompts, _, static = parts
    eng = _engine(parts)
    heads = [eng.head(p) for p in prompts[:2]]
    rows = [eng.encode(h)[0].tolist() for h in heads]
    # "You improve a" is 3 tokens: 2 are cached; "You improve" is 2: 1 token is too short to cache
    assert eng._ids_upto("You improve a", heads, rows) == rows[0][:2] and len(eng.encode("You improve a")[0]) == 3
    assert eng._ids_upto("You improve", heads, rows) is None
    moved = [heads[0], "Note.\n" + heads[1]]   # the fixed text, but not at the start of every row
    assert eng._ids_upto(static, moved, [eng.encode(h)[0].tolist() for h in moved]) is None
    assert eng._prefix(static, "", moved, [eng.encode(h)[0].tolist() for h in moved]) == (0, None)


def test_generation_reads_the_cached_prefix_instead_of_recomputing_it_and_positions_skip_the_padding(parts):
    model, _, prompts, choices, static = parts
    eng = _engine(parts, think_tokens=2)
    seen = []
    hook = model.model.register_forward_pre_hook(
        lambda mod, args, kw: seen.append((kw["input_ids"].shape, kw.get("position_ids"))), with_kwargs=True)
    try:
        eng.propose_many(prompts, choices, 0, static=static)
    finally:
        hook.remove()
    lengths = [len(eng.encode(eng.head(p))[0]) for p in prompts]
    width, n_pre = max(lengths), len(eng._cache_key)
    # the prefix once, then the first step of generate reads only the rows' own tokens
    assert seen[0][0] == (1, n_pre) and seen[1][0] == (3, width - n_pre)
    for i, n in enumerate(lengths):   # each row's own tokens follow its prefix; the padding between is skipped
        assert seen[1][1][i, width - n:].tolist() == list(range(n_pre, n))
        assert seen[2][1][i].tolist() == [n]


def test_a_tokenizer_without_a_pad_token_pads_with_its_end_of_text(parts, tiny_model):
    from transformers import AutoTokenizer

    model, _, prompts, choices, static = parts
    tok = AutoTokenizer.from_pretrained(tiny_model)   # a copy would share its special tokens with the fixture's
    tok.pad_token = None
    assert tok.pad_token_id is None
    props = _engine((model, tok)).propose_many(prompts[:2], choices[:2], 0, static=static)
    assert all(p.completion in ch for p, ch in zip(props, choices))


def test_a_failed_generation_is_one_llm_error(parts, tiny_model):
    from transformers import AutoTokenizer

    model, _, prompts, choices, _ = parts
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.pad_token, tok.eos_token = None, None   # nothing to pad with
    with pytest.raises(LLMError, match="the model failed to generate") as err:
        _engine((model, tok)).propose(prompts[0], choices[0], 0)
    assert "out of memory" not in str(err.value)


def test_a_model_whose_outputs_are_not_finite_fails_its_check(parts):
    import copy

    import torch

    model = copy.deepcopy(parts[0])
    with torch.no_grad():
        model.model.norm.weight.fill_(3e38)   # finite, but the logits overflow
    eng = _engine((model, parts[1]))
    assert eng._nonfinite_weight() is None
    with pytest.raises(LLMInputError, match="outputs are not finite"):
        eng.check_finite()


def test_a_proposal_is_a_frozen_record(parts):
    import dataclasses

    p = _engine(parts).propose(parts[2][0], parts[3][0], 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.completion = "x"


def test_the_engine_defaults(parts):
    from edgenas.llm.engine import Engine

    eng = Engine(parts[0], parts[1])
    assert (eng.threads, eng.temperature, eng.think_tokens, eng.max_genes) == (1, 0.8, 24, 1)


def test_proposing_puts_the_model_in_evaluation_mode(parts):
    import copy

    model = copy.deepcopy(parts[0]).train()
    _engine((model, parts[1])).propose(parts[2][0], parts[3][0], 0)
    assert not model.training


def test_a_damaged_chat_template_is_one_clear_error_before_anything_is_generated(parts, tiny_model):
    from transformers import AutoTokenizer

    model, _, prompts, choices, _ = parts
    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }{% endfor %}"   # a syntax error
    eng = _engine((model, tok))
    for call in (eng.check_finite, lambda: eng.propose(prompts[0], choices[0], 0)):
        with pytest.raises(LLMInputError, match="the model's chat template failed: unexpected '}'"):
            call()


def test_max_genes_lets_a_proposal_change_up_to_that_many_genes(parts):
    from edgenas.llm.codec import Change

    space = get_space("nb201")
    for max_genes in (1, 2, 3):
        eng = _engine(parts, max_genes=max_genes)
        sizes = [len(Change.parse(space, mutation_prefix() + p.completion, max_genes).mutations)
                 for seed in range(3) for p in eng.propose_many(parts[2], parts[3], seed)]
        assert max(sizes) == max_genes   # these seeds reach the limit (a fixed tiny model)


def _one_token_model(parts, token: int, logit: float):
    """The tiny model with constant logits: ``logit`` for ``token``, 0 for every other one."""
    import copy

    import torch

    model = copy.deepcopy(parts[0])
    head = torch.nn.Linear(model.lm_head.in_features, model.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.zero_()
        head.bias.zero_()
        head.bias[token] = logit
    model.lm_head = head
    return model


def test_sampling_keeps_the_top_95_percent_at_the_engines_temperature(parts):
    """Generation samples at the engine's temperature from the nucleus of 95% (``top_p``) with no top-k cut:
    a token of 95.5% after the temperature is the only one the free reasoning writes (no nucleus: about one
    token in 22 would be another); at a higher temperature the reasoning varies (a top-k cut of 1 would keep it)."""
    import math

    from edgenas.llm.decoding import free_tokens, token_table

    _, tok, prompts, choices, _ = parts
    by_text, texts = token_table(tok)
    word = next(i for i in free_tokens(tok) if texts[i].strip().isalpha() and len(texts[i].strip()) >= 4)
    n = len(free_tokens(tok))                      # the free phase allows these tokens (and the choices' starts)
    logit = 1.5 * math.log(0.955 / 0.045 * n)      # 95.5% at temperature 1.5 against at most 4.5% for the rest
    model = _one_token_model(parts, word, logit)
    eng = _engine((model, tok), think_tokens=8)
    thinks = [p.think for seed in range(12) for p in eng.propose_many(prompts, choices, seed)]
    assert thinks == [texts[word] * 8] * len(thinks)
    hot = _engine((model, tok), think_tokens=8, temperature=3.0)   # about 15%: the reasoning varies
    assert len({p.think for seed in range(3) for p in hot.propose_many(prompts, choices, seed)}) > 3


def _bos_parts(parts, tiny_model, chat_template=None, single="<s> $A"):
    """The tiny model with a tokenizer that starts every text with ``<s>`` by itself, as Llama's does (``single``:
    its template for one text)."""
    import copy

    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok.add_special_tokens({"bos_token": "<s>"})
    tok._tokenizer.post_processor = TemplateProcessing(single=single, special_tokens=[("<s>", tok.bos_token_id),
                                                                                       ("<eos>", tok.eos_token_id)])
    tok.chat_template = chat_template
    model = copy.deepcopy(parts[0])
    model.resize_token_embeddings(len(tok))
    return model, tok


def test_the_model_sees_one_beginning_of_text_token_with_or_without_a_chat_template(parts, tiny_model):
    """A tokenizer that adds ``<s>`` (BOS) to every text: the model reads it once, first - from the chat template
    (which writes it; encoding must not add a second) or, without a template, as the tokenizer itself would
    encode the prompt; the reasoning and the mutation encoded for training carry none."""
    _, _, prompts, choices, static = parts
    template = ("{{ bos_token }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                "{% if add_generation_prompt %}<assistant>{% endif %}")
    for chat_template in (template, None):
        model, tok = _bos_parts(parts, tiny_model, chat_template)
        bos = tok.bos_token_id
        assert tok("Hi.").input_ids[0] == bos
        eng = _engine((model, tok))
        ids = eng.encode(eng.head("Hi."))[0].tolist()
        assert ids[0] == bos and ids.count(bos) == 1
        if chat_template is None:
            assert ids == tok("Hi.\n" + ANSWER_HEAD).input_ids
        assert bos not in eng.encode(eng.middle(" think") + '{"gene"')[0].tolist()
        props = eng.propose_many(prompts[:2], choices[:2], 0, static=static)
        assert all(p.completion in ch for p, ch in zip(props, choices))
    model, tok = _bos_parts(parts, tiny_model, single="<s> $A <eos>")   # an end token too: the BOS all the same
    assert _engine((model, tok)).head("Hi.") == "<s>Hi.\n" + ANSWER_HEAD
    model, tok = _bos_parts(parts, tiny_model, single="$A")   # a BOS token the tokenizer does not add: none
    assert tok.bos_token_id is not None and _engine((model, tok)).head("Hi.") == "Hi.\n" + ANSWER_HEAD
