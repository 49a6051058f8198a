"""Online LoRA without a search (``edgenas.llm.lora``): the adapter attached, trained, saved and loaded back;
damaged adapters and a diverging update are one error (found by the mutation audit, 6 December)."""

import json

import pytest

from edgenas.errors import LLMError, LLMInputError

PROMPT, THINK, COMPLETION = "Propose a mutation.", " the gene is faster", 'edge_1_0", "value": "none"}'


def _base(tiny_model):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM.from_pretrained(tiny_model)


def _engine(tiny_model, adapter=None):
    import torch
    from transformers import AutoTokenizer

    from edgenas.llm import lora
    from edgenas.llm.engine import Engine

    torch.manual_seed(0)
    return Engine(lora.attach(_base(tiny_model), adapter), AutoTokenizer.from_pretrained(tiny_model))


def test_a_new_adapter_is_rank_8_alpha_16_on_q_and_v_and_only_it_trains(tiny_model):
    from edgenas.llm import lora

    model = lora.attach(_base(tiny_model))
    cfg = model.peft_config["default"]
    assert (cfg.r, cfg.lora_alpha, cfg.lora_dropout, set(cfg.target_modules)) == (8, 16, 0.0, {"q_proj", "v_proj"})
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and (".q_proj." in n or ".v_proj." in n) for n in trainable)


def test_a_model_without_q_and_v_projections_is_refused_by_name():
    from transformers import GPT2Config, GPT2LMHeadModel

    from edgenas.llm import lora

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2))
    with pytest.raises(LLMInputError, match="the model has no q_proj, v_proj modules for LoRA"):
        lora.attach(gpt2)


def test_save_then_attach_gives_the_same_weights_and_the_base_record(tiny_model, tmp_path):
    from edgenas.llm import lora
    from edgenas.llm.model import base_signature

    eng = _engine(tiny_model)
    folder = tmp_path / "adapter-1"
    (tmp_path / "adapter-1.tmp").write_text("a file left by a crash")
    folder.write_text("a file where the adapter goes")
    assert lora.save(eng.model, folder) == folder
    assert folder.is_dir() and not (tmp_path / "adapter-1.tmp").exists()
    assert json.loads((folder / "edgenas_base.json").read_text()) == base_signature(eng.model.get_base_model().config)
    lora.save(eng.model, folder)   # over the adapter saved before
    again = lora.attach(_base(tiny_model), folder)
    want = {k: v for k, v in eng.model.state_dict().items() if "lora_" in k}
    have = again.state_dict()
    assert want and all(have[k].equal(v) for k, v in want.items())
    assert any(p.requires_grad for p in again.parameters())   # a loaded adapter goes on learning


@pytest.mark.parametrize("damage", [
    lambda d: (d / "adapter_config.json").write_text("not json"),
    lambda d: (d / "adapter_model.safetensors").write_bytes(b"\x07" * 100),
])
def test_a_damaged_adapter_is_one_input_error_and_stays_as_it_was(tiny_model, tmp_path, damage):
    from edgenas.llm import lora

    folder = lora.save(lora.attach(_base(tiny_model)), tmp_path / "ad")
    damage(folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(LLMInputError, match="cannot load adapter .* onto this model: a file of it is damaged") as info:
        lora.attach(_base(tiny_model), folder)
    assert "another base model" not in info.value.hint
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_an_adapter_that_does_not_fit_or_holds_a_pickle_is_named_for_what_it_is(tiny_model, tmp_path):
    """Every load failure said "the adapter was probably trained for another base model": a rank that is not
    its weights' (peft's bare "Error(s) in loading state_dict"), a pickle adapter_model.bin (torch's advice to load
    it with weights_only=False), no weights at all (peft's "Repo id must be in the form ..."); a pickle was loaded
    when it held plain tensors."""
    import torch

    from edgenas.llm import lora
    from edgenas.llm.model import check_adapter, resolve_model

    folder = lora.save(lora.attach(_base(tiny_model)), tmp_path / "ad")
    cfg = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**cfg, "r": 4}))
    with pytest.raises(LLMInputError) as info:
        lora.attach(_base(tiny_model), folder)
    assert "its weights' shapes do not fit (self_attn.q_proj.lora_A.default is [8, 32] in its weights file and " \
           "[4, 32] in this model" in info.value.message
    assert "adapter_config.json (the rank r)" in info.value.hint
    source = resolve_model(str(tiny_model))
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    assert check_adapter(str(folder), source) == folder.resolve()
    from safetensors.torch import load_file

    torch.save(load_file(str(folder / "adapter_model.safetensors")), folder / "adapter_model.bin")
    (folder / "adapter_model.safetensors").unlink()
    with pytest.raises(LLMInputError, match=r"holds its weights as a pickle \(adapter_model.bin\), which edgenas "
                                            r"does not load: a pickle can run code"):
        check_adapter(str(folder), source)
    (folder / "adapter_model.bin").unlink()
    with pytest.raises(LLMInputError, match=r"holds no weights \(no adapter_model.safetensors\)"):
        check_adapter(str(folder), source)


