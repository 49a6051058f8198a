"""The loaded model with its LoRA adapter: one proposal = free reasoning, then a constrained mutation.

``Engine.propose`` wraps the prompt in the model's chat template and, in one ``generate`` call (the
prompt is read once), lets the model write up to ``think_tokens`` tokens of reasoning after
``Reasoning:`` (one line, sampled), then constrains the rest to ``Mutation: {"gene": "`` and one of the
parent's valid mutations (``ChoiceConstraint``). Torch's thread count is set explicitly around every call (the default pool made
small CPU ops hundreds of times slower under load) and seeded from the operator's generator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

from edgenas.errors import LLMError
from edgenas.llm.decoding import ChoiceConstraint
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
                 think_tokens: int = 24) -> None:
        self.model = model
        self.tok = tokenizer
        self.threads = threads
        self.temperature = temperature
        self.think_tokens = think_tokens
        self.device = next(model.parameters()).device

    # ----------------------------------------------------------------- text
    def head(self, prompt: str) -> str:
        """The chat-formatted prompt, ending with the answer head (never with a lone space)."""
        if getattr(self.tok, "chat_template", None):
            text = self.tok.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                add_generation_prompt=True)
        else:
            text = f"{prompt}\n"
        return text + ANSWER_HEAD

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

    def propose(self, prompt: str, choices: Sequence[str], seed: int) -> Proposal:
        import torch

        self._setup(seed)
        t0 = time.perf_counter()
        head = self.head(prompt)
        eos = self.tok.eos_token_id
        common = {"do_sample": True, "temperature": self.temperature, "top_p": 0.95, "top_k": 0,
                  "pad_token_id": self.tok.pad_token_id, "eos_token_id": eos}
        self.model.eval()
        tail = [MUTATION_HEAD + c for c in choices]
        try:
            with torch.no_grad():
                ids = self.encode(head)
                cons = ChoiceConstraint(self.tok, ids.shape[1], tail, eos, think_tokens=self.think_tokens,
                                        think_end=MUTATION_HEAD[0])
                out = self.model.generate(ids, max_new_tokens=cons.max_new_tokens(),
                                          prefix_allowed_tokens_fn=cons, **common)
        except Exception as exc:  # noqa: BLE001 - the search sees one clear error
            from edgenas.llm.model import _short, is_oom

            if is_oom(exc):
                raise LLMError("out of memory while the model generated a proposal",
                               hint="use a smaller model, fewer think tokens, or --llm-fallback") from None
            raise LLMError(f"the model failed to generate: {_short(exc)}") from None
        gen = [int(i) for i in out[0, ids.shape[1]:] if int(i) != eos]
        think, rest = cons.split(cons.text_of(gen))
        completion = rest[len(MUTATION_HEAD):] if rest.startswith(MUTATION_HEAD) else rest
        return Proposal(think, completion, time.perf_counter() - t0, len(gen), cons.dead_ends)
