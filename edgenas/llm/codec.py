"""Architecture <-> the JSON a language model reads and writes.

Every space is described to the model as named genes with their choice values (``GeneSpec``):
``nb201`` has six edges (``edge_1_0`` .. ``edge_3_2``) whose values are op names; the MobileNetV3
spaces have ``r`` (resolution), ``ks_i`` / ``e_i`` (kernel and expand ratio of block slot ``i``) and
``d_j`` (depth of stage ``j``) with their integer choices; any other space falls back to ``g0, g1, ...``
with the gene indices as values. A mutation is one JSON object ``{"gene": NAME, "value": VALUE}``.

``vec_to_json`` / ``json_to_vec`` connect this to the optimisers' continuous code (``space.encode``
/ ``space.decode``), so a continuous strategy can hand its position to the model and take the answer
back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from edgenas.errors import InputError
from edgenas.limits import check_depth, loads_json


@dataclass(frozen=True)
class GeneSpec:
    """One gene as the model sees it: a name and its choice values (JSON scalars)."""

    name: str
    values: tuple[Any, ...]


def gene_specs(space: Any) -> tuple[GeneSpec, ...]:
    """The named genes of ``space`` in gene-vector order."""
    cached = getattr(space, "_llm_gene_specs", None)
    if cached is not None:
        return cached
    from edgenas.spaces.mbv3 import MBV3Space
    from edgenas.spaces.nb201 import EDGES, OPS, NB201Space

    if isinstance(space, NB201Space):
        specs = tuple(GeneSpec(f"edge_{i}_{j}", OPS) for i, j in EDGES)
    elif isinstance(space, MBV3Space):
        c = space.config
        specs = ((GeneSpec("r", tuple(c.resolutions)),)
                 + tuple(GeneSpec(f"ks_{i}", tuple(c.ks_choices)) for i in range(c.n_slots))
                 + tuple(GeneSpec(f"e_{i}", tuple(c.e_choices)) for i in range(c.n_slots))
                 + tuple(GeneSpec(f"d_{j}", tuple(c.d_choices)) for j in range(c.n_stages)))
    else:
        specs = tuple(GeneSpec(f"g{i}", tuple(range(n))) for i, n in enumerate(space.gene_sizes()))
    if tuple(len(s.values) for s in specs) != tuple(space.gene_sizes()):  # pragma: no cover - a space changed
        raise InputError(f"space '{space.name}': gene names do not match its gene sizes")
    try:
        object.__setattr__(space, "_llm_gene_specs", specs)
    except AttributeError:  # pragma: no cover - slotted space
        pass
    return specs


def arch_to_json(space: Any, arch: Any) -> dict[str, Any]:
    """``{"space": NAME, "genes": {gene: value, ...}}`` of an architecture."""
    genes = space.to_genes(arch)
    return {"space": space.name,
            "genes": {s.name: s.values[int(g)] for s, g in zip(gene_specs(space), genes)}}


def _parse(text: str, what: str) -> Any:
    """The JSON a model (or a user) wrote, depth-limited: ``[`` x 100,000 was a RecursionError, not the one
    ``InputError`` the parsers promise (a search ended with an internal error instead of an invalid proposal)."""
    try:
        obj = loads_json(text)
    except ValueError as exc:  # JSONDecodeError, or a value no record holds or too deep (limits.UnreadableValue)
        raise InputError(f"{what} does not parse: {getattr(exc, 'msg', exc)}") from None
    return check_depth(obj, what)  # shallower than the recursion limit, but deeper than any mutation


def json_to_arch(space: Any, obj: Any) -> Any:
    """Inverse of ``arch_to_json``; anything malformed raises one ``InputError``."""
    if isinstance(obj, str):
        obj = _parse(obj, "architecture JSON")
    if not isinstance(obj, Mapping) or not isinstance(obj.get("genes"), Mapping):
        raise InputError('architecture JSON must be an object with a "genes" object')
    if obj.get("space", space.name) != space.name:
        raise InputError(f"architecture JSON is for space {obj.get('space')!r}, not {space.name!r}")
    specs = gene_specs(space)
    genes_in = obj["genes"]
    names = [s.name for s in specs]
    unknown = sorted(set(map(str, genes_in)) - set(names))
    missing = [n for n in names if n not in genes_in]
    if unknown or missing:
        raise InputError(f"architecture JSON for {space.name}: "
                         + "; ".join(x for x in (f"unknown gene(s) {', '.join(unknown)}" if unknown else "",
                                                 f"missing gene(s) {', '.join(missing)}" if missing else "") if x))
    return space.from_genes([_index(s, genes_in[s.name]) for s in specs])


def _index(spec: GeneSpec, value: Any) -> int:
    for i, v in enumerate(spec.values):
        if type(v) is type(value) and v == value:
            return i
    raise InputError(f"gene {spec.name}: {value!r} is not one of {', '.join(map(json.dumps, spec.values))}")


def vec_to_json(space: Any, x: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """The JSON of the architecture a continuous position decodes to."""
    return arch_to_json(space, space.decode(x))


def json_to_vec(space: Any, obj: Any) -> np.ndarray:
    """The continuous code (bin centres) of the architecture a JSON describes."""
    return space.encode(json_to_arch(space, obj))


# ------------------------------------------------------------------ mutations
@dataclass(frozen=True)
class Mutation:
    """Set one gene to one value."""

    gene: str
    value: Any

    def to_text(self) -> str:
        return json.dumps({"gene": self.gene, "value": self.value})

    @classmethod
    def parse(cls, space: Any, text: str) -> "Mutation":
        """Parse and validate a model's JSON mutation; raise ``InputError`` when it is not valid."""
        obj = _parse(text, "mutation JSON")
        if not isinstance(obj, Mapping) or set(obj) != {"gene", "value"}:
            raise InputError('a mutation is an object with exactly the keys "gene" and "value"')
        specs = {s.name: s for s in gene_specs(space)}
        if not isinstance(obj["gene"], str):  # a list or an object was a TypeError (unhashable) below
            raise InputError(f"a mutation's gene is a name (a string), not {json.dumps(obj['gene'])[:60]}")
        if obj["gene"] not in specs:
            raise InputError(f"mutation names unknown gene {obj['gene']!r}")
        _index(specs[obj["gene"]], obj["value"])
        return cls(obj["gene"], obj["value"])

    def apply(self, space: Any, arch: Any) -> Any:
        specs = gene_specs(space)
        i = [s.name for s in specs].index(self.gene)
        genes = space.to_genes(arch).copy()
        genes[i] = _index(specs[i], self.value)
        return space.from_genes(genes)


@dataclass(frozen=True)
class Change:
    """A mutation of 1..3 genes: ``{"gene": G, "value": V}``, or with more genes
    ``{"gene": G1, "value": V1, "and": [{"gene": G2, "value": V2}, ...]}`` (genes in gene order)."""

    mutations: tuple[Mutation, ...]

    def to_text(self) -> str:
        first, rest = self.mutations[0], self.mutations[1:]
        obj: dict[str, Any] = {"gene": first.gene, "value": first.value}
        if rest:
            obj["and"] = [{"gene": m.gene, "value": m.value} for m in rest]
        return json.dumps(obj)

    @classmethod
    def parse(cls, space: Any, text: str, max_genes: int = 3) -> "Change":
        """Parse and validate a model's JSON; ``InputError`` when it is not a valid change."""
        obj = _parse(text, "mutation JSON")
        if not isinstance(obj, Mapping) or not {"gene", "value"} <= set(obj) <= {"gene", "value", "and"}:
            raise InputError('a mutation is an object with the keys "gene" and "value" (and optionally "and")')
        more = obj.get("and", [])
        if "and" in obj and (not isinstance(more, list) or not more):
            raise InputError('"and" must be a non-empty list of {"gene": NAME, "value": VALUE}')
        items = [{"gene": obj["gene"], "value": obj["value"]}, *more]
        if len(items) > max_genes:
            raise InputError(f"a mutation may change at most {max_genes} gene(s), this one changes {len(items)}")
        muts = tuple(Mutation.parse(space, json.dumps(x) if isinstance(x, Mapping) else "null") for x in items)
        names = [s.name for s in gene_specs(space)]
        pos = [names.index(m.gene) for m in muts]
        if pos != sorted(set(pos)):
            raise InputError("a mutation names each gene once, in gene order")
        return cls(muts)

    def apply(self, space: Any, arch: Any) -> Any:
        for m in self.mutations:
            arch = m.apply(space, arch)
        return arch


def mutation_prefix() -> str:
    """What every mutation text starts with (the prompt ends with it, so the model continues it)."""
    return '{"gene": "'


def valid_mutations(space: Any, arch: Any) -> list[Mutation]:
    """Every single-gene mutation that changes the network (no-ops after canonicalisation excluded)."""
    base = space.arch_id(arch)
    genes = space.to_genes(arch)
    out = []
    for i, spec in enumerate(gene_specs(space)):
        for j, value in enumerate(spec.values):
            if j == genes[i]:
                continue
            m = Mutation(spec.name, value)
            if space.arch_id(m.apply(space, arch)) != base:
                out.append(m)
    return out