def test_an_update_is_a_function_of_the_seed_and_learns_on_the_answer(tiny_model):
    import torch

    from edgenas.llm import lora

    examples = [(PROMPT, THINK, COMPLETION), ("Another prompt, longer than the first one.", "", COMPLETION),
                ("A third prompt", " skip is cheaper", 'edge_2_1", "value": "skip_connect"}'),
                ("Latency over budget: 2 ms", " pooling", 'edge_3_0", "value": "avg_pool_3x3"}')]
    runs = []
    for seed in (3, 3, 4):
        eng = _engine(tiny_model)
        stats = lora.train(eng, examples, steps=3, lr=1e-2, batch=1, seed=seed)
        assert not eng.model.training and stats["steps"] == 3 and stats["seconds"] > 0
        runs.append((stats, {k: v.clone() for k, v in eng.model.named_parameters() if "lora_B" in k}))
    (a, wa), (b, wb), (c, wc) = runs
    assert (a["loss_first"], a["loss_last"]) == (b["loss_first"], b["loss_last"])
    assert all(wa[k].equal(wb[k]) for k in wa) and any(not wa[k].equal(wc[k]) for k in wa)
    assert any(v.abs().sum() > 0 for v in wa.values())
    # the first loss is the base model's loss on the answer (reasoning, mutation head, completion, end token) alone
    eng = _engine(tiny_model)
    stats = lora.train(eng, examples[:1], steps=1, lr=1e-2, batch=4, seed=0)
    a_ids = eng.encode(eng.head(PROMPT))[0]
    b_ids = torch.cat([eng.encode(eng.middle(THINK) + COMPLETION)[0], torch.tensor([eng.tok.eos_token_id])])
    with torch.no_grad():
        logits = _base(tiny_model)(input_ids=torch.cat([a_ids, b_ids])[None]).logits[0]
    want = torch.nn.functional.cross_entropy(logits[len(a_ids) - 1:-1], b_ids)
    assert stats["loss_first"] == pytest.approx(float(want), rel=1e-5)


def test_two_steps_on_one_example_are_two_adamw_steps_from_fresh_gradients(tiny_model):
    """Without ``zero_grad`` the second step would follow the sum of both steps' gradients."""
    import torch

    from edgenas.llm import lora

    eng = _engine(tiny_model)
    ref = _engine(tiny_model)
    params = [p for p in ref.model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    a_ids = ref.encode(ref.head(PROMPT))[0]
    ids = torch.cat([a_ids, ref.encode(ref.middle(THINK) + COMPLETION)[0], torch.tensor([ref.tok.eos_token_id])])
    labels = ids.clone()
    labels[: len(a_ids)] = -100
    ref.model.train()
    for _ in range(2):
        opt.zero_grad()
        ref.model(input_ids=ids[None], labels=labels[None]).loss.backward()
        opt.step()
    lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=2, lr=1e-2, batch=1, seed=0)
    have, want = dict(eng.model.named_parameters()), dict(ref.model.named_parameters())
    assert all(torch.allclose(have[n], want[n], atol=1e-6) for n, p in want.items() if p.requires_grad)


def test_a_diverging_update_is_one_error_and_leaves_the_model_in_eval_mode(tiny_model):
    import torch

    from edgenas.llm import lora

    eng = _engine(tiny_model)
    with torch.no_grad():
        next(p for n, p in eng.model.named_parameters() if "lora_A" in n)[0, 0] = float("inf")
    with pytest.raises(LLMError, match="a LoRA update diverged"):
        lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=2, lr=1e-3, batch=1, seed=0)
    assert not eng.model.training


