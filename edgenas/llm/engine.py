"""The loaded model with its LoRA adapter: one proposal = free reasoning, then a constrained mutation.

``Engine.propose`` wraps the prompt in the model's chat template and, in one ``generate`` call (the
prompt is read once), lets the model write up to ``think_tokens`` tokens of reasoning after
``Reasoning:`` (one line, sampled), then constrains the rest to ``Mutation: {"gene": "`` and one of the
parent's valid mutations (``ChoiceConstraint``). Torch's thread count is set explicitly around every call (the default pool made
small CPU ops hundreds of times slower under load) and seeded from the operator's generator.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Sequence

from edgenas.errors import LLMError, LLMInputError
from edgenas.llm.decoding import ChoiceConstraint, MultiGeneConstraint
from edgenas.llm.prompt import ANSWER_HEAD, MUTATION_HEAD


@dataclass(frozen=True)
class Proposal:
    """What the model wrote for one prompt."""

    think: str
    completion: str          # the mutation JSON after the fixed prefix
    seconds: float
    tokens: int
    dead_ends: int           # constraint steps where no token fitted (0 = decoded cleanly)


class Engine:
    """A causal LM (peft-wrapped when LoRA is on) and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, *, threads: int = 1, temperature: float = 0.8,
                 think_tokens: int = 24, max_genes: int = 1) -> None:
        self.model = model
        self.tok = tokenizer
        self.threads = threads
        self.temperature = temperature
        self.think_tokens = think_tokens
        self.max_genes = max_genes
        self.device = next(model.parameters()).device
        self._cache_key: tuple[int, ...] | None = None
        self._cache: Any = None

    # ----------------------------------------------------------------- text
    def head(self, prompt: str) -> str:
        """The chat-formatted prompt, ending with the answer head (never with a lone space)."""
        if getattr(self.tok, "chat_template", None):
            try:
                text = self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                    add_generation_prompt=True)
            except Exception as exc:  # noqa: BLE001 - a damaged template (tokenizer files) is one clear error
                from edgenas.llm.model import _short

                raise LLMInputError(f"the model's chat template failed: {_short(exc)}",
                                    hint="the tokenizer's chat_template is damaged; use another model") from None
        else:
            text = f"{self._bos()}{prompt}\n"
        return text + ANSWER_HEAD

    def _bos(self) -> str:
        """The beginning-of-text token where the tokenizer starts every text with it (Llama's does), else "":
        without a chat template (which writes it itself) the prompt is read as the tokenizer encodes it."""
        bos = getattr(self.tok, "bos_token_id", None)
        if bos is None or self.tok("", add_special_tokens=True).input_ids[:1] != [bos]:
            return ""
        return self.tok.bos_token

    def middle(self, think: str) -> str:
        """The text between the head and the mutation's choice: the reasoning as generated, then the
        fixed mutation head (so training sees exactly what the model wrote)."""
        return think + MUTATION_HEAD

    def encode(self, text: str) -> Any:
        return self.tok(text, return_tensors="pt", add_special_tokens=False).input_ids.to(self.device)

    # -------------------------------------------------------------- generate
    def _setup(self, seed: int) -> None:
        import torch

        torch.set_num_threads(self.threads)
        torch.manual_seed(seed)

    def propose(self, prompt: str, choices: Sequence[str], seed: int, static: str = "",
                shared: str = "") -> Proposal:
        """One proposal (a batch of one)."""
        return self.propose_many([prompt], [choices], seed, static=static, shared=shared)[0]

    def _ids_upto(self, text: str, heads: Sequence[str], rows: Sequence[list[int]]) -> list[int] | None:
        """The token prefix every row shares up to ``text`` (less its last token, which could merge with
        what follows), or None when the rows do not all start with it."""
        if not text or not all(text in h for h in heads):
            return None
        ids = self.encode(heads[0][: heads[0].index(text) + len(text)])[0].tolist()[:-1]
        if len(ids) < 2 or any(r[: len(ids)] != ids or len(r) <= len(ids) for r in rows):
            return None
        return ids

    def _prefix(self, static: str, shared: str, heads: Sequence[str], rows: Sequence[list[int]]) -> tuple[int, Any]:
        """(length, KV cache) of the token prefix every row shares. ``static``: the run's fixed
        instructions (with the chat template's opening), cached once and reused until the adapter changes
        (``invalidate``); ``shared``: a longer text the rows of this batch share (the history), its
        KV computed once per batch on top of the cached one. (0, None) when the rows share neither."""
        import torch

        base = self._ids_upto(static, heads, rows)
        if base is None:
            return 0, None
        if self._cache_key != tuple(base):
            from transformers import DynamicCache

            cache = DynamicCache()
            with torch.no_grad():
                self.model(input_ids=torch.tensor([base], device=self.device), cache=cache, use_cache=True)
            self._cache_key, self._cache = tuple(base), cache
        longer = self._ids_upto(shared, heads, rows) if shared else None
        if longer is None or len(longer) <= len(base) or longer[: len(base)] != base:
            return len(base), copy.deepcopy(self._cache)
        cache = copy.deepcopy(self._cache)
        with torch.no_grad():
            self.model(input_ids=torch.tensor([longer[len(base):]], device=self.device), cache=cache, use_cache=True)
        return len(longer), cache

    def check_finite(self) -> None:
        """Every weight (the adapter's included), then one forward pass on a short prompt: a model (or adapter)
        with NaN or infinite weights or settings is one ``LLMInputError`` before a run folder is written, not at
        the first generation. The pass alone missed a NaN ``lora_B`` on a small model (its last logits stayed
        finite; sampling failed half way through the run)."""
        import torch

        bad = self._nonfinite_weight()
        if bad is not None:
            raise LLMInputError(f"the model's weight {bad} is not finite (NaN or infinite)",
                           hint="the model or the adapter is damaged; use another one")
        self._setup(0)
        ids = self.encode(self.head("Propose a mutation."))
        with torch.no_grad():
            logits = self.model(input_ids=ids).logits[0, -1]
        if not bool(torch.isfinite(logits).all()):
            raise LLMInputError("the model's outputs are not finite (NaN or infinite)",
                           hint="the model or the adapter is damaged (e.g. a NaN in config.json)")

    def _nonfinite_weight(self) -> str | None:
        """The name of the first floating-point parameter holding a NaN or an infinity (None: all finite);
        checked in chunks so a large embedding needs no second copy of itself as a mask."""
        import torch

        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if p.is_floating_point() and not all(bool(torch.isfinite(c).all())
                                                     for c in p.detach().reshape(-1).split(1 << 24)):
                    return name
        return None

    def invalidate(self) -> None:
        """Forget the cached prefix (the weights changed: a LoRA update)."""
        self._cache_key, self._cache = None, None

    def propose_many(self, prompts: Sequence[str], choices: Sequence[Sequence[str]], seed: int,
                     static: str = "", shared: str = "") -> list[Proposal]:
        """One proposal per prompt in ONE ``generate`` call: the rows share the cached KV of their common
        prefix, their own parts are padded in the middle (attention mask and positions skip the padding),
        and each row decodes under its own ``ChoiceConstraint``. ``seconds`` is the call's time / rows."""
        import torch

        self._setup(seed)
        t0 = time.perf_counter()
        heads = [self.head(p) for p in prompts]
        eos = self.tok.eos_token_id
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else eos
        common = {"do_sample": True, "temperature": self.temperature, "top_p": 0.95, "top_k": 0,
                  "pad_token_id": pad, "eos_token_id": eos}
        self.model.eval()
        try:
            with torch.no_grad():
                rows = [self.encode(h)[0].tolist() for h in heads]
                n_pre, cache = self._prefix(static, shared, heads, rows)
                width = max(len(r) for r in rows)
                ids = torch.full((len(rows), width), pad, dtype=torch.long, device=self.device)
                mask = torch.zeros_like(ids)
                for i, r in enumerate(rows):
                    own = r[n_pre:]
                    ids[i, :n_pre], mask[i, :n_pre] = torch.tensor(r[:n_pre], dtype=torch.long), 1
                    ids[i, width - len(own):], mask[i, width - len(own):] = torch.tensor(own, dtype=torch.long), 1
                opts = {"think_tokens": self.think_tokens, "think_end": MUTATION_HEAD[0], "stop_ids": {eos, pad}}
                cons = [ChoiceConstraint(self.tok, width, [MUTATION_HEAD + c for c in ch], eos, **opts)
                        if self.max_genes == 1 else
                        MultiGeneConstraint(self.tok, width, ch, eos, head=MUTATION_HEAD, max_genes=self.max_genes, **opts)
                        for ch in choices]
                kw: dict[str, Any] = {}
                if cache is not None:
                    past = cache                      # a copy: generate extends it
                    if len(rows) > 1:
                        past.batch_repeat_interleave(len(rows))
                    kw["cache"] = past
                out = self.model.generate(ids, attention_mask=mask, max_new_tokens=max(c.max_new_tokens() for c in cons),
                                          prefix_allowed_tokens_fn=lambda b, x: cons[b](b, x), **common, **kw)
        except Exception as exc:  # noqa: BLE001 - the search sees one clear error
            from edgenas.llm.model import _short, is_oom

            if is_oom(exc):
                raise LLMError("out of memory while the model generated a proposal",
                               hint="use a smaller model, fewer think tokens, or --llm-fallback") from None
            raise LLMError(f"the model failed to generate: {_short(exc)}") from None
        seconds = (time.perf_counter() - t0) / len(rows)
        props = []
        for i, c in enumerate(cons):
            gen = c.cut([int(t) for t in out[i, width:]])
            think, rest = c.split(c.text_of(gen))
            completion = rest[len(MUTATION_HEAD):] if rest.startswith(MUTATION_HEAD) else rest
            props.append(Proposal(think, completion, seconds, len(gen), c.dead_ends))
        return props
