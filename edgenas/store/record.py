"""The ``Measurement`` record: one whole-model measurement of a deployed architecture (schema 1).

What was run (space, architecture record, artifact SHA-256, runtime, precision), where (device,
fingerprint hash, the fingerprint of the LUT the prediction came from), how fast (the agent's full
STATS object, cold start, clocks/temperatures), and what the predictor said beforehand (raw LUT sum and
calibrated). ``from_dict`` is strict: every field present with the right type, no unknown fields.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from edgenas.errors import InputError
from edgenas.latency.lut import EntryStats
from edgenas.limits import MAX_TIME, check_depth, is_schema

MEASUREMENT_SCHEMA = 1


def new_measurement_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class Measurement:
    device: str
    space: str
    arch: dict[str, Any]
    artifact_sha256: str
    runtime: str
    precision: str
    fingerprint_hash: str
    stats: dict[str, Any]
    lut_fingerprint: str | None = None
    cold_start: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    predicted_raw_ms: float | None = None
    predicted_ms: float | None = None
    id: str = field(default_factory=new_measurement_id)
    created_at: float = field(default_factory=time.time)
    schema: int = MEASUREMENT_SCHEMA

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def measured_ms(self) -> float:
        """The measured latency: the median of the agent's STATS."""
        return float(self.stats["median_ms"])

    @property
    def entry_stats(self) -> EntryStats:
        return EntryStats.from_dict(self.stats, where=f"measurement {self.id}: stats")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: Any, where: str = "measurement") -> "Measurement":
        if not isinstance(d, Mapping):
            raise InputError(f"{where}: expected a JSON object")
        if not is_schema(d.get("schema"), MEASUREMENT_SCHEMA):
            raise InputError(f"{where}: unsupported schema {d.get('schema')!r} "
                             f"(expected {MEASUREMENT_SCHEMA})", hint="upgrade edgenas")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise InputError(f"{where}: unknown fields {', '.join(unknown)}")
        missing = sorted(n for n in names if n not in d)
        if missing:
            raise InputError(f"{where}: missing fields {', '.join(missing)}")
        try:
            return cls(**{n: _copy(d[n]) for n in names})
        except InputError as exc:
            raise InputError(f"{where}: {exc.message}", hint=exc.hint) from None


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, (dict, list)) else v


def _validate(m: Measurement) -> None:
    for name in ("id", "device", "space", "artifact_sha256", "runtime", "precision", "fingerprint_hash"):
        v = getattr(m, name)
        if not isinstance(v, str) or not v:
            raise InputError(f"'{name}' must be a non-empty string, got {v!r}")
    if m.lut_fingerprint is not None and not isinstance(m.lut_fingerprint, str):
        raise InputError(f"'lut_fingerprint' must be a string or null, got {m.lut_fingerprint!r}")
    for name in ("arch", "stats", "cold_start", "state"):
        if not isinstance(getattr(m, name), dict):
            raise InputError(f"'{name}' must be an object")
    if m.arch.get("space") != m.space:
        raise InputError(f"arch record is for space {m.arch.get('space')!r}, measurement for '{m.space}'")
    EntryStats.from_dict(m.stats, where="stats")  # the agent's STATS, validated
    for name in ("predicted_raw_ms", "predicted_ms"):
        v = getattr(m, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))
                              or not math.isfinite(v) or v < 0):
            raise InputError(f"'{name}' must be a finite number >= 0 or null, got {v!r}")
    if isinstance(m.created_at, bool) or not isinstance(m.created_at, (int, float)):
        raise InputError(f"'created_at' must be a number, got {m.created_at!r}")
    if not 0 <= m.created_at <= MAX_TIME:  # NaN too: a time no date shows, sorted nowhere (the report's '?')
        raise InputError(f"'created_at' must be a time from 0 to {MAX_TIME:.0f} (9999-12-31 UTC) in seconds since "
                         f"1970, got {m.created_at!r}")
    if not is_schema(m.schema, MEASUREMENT_SCHEMA):
        raise InputError(f"unsupported schema {m.schema!r} (expected {MEASUREMENT_SCHEMA})")
    # what the experiment database reads a record back as (``store.rows``): no deeper, no integer a float cannot
    # hold, no lone surrogate; one accepted here was a damaged row there at every later read
    check_depth({f.name: getattr(m, f.name) for f in fields(m)}, "measurement")
    try:
        json.dumps(m.arch), json.dumps(m.cold_start), json.dumps(m.state), json.dumps(m.stats)
    except (TypeError, ValueError) as exc:
        raise InputError(f"measurement is not JSON-serialisable: {exc}") from None