def test_attach_refuses_an_adapter_folder_holding_a_fifo(tiny_model, tmp_path):
    """On resume ``attach`` loads ``adapter-K`` straight from the run folder (no ``check_adapter``): a FIFO there
    would hang peft's loader, so attach checks the folder itself."""
    import os

    from edgenas.llm import lora

    folder = lora.save(lora.attach(_base(tiny_model)), tmp_path / "adapter-1")
    os.mkfifo(folder / "notes")
    with pytest.raises(LLMInputError, match="'notes' in adapter .* is not a regular file"):
        lora.attach(_base(tiny_model), folder)


OOM_SCRIPT = """
import sys
import torch
torch.set_num_threads(1)
from transformers import AutoTokenizer, LlamaForCausalLM
from edgenas.errors import LLMError
from edgenas.llm import lora
from edgenas.llm.engine import Engine

torch.manual_seed(0)
eng = Engine(lora.attach(LlamaForCausalLM.from_pretrained(sys.argv[1])), AutoTokenizer.from_pretrained(sys.argv[1]))
small = ("Propose a mutation.", " the gene is faster", 'edge_1_0", "value": "none"}')
huge = ("You improve a neural network architecture. " * 20000,) + small[1:]   # about 100,000 tokens
seed = next(s for s in range(100) if torch.randperm(2, generator=torch.Generator().manual_seed(s)).tolist() == [0, 1])
lora.train(eng, [small], steps=1, lr=1e-2, batch=1, seed=0)   # lazy imports before the cap
before = {n: p.detach().clone() for n, p in eng.model.named_parameters() if p.requires_grad}
cap(200)
try:   # the first step (the small example) fits, the second (the huge one: GBs of attention) does not
    lora.train(eng, [small, huge], steps=2, lr=1e-2, batch=1, seed=seed)
except LLMError as exc:
    print(f"{exc} | {exc.hint}")
uncap()
after = dict(eng.model.named_parameters())
print("unchanged" if all(torch.equal(after[n], p) for n, p in before.items()) else "changed",
      "training" if eng.model.training else "eval", sum(p.grad is not None for p in after.values()))
"""


@pytest.mark.slow
def test_out_of_memory_during_an_update_is_one_error_and_leaves_the_adapter_as_it_was(tiny_model, tmp_path):
    """Out of memory for real (a subprocess whose address space is capped) on an update's second step, after
    its first step changed the adapter: one ``LLMError`` that says so, and the adapter as it was before the
    update (no half-made update, no gradients held), the model in evaluation mode."""
    from tests.llm.capped import run_capped

    res = run_capped(OOM_SCRIPT, tmp_path, tiny_model)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("out of memory during a LoRA update"), res.stdout
    assert lines[1] == "unchanged eval 0", res.stdout


def test_a_diverged_update_leaves_the_adapter_as_it_was(tiny_model):
    import torch

    from edgenas.llm import lora

    eng = _engine(tiny_model)
    with torch.no_grad():
        next(p for n, p in eng.model.named_parameters() if "lora_A" in n)[0, 0] = float("inf")
    before = {n: p.detach().clone() for n, p in eng.model.named_parameters() if p.requires_grad}
    with pytest.raises(LLMError, match="a LoRA update diverged"):   # its steps made the other weights NaN
        lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=2, lr=1e-3, batch=1, seed=0)
    after = dict(eng.model.named_parameters())
    assert all(torch.equal(after[n], p) and after[n].grad is None for n, p in before.items())


