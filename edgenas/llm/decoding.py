"""Constrained decoding: the model may only write one of a finite set of valid texts.

``ChoiceConstraint`` is a ``prefix_allowed_tokens_fn`` for ``transformers``' ``generate``. At each step
the text generated so far (the concatenation of each generated token's own text) must be a prefix of
one of the allowed texts; the allowed tokens are those whose text extends it to a longer prefix, found
by looking up every prefix of every remaining suffix in a ``text -> token ids`` table (a few hundred
dictionary look-ups a step, not a scan of the vocabulary). When the text is complete only the end token
is allowed. Tokens whose text is not clean ASCII-decodable simply never match.
"""

from __future__ import annotations

import weakref
from typing import Any, Iterable, Sequence

#: per tokenizer object, held weakly: keyed by ``id()``, a tokenizer made after another was freed could get its
#: id, and with it the other vocabulary's table (allowed ids of the wrong vocabulary)
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_table(tokenizer: Any) -> tuple[dict[str, list[int]], list[str]]:
    """(text -> ids, id -> text) of a tokenizer's vocabulary, each token decoded on its own (cached)."""
    if tokenizer not in _TABLES:
        n = len(tokenizer)
        texts = tokenizer.batch_decode([[i] for i in range(n)], skip_special_tokens=False,
                                       clean_up_tokenization_spaces=False)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        by_text: dict[str, list[int]] = {}
        for i, t in enumerate(texts):
            if t and i not in special and "\ufffd" not in t:
                by_text.setdefault(t, []).append(i)
        _TABLES[tokenizer] = (by_text, texts)
    return _TABLES[tokenizer]


def free_tokens(tokenizer: Any) -> list[int]:
    """Ids of tokens without a line break (what free reasoning may use), cached per tokenizer."""
    if tokenizer not in _FREE:
        by_text, _ = token_table(tokenizer)
        _FREE[tokenizer] = sorted(i for t, ids in by_text.items() if "\n" not in t for i in ids)
    return _FREE[tokenizer]


_FREE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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

    def rests(self, generated: str) -> tuple[bool, Iterable[str]]:
        """(whether ``generated`` is complete, the texts that may follow it: whole or a long enough head)."""
        rests = [c[len(generated):] for c in self.choices if c.startswith(generated)]
        return any(r == "" for r in rests), rests

    def allowed(self, generated: str) -> list[int]:
        complete, rests = self.rests(generated)
        if complete:
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


#: separators of a multi-gene mutation after item j (1-based): the end of the JSON, or the next item
MULTI_END = {1: "}", 2: "}]}", 3: "}]}"}
MULTI_MORE = {1: ', "and": [{"gene": "', 2: '}, {"gene": "'}


class MultiGeneConstraint(ChoiceConstraint):
    """A mutation of 1..``max_genes`` genes, valid by construction:
    ``{"gene": G1, "value": V1}``, or ``{"gene": G1, "value": V1, "and": [{"gene": G2, "value": V2}, ...]}``
    with genes in strictly increasing gene order (no gene twice, one text per set of changes).

    ``choices`` are the single-gene mutation texts after ``head`` (``G", "value": V}``, in gene order),
    as for ``ChoiceConstraint``; with ``max_genes=1`` the language is exactly theirs. The texts that may
    follow are enumerated only ``window`` characters ahead (no token is longer), so the set stays small.
    """

    def __init__(self, tokenizer: Any, prompt_len: int, choices: Sequence[str], eos_id: int, *, head: str,
                 max_genes: int = 3, window: int = 24, **kw: Any) -> None:
        super().__init__(tokenizer, prompt_len, [head + c for c in choices], eos_id, **kw)
        order: dict[str, int] = {}
        self.bodies: list[tuple[int, str]] = []
        for c in dict.fromkeys(choices):
            if not c.endswith("}"):
                raise ValueError(f"a mutation text must end with '}}': {c!r}")
            gene = c.split('"', 1)[0]
            self.bodies.append((order.setdefault(gene, len(order)), c[:-1]))
        self.head = head
        self.max_genes = max(1, min(int(max_genes), 3))
        self.window = window
        longest = max(len(b) for _, b in self.bodies)
        self.max_len = len(head) + sum(len(MULTI_MORE.get(j, "")) for j in range(1, self.max_genes)) \
            + self.max_genes * longest + len(MULTI_END[self.max_genes])

    def rests(self, generated: str) -> tuple[bool, Iterable[str]]:
        h = self.head
        if len(generated) < len(h):
            return False, [h[len(generated):]] if h.startswith(generated) else []
        if not generated.startswith(h):
            return False, []
        t, w = generated[len(h):], self.window
        out: set[str] = set()
        complete = False

        def tails(rest: str, j: int, last: int) -> None:
            """``rest`` completes item j (gene ``last``); add it with what may follow, ``w`` chars deep."""
            if len(rest) >= w:
                out.add(rest[:w])
                return
            out.add((rest + MULTI_END[j])[:w])
            if j < self.max_genes:
                more = rest + MULTI_MORE[j]
                for g, b in self.bodies:
                    if g > last:
                        out.add((more + b)[:w])

        def item(pos: int, j: int, last: int) -> None:
            nonlocal complete
            rem = t[pos:]
            for g, b in self.bodies:
                if g <= last:
                    continue
                if rem.startswith(b):
                    after = rem[len(b):]
                    end, more = MULTI_END[j], MULTI_MORE.get(j) if j < self.max_genes else None
                    if after == end:
                        complete = True
                    elif end.startswith(after):
                        out.add(end[len(after):][:w])
                    if more is not None:
                        if after.startswith(more):
                            item(pos + len(b) + len(more), j + 1, g)
                        elif more.startswith(after):
                            for g2, b2 in self.bodies:
                                if g2 > g:
                                    out.add((more[len(after):] + b2)[:w])
                elif b.startswith(rem):
                    tails(b[len(rem):], j, g)

        item(0, 1, -1)
        out.discard("")
        return complete, out

    def max_new_tokens(self) -> int:
        return self.think_tokens + self.max_len + 1
