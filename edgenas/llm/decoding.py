"""Constrained decoding: the model may only write one of a finite set of valid texts.

``ChoiceConstraint`` is a ``prefix_allowed_tokens_fn`` for ``transformers``' ``generate``. At each step
the text generated so far (the concatenation of each generated token's own text) must be a prefix of
one of the allowed texts; the allowed tokens are those whose text extends it to a longer prefix, found
by looking up every prefix of every remaining suffix in a ``text -> token ids`` table (a few hundred
dictionary look-ups a step, not a scan of the vocabulary). When the text is complete only the end token
is allowed. Tokens whose text is not clean ASCII-decodable simply never match.
"""

from __future__ import annotations

from typing import Any, Sequence

_TABLES: dict[int, tuple[dict[str, list[int]], list[str]]] = {}


def token_table(tokenizer: Any) -> tuple[dict[str, list[int]], list[str]]:
    """(text -> ids, id -> text) of a tokenizer's vocabulary, each token decoded on its own (cached)."""
    key = id(tokenizer)
    if key not in _TABLES:
        n = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        by_text: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            if t and i not in special and "\ufffd" not in t:
                by_text.setdefault(t, []).append(i)
        _TABLES[key] = (by_text, texts)
    return _TABLES[key]


def free_tokens(tokenizer: Any) -> list[int]:
    """Ids of tokens without a line break (what free reasoning may use), cached per tokenizer."""
    key = ("free", id(tokenizer))
    if key not in _FREE:
        by_text, _ = token_table(tokenizer)
        _FREE[key] = sorted(i for t, ids in by_text.items() if "\n" not in t for i in ids)
    return _FREE[key]


_FREE: dict[tuple, list[int]] = {}


class ChoiceConstraint:
    """Allow only continuations that stay on one of ``choices`` (texts after the prompt).

    With ``think_tokens > 0`` and a ``think_end`` (e.g. ``"\n"``), a free phase comes first: up to
    ``think_tokens`` tokens without a line break, then the text must continue with one of the choices
    (which start with ``think_end``). One ``generate`` call does both, so the prompt is read once.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, choices: Sequence[str], eos_id: int,
                 *, think_tokens: int = 0, think_end: str = "", stop_ids: set[int] | None = None) -> None:
        if not choices:
            raise ValueError("no valid choices to decode")
        if think_tokens and (not think_end or not all(c.startswith(think_end) for c in choices)):
            raise ValueError("with a free phase every choice must start with think_end")
        self.think_tokens = think_tokens
        self.think_end = think_end
        self.free = free_tokens(tokenizer) if think_tokens else []
        self._free_or_start: list[int] | None = None
        self.by_text, self.texts = token_table(tokenizer)
        self.prompt_len = prompt_len
        self.choices = list(dict.fromkeys(choices))
        self.eos_id = int(eos_id)
        #: ids that end a row (eos, and the pad id ``generate`` writes after it in a batch)
        self.stop_ids = {self.eos_id} | set(stop_ids or ())
        self.max_len = max(len(c) for c in self.choices)
        #: steps at which no token could extend the text (should stay 0: a vocabulary without the characters)
        self.dead_ends = 0

    def text_of(self, ids: Sequence[int]) -> str:
        return "".join(self.texts[int(i)] for i in ids)

    def allowed(self, generated: str) -> list[int]:
        rests = [c[len(generated):] for c in self.choices if c.startswith(generated)]
        if any(r == "" for r in rests):
            return [self.eos_id]
        out: set[int] = set()
        for r in rests:
            for k in range(1, len(r) + 1):
                ids = self.by_text.get(r[:k])
                if ids:
                    out.update(ids)
        if not out:
            self.dead_ends += 1
            return [self.eos_id]
        return sorted(out)

    def split(self, text: str) -> tuple[str, str]:
        """(free reasoning, constrained part) of a generated text."""
        if not self.think_tokens:
            return "", text
        k = text.find(self.think_end)
        return (text, "") if k < 0 else (text[:k], text[k:])

    def cut(self, ids: Sequence[int]) -> list[int]:
        """The generated ids up to (without) the first end id."""
        for k, i in enumerate(ids):
            if int(i) in self.stop_ids:
                return [int(x) for x in ids[:k]]
        return [int(x) for x in ids]

    def __call__(self, batch_id: int, input_ids: Any) -> Any:
        raw = input_ids[self.prompt_len:].tolist()
        ids = self.cut(raw)
        if len(ids) < len(raw):          # this row has ended (a batch goes on): anything, it is discarded
            return [self.eos_id]
        think, rest = self.split(self.text_of(ids))
        if self.think_tokens and not rest:
            start = self.allowed("")
            if len(ids) >= self.think_tokens:
                return start
            if self._free_or_start is None:
                import torch   # a tensor indexes the logits mask without converting a long list each step

                self._free_or_start = torch.tensor(sorted(set(self.free) | set(start)), dtype=torch.long)
            return self._free_or_start
        return self.allowed(rest)

    def max_new_tokens(self) -> int:
        """An upper bound on the tokens needed (one character per token, plus the end)."""
        return self.think_tokens + self.max_len + 1
