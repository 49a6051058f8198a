"""Online LoRA: peft adapters (rank 8, alpha 16, on ``q_proj``/``v_proj``) trained on successful mutations.

``attach`` wraps the base model (a fresh adapter, or one from a past run: ``--llm-adapter``);
``train`` takes a few AdamW steps over the experience buffer, the loss on the answer only (reasoning and
JSON, not the prompt); ``save`` writes the adapter atomically (a temporary folder renamed) with
``edgenas_base.json`` naming the base model it belongs to. The optimiser is new at every update, so
an update is a function of the buffer, the adapter before it and the seed: replay is exact.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

from edgenas.errors import LLMError, LLMInputError
from edgenas.llm.model import ADAPTER_META, _short, base_signature, check_regular_files, is_oom, quiet

RANK, ALPHA, TARGETS = 8, 16, ("q_proj", "v_proj")


def attach(model: Any, adapter: str | os.PathLike | None = None) -> Any:
    """The model with a trainable LoRA adapter (new, or loaded from ``adapter``)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    missing = [t for t in TARGETS if t not in names]
    if missing:
        raise LLMInputError(f"the model has no {', '.join(missing)} modules for LoRA",
                       hint="use a Llama-style model, or turn LoRA off (--llm-opt lora_every=0)")
    if adapter is not None:
        check_regular_files(Path(adapter), f"adapter {str(adapter)!r}")  # a FIFO hung peft's loader
    try:
        with quiet():
            if adapter is not None:
                return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
            cfg = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TARGETS), lora_dropout=0.0,
                             bias="none", task_type="CAUSAL_LM")
            return get_peft_model(model, cfg)
    except Exception as exc:  # noqa: BLE001 - a mismatched or damaged adapter
        if adapter is None:
            raise LLMError(f"cannot attach a LoRA adapter to this model: {_short(exc)}",
                           hint="turn LoRA off (--llm-opt lora_every=0)") from None
        why, hint = _load_failure(exc)
        raise LLMInputError(f"cannot load adapter {str(adapter)!r} onto this model: {why}", hint=hint) from None


_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from "
                            r"checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def _load_failure(exc: BaseException) -> tuple[str, str]:
    """Why peft could not load an adapter, and what to do: a rank or shape that does not fit the model, a damaged
    file, or else peft's own first line (not always a base model's mismatch, as the one hint had said)."""
    text = str(exc)
    if "size mismatch" in text:  # load_state_dict's RuntimeError, one line per tensor
        m = _SIZE_MISMATCH.search(text)
        shown = (f"{'.'.join(m[1].split('.')[-5:-1])} is {m[2]} in its weights file and {m[3]} in this model "
                 "with its adapter_config.json" if m else "size mismatch")
        return (f"its weights' shapes do not fit ({shown})",
                "it was trained for another base model, or its adapter_config.json (the rank r) is not its weights': "
                "use an adapter of this --llm-model")
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)) or "safetensor" in text.lower() \
            or "header" in text.lower():
        return (f"a file of it is damaged ({_short(exc)})", "use another adapter, or the run's own adapter-K again")
    return _short(exc), "check that it is a LoRA adapter of this --llm-model (peft's save_pretrained)"


def train(engine: Any, examples: Sequence[tuple[str, str, str]], *, steps: int, lr: float, batch: int,
          seed: int) -> dict[str, float]:
    """``steps`` AdamW steps on (prompt, think, completion) examples; returns losses and seconds. An update
    that fails (out of memory, diverged) is one ``LLMError`` and leaves the adapter as it was before it."""
    import torch

    engine._setup(seed)
    model, tok = engine.model, engine.tok
    rows = []
    for prompt, think, completion in examples:
        a = engine.encode(engine.head(prompt))[0]
        b = engine.encode(engine.middle(think) + completion)[0]
        b = torch.cat([b, torch.tensor([tok.eos_token_id], device=b.device)])
        ids = torch.cat([a, b])
        labels = ids.clone()
        labels[: len(a)] = -100
        rows.append((ids, labels))
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]   # a failed update (out of memory, diverged) is undone
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    t0 = time.perf_counter()
    try:
        with quiet():  # peft and transformers warn about their own deprecations on every update
            model.train()
            for _ in range(steps):
                pick = torch.randperm(len(rows), generator=gen)[:batch].tolist()
                width = max(len(rows[i][0]) for i in pick)
                ids = torch.full((len(pick), width), tok.pad_token_id, dtype=torch.long, device=engine.device)
                labels = torch.full_like(ids, -100)
                mask = torch.zeros_like(ids)
                for r, i in enumerate(pick):
                    n = len(rows[i][0])
                    ids[r, :n], labels[r, :n], mask[r, :n] = rows[i][0], rows[i][1], 1
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            if not (all(math.isfinite(v) for v in losses) and all(bool(torch.isfinite(p).all()) for p in params)):
                raise LLMError("a LoRA update diverged (its loss or weights are not finite)",
                               hint="lower --llm-opt lora_lr, or turn LoRA off (lora_every=0)")
    except Exception as exc:  # noqa: BLE001 - a failed update is undone: the adapter stays as it was
        _restore(params, before)
        if isinstance(exc, LLMError):
            raise
        if is_oom(exc):
            raise LLMError("out of memory during a LoRA update",
                           hint="lower --llm-opt lora_batch, or turn LoRA off (lora_every=0)") from None
        # as generation's failures: the operator takes an LLMError (stop, or --llm-fallback), not a traceback
        raise LLMError(f"a LoRA update failed: {_short(exc)}", hint="turn LoRA off (lora_every=0)") from None
    finally:
        model.eval()
    return {"loss_first": losses[0], "loss_last": losses[-1], "seconds": time.perf_counter() - t0,
            "steps": steps}


def _restore(params: Sequence[Any], before: Sequence[Any]) -> None:
    """Put the weights back and drop their gradients (what a step half made, and the memory it held)."""
    import torch

    with torch.no_grad():
        for p, b in zip(params, before):
            p.copy_(b)
            p.grad = None


def save(model: Any, folder: Path) -> Path:
    """Write the adapter to ``folder`` atomically, with the base model's signature. Whatever stands at
    ``folder`` or its temporary name is removed first, a link as a link (never what it points at):
    ``shutil.rmtree`` refuses a link, and ``save_pretrained`` then wrote through one planted there."""
    tmp = folder.with_name(folder.name + ".tmp")
    _remove(tmp)
    with quiet():
        model.save_pretrained(str(tmp))
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    (tmp / ADAPTER_META).write_text(json.dumps(base_signature(base.config), sort_keys=True))
    _remove(folder)
    os.replace(tmp, folder)
    return folder


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
