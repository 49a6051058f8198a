"""A real, tiny language model for the LLM tests: a 2-layer Llama built from a config, with a byte-level
BPE tokenizer trained here on text like the prompts (no download), saved as a Hugging Face folder.
Also a synthetic NAS-Bench-201-format table (fixed formulas) so search tests need no reference data."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the LLM tests need the llm extra (transformers, peft)")
pytest.importorskip("peft", reason="the LLM tests need the llm extra (transformers, peft)")


def _corpus():
    from edgenas.llm.codec import gene_specs
    from edgenas.spaces import get_space, space_names

    words = ["You improve a neural network architecture of the search space raise while keeping every",
             "latency budget Genes and their choices Architecture Objectives Latency on ms over to spare",
             "costliest genes Mutations that helped did not infeasible Think briefly then give one mutation",
             "as JSON NAME VALUE that changes the architecture Reasoning Mutation the gene value is faster",
             '{"gene": "edge_1_0", "value": "none"} {"gene": "ks_0", "value": 3} 0123456789 .,:;+-()[]{}"_']
    for name in space_names():
        for s in gene_specs(get_space(name)):
            words.append(f'{{"gene": "{s.name}", "value": ' + ", ".join(f'"{v}"' if isinstance(v, str) else str(v)
                                                                      for v in s.values) + "}")
    return words * 20


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<eos>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      eos_token_id=fast.eos_token_id, pad_token_id=fast.pad_token_id, bos_token_id=None)
    model = LlamaForCausalLM(cfg)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def table(tmp_path_factory) -> Path:
    """All 15,625 nb201 cells with accuracy and latency from fixed random formulas."""
    from edgenas.spaces import get_space

    space = get_space("nb201")
    rng = np.random.default_rng(0)
    w_acc, w_lat = rng.uniform(0, 3, size=(6, 5)), rng.uniform(0, 2, size=(6, 5))
    path = tmp_path_factory.mktemp("table") / "t.csv"
    lines = ["index,arch,cifar10_test,cifar100_test,imagenet16_test,dev_ms"]
    for i, a in enumerate(space.all_archs()):
        g = space.to_genes(a)
        acc = 70 + w_acc[np.arange(6), g].sum()
        lat = 1 + w_lat[np.arange(6), g].sum()
        lines.append(f"{i},{a.string},{acc:.4f},{acc - 20:.4f},{acc - 40:.4f},{lat:.5f}")
    path.write_text("\n".join(lines) + "\n")
    return path
