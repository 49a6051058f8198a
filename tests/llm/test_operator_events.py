"""The LLM operator's bookkeeping around the model: what it makes of completions (the model's text is
untrusted: a completion that is not a mutation of the parent is logged invalid and gives the parent back),
the logged fallback of a model that fails to load, and the one-parent ``mutate``. The completions come
from a scripted engine (a real one is constrained to valid mutations, so it never writes a bad one)."""

import json

import numpy as np
import pytest

from edgenas.errors import LLMError
from edgenas.llm.engine import Proposal
from edgenas.llm.experience import read_all
from edgenas.llm.operator import LLMOperator, LLMSettings
from edgenas.search.base import Result
from edgenas.spaces import get_space

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


class Scripted:
    """Stands in for the loaded model: each call returns the next completions, in order."""

    def __init__(self, *batches):
        self.batches, self.calls = list(batches), []

    def propose_many(self, prompts, choices, seed, static="", shared=""):
        self.calls.append({"prompts": list(prompts), "choices": [list(c) for c in choices], "seed": seed,
                           "static": static, "shared": shared})
        return [Proposal(f"think {k}", c, 0.5, 7, k % 2) for k, c in enumerate(self.batches.pop(0))]


def operator(model, tmp_path, engine=None, **opts):
    space = get_space("nb201")
    settings = LLMSettings(model=str(model), lora_every=0, **opts)
    op = LLMOperator(space, settings, tmp_path, seed=0, objective="cifar100_test")
    if engine is not None:
        op.engine, op.engine_round = engine, 0
    return space, op


