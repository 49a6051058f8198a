"""Out of memory for real while the model generates (``edgenas.llm.engine``): a subprocess whose address
space is capped just above what it uses asks for a batch too large for it: one ``LLMError`` that says so."""

import pytest

from tests.llm.capped import run_capped

SCRIPT = """
    import sys
    import torch
    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from edgenas.errors import LLMError
    from edgenas.llm.engine import Engine

    model, tok = AutoModelForCausalLM.from_pretrained(sys.argv[1]).eval(), AutoTokenizer.from_pretrained(sys.argv[1])
    eng = Engine(model, tok, think_tokens=2)
    prompt = "You improve a neural network architecture. " * 40
    choices = ['edge_1_0", "value": "none"}', 'edge_2_0", "value": "none"}']
    eng.propose(prompt, choices, 0)   # lazy imports before the cap
    cap(100)
    try:
        eng.propose_many([prompt] * 3000, [choices] * 3000, 0)   # GBs of attention
    except LLMError as exc:
        print(f"{exc} | {exc.hint}")
"""


@pytest.mark.slow
def test_out_of_memory_while_generating_is_one_llm_error(tiny_model, tmp_path):
    res = run_capped(SCRIPT, tmp_path, tiny_model)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("out of memory while the model generated a proposal"), res.stdout + res.stderr
    assert "--llm-fallback" in res.stdout
