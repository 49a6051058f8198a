"""The LLM operator's bookkeeping around the model: what it makes of completions (the model's text is
untrusted: a completion that is not a mutation of the parent is logged invalid and gives the parent back),
the logged fallback of a model that fails to load, and the one-parent ``mutate``. The completions come
from a scripted engine (a real one is constrained to valid mutations, so it never writes a bad one)."""

import json
import resource
import shutil

import numpy as np
import pytest

from edgenas.errors import InputError, LLMError
from edgenas.llm.engine import Proposal
from edgenas.llm.experience import read_all
from edgenas.llm.operator import LLMOperator, LLMSettings
from edgenas.search.base import Result
from edgenas.spaces import get_space

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"


class Scripted:
    """Stands in for the loaded model: each call returns the next completions, in order."""

    def __init__(self, *batches, seconds=0.5):
        self.batches, self.calls, self.seconds = list(batches), [], seconds

    def propose_many(self, prompts, choices, seed, static="", shared=""):
        self.calls.append({"prompts": list(prompts), "choices": [list(c) for c in choices], "seed": seed,
                           "static": static, "shared": shared})
        return [Proposal(f"think {k}", c, self.seconds, 7, k % 2) for k, c in enumerate(self.batches.pop(0))]


def operator(model, tmp_path, engine=None, **opts):
    space = get_space("nb201")
    settings = LLMSettings(**{"model": str(model), "lora_every": 0, **opts})
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


VALID = 'edge_1_0", "value": "none"}'


def logged_run(model, tmp_path, n=2):
    """A run folder whose log holds one batch of ``n`` proposals for the parent ARCH."""
    space, op = operator(model, tmp_path, Scripted([VALID] * n))
    op.mutate_many([space.from_string(ARCH)] * n, [Result((-60.0,))] * n, set())
    return space, tmp_path / "llm" / "proposals.jsonl"


OTHER = "proposals 0.. were made in another batch or for other parents"


