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
