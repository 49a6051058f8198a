"""Constrained decoding with a real (tiny, random) model: every output is one of the allowed texts."""

import pytest
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


class _PieceTokenizer:
    """A stand-in tokenizer without a model: ids 0 and 1 are <eos> and <pad> (special), 2 decodes to nothing,
    3 to a broken byte, then one id per piece (a piece given twice gets two ids)."""

    def __init__(self, pieces):
        self.vocab = ["<eos>", "<pad>", "", "\ufffd"] + list(pieces)
        self.all_special_ids = [0, 1]

    def __len__(self):
        return len(self.vocab)

    def batch_decode(self, seqs, skip_special_tokens=False, clean_up_tokenization_spaces=None):
        """As transformers decodes: special tokens dropped on request, " ," made "," unless told not to."""
        out = ["".join(self.vocab[i] for i in s if not (skip_special_tokens and i in self.all_special_ids))
               for s in seqs]
        if clean_up_tokenization_spaces is not False:
            out = [t.replace(" ,", ",").replace(" .", ".") for t in out]
        return out

    def id(self, piece):
        return self.vocab.index(piece)


PIECES = list("abcxy\n") + ["ab", "\nab", "a\nb", "a"]


def test_token_table_and_free_tokens_without_a_model():
    from edgenas.llm.decoding import free_tokens, token_table

    tok = _PieceTokenizer(PIECES)
    by_text, texts = token_table(tok)
    assert texts == tok.vocab and token_table(tok)[0] is by_text                # cached per tokenizer
    assert by_text["a"] == [4, 13] and by_text["ab"] == [10] and by_text["\n"] == [9]   # a piece twice: both ids
    assert "<eos>" not in by_text and "" not in by_text and "\ufffd" not in by_text
    assert len(by_text) == 9
    assert free_tokens(tok) == [4, 5, 6, 7, 8, 10, 13]                          # no line break in them


def test_each_token_is_decoded_as_it_is_without_a_model():
    """A token " ," cleaned up into "," would be allowed where "," is, and the text generated would not be the
    text the constraint checked."""
    from edgenas.llm.decoding import ChoiceConstraint, token_table

    tok = _PieceTokenizer(["a", " ,", ","])
    by_text, texts = token_table(tok)
    assert texts == ["<eos>", "<pad>", "", "\ufffd", "a", " ,", ","] and by_text == {"a": [4], " ,": [5], ",": [6]}
    assert ChoiceConstraint(tok, 0, ["a,"], 0).allowed("a") == [6]


def test_choice_constraint_allows_exactly_the_tokens_that_stay_on_a_choice_without_a_model():
    from edgenas.llm.decoding import ChoiceConstraint

    tok = _PieceTokenizer(PIECES)
    c = ChoiceConstraint(tok, 0, ["ab", "ac", "ab", "b"], 0, stop_ids={1})
    assert c.choices == ["ab", "ac", "b"] and c.max_len == 2 and c.max_new_tokens() == 3
    assert c.stop_ids == {0, 1}
    assert c.allowed("") == [4, 5, 10, 13]                      # a, b, ab, a again ("ac" is no token)
    assert c.allowed("a") == [5, 6]                              # b, c
    assert c.allowed("ab") == [0] and c.allowed("b") == [0]      # complete: only the end
    assert c.dead_ends == 0
    assert c.allowed("x") == [0] and c.dead_ends == 1            # off every choice
    assert c.rests("a") == (False, ["b", "c"]) and c.rests("ab")[0]
    assert c.text_of([4, 5, 9]) == "ab\n"
    assert c.cut([4, 1, 5]) == [4] and c.cut([4, 5, 0, 0]) == [4, 5] and c.cut([4, 5]) == [4, 5]
    assert c.split("xy\nab") == ("", "xy\nab")                 # no free phase: all of it is the answer
    assert c(0, torch.tensor([4])) == [5, 6]                     # prompt_len 0: "a" is generated, not prompt
    late = ChoiceConstraint(tok, 2, ["ab", "b"], 0)
    assert late(0, torch.tensor([7, 8, 4])) == [5]               # after the 2 prompt ids: "a", then "b"
    assert late(0, torch.tensor([7, 8, 4, 0, 5])) == [0]         # the row ended: anything (the end)
    with pytest.raises(ValueError, match="no valid choices"):
        ChoiceConstraint(tok, 0, [], 0)