@pytest.mark.parametrize("edit, parents, needle", [
    (lambda recs: recs, 1, OTHER),                    # the batch was of 2: it was replayed as two of 1
    (lambda recs: recs, 3, OTHER),                    # the log ends after 2
    (lambda recs: recs, "other", OTHER),
    (lambda recs: [{**recs[0], "of": 1}, {**recs[1], "batch": 1, "of": 1}], 2, OTHER),   # two batches of 1
    (lambda recs: [{**r, "event": r["event"] + 1} for r in recs], 2, "LLM event 0 in .* is not a proposal"),
    (lambda recs: [{**recs[0], "event": 1}, {**recs[1], "event": 0}], 2, "LLM event 0 in .* is not a proposal"),
    (lambda recs: [{"event": 0, "kind": "lora", "round": 1}] + recs, 2, "LLM event 0 in .* is not a proposal"),
])
def test_a_log_that_does_not_line_up_with_the_search_is_one_error_on_resume(tiny_model, tmp_path, edit, parents,
                                                                             needle):
    space, log = logged_run(tiny_model, tmp_path)
    log.write_text("".join(json.dumps(r) + "\n" for r in edit([json.loads(x) for x in log.read_text().splitlines()])))
    before = log.read_bytes()
    space, op = operator(tiny_model, tmp_path, Scripted())
    op.load_log()
    other = space.from_string("|none~0|+|none~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    k = 2 if parents == "other" else parents
    archs = [space.from_string(ARCH)] * (k - 1) + [other if parents == "other" else space.from_string(ARCH)]
    with pytest.raises(InputError, match=needle) as info:
        op.mutate_many(archs, [Result((-60.0,))] * k, set())
    assert info.value.hint == "the code or the seed changed"
    assert log.read_bytes() == before and op.engine.calls == []


def test_a_batch_cut_short_is_dropped_and_made_again_and_a_whole_one_is_replayed(tiny_model, tmp_path):
    space, log = logged_run(tiny_model, tmp_path)
    whole = log.read_text()
    log.write_text(whole.splitlines(keepends=True)[0])           # the second of the batch was never written
    space, op = operator(tiny_model, tmp_path, Scripted([VALID, VALID]))
    op.load_log()
    assert op.replay == [] and log.read_text() == whole.splitlines(keepends=True)[0]   # dropped on the next append
    op.mutate_many([space.from_string(ARCH)] * 2, [Result((-60.0,))] * 2, set())
    assert len(op.engine.calls) == 1 and log.read_text() == whole
    space, op = operator(tiny_model, tmp_path, Scripted())
    op.load_log()
    assert len(op.replay) == 2
    children = op.mutate_many([space.from_string(ARCH)] * 2, [Result((-60.0,))] * 2, set())
    assert [space.to_dict(c) for c in children] == [json.loads(x)["child"] for x in whole.splitlines()]
    assert op.engine.calls == [] and op.n_events == 2 and op.cursor == 2 and log.read_text() == whole


@pytest.mark.parametrize("line", ['{"proposal": "0"}', '{"round": 0}', '{"proposal": -1}'])
def test_an_outcome_without_its_proposal_number_is_one_error_on_resume(tiny_model, tmp_path, line):
    """And the log is left as it was: a batch cut short was dropped from it before the outcomes were read."""
    space, log = logged_run(tiny_model, tmp_path)
    log.write_text(log.read_text().splitlines(keepends=True)[0] + '{"eve')     # a batch of 2 cut short, torn
    before = log.read_bytes()
    (tmp_path / "llm" / "outcomes.jsonl").write_text('{"proposal": 0}\n' + line + "\n")
    space, op = operator(tiny_model, tmp_path)
    with pytest.raises(InputError, match=r"line 2 of .*outcomes\.jsonl has no proposal number"):
        op.load_log()
    assert log.read_bytes() == before


@pytest.mark.parametrize("damage, word", [("remove", "missing"), ("link", "a link")])
def test_a_missing_or_linked_adapter_of_a_replayed_update_is_one_error(tiny_model, tmp_path, damage, word):
    """A resumed run replays a logged LoRA update, then needs the model: the update's adapter folder must be
    there (it is removed, or a link planted in its place, only by hand)."""
    space, log = logged_run(tiny_model, tmp_path, n=1)
    log.write_text(log.read_text() + json.dumps({"event": 1, "kind": "lora", "round": 1}) + "\n")
    if damage == "link":
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "llm" / "adapter-1").symlink_to(tmp_path / "elsewhere")
    space, op = operator(tiny_model, tmp_path, lora_every=1)
    op.load_log()
    parent = space.from_string(ARCH)
    (child,) = op.mutate_many([parent], [Result((-60.0,))], set())
    op.observe(parent, child, Result((-60.0,)), Result((-65.0,)), "llm")    # the logged update is replayed
    assert op.round == 1 and op.n_events == 2 and op.engine is None
    with pytest.raises(InputError, match=f"cannot resume: .*adapter-1 is {word}") as info:
        op.mutate_many([parent], [Result((-60.0,))], set())
    assert info.value.hint == "the run folder is damaged"


class Failing:
    def propose_many(self, *args, **kwargs):
        self.calls = getattr(self, "calls", 0) + 1
        raise LLMError("the model failed to generate: boom")


def test_a_generation_that_fails_is_one_error_or_one_logged_fallback(tiny_model, tmp_path):
    space, op = operator(tiny_model, tmp_path / "a", Failing())
    parent = space.from_string(ARCH)
    with pytest.raises(LLMError, match="boom"):
        op.mutate_many([parent] * 2, [Result((-60.0,))] * 2, set())
    assert not (tmp_path / "a" / "llm" / "proposals.jsonl").exists()
    space, op = operator(tiny_model, tmp_path / "b", Failing(), fallback=True)
    for _ in range(2):
        assert op.mutate_many([parent] * 2, [Result((-60.0,))] * 2, set()) == [None, None]
    (rec,) = read_all(tmp_path / "b")["proposals"]
    assert rec == {"event": 0, "kind": "fallback", "reason": "the model failed to generate: boom"}
    assert op.engine.calls == 1 and op.disabled and op.n_events == 1