def test_completions_that_are_no_mutation_of_the_parent_are_logged_invalid_and_give_the_parent(tiny_model, tmp_path):
    valid = 'edge_1_0", "value": "none"}'        # after the prefix '{"gene": "'
    bad = ["", "garbage", 'edge_1_0", "value": "nor_conv_3x3"}',                  # no change
           'edge_1_0", "value": "conv_9x9"}', 'edge_9_9", "value": "none"}',      # no such value, no such gene
           'edge_1_0", "value": "none", "and": [{"gene": "edge_2_1", "value": "none"}]}',   # 2 genes, max 1
           'edge_1_0", "value": "none"} trailing', 'edge_1_0", "value": "none"']
    engine = Scripted([valid, valid] + bad)
    space, op = operator(tiny_model, tmp_path, engine, max_genes=1)
    parent = space.from_string(ARCH)
    n = 2 + len(bad)
    children = op.mutate_many([parent] * n, [Result((-61.5,))] * n, set())
    child = space.from_string("|none~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    assert [space.arch_id(c) for c in children] == [space.arch_id(child)] * 2 + [space.arch_id(parent)] * len(bad)
    recs = read_all(tmp_path)["proposals"]
    assert [r["valid"] for r in recs] == [True, True] + [False] * len(bad)
    assert [r["novel"] for r in recs] == [True] + [False] * (n - 1)      # the second is the first's child
    assert [r["event"] for r in recs] == list(range(n)) and {(r["batch"], r["of"]) for r in recs} == {(0, n)}
    assert [r["completion"] for r in recs] == ['{"gene": "' + c for c in [valid, valid] + bad]
    assert [r["child"] for r in recs] == [space.to_dict(child)] * 2 + [space.to_dict(parent)] * len(bad)
    assert all(r["kind"] == "proposal" and r["parent"] == space.arch_id(parent) and r["round"] == 0 for r in recs)
    assert [(r["think"], r["tokens"], r["dead_ends"], r["seconds"]) for r in recs[:2]] == [
        ("think 0", 7, 0, 0.5), ("think 1", 7, 1, 0.5)]
    assert {r["seed"] for r in recs} == {engine.calls[0]["seed"]}
    assert all(r["prompt"] == p for r, p in zip(recs, engine.calls[0]["prompts"]))
    assert "Objectives: cifar100_test 61.5" in recs[0]["prompt"]
    # the choices are the parent's valid mutations after the prefix, the same for every row
    choices = engine.calls[0]["choices"]
    assert len(choices) == n and valid in choices[0] and all(c == choices[0] for c in choices)
    assert not any(c.startswith('{"gene"') for c in choices[0])
    assert op.n_events == n
    assert op.pending[space.arch_id(child)]["event"] == 0    # a strategy takes the first proposal of a child


def test_a_child_in_the_seen_set_is_valid_but_not_novel_and_an_infinite_objective_is_not_shown(tiny_model,
                                                                                               tmp_path):
    valid = 'edge_1_0", "value": "none"}'
    space, op = operator(tiny_model, tmp_path, Scripted([valid, 'edge_2_1", "value": "none"}']))
    parent = space.from_string(ARCH)
    seen = {space.arch_id(op.space.from_string(
        "|none~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"))}
    op.mutate_many([parent] * 2, [Result((float("inf"),)), Result((float("nan"),))], seen)
    recs = read_all(tmp_path)["proposals"]
    assert [(r["valid"], r["novel"]) for r in recs] == [(True, False), (True, True)]
    assert not any("Objectives:" in r["prompt"] for r in recs)


def test_a_successful_child_is_told_and_trained_on_without_the_prefix(tiny_model, tmp_path):
    valid = 'edge_1_0", "value": "none"}'
    space, op = operator(tiny_model, tmp_path, Scripted([valid, 'edge_2_1", "value": "none"}'], [valid]))
    parent = space.from_string(ARCH)
    a, b = op.mutate_many([parent] * 2, [Result((-60.0,))] * 2, set())
    op.observe(parent, a, Result((-60.0,)), Result((-62.0,)), "llm")      # better: into the buffer
    op.observe(parent, b, Result((-60.0,)), Result((-59.0,)), "llm")      # worse: told, not kept
    op.observe(parent, a, Result((-60.0,)), Result((-63.0,)), "llm")      # no longer pending: not credited
    files = read_all(tmp_path)
    assert files["outcomes"] == [{"proposal": 0, "round": 0, "improved": True, "delta": 2.0},
                                 {"proposal": 1, "round": 0, "improved": False, "delta": -1.0}]
    assert [(i["proposal"], i["completion"], i["think"]) for i in files["experience"]["items"]] == [
        (0, valid, "think 0")]
    assert [(h.mutation, h.source, h.improved, h.delta) for h in op.history] == [
        ('{"gene": "' + valid, "llm", True, 2.0), ('{"gene": "' + 'edge_2_1", "value": "none"}', "llm", False, -1.0),
        ('{"gene": "edge_1_0", "value": "none"}', "llm", True, 3.0)]
    assert op.successes == 1 and op.round == 0
    # an infeasible child's change is told with no delta; the next batch's prompt tells the last outcomes
    op.observe(parent, a, Result((-60.0,)), Result((-63.0,), violation=1.0), "usual")
    assert np.isnan(op.history[-1].delta) and not op.history[-1].improved
    op.mutate_many([parent], [Result((-60.0,))], set())
    assert "edge_2_1" in op.engine.calls[1]["shared"]


def test_a_model_that_fails_to_load_is_one_logged_fallback_and_is_replayed_on_resume(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x07" * 200)            # the right magic, then garbage
    space, op = operator(broken, tmp_path / "run")
    with pytest.raises(LLMError, match="cannot load model"):
        op.preload()
    space, op = operator(broken, tmp_path / "run", fallback=True)
    op.preload()
    parent = space.from_string(ARCH)
    for _ in range(3):
        assert op.mutate_many([parent] * 2, [Result((-60.0,))] * 2, set()) == [None, None]
    log = [json.loads(x) for x in (tmp_path / "run" / "llm" / "proposals.jsonl").read_text().splitlines()]
    assert [(r["event"], r["kind"]) for r in log] == [(0, "fallback")] and "cannot load model" in log[0]["reason"]
    assert op.disabled and op.n_events == 1
    # resumed: the fallback is replayed (the model is not loaded again) and nothing more is logged
    space, again = operator(broken, tmp_path / "run", fallback=True)
    again.load_log()
    assert again.mutate(parent, Result((-60.0,)), set()) is None
    assert again.mutate_many([parent], [Result((-60.0,))], set()) == [None]
    assert again.disabled and again.n_events == 1 and again.cursor == 1 and again.engine is None
    assert (tmp_path / "run" / "llm" / "proposals.jsonl").read_text().count("\n") == 1


def test_no_parents_is_no_proposal_and_mutate_is_one_child_of_the_model(tiny_model, tmp_path):
    space, op = operator(tiny_model, tmp_path, think_tokens=2)
    assert op.mutate_many([], [], set()) == []
    assert op.engine is None and not (tmp_path / "llm" / "proposals.jsonl").exists()
    parent = space.from_string(ARCH)
    child = op.mutate(parent, Result((-60.0,)), None)
    (rec,) = read_all(tmp_path)["proposals"]
    assert rec["valid"] and rec["novel"] and space.to_dict(child) == rec["child"] != space.to_dict(parent)
