"""The search problem: objectives and constraints, separate from the algorithm and the termination.

Objectives: accuracy from an evaluator (maximised), predicted latency per device (minimised, one
``LatencyModel`` per device) unless that device has a budget (then it is a constraint), and optional
params / FLOPs callables (minimised). Budgets that no architecture of the space can meet are rejected
when the problem is built, naming the device and the minimum the space allows.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np

from edgenas.errors import InfeasibleError, InputError
from edgenas.search.base import Result


@runtime_checkable
class LatencyModel(Protocol):
    """Predicted latency of architectures on one device, and the fastest the space allows there."""

    def predict_many(self, archs: Sequence[Any]) -> np.ndarray: ...

    def min_latency(self) -> tuple[float, Any]: ...


def plain_ms(ms: float, *, up: bool = False) -> str:
    """``ms`` in plain decimals with every digit that tells it apart (``repr``'s, no exponent); ``up``: at
    most 5 significant digits, rounded up (the budget hint: "at least 0.01128" from 0.0112835 failed again)."""
    if not math.isfinite(ms) or ms <= 0:
        return f"{ms:g}"
    if up:  # in decimal arithmetic: ms * 10 ** digits overflowed a float below 1e-304 (a table's 1e-310 ms)
        digits = max(0, 4 - math.floor(math.log10(ms)))
        with decimal.localcontext() as ctx:
            ctx.prec = 1000  # every digit of any float's repr
            exact = decimal.Decimal(repr(ms)).quantize(decimal.Decimal(1).scaleb(-digits), decimal.ROUND_CEILING)
        text = format(exact, "f")  # not below ms: a float read back from it is >= the float ms
        return text.rstrip("0").rstrip(".") if "." in text else text
    return np.format_float_positional(ms, trim="-")


@dataclass(frozen=True)
class DeviceTarget:
    """One device: its latency model and, optionally, a budget in ms.

    With a budget the latency is a constraint; without one it is an objective. ``minimise=True`` makes
    a budgeted latency an objective as well.
    """

    name: str
    model: LatencyModel
    budget_ms: float | None = None
    minimise: bool | None = None

    @property
    def is_objective(self) -> bool:
        return self.budget_ms is None if self.minimise is None else bool(self.minimise)


class Problem:
    """Evaluates architectures into objective values, per-device latencies and constraint values."""

    def __init__(self, space: Any, evaluator: Any, devices: Sequence[DeviceTarget] = (), *,
                 params: Callable[[Any], float] | None = None,
                 flops: Callable[[Any], float] | None = None,
                 accuracy_name: str = "accuracy") -> None:
        names = [d.name for d in devices]
        if len(set(names)) != len(names):
            raise InputError(f"device listed twice: {', '.join(names)}", hint="give each device once")
        for d in devices:
            if not isinstance(d.model, LatencyModel):
                raise InputError(f"device '{d.name}': latency model lacks predict_many/min_latency")
            if d.budget_ms is not None and not (isinstance(d.budget_ms, (int, float)) and 0 < d.budget_ms < math.inf):
                raise InputError(f"device '{d.name}': latency budget must be a positive number of ms, "
                                 f"got {d.budget_ms!r}", hint="for no budget, leave out --max-latency-ms")
        self.space = space
        self.evaluator = evaluator
        self.devices = list(devices)
        self.extra = {k: fn for k, fn in (("params", params), ("flops", flops)) if fn is not None}
        self.accuracy_name = accuracy_name
        self._anchors: list[Any] = []
        self.min_latency_ms: dict[str, float] = {}
        self.check_budgets()

    # -------------------------------------------------------------- budgets
    def check_budgets(self) -> None:
        """Raise ``InfeasibleError`` at once for a budget below the device's minimum latency."""
        for d in self.devices:
            if d.budget_ms is None:
                continue
            ms, arch = d.model.min_latency()
            self.min_latency_ms[d.name] = float(ms)
            if d.budget_ms < ms:
                raise InfeasibleError(
                    f"device '{d.name}': no architecture of space '{self.space.name}' meets "
                    f"{plain_ms(d.budget_ms)} ms; the fastest the space allows is {plain_ms(ms)} ms",
                    min_latency_ms=float(ms), hint=f"raise the budget to at least {plain_ms(ms, up=True)} ms")
            self._anchors.append(arch)

    # ------------------------------------------------------------ structure
    @property
    def objective_names(self) -> list[str]:
        """Objectives in order; the first (accuracy) is the primary one."""
        return ([self.accuracy_name] + [f"latency_ms:{d.name}" for d in self.devices if d.is_objective]
                + list(self.extra))

    @property
    def constrained(self) -> bool:
        return any(d.budget_ms is not None for d in self.devices)

    def describe(self) -> dict[str, Any]:
        return {"objectives": self.objective_names,
                "devices": {d.name: {"budget_ms": d.budget_ms, "objective": d.is_objective,
                                     "min_latency_ms": self.min_latency_ms.get(d.name)}
                            for d in self.devices},
                "evaluator": self.evaluator.describe() if hasattr(self.evaluator, "describe") else None}

    # ------------------------------------------------------- feasibility API
    def latencies(self, archs: Sequence[Any]) -> dict[str, np.ndarray]:
        return {d.name: np.asarray(d.model.predict_many(archs), dtype=float) for d in self.devices}

    def violation(self, archs: Sequence[Any]) -> np.ndarray:
        """Summed relative budget excess per architecture (0 = every budget met); cheap."""
        v = np.zeros(len(archs))
        for d in self.devices:
            if d.budget_ms is not None:
                ms = np.asarray(d.model.predict_many(archs), dtype=float)
                v += np.maximum(ms - d.budget_ms, 0.0) / d.budget_ms
        return v

    def anchors(self) -> list[Any]:
        """The fastest architecture of each budgeted device (targets for bounded repair)."""
        return list(self._anchors)

    # ------------------------------------------------------------ evaluation
    def evaluate(self, archs: Sequence[Any]) -> list[dict[str, Any]]:
        """One record per architecture: ``objectives``, ``latency_ms``, ``constraints``, ``feasible`` and,
        when the evaluator reports columns it does not optimise, ``report``."""
        from edgenas.evaluate.base import scores_of

        acc = scores_of(self.evaluator, archs)
        reported = self.evaluator.report(list(archs)) if hasattr(self.evaluator, "report") else {}
        lat = self.latencies(archs)
        extra = {k: [float(fn(a)) for a in archs] for k, fn in self.extra.items()}
        out = []
        for i in range(len(archs)):
            a = float(acc[i]) if np.isfinite(acc[i]) else -math.inf
            objectives = {self.accuracy_name: a, **{k: v[i] for k, v in extra.items()}}
            latency = {name: float(v[i]) for name, v in lat.items()}
            cons = {d.name: latency[d.name] - d.budget_ms for d in self.devices if d.budget_ms is not None}
            rec = {"objectives": objectives, "latency_ms": latency, "constraints": cons,
                   "feasible": all(c <= 0 for c in cons.values())}
            if reported:  # looked up, recorded, never optimised (e.g. the test accuracy of a valid search)
                rec["report"] = {k: float(v[i]) if np.isfinite(v[i]) else None for k, v in reported.items()}
            out.append(rec)
        return out

    def to_result(self, record: Mapping[str, Any]) -> Result:
        """Minimisation-form values and violation from an evaluation record (or a logged line)."""
        obj, lat = record["objectives"], record["latency_ms"]
        values = [-float(obj[self.accuracy_name])]
        values += [float(lat[d.name]) for d in self.devices if d.is_objective]
        values += [float(obj[k]) for k in self.extra]
        v = sum(max(float(lat[d.name]) - d.budget_ms, 0.0) / d.budget_ms
                for d in self.devices if d.budget_ms is not None)
        return Result(tuple(values), float(v))