def test_lora_updates_every_lora_every_successes_and_keep_the_last_two_adapters(tiny_model, tmp_path):
    space, op = operator(tiny_model, tmp_path, think_tokens=2, lora_every=2, lora_steps=1, lora_lr=0.05)
    parents = [space.from_genes(np.full(6, g)) for g in (1, 2, 3)] * 2
    children = op.mutate_many(parents, [Result((-60.0,))] * 6, set())
    engine = op.engine
    for parent, child in zip(parents, children):
        op.observe(parent, child, Result((-60.0,)), Result((-61.0,)), "llm")
    loras = [r for r in read_all(tmp_path)["proposals"] if r["kind"] == "lora"]
    assert [(r["event"], r["round"], r["adapter"], r["buffer"]) for r in loras] == [
        (6, 1, "adapter-1", 2), (7, 2, "adapter-2", 4), (8, 3, "adapter-3", 6)]
    assert sorted(p.name for p in (tmp_path / "llm").glob("adapter-*")) == ["adapter-2", "adapter-3"]
    assert op.round == 3 and op.n_events == 9 and op.successes == 0
    assert op.engine is engine                       # the loaded model carries the updates: not loaded again
    op.mutate_many(parents[:1], [Result((-60.0,))], set())
    assert read_all(tmp_path)["proposals"][-1]["round"] == 3 and op.engine is engine


def test_after_a_lora_update_the_next_proposal_is_the_one_a_resumed_run_makes(tiny_model, tmp_path):
    """The engine forgets the prompt prefix it cached with the weights before an update: the run goes on
    exactly as a run resumed right after the update (its model loaded afresh with the saved adapter)."""
    opts = {"think_tokens": 64, "temperature": 0.1, "lora_every": 1, "lora_steps": 1, "lora_lr": 1.0}
    parent = get_space("nb201").from_string(ARCH)

    def one_success(op):
        (child,) = op.mutate_many([parent], [Result((-60.0,))], set())
        op.observe(parent, child, Result((-60.0,)), Result((-61.0,)), "llm")     # one success: one update

    space, op = operator(tiny_model, tmp_path / "a", **opts)
    one_success(op)
    assert op.round == 1 and op.engine_round == 1
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    op.mutate_many([parent], [Result((-60.0,))], set())
    space, again = operator(tiny_model, tmp_path / "b", **opts)
    again.load_log()
    one_success(again)                                   # replayed: proposal 0 and the update
    assert again.engine is None and again.round == 1
    again.mutate_many([parent], [Result((-60.0,))], set())
    a, b = (read_all(tmp_path / d)["proposals"] for d in "ab")
    assert [r["kind"] for r in a] == ["proposal", "lora", "proposal"]
    keys = ("event", "round", "seed", "prompt", "think", "completion", "child")
    assert [{k: r[k] for k in keys} for r in (a[2], b[2])] == [{k: a[2][k] for k in keys}] * 2


