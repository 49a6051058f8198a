"""Constrained decoding with a real (tiny, random) model: every output is one of the allowed texts."""

import torch

from edgenas.llm.codec import mutation_prefix, valid_mutations
from edgenas.llm.decoding import ChoiceConstraint
from edgenas.spaces import get_space


def load(folder):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def test_allowed_tokens_stay_on_a_choice(tiny_model):
    _, tok = load(tiny_model)
    choices = ['edge_1_0", "value": "none"}', 'edge_1_0", "value": "skip_connect"}', 'edge_3_2", "value": "none"}']
    c = ChoiceConstraint(tok, 0, choices, tok.eos_token_id)
    for ids in (c.allowed(""), c.allowed("edge_"), c.allowed('edge_1_0", "value": "')):
        assert ids and tok.eos_token_id not in ids
    for i in c.allowed('edge_1_0", "value": "'):
        ext = 'edge_1_0", "value": "' + c.texts[i]
        assert any(ch.startswith(ext) for ch in choices), ext
    assert c.allowed(choices[0]) == [tok.eos_token_id]
    assert all(any(ch.startswith(c.texts[i]) for ch in choices) for i in c.allowed(""))


def test_sampled_generations_are_always_valid(tiny_model):
    model, tok = load(tiny_model)
    space = get_space("nb201")
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    texts = [m.to_text()[len(mutation_prefix()):] for m in valid_mutations(space, arch)]
    ids = tok("Mutation: " + mutation_prefix(), return_tensors="pt").input_ids
    torch.set_num_threads(1)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        c = ChoiceConstraint(tok, ids.shape[1], texts, tok.eos_token_id)
        out = model.generate(ids, max_new_tokens=c.max_new_tokens(), do_sample=True, temperature=2.0,
                             prefix_allowed_tokens_fn=c, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        gen = [int(i) for i in out[0, ids.shape[1]:] if int(i) != tok.eos_token_id]
        assert c.text_of(gen) in texts
        assert c.dead_ends == 0
        seen.add(c.text_of(gen))
    assert len(seen) > 1   # sampling explores: not one fixed answer


def _language(bodies, max_genes):
    """Every multi-gene mutation text, enumerated (the reference the constraint is checked against)."""
    import itertools

    from edgenas.llm.decoding import MULTI_END, MULTI_MORE

    out = set()
    for k in range(1, max_genes + 1):
        for combo in itertools.combinations(bodies, k):
            if all(combo[i][0] < combo[i + 1][0] for i in range(k - 1)):
                out.add(combo[0][1] + "".join(MULTI_MORE[j] + combo[j][1] for j in range(1, k)) + MULTI_END[k])
    return out


def test_multi_gene_constraint_is_exactly_its_language(tiny_model):
    import json
    import random

    from edgenas.llm.codec import Change
    from edgenas.llm.decoding import MultiGeneConstraint

    _, tok = load(tiny_model)
    space = get_space("nb201")
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    texts = [m.to_text()[len(mutation_prefix()):] for m in valid_mutations(space, arch)]
    c = MultiGeneConstraint(tok, 0, texts, tok.eos_token_id, head="H", max_genes=3)
    lang = _language(c.bodies, 3)
    assert len(lang) > len(texts) and set(texts) <= lang           # single-gene texts are in it unchanged
    for t in random.Random(0).sample(sorted(lang), 40):
        change = Change.parse(space, mutation_prefix() + t)
        assert 1 <= len(change.mutations) <= 3 and space.arch_id(change.apply(space, arch)) != space.arch_id(arch)
        for cut in range(len(t) + 1):
            complete, rests = c.rests("H" + t[:cut])
            assert complete == (t[:cut] in lang)
            assert set(rests) == {x[cut:][:c.window] for x in lang if x.startswith(t[:cut]) and len(x) > cut}
    one = MultiGeneConstraint(tok, 0, texts, tok.eos_token_id, head="H", max_genes=1)
    assert _language(one.bodies, 1) == set(texts)
    assert json.loads(mutation_prefix() + max(lang, key=len))["and"]


def test_sampled_multi_gene_generations_are_valid(tiny_model):
    from edgenas.llm.codec import Change
    from edgenas.llm.decoding import MultiGeneConstraint

    model, tok = load(tiny_model)
    space = get_space("nb201")
    arch = space.from_string("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    texts = [m.to_text()[len(mutation_prefix()):] for m in valid_mutations(space, arch)]
    ids = tok("Mutation:", return_tensors="pt").input_ids
    torch.set_num_threads(1)
    sizes = set()
    for seed in range(12):
        torch.manual_seed(seed)
        c = MultiGeneConstraint(tok, ids.shape[1], texts, tok.eos_token_id, head=" " + mutation_prefix(), max_genes=3)
        out = model.generate(ids, max_new_tokens=c.max_new_tokens(), do_sample=True, temperature=2.0,
                             prefix_allowed_tokens_fn=c, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
        text = c.text_of(c.cut(out[0, ids.shape[1]:].tolist()))
        change = Change.parse(space, text[1:])
        assert c.dead_ends == 0 and space.arch_id(change.apply(space, arch)) != space.arch_id(arch)
        sizes.add(len(change.mutations))
    assert len(sizes) > 1     # sampling writes single- and multi-gene mutations
