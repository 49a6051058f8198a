"""Out of memory for real while the model generates (``edgenas.llm.engine``): a subprocess whose address
space is capped just above what it uses asks for a batch too large for it: one ``LLMError`` that says so."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import resource, sys
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
    vm = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + 100 * 2**20, resource.RLIM_INFINITY))
    try:
        eng.propose_many([prompt] * 3000, [choices] * 3000, 0)   # GBs of attention
    except LLMError as exc:
        print(f"{exc} | {exc.hint}")
""")


@pytest.mark.slow
def test_out_of_memory_while_generating_is_one_llm_error(tiny_model, tmp_path):
    script = tmp_path / "capped.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(script), str(tiny_model)], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("out of memory while the model generated a proposal"), res.stdout + res.stderr
    assert "--llm-fallback" in res.stdout