def test_an_update_runs_in_training_mode_on_the_engines_threads_and_is_seeded_by_its_seed_alone(tiny_model):
    """With the model's own dropout on, an update depends on its seed and not on the global generator's state
    (the replay of a run is exact); its forward passes run in training mode, on the engine's thread count."""
    import torch
    from transformers import AutoTokenizer, LlamaForCausalLM

    from edgenas.llm import lora
    from edgenas.llm.engine import Engine

    before = torch.get_num_threads()
    runs = []
    try:
        for disturb in (1, 2):
            torch.manual_seed(0)
            base = LlamaForCausalLM.from_pretrained(tiny_model, attention_dropout=0.5)
            eng = Engine(lora.attach(base), AutoTokenizer.from_pretrained(tiny_model), threads=1)
            modes = []
            hook = base.model.register_forward_pre_hook(lambda mod, args: modes.append(mod.training))
            torch.manual_seed(disturb)
            torch.set_num_threads(2)
            stats = lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=2, lr=1e-2, batch=1, seed=5)
            hook.remove()
            assert modes == [True, True] and not eng.model.training and torch.get_num_threads() == 1
            runs.append((stats["loss_first"], stats["loss_last"],
                         {k: v.clone() for k, v in eng.model.named_parameters() if "lora_B" in k}))
    finally:
        torch.set_num_threads(before)
    (a1, a2, wa), (b1, b2, wb) = runs
    assert (a1, a2) == (b1, b2) and all(wa[k].equal(wb[k]) for k in wa)


def test_an_update_reports_its_own_duration(tiny_model):
    import time

    from edgenas.llm import lora

    eng = _engine(tiny_model)
    t0 = time.perf_counter()
    stats = lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=1, lr=1e-2, batch=1, seed=0)
    assert 0 < stats["seconds"] <= time.perf_counter() - t0


def test_a_batch_of_answers_of_different_lengths_is_padded_out_of_the_loss(tiny_model):
    """Two examples of different lengths in one step: the loss is the mean over both answers' tokens, as if
    each were read alone (the padding of the shorter one is neither attended to nor scored)."""
    import torch

    from edgenas.llm import lora

    examples = [(PROMPT, THINK, COMPLETION), ("A much longer prompt than the first one, with more words in it.",
                                              " pooling is cheaper here", 'edge_3_0", "value": "avg_pool_3x3"}')]
    eng = _engine(tiny_model)
    base = _base(tiny_model)
    logits, targets = [], []
    for prompt, think, completion in examples:
        a_ids = eng.encode(eng.head(prompt))[0]
        b_ids = torch.cat([eng.encode(eng.middle(think) + completion)[0], torch.tensor([eng.tok.eos_token_id])])
        with torch.no_grad():
            logits.append(base(input_ids=torch.cat([a_ids, b_ids])[None]).logits[0][len(a_ids) - 1:-1])
        targets.append(b_ids)
    want = torch.nn.functional.cross_entropy(torch.cat(logits), torch.cat(targets))
    stats = lora.train(eng, examples, steps=1, lr=1e-2, batch=2, seed=0)
    assert stats["loss_first"] == pytest.approx(float(want), rel=1e-4)


def test_a_model_whose_q_and_v_modules_take_no_adapter_is_one_llm_error():
    """Modules named q_proj and v_proj that peft cannot wrap (not linear layers): one ``LLMError`` naming the
    cause, with a hint to turn LoRA off."""
    import torch

    from edgenas.llm import lora

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.v_proj = torch.nn.ReLU(), torch.nn.ReLU()

    with pytest.raises(LLMError, match="cannot attach a LoRA adapter to this model: ") as err:
        lora.attach(Odd())
    assert not isinstance(err.value, LLMInputError) and "lora_every=0" in err.value.hint


def test_an_update_that_fails_otherwise_is_not_called_out_of_memory_and_is_undone(tiny_model):
    """A step that fails for another reason (here the model's second forward pass) leaves the adapter as it was
    before the update, and its error is not reported as running out of memory: it is one ``LLMError`` naming
    the failure, as generation's are (the operator takes those; a ``RuntimeError`` ended the search)."""
    import torch

    from edgenas.llm import lora

    eng = _engine(tiny_model)
    calls = []

    def fail_second(mod, args):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("the second step failed")

    before = {n: p.detach().clone() for n, p in eng.model.named_parameters() if p.requires_grad}
    hook = eng.model.get_base_model().model.register_forward_pre_hook(fail_second)
    try:
        with pytest.raises(LLMError, match="a LoRA update failed: .*the second step failed") as err:
            lora.train(eng, [(PROMPT, THINK, COMPLETION)], steps=2, lr=1e-2, batch=1, seed=0)
    finally:
        hook.remove()
    assert "out of memory" not in str(err.value) and not eng.model.training
    after = dict(eng.model.named_parameters())
    assert all(torch.equal(after[n], p) and after[n].grad is None for n, p in before.items())
