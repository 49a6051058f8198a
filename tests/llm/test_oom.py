"""Out of memory for real: a subprocess whose address space is capped just above what it uses loads
a 16M-parameter model: one red line naming the problem, exit code 6, no run folder; with
--llm-fallback the search goes on with the usual operators."""

import json

import pytest

from tests.llm.capped import run_capped

SCRIPT = """
    import sys
    import torch
    torch.set_num_threads(1)
    import peft, transformers.models.llama.modeling_llama  # noqa: F401  (imported before the cap)
    from edgenas.cli import main
    import edgenas.search.launch, edgenas.llm.operator, edgenas.llm.engine, edgenas.llm.lora  # noqa: F401
    import edgenas.evaluate.tabular, edgenas.cli.cmd_search, edgenas.evaluate.executor  # noqa: F401
    import edgenas.store, edgenas.search.record, edgenas.search.stale  # noqa: F401,E401  (the experiment database)
    import alembic.command, alembic.config, alembic.script, alembic.operations, alembic.runtime.migration  # noqa: F401,E401
    cap(60, hard=True)  # the 16M-parameter model needs 64 MB (float32)
    main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def big_model(tiny_model, tmp_path_factory):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("big")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=600, hidden_size=512, intermediate_size=2048, num_hidden_layers=4,
                      num_attention_heads=8, num_key_value_heads=8)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_out_of_memory_is_one_line_or_falls_back(big_model, table, tmp_path):
    env = {"EDGENAS_NO_PROGRESS": "1", "EDGENAS_PROJECT": str(tmp_path)}

    def search(out, *extra):
        return run_capped(SCRIPT, tmp_path, "search", "--space", "nb201", "--table", table, "--objective",
                          "cifar100_test", "--strategy", "llm-evolution", "--budget", "10", "--population", "5",
                          "--llm-model", big_model, "--out", tmp_path / out, "--json", *extra, env=env)

    res = search("run")
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert res.returncode == 6, res.stderr
    assert len(lines) == 1 and "out of memory" in lines[0] and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()
    res = search("fb", "--llm-fallback")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["llm"]["fallbacks"] == 1
