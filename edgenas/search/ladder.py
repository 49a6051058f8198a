"""A ladder of evaluators ordered by cost, for multi-fidelity search (what ``--ladder`` parses).

A rung is ``EVALUATOR[:key=value,...]``; besides the evaluator's own options two keys belong to the
rung: ``cost=`` (relative cost of one evaluation, default 1) and ``keep=`` (how many of the candidates
evaluated on this rung go on to the next: a count >= 1, or a fraction in (0, 1); default 1/eta). Example::

    compression:keep=3                  # zero-cost proxy for all candidates; the best 3 go on
    train:epochs=2,cost=40              # short training on digits for those 3
    nb201-fidelity:table=../shared/data/nb201/nb201_valid.csv,column=cifar10_valid,cost=16.67

The ladder is recorded in the run's ``config.json`` (``to_json``) so a resumed run climbs the same one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from edgenas.errors import InputError
from edgenas.once import check_once


def _value(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _pairs(text: str, rest: str) -> list[tuple[str, Any]]:
    """The ``key=value`` pairs of a rung's text after its ``:`` (``rest``), in order, repeats kept."""
    pairs = []
    for part in filter(None, (p.strip() for p in rest.split(","))):
        if "=" not in part:
            raise InputError(f"ladder rung '{text}': '{part}' is not KEY=VALUE",
                             hint="e.g. --ladder compression --ladder train:epochs=2,keep=3")
        k, v = part.split("=", 1)
        pairs.append((k.strip(), _value(v.strip())))
    return pairs


@dataclass(frozen=True)
class Rung:
    evaluator: str
    options: Mapping[str, Any] = field(default_factory=dict)
    cost: float = 1.0
    keep: float | None = None          # count (>= 1) or fraction (< 1); None: 1/eta

    def __post_init__(self) -> None:
        if not isinstance(self.evaluator, str) or not self.evaluator:
            raise InputError("ladder rung: the evaluator name is missing",
                             hint="write EVAL[:k=v,...,keep=N,cost=C], e.g. --ladder compression:keep=3")
        if not (isinstance(self.cost, (int, float)) and math.isfinite(self.cost) and self.cost > 0):
            raise InputError(f"ladder rung '{self.evaluator}': cost must be > 0, got {self.cost!r}")
        if self.keep is not None and not (isinstance(self.keep, (int, float)) and self.keep > 0
                                          and (self.keep < 1 or float(self.keep).is_integer())):
            raise InputError(f"ladder rung '{self.evaluator}': keep must be a count >= 1 or a fraction "
                             f"in (0, 1), got {self.keep!r}")
        object.__setattr__(self, "options", dict(self.options))

    @classmethod
    def parse(cls, text: str) -> "Rung":
        return cls.from_pairs(text, _pairs(text, text.strip().partition(":")[2]))

    @classmethod
    def from_pairs(cls, text: str, pairs: Sequence[tuple[str, Any]]) -> "Rung":
        """The rung of ``text`` whose ``key=value`` pairs ``_pairs`` has parsed (the last of a repeated key):
        ``check_new_ladder`` checks the pairs for repeats and builds the rung from the same parse."""
        name = text.strip().partition(":")[0]
        opts: dict[str, Any] = dict(pairs)
        cost, keep = opts.pop("cost", None), opts.pop("keep", None)
        if cost is not None and not isinstance(cost, (int, float)):
            raise InputError(f"ladder rung '{text}': cost={cost!r} is not a number")
        if keep is not None and not isinstance(keep, (int, float)):
            raise InputError(f"ladder rung '{text}': keep={keep!r} is not a number")
        return cls(name.strip(), opts, 1.0 if cost is None else float(cost), keep)

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options.items())
        return self.evaluator + (f":{opts}" if opts else "")

    def to_json(self) -> dict[str, Any]:
        return {"evaluator": self.evaluator, "options": dict(self.options), "cost": self.cost, "keep": self.keep}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Rung":
        try:
            return cls(d["evaluator"], d.get("options", {}), float(d.get("cost", 1.0)), d.get("keep"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed ladder rung {d!r}: {exc}") from None

    def survivors(self, n: int, eta: int) -> int:
        """How many of ``n`` candidates evaluated on this rung go on to the next (at least 1)."""
        if self.keep is None:
            k = n // eta
        elif self.keep < 1:
            k = int(math.floor(n * self.keep))
        else:
            k = int(self.keep)
        return max(1, min(n, k))


def parse_ladder(texts: Sequence[str]) -> tuple[Rung, ...]:
    rungs = tuple(Rung.parse(t) for t in texts)
    if not rungs:
        raise InputError("an empty ladder", hint="give --ladder at least twice, cheapest first")
    costs = [r.cost for r in rungs]
    if any(b < a for a, b in zip(costs, costs[1:])):
        raise InputError(f"ladder costs must not decrease from rung to rung, got {costs}",
                         hint="order the rungs cheapest first and give each its cost=")
    return rungs


def check_new_ladder(texts: Sequence[Any]) -> None:
    """Refuse what a new ladder gives twice: a key within one rung (``keep=2,keep=1`` kept the last without a
    word), or a rung of the same evaluator with the same options as an earlier one (its ``keep=`` and ``cost=``
    aside). An evaluator scores an architecture by the architecture, the search's seed and its options alone
    (``edgenas.evaluate``; a resume replays on it), so such a rung scored the survivors of the first again, to
    the same values: it spent evaluations and cost, changed only how many were kept (the first rung's ``keep=``
    says that), and ``best.json``'s scores per rung, keyed by the rung's label, held one of the two.

    Not part of ``parse_ladder``: a recorded ladder (``--resume``, ``--rerun``) runs as it was recorded. A text
    that is not a string is left to the strategy's option check."""
    rungs: list[Rung] = []
    for text in texts:
        if not isinstance(text, str):
            continue
        pairs = _pairs(text, text.strip().partition(":")[2])
        check_once(f"--ladder rung '{text}':", pairs, hint="give each key of a rung once")
        rung = Rung.from_pairs(text, pairs)   # parsed once: the pairs just checked
        for i, earlier in enumerate(rungs):
            if (earlier.evaluator, earlier.options) == (rung.evaluator, rung.options):
                raise InputError(f"--ladder rung {len(rungs) + 1} repeats rung {i + 1} ('{rung.label()}'): the same "
                                 "evaluator and options score alike", hint="give each rung once; keep= sets how many "
                                                                           "go on")
        rungs.append(rung)


@dataclass(frozen=True)
class Bracket:
    """One successive-halving bracket: ``n`` fresh candidates entering at rung ``start``."""

    index: int
    start: int
    n: int


def brackets(mode: str, rungs: Sequence[Rung], n: int, eta: int) -> list[Bracket]:
    """``sh``: one bracket of ``n`` candidates from the first rung. ``hyperband``: Li et al. (2018) —
    brackets s = S..0 (S = rungs - 1), bracket s starts at rung S - s with ceil(n (S+1)/(s+1) / eta^(S-s))
    candidates, so every bracket spends about the same budget."""
    if not isinstance(eta, int) or not 2 <= eta <= 1000:
        raise InputError(f"eta must be an integer from 2 to 1000, got {eta!r}")
    if mode == "sh":
        return [Bracket(0, 0, n)]
    if mode != "hyperband":
        raise InputError(f"unknown multi-fidelity mode '{mode}'", hint="use sh or hyperband")
    S = len(rungs) - 1
    return [Bracket(i, S - s, max(1, math.ceil(n * (S + 1) / (s + 1) / eta ** (S - s))))
            for i, s in enumerate(range(S, -1, -1))]