def test_an_update_whose_model_no_longer_loads_is_one_error_or_one_logged_fallback_replayed_on_resume(tmp_path):
    """A resumed run replays its proposals without the model and needs it first for a LoRA update: a model
    that no longer loads is one error (nothing logged), or with fallback allowed one logged fallback in the
    update's place, which a later resume replays without loading the model."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x07" * 200)            # the right magic, then garbage
    run = tmp_path / "run"
    space, log = logged_run(broken, run, n=1)
    parent = space.from_string(ARCH)

    def resumed(**opts):
        space, op = operator(broken, run, lora_every=1, **opts)
        op.load_log()
        (child,) = op.mutate_many([parent], [Result((-60.0,))], set())      # replayed: no model
        return op, child

    op, child = resumed()
    before = log.read_bytes()
    with pytest.raises(LLMError, match="cannot load model"):
        op.observe(parent, child, Result((-60.0,)), Result((-65.0,)), "llm")
    assert log.read_bytes() == before and op.round == 0 and op.n_events == 1 and not op.disabled
    op, child = resumed(fallback=True)
    op.observe(parent, child, Result((-60.0,)), Result((-65.0,)), "llm")
    recs = read_all(run)["proposals"]
    assert [(r["event"], r["kind"]) for r in recs] == [(0, "proposal"), (1, "fallback")]
    assert "cannot load model" in recs[1]["reason"] and not list((run / "llm").glob("adapter-*"))
    assert op.disabled and op.round == 0 and op.n_events == 2 and op.engine is None
    assert op.mutate_many([parent], [Result((-60.0,))], set()) == [None]
    after = log.read_bytes()
    op, child = resumed(fallback=True)
    op.observe(parent, child, Result((-60.0,)), Result((-65.0,)), "llm")   # the fallback is replayed
    assert op.disabled and op.round == 0 and op.n_events == 2 and op.cursor == 2 and op.engine is None
    assert op.mutate_many([parent], [Result((-60.0,))], set()) == [None] and log.read_bytes() == after


def test_history_0_tells_no_mutation_and_history_n_the_last_n_of_the_last_4n_outcomes(tiny_model, tmp_path):
    """``history`` is how many helped and how many not-helped mutations the prompt tells, of the last
    4 x ``history`` outcomes (history=0 told the last outcome: ``[-0:]`` is the whole list)."""
    parent = get_space("nb201").from_string(ARCH)
    worse = [get_space("nb201").from_genes(np.full(6, g)) for g in range(5)]
    for n in (0, 1):
        space, op = operator(tiny_model, tmp_path / str(n), Scripted([VALID], [VALID], [VALID]), history=n)
        (child,) = op.mutate_many([parent], [Result((-60.0,))], set())
        op.observe(parent, child, Result((-60.0,)), Result((-61.0,)), "llm")
        op.observe(parent, worse[0], Result((-60.0,)), Result((-59.0,)), "usual")
        op.mutate_many([parent], [Result((-60.0,))], set())
        for w in worse[1:4]:                             # the success is 5 outcomes back: not told
            op.observe(parent, w, Result((-60.0,)), Result((-59.0,)), "usual")
        op.mutate_many([parent], [Result((-60.0,))], set())
        told = [("Mutations that helped" in c["shared"], "Mutations that did not" in c["shared"])
                for c in op.engine.calls]
        assert told == ([(False, False)] * 3 if n == 0 else [(False, False), (True, True), (False, True)])
        assert all(c["shared"] in c["prompts"][0] for c in op.engine.calls)


def test_logged_seconds_memory_and_losses_are_rounded_in_their_units(tiny_model, tmp_path):
    """A proposal's seconds to 4 places, the peak memory in MB (getrusage's KiB / 1024) to 1 place, a LoRA
    update's losses to 5 places."""
    def peak():
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)

    space, op = operator(tiny_model, tmp_path / "a", Scripted([VALID], seconds=1 / 3))
    before = peak()
    op.mutate_many([space.from_string(ARCH)], [Result((-60.0,))], set())
    (rec,) = read_all(tmp_path / "a")["proposals"]
    assert rec["seconds"] == 0.3333 and before <= rec["peak_rss_mb"] <= peak()
    assert rec["peak_rss_mb"] == round(rec["peak_rss_mb"], 1)
    space, op = operator(tiny_model, tmp_path / "b", think_tokens=2, lora_every=1, lora_steps=2, lora_lr=0.05)
    parent = space.from_string(ARCH)
    (child,) = op.mutate_many([parent], [Result((-60.0,))], set())
    before = peak()
    op.observe(parent, child, Result((-60.0,)), Result((-61.0,)), "llm")
    prop, lora = read_all(tmp_path / "b")["proposals"]
    assert lora["kind"] == "lora" and before <= lora["peak_rss_mb"] <= peak() and lora["steps"] == 2
    for r, k, places in [(prop, "seconds", 4), (prop, "peak_rss_mb", 1), (lora, "loss_first", 5),
                         (lora, "loss_last", 5), (lora, "seconds", 5), (lora, "peak_rss_mb", 1)]:
        assert r[k] == round(r[k], places) and r[k] > 0, (k, r[k])


def test_a_malformed_event_is_named_by_its_line_on_resume(tiny_model, tmp_path):
    space, log = logged_run(tiny_model, tmp_path, n=3)
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    log.write_text("".join(json.dumps(r) + "\n" for r in [recs[0], {**recs[1], "kind": "proposal?"}, recs[2]]))
    before = log.read_bytes()
    space, op = operator(tiny_model, tmp_path)
    with pytest.raises(InputError, match=r"^line 2 of .*proposals\.jsonl: malformed 'kind'"):
        op.load_log()
    assert log.read_bytes() == before
