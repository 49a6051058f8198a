"""The search-space interface every space implements.

A space turns architectures (frozen dataclasses) into four things the rest of edgenas needs:

* a **record**: ``to_dict``/``from_dict`` with ``{"space": NAME, "schema": 1, ...}`` and validation
  that raises one clear ``InputError``;
* a **discrete gene vector** (one integer choice per gene, ``gene_sizes()`` choices each) on which
  every strategy works; sampling, mutation, crossover and the continuous codec in ``[0, 1)^D`` used by
  continuous optimisers (WOA) are derived from it here, once;
* **block keys**: canonical strings that fully determine a block's cost on a device; a network is the
  ordered list of its blocks, and latency predictors sum per-key costs;
* **PyTorch modules**: the whole network, and one block built from its key alone (so two blocks with
  the same key export to the same ONNX subgraph).
"""

from __future__ import annotations

import json
import uuid
from abc import ABC, abstractmethod
from functools import cached_property
from typing import Any, Callable, Generic, Iterable, Mapping, Sequence, TypeVar

import numpy as np

from edgenas.errors import InputError

A = TypeVar("A")

ARCH_SCHEMA = 1


class SearchSpace(ABC, Generic[A]):
    """Base class; subclasses set ``name`` and implement the abstract methods."""

    name: str = ""
    description: str = ""

    # ----------------------------------------------------------------- records
    @abstractmethod
    def from_dict(self, data: Mapping[str, Any]) -> A:
        """Parse and validate an architecture record; raise ``InputError`` on anything wrong."""

    def from_record(self, data: Any, where: str, *, hint: str | None = None,
                    error: type[InputError] = InputError) -> A:
        """``from_dict`` of a record read from somewhere: its error names ``where`` ("r=99 is not one of 24, 28,
        32" named no file, evaluation or row), with ``hint`` in place of the space's own when given, as ``error``
        (a refused resume's ``ResumeRefused``)."""
        try:
            return self.from_dict(data)
        except InputError as exc:
            raise error(f"{where}: {exc.message}", hint=exc.hint if hint is None else hint) from None

    @abstractmethod
    def to_dict(self, arch: A) -> dict[str, Any]:
        """The JSON record, with ``"space"`` and ``"schema"`` keys."""

    def validate(self, arch: A) -> None:
        self.from_dict(self.to_dict(arch))

    def canonical(self, arch: A) -> A:
        """The canonical form: two archs that build the same network have the same canonical form."""
        return arch

    def arch_id(self, arch: A) -> str:
        """A stable string identifying the network (used for caching and de-duplication)."""
        return json.dumps(self.to_dict(self.canonical(arch)), sort_keys=True, separators=(",", ":"))

    # ------------------------------------------------------------------- genes
    @abstractmethod
    def gene_sizes(self) -> tuple[int, ...]:
        """Number of choices of each gene."""

    @abstractmethod
    def to_genes(self, arch: A) -> np.ndarray:
        """Integer gene vector (dtype int64, shape ``(D,)``)."""

    @abstractmethod
    def from_genes(self, genes: Sequence[int] | np.ndarray) -> A:
        """Inverse of ``to_genes``."""

    @property
    def dim(self) -> int:
        return len(self.gene_sizes())

    # Genes kept from sampling to prediction: ``from_genes`` (and ``to_genes``) stamp the architecture
    # object with its gene vector as bytes, under an attribute name unique to this space instance
    # (a uuid, so a stamp that travelled through pickle from another process never matches). The
    # stamp is not a dataclass field: equality, hashing, repr and records are unchanged. Frozen
    # architectures cannot change after the stamp, so it stays true. ``genes_matrix`` joins stamps
    # into a matrix at C speed and computes (and stamps) only the architectures that lack one.
    @cached_property
    def _gene_attr(self) -> str:
        return "_edgenas_genes_" + uuid.uuid4().hex

    @cached_property
    def _gene_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if max(self.gene_sizes(), default=1) <= 256 else np.int32)

    def _stamp(self, arch: A, genes: np.ndarray) -> A:
        """Record ``genes`` (already valid for ``arch``) on the object; a no-op for slotted types."""
        try:
            object.__setattr__(arch, self._gene_attr, np.asarray(genes).astype(self._gene_dtype).tobytes())
        except (AttributeError, TypeError):
            pass
        return arch

    def _gene_bytes(self, arch: A | Mapping[str, Any]) -> bytes:
        if isinstance(arch, Mapping):  # a record: parsed and validated, nothing to stamp
            return np.asarray(self.to_genes(self.from_dict(arch))).astype(self._gene_dtype).tobytes()
        stamp = getattr(arch, "__dict__", {}).get(self._gene_attr)
        if stamp is None:
            genes = self.to_genes(arch)
            self._stamp(arch, genes)
            stamp = np.asarray(genes).astype(self._gene_dtype).tobytes()
        return stamp

    def genes_matrix(self, archs: Iterable[A]) -> np.ndarray:
        """Gene vectors of many architectures, shape ``(n, D)`` (read-only, small integer dtype).

        Fast for architectures made by ``from_genes``/``to_genes`` of this space (sampling, mutation,
        crossover, decoding); others are converted with ``to_genes`` once and stamped; records
        (mappings) are parsed with ``from_dict``.
        """
        archs = archs if isinstance(archs, list) else list(archs)
        attr = self._gene_attr
        try:
            blob = b"".join([a.__dict__[attr] for a in archs])
        except (AttributeError, KeyError, TypeError):
            blob = b"".join([self._gene_bytes(a) for a in archs])
        return np.frombuffer(blob, dtype=self._gene_dtype).reshape(len(archs), self.dim)

    def sample(self, rng: np.random.Generator) -> A:
        sizes = np.asarray(self.gene_sizes())
        return self.from_genes(rng.integers(0, sizes))

    def sample_genes(self, rng: np.random.Generator, n: int) -> np.ndarray:
        sizes = np.asarray(self.gene_sizes())
        return rng.integers(0, sizes, size=(n, len(sizes)))

    def mutate(self, arch: A, rng: np.random.Generator, rate: float | None = None) -> A:
        """Resample each gene with probability ``rate`` (default 1/D); at least one gene changes."""
        sizes = np.asarray(self.gene_sizes())
        genes = self.to_genes(arch).copy()
        rate = 1.0 / len(sizes) if rate is None else rate
        mutable = np.flatnonzero(sizes > 1)
        if mutable.size == 0:
            return arch
        mask = rng.random(len(sizes)) < rate
        mask[sizes <= 1] = False
        if not mask.any():
            mask[rng.choice(mutable)] = True
        for i in np.flatnonzero(mask):
            choices = [c for c in range(sizes[i]) if c != genes[i]]
            genes[i] = rng.choice(choices)
        return self.from_genes(genes)

    def mutate_genes(self, arch: A, rng: np.random.Generator, k: int = 1, gene_p: np.ndarray | None = None,
                     value_p: Callable[[int, int], np.ndarray] | None = None) -> tuple[A, tuple[tuple[int, int], ...]]:
        """Change exactly ``k`` distinct genes (at most the genes with a choice), each to another value, and
        the changes made, ``(gene, value)`` each. Uniform by default: one gene is Real et al.'s (2019) mutation
        and the NAS-Bench-201 REA baseline's; ``gene_p`` (zero where a gene has one choice) and ``value_p(gene,
        current)`` (zero at ``current``) draw them from other distributions (HGM's learned ones)."""
        sizes = np.asarray(self.gene_sizes())
        genes = self.to_genes(arch).copy()
        mutable = (sizes > 1).astype(float)
        k = min(k, int(mutable.sum()))
        if k == 0:  # no gene has a choice
            return arch, ()
        if gene_p is None:
            gene_p = mutable / max(mutable.sum(), 1.0)
        ops = []
        for i in rng.choice(len(genes), size=k, replace=False, p=gene_p):
            if value_p is None:
                p = (np.arange(sizes[i]) != genes[i]) / (sizes[i] - 1.0)
            else:
                p = value_p(int(i), int(genes[i]))
            v = int(rng.choice(int(sizes[i]), p=p))
            genes[i] = v
            ops.append((int(i), v))
        return self.from_genes(genes), tuple(ops)

    def crossover(self, a: A, b: A, rng: np.random.Generator) -> A:
        """Uniform crossover of the gene vectors."""
        ga, gb = self.to_genes(a), self.to_genes(b)
        take_b = rng.random(len(ga)) < 0.5
        return self.from_genes(np.where(take_b, gb, ga))

    def encode(self, arch: A) -> np.ndarray:
        """Continuous code in ``[0, 1)^D``: the centre of each gene's bin."""
        sizes = np.asarray(self.gene_sizes(), dtype=float)
        return (self.to_genes(arch) + 0.5) / sizes

    def decode(self, x: Sequence[float] | np.ndarray) -> A:
        """Map any real vector to an architecture (clipped into ``[0, 1)``, then binned)."""
        sizes = np.asarray(self.gene_sizes())
        x = np.clip(np.asarray(x, dtype=float), 0.0, np.nextafter(1.0, 0.0))
        return self.from_genes(np.minimum((x * sizes).astype(np.int64), sizes - 1))

    # ------------------------------------------------------------------ blocks
    @abstractmethod
    def block_keys(self, arch: A) -> list[str]:
        """The ordered block keys of the whole network, stem and head included."""

    @abstractmethod
    def key_vocab(self) -> list[str]:
        """Every block key any architecture of the space can produce (what profiling times)."""

    def key_index_matrix(self, genes: np.ndarray) -> np.ndarray:
        """Indices into ``key_vocab()`` of each network's blocks, ``-1``-padded: shape ``(n, B)``.

        Spaces override this with a vectorised version; this fallback loops.
        """
        vocab = {k: i for i, k in enumerate(self.key_vocab())}
        rows = [[vocab[k] for k in self.block_keys(self.from_genes(g))] for g in np.atleast_2d(genes)]
        width = max(len(r) for r in rows)
        out = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            out[i, : len(r)] = r
        return out

    def min_latency(self, key_cost: Mapping[str, float]) -> tuple[float, A]:
        """The smallest summed cost over the space and an architecture reaching it.

        Spaces override with an exact method; the fallback is a bounded greedy coordinate descent.
        """
        rng = np.random.default_rng(0)
        sizes = self.gene_sizes()
        best = self.sample(rng)
        best_cost = sum(key_cost[k] for k in self.block_keys(best))
        improved = True
        rounds = 0
        while improved and rounds < 50:
            improved, rounds = False, rounds + 1
            for i, n in enumerate(sizes):
                for c in range(n):
                    g = self.to_genes(best).copy()
                    g[i] = c
                    cand = self.from_genes(g)
                    cost = sum(key_cost[k] for k in self.block_keys(cand))
                    if cost < best_cost - 1e-12:
                        best, best_cost, improved = cand, cost, True
        return best_cost, best

    # ------------------------------------------------------------------- torch
    @abstractmethod
    def input_shape(self, arch: A) -> tuple[int, ...]:
        """Input tensor shape with batch 1, e.g. ``(1, 3, 32, 32)``."""

    @abstractmethod
    def build_model(self, arch: A) -> Any:
        """A ``torch.nn.Module`` for the whole network (eval-ready, deterministic init)."""

    @abstractmethod
    def build_block(self, key: str) -> Any:
        """A ``torch.nn.Module`` for one block, built from its key alone."""

    @abstractmethod
    def block_input_shape(self, key: str) -> tuple[int, ...]:
        """Input shape (batch 1) of the block with this key."""

    @property
    def num_classes(self) -> int:
        return 10


def gene_array(genes: Any, what: str) -> np.ndarray:
    """``np.asarray(genes)``; rows of different lengths (numpy's "inhomogeneous shape" ``ValueError``) are one
    ``InputError``: ``what``, then "got rows of different lengths"."""
    try:
        return np.asarray(genes)
    except ValueError:
        raise InputError(f"{what}, got rows of different lengths") from None


def require(cond: bool, message: str, hint: str | None = None) -> None:
    """Raise ``InputError(message)`` unless ``cond``."""
    if not cond:
        raise InputError(message, hint=hint)
