"""What the model reads: the architecture, where its latency goes, its objectives and recent history.

The prompt is plain text (the engine wraps it in the model's chat template). The answer is shaped as
``Reasoning: <free text>`` then ``Mutation: {"gene": NAME, "value": VALUE}``; ``answer_head`` and
``mutation_head`` are those fixed parts, and the mutation part is decoded under a constraint
(``decoding``). Nothing here ends with a lone space: BPE tokenizers read a trailing space as the start
of a different token than the one the model would produce.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.llm.codec import arch_to_json, gene_specs, mutation_prefix, valid_mutations

ANSWER_HEAD = "Reasoning:"
MUTATION_HEAD = "\nMutation: " + mutation_prefix()


@dataclass(frozen=True)
class Outcome:
    """One told mutation: its JSON, who made it, whether it improved on its parent, the objective change."""

    mutation: str
    source: str          # "llm" or "usual"
    improved: bool
    delta: float         # objective change (natural units; + is better); nan when infeasible


@dataclass(frozen=True)
class DeviceInfo:
    """A device as the prompt sees it: its latency model and budget (ms or None)."""

    name: str
    model: Any
    budget_ms: float | None


def genes_line(space: Any) -> str:
    """The genes and their choices, grouping genes that share a choice list."""
    groups: dict[tuple, list[str]] = {}
    for s in gene_specs(space):
        groups.setdefault(s.values, []).append(s.name)
    parts = []
    for values, names in groups.items():
        who = names[0] if len(names) == 1 else f"{names[0]} .. {names[-1]}"
        parts.append(f"{who}: {', '.join(json.dumps(v) for v in values)}")
    return "; ".join(parts)


def block_entries(space: Any, arch: Any, model: Any, top: int = 4) -> str | None:
    """The device LUT's entries for this architecture's costliest blocks, labelled with the genes that
    choose them (``ks_3/e_3 1.2 ms``), when the latency model is a per-block LUT predictor and the space
    names its blocks (the MobileNetV3 spaces); None otherwise."""
    cost = getattr(model, "key_cost", None)
    labels = getattr(space, "block_labels", None)
    if cost is None or labels is None:
        return None
    blocks = [(label, float(cost[key])) for label, key in labels(arch) if key in cost]
    worst = sorted(blocks, key=lambda b: -b[1])[:top]
    return (f"LUT blocks (net ms; {len(blocks)} blocks + {float(getattr(model, 'overhead_ms', 0.0)):.3g} ms "
            "overhead): " + ", ".join(f"{label} {ms:.3g}" for label, ms in worst))


def latency_lines(space: Any, arch: Any, devices: Sequence[DeviceInfo], top: int = 3) -> list[str]:
    """Per device: predicted latency, distance to the budget, where the latency goes.

    With a per-block LUT (MobileNetV3 spaces) the costliest blocks' LUT entries are given
    (``block_entries``). Always given: the genes whose current choice costs most, as the ms it adds over
    that gene's cheapest alternative (one vectorised prediction over every single-gene variant: from the
    LUT, or for NAS-Bench-201's whole-network latency table, from table look-ups: that table has no
    per-block entries, which the line says).
    """
    lines = []
    muts = valid_mutations(space, arch)
    variants = [m.apply(space, arch) for m in muts]
    for d in devices:
        ms = float(d.model.predict_many([arch])[0])
        text = f"{d.name}: {ms:.3g} ms"
        if d.budget_ms is not None:
            gap = ms - d.budget_ms
            text += (f", budget {d.budget_ms:.3g} ms ({gap:.3g} ms over)" if gap > 0
                     else f", budget {d.budget_ms:.3g} ms ({d.budget_ms - ms:.3g} ms to spare)")  # not -gap: "-0 ms"
        blocks = block_entries(space, arch, d.model)
        if blocks:
            text += "; " + blocks
        elif getattr(d.model, "key_cost", None) is None:
            text += " (whole-network table, no per-block entries)"
        if variants:
            lat = np.asarray(d.model.predict_many(variants), dtype=float)
            saving: dict[str, float] = {}
            for m, v in zip(muts, lat):
                saving[m.gene] = max(saving.get(m.gene, 0.0), ms - float(v))
            costly = sorted((g for g in saving if saving[g] > 0), key=lambda g: -saving[g])[:top]
            if costly:
                text += "; costliest genes: " + ", ".join(f"{g} {saving[g]:.3g} ms" for g in costly)
        lines.append(text)
    return lines


def static_prompt(space: Any, objective: str, max_genes: int = 1) -> str:
    """The part of every prompt of a run that never changes (first, so its KV cache is computed once)."""
    ask = ('Think briefly, then give one mutation as JSON {"gene": NAME, "value": VALUE} '
           "that changes the architecture.")
    if max_genes > 1:
        ask = ask[:-1] + (f'; to change up to {max_genes} genes add "and": [{{"gene": NAME, "value": VALUE}}, ...] '
                          "in gene order.")
    return "\n".join([f"You improve a neural network architecture of the search space {space.name}: raise "
                      f"{objective} while keeping every latency budget.",
                      f"Genes and their choices: {genes_line(space)}.", ask])


def shared_prompt(space: Any, objective: str, *, history: Sequence[Outcome] = (), n_history: int = 3,
                  max_genes: int = 1) -> str:
    """What every prompt of one batch shares: ``static_prompt`` and the recent mutations (so its KV is
    computed once per batch, not once per row)."""
    lines = [static_prompt(space, objective, max_genes)]
    # the last n_history of each (``[-0:]`` is the whole list: history=0 told the last outcome)
    good = [h for h in history if h.improved][-n_history:] if n_history > 0 else []
    bad = [h for h in history if not h.improved][-n_history:] if n_history > 0 else []
    if good:
        lines.append("Mutations that helped: " + "; ".join(f"{_short(h.mutation)} ({_delta(h)})" for h in good))
    if bad:
        lines.append("Mutations that did not: " + "; ".join(f"{_short(h.mutation)} ({_delta(h)})" for h in bad))
    return "\n".join(lines)


def build_prompt(space: Any, arch: Any, *, objective: str, objectives: Mapping[str, float],
                 devices: Sequence[DeviceInfo] = (), history: Sequence[Outcome] = (),
                 n_history: int = 3, max_genes: int = 1) -> str:
    """The user message for one proposal (``history``: oldest first): ``shared_prompt`` (the fixed
    instructions and the recent mutations), then this architecture, its objectives and where its latency
    goes."""
    genes = arch_to_json(space, arch)["genes"]
    lines = [shared_prompt(space, objective, history=history, n_history=n_history, max_genes=max_genes),
             f"Architecture: {json.dumps(genes)}"]
    if objectives:
        lines.append("Objectives: " + ", ".join(f"{k} {v:.4g}" for k, v in objectives.items()))
    lines += [f"Latency on {x}" for x in latency_lines(space, arch, devices)]
    return "\n".join(lines)


def _short(mutation: str) -> str:
    """A mutation JSON as ``gene="value"`` pairs (half the tokens of the JSON), or ``N genes changed``
    (``describe_change``); any other text is never shown (a prompt holds no text it did not make itself).
    Gene names and values are written as JSON: a string's quotes and line breaks are escaped."""
    try:
        obj = json.loads(mutation)
    except ValueError:  # JSONDecodeError, or a 4,300-digit int
        return mutation if re.fullmatch(r"[0-9]+ genes changed", mutation) else "(not a mutation)"
    if isinstance(obj, dict) and {"gene", "value"} <= set(obj) <= {"gene", "value", "and"}:
        items = [obj, *(obj.get("and") or [])]
        if all(isinstance(x, dict) and isinstance(x.get("gene"), str) and "value" in x for x in items):
            return " + ".join(f"{_name(x['gene'])}={json.dumps(x['value'])}" for x in items)
    return "(not a mutation)"


def _name(gene: str) -> str:
    """A gene name as it is (``edge_1_0``), or as JSON where it is not a plain name."""
    return gene if re.fullmatch(r"[A-Za-z0-9_]+", gene) else json.dumps(gene)


def _delta(h: Outcome) -> str:
    return "infeasible" if not np.isfinite(h.delta) else f"{h.delta:+.3g}"