def test_a_free_phase_comes_first_then_a_choice_without_a_model():
    from edgenas.llm.decoding import ChoiceConstraint

    tok = _PieceTokenizer(PIECES)
    with pytest.raises(ValueError, match="start with think_end"):
        ChoiceConstraint(tok, 0, ["\nab"], 0, think_tokens=2)
    with pytest.raises(ValueError, match="start with think_end"):
        ChoiceConstraint(tok, 0, ["\nab", "b"], 0, think_tokens=2, think_end="\n")
    c = ChoiceConstraint(tok, 1, ["\nab", "\nb"], 0, think_tokens=2, think_end="\n")
    assert c.max_new_tokens() == 2 + 3 + 1
    start = [9, 11]                                                   # "\n", "\nab"
    assert c.allowed("") == start
    assert c(0, torch.tensor([7])).tolist() == [4, 5, 6, 7, 8, 9, 10, 11, 13]   # free (no line break) or start
    assert c(0, torch.tensor([7, 7])).tolist() == [4, 5, 6, 7, 8, 9, 10, 11, 13]
    assert c(0, torch.tensor([7, 7, 8])) == start                    # think_tokens used up: the answer starts
    assert c(0, torch.tensor([7, 7, 9])) == [4, 5, 10, 13]           # after "x\n": a, b, ab, a
    assert c(0, torch.tensor([7, 11])) == [0]                        # "x" then "\nab": complete
    assert c.split("xy\nab") == ("xy", "\nab") and c.split("xy") == ("xy", "")


def test_multi_gene_constraint_is_exactly_its_language_without_a_model():
    from edgenas.llm.decoding import MultiGeneConstraint

    tok = _PieceTokenizer(PIECES)
    texts = ['a", "value": 1}', 'a", "value": 2}', 'b", "value": 1}', 'c", "value": 3}']
    with pytest.raises(ValueError, match="must end with"):
        MultiGeneConstraint(tok, 0, texts + ['d", "value": 1'], 0, head="H")
    for max_genes, n in ((0, 4), (1, 4), (2, 4 + 2 + 2 + 1), (3, 4 + 5 + 2), (9, 11)):
        c = MultiGeneConstraint(tok, 0, texts + texts[:1], 0, head="H", max_genes=max_genes, window=8)
        assert c.bodies == [(0, 'a", "value": 1'), (0, 'a", "value": 2'), (1, 'b", "value": 1'),
                            (2, 'c", "value": 3')]
        assert c.max_genes == min(max(max_genes, 1), 3)
        lang = _language(c.bodies, c.max_genes)
        assert len(lang) == n
        assert c.max_len == max(len("H" + t) for t in lang)           # the longest text: as long as it gets
        assert c.max_new_tokens() == c.max_len + 1
        for t in lang:
            for cut in range(len(t) + 1):
                complete, rests = c.rests("H" + t[:cut])
                assert complete == (t[:cut] in lang), t[:cut]
                assert set(rests) == {x[cut:][:8] for x in lang if x.startswith(t[:cut]) and len(x) > cut}, t[:cut]
    c = MultiGeneConstraint(tok, 0, texts, 0, head="H{", max_genes=2)
    assert c.rests("") == (False, ["H{"]) and c.rests("H") == (False, ["{"]) and c.rests("X") == (False, [])
    assert c.rests("Hx") == (False, []) and c.rests("H{zz") == (False, set())
    assert c.rests('H{a", "value": 1}]}') == (False, set())              # one item closed as two


def test_a_new_tokenizer_never_gets_the_table_of_a_freed_one_without_a_model(monkeypatch):
    """The tables were cached by ``id(tokenizer)``: a tokenizer made after another was freed can get the same id,
    and it was given the freed one's vocabulary (in this file, the stand-in tokenizer got the tiny model's table
    when it ran after the tests that load it). Every id is made the same here: what an id used again looks like."""
    from edgenas.llm import decoding

    monkeypatch.setattr(decoding, "id", lambda obj: 7, raising=False)
    old, new = _PieceTokenizer(list("ab\n")), _PieceTokenizer(list("xyz"))
    assert decoding.token_table(old)[1][4:] == ["a", "b", "\n"] and decoding.free_tokens(old) == [4, 5]
    assert decoding.token_table(new)[1][4:] == ["x", "y", "z"] and decoding.free_tokens(new) == [4, 5, 6]
