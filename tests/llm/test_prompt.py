"""What the model reads: the fixed prefix the KV cache is kept for, per-block LUT entries for the
MobileNetV3 spaces, an honest line for NAS-Bench-201's whole-network table; and the batched engine."""

import sys
from pathlib import Path

import numpy as np
import pytest

from edgenas.latency.predictor import LatencyPredictor
from edgenas.llm.codec import mutation_prefix, valid_mutations
from edgenas.llm.prompt import DeviceInfo, Outcome, build_prompt, shared_prompt, static_prompt
from edgenas.spaces import get_space

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "latency"))
from test_predictor import make_lut  # noqa: E402


@pytest.mark.parametrize("name", ["mbv3-tiny", "mbv3-small"])
def test_block_labels_name_every_lut_block(name):
    space = get_space(name)
    rng = np.random.default_rng(3)
    for _ in range(10):
        arch = space.sample(rng)
        labels = space.block_labels(arch)
        assert sorted(k for _, k in labels) == sorted(space.block_keys(arch))
        slots = [lab for lab, _ in labels if lab.startswith("ks_")]
        assert len(slots) == sum(arch.d)


def test_prompt_gives_lut_entries_and_budget_gap_for_mbv3():
    space = get_space("mbv3-small")
    pred = LatencyPredictor(make_lut(space), space)
    arch = space.sample(np.random.default_rng(0))
    ms = float(pred.predict_many([arch])[0])
    prompt = build_prompt(space, arch, objective="accuracy", objectives={"accuracy": 70.0},
                          devices=[DeviceInfo("testdev", pred, ms - 1.0)])
    line = next(x for x in prompt.splitlines() if x.startswith("Latency on testdev"))
    assert "1 ms over" in line and "LUT blocks" in line
    worst = max(((lab, pred.key_cost[k]) for lab, k in space.block_labels(arch)), key=lambda x: x[1])
    assert f"{worst[0]} {worst[1]:.3g}" in line          # the costliest block's LUT entry, named by its genes


def test_nb201_table_latency_says_it_has_no_block_entries(table):
    from edgenas.evaluate.tabular import TableLatency

    space = get_space("nb201")
    arch = space.sample(np.random.default_rng(1))
    history = [Outcome(m.to_text(), "llm", i == 0, 0.5) for i, m in enumerate(valid_mutations(space, arch)[:2])]
    prompt = build_prompt(space, arch, objective="cifar100_test", objectives={},
                          devices=[DeviceInfo("dev_ms", TableLatency(table, "dev_ms", space), 100.0)],
                          history=history)
    assert prompt.startswith(static_prompt(space, "cifar100_test") + "\n")
    assert "no per-block entries" in prompt and "LUT blocks" not in prompt and "to spare" in prompt
    assert "Mutations that helped: edge_1_0=" in prompt   # told mutations in the short form


def test_batched_proposals_match_single_ones_and_stay_valid(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from edgenas.llm.engine import Engine

    model, tok = AutoModelForCausalLM.from_pretrained(tiny_model).eval(), AutoTokenizer.from_pretrained(tiny_model)
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    parents = [space.sample(rng) for _ in range(5)]
    prompts = [build_prompt(space, p, objective="cifar100_test", objectives={"cifar100_test": 60.0 + i})
               for i, p in enumerate(parents)]
    head = len(mutation_prefix())
    choices = [[m.to_text()[head:] for m in valid_mutations(space, p)] for p in parents]
    static = static_prompt(space, "cifar100_test")
    eng = Engine(model, tok, threads=1, think_tokens=5, temperature=1.5)
    # the cached prefix changes nothing: one row with the cache == the same row without it
    a = eng.propose(prompts[0], choices[0], 7)
    b = eng.propose(prompts[0], choices[0], 7, static=static)
    assert eng._cache is not None and (a.think, a.completion) == (b.think, b.completion)
    # the batch's shared history computed once on top of the cached prefix: the same answer again
    history = [Outcome(m.to_text(), "llm", i == 0, 0.5) for i, m in enumerate(valid_mutations(space, parents[1])[:3])]
    with_h = build_prompt(space, parents[0], objective="cifar100_test", objectives={}, history=history)
    shared = shared_prompt(space, "cifar100_test", history=history)
    assert with_h.startswith(shared + "\n") and "Mutations that helped" in shared
    c = eng.propose(with_h, choices[0], 5)
    d = eng.propose(with_h, choices[0], 5, static=static, shared=shared)
    assert (c.think, c.completion) == (d.think, d.completion)
    out = eng.propose_many(prompts, choices, 11, static=static)
    assert len(out) == 5 and all(o.completion in c and o.dead_ends == 0 for o, c in zip(out, choices))
    again = eng.propose_many(prompts, choices, 11, static=static)
    assert [(o.think, o.completion) for o in out] == [(o.think, o.completion) for o in again]
    eng.invalidate()
    assert eng._cache is None
    torch.set_num_threads(1)
