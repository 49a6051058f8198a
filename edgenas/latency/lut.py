"""The latency look-up table record (versioned JSON) and its strict reader.

A LUT holds, for one (device, space, fingerprint), the measured statistics of every block key the
space can produce, the fixed per-inference overhead of the runtime (timed on a trivial model, so the
predictor can count it once per network instead of once per block), the measurement protocol used,
and an optional calibration fitted from whole-model measurements.

Where the runtime's calls overlap on the device (torch on CUDA, TensorRT), entries and overhead are
timed in runs of ``protocol["runs_per_sample"]`` calls, and ``sync`` holds the trivial model timed one
call at a time: what one inference pays once for waiting on the device (``sync_extra_ms``).
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Mapping

from edgenas.errors import InputError
from edgenas.io import atomic_write_text, read_json
from edgenas.limits import MAX_INT, MAX_TIME, is_finite, is_schema
from edgenas.textsafe import brief

LUT_SCHEMA = 1

_STAT_FIELDS = ("n", "median_ms", "mean_ms", "std_ms", "cov", "p90_ms", "p99_ms", "min_ms", "max_ms")
#: the optional STATS fields and what each must be: a whole number >= 0 ("count"), a finite number > 0
#: ("positive"), >= 0 ("number"), >= 0 or infinite ("spread": a CoV of a zero mean), a list of numbers
_OPTIONAL_FIELDS = {"k": "count", "warmup_n": "count", "total_s": "number", "ci_rel": "spread",
                    "ratio": "positive", "ratio_cov": "spread", "ratio_ci_rel": "spread", "ref_ms": "positive",
                    "ref_k": "count", "sessions": "count", "nominal_ms": "positive", "window_medians_ms": "list",
                    "ref_sha256": "sha256"}
#: a SHA-256 as edgenas writes it (``ref_sha256``: the speed reference a measurement's ratio was timed against)
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: the most window medians a STATS object may list
MAX_WINDOWS = 1000
#: the longest time (ms) a statistic, a reference or an entry's cost may state (about 2.8 hours): a
#: larger one is a broken or hostile record, and sums of such values overflow to inf and then nan
MAX_MS = 1e7
#: the calibration model every fit writes: log(measured) = a + b * log(predicted)
CALIBRATION_MODEL = "loglinear"
#: the slopes ``b`` a fit writes (it clips to them): a record outside was edited or sent, and b = 1e5
#: made every prediction 0 ms (every architecture feasible)
CALIBRATION_SLOPES = (0.5, 1.5)
#: the largest offset |a|: a correction by a factor over e^20 (5e8) is no correction of a LUT sum
CALIBRATION_MAX_OFFSET = 20.0
#: what to do about a damaged calibration (``lut calibrate`` loads the table first, so it cannot repair one)
_CAL_HINT = "rebuild the table: edgenas profile DEVICE --space SPACE --force"
#: what a table imported from published numbers (``lut import-ofa``) names as its runtime and precision: not
#: known (nor its threads: 0)
IMPORTED_RUNTIME = "unknown (OFA published tables)"
UNKNOWN_PRECISION = "unknown"
#: how far in the future a table's ``created_at`` or its calibration's ``fitted_at`` may lie before it is
#: called future-dated (clock differences between hosts); such a record is read and used as any other
FUTURE_SLACK_S = 86400.0


_short = partial(brief, max_len=80)


def utc(t: float) -> str:
    """A record's time as a UTC date (``?`` where it is no time: 1e300 overflows gmtime)."""
    try:
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))
    except (OverflowError, OSError, ValueError):
        return "?"


def future_dated(t: float, now: float | None = None) -> bool:
    """True when ``t`` lies more than ``FUTURE_SLACK_S`` after ``now``: the clock that wrote it was ahead."""
    return t > (time.time() if now is None else now) + FUTURE_SLACK_S


def _number(v: Any, where: str, allow_inf: bool = False, cap: float = math.inf) -> float | int:
    if not (is_finite(v) or (allow_inf and isinstance(v, float) and v == math.inf)) or v < 0:
        raise InputError(f"{where} must be a finite number >= 0, got {_short(v)}")
    if v > cap and not math.isinf(v):
        raise InputError(f"{where} must be at most {cap:g}, got {_short(v)}")
    return v


def _time(v: Any, where: str, hint: str | None = None) -> float:
    """A record's time (``created_at``, ``fitted_at``): seconds since 1970, from 0 (unknown: an imported table)
    to ``MAX_TIME``. A date ahead of the host's clock is read (``future_dated``), one no date can show is not:
    -1e300 was refused and 1e300 taken."""
    if not (is_finite(v) and 0 <= v <= MAX_TIME):
        raise InputError(f"{where} must be a time from 0 to {MAX_TIME:.0f} (9999-12-31 UTC) in seconds since 1970, "
                         f"got {_short(v)}", hint=hint)
    return float(v)


def _whole(v: Any, where: str, cap: float = math.inf) -> int:
    """A count (threads, calibration points): a whole number >= 0; 2.5 is refused, not cut to 2."""
    n = _number(v, where, cap=cap)
    if n != int(n):
        raise InputError(f"{where} must be a whole number, got {_short(v)}")
    return int(n)


#: the longest a timing may say it took in all (``total_s``, seconds: about 116 days)
MAX_TOTAL_S = 1e7
#: the STATS fields that count (samples, runs per sample, warm-up runs, sessions)
_COUNTS = frozenset({"n", "k", "warmup_n", "ref_k", "sessions"})


def _cap(field: str) -> float:
    """The largest value a STATS field may hold: ``MAX_MS`` for times and the reference ratio, ``MAX_INT`` for
    counts, ``MAX_TOTAL_S`` for the timing's total (a device's n = 1e300 was stored as 301 digits)."""
    if field.endswith("_ms") or field == "ratio":
        return MAX_MS
    return MAX_INT if field in _COUNTS else MAX_TOTAL_S if field == "total_s" else math.inf


def _file_text(data: dict[str, Any]) -> str:
    """A table's file, indented JSON: what ``save`` writes and ``saved_bytes`` sizes (one serialisation for both)."""
    return json.dumps(data, indent=2) + "\n"


_Z90 = 1.2815515655446004  # the 90th percentile of the standard normal


@dataclass(frozen=True)
class EntryStats:
    """Statistics of one timed model, as the agent's measurement protocol reports them."""

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    cov: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    stable: bool = True
    k: int = 1  # back-to-back runs per sample
    warmup_n: int = 0
    total_s: float = 0.0
    #: median of (time of this model / time of the LUT's reference workload) over samples taken in
    #: alternation: the entry's cost at the device's nominal speed, immune to speed drift
    ratio: float | None = None

    @staticmethod
    def check(d: Any, where: str = "entry") -> dict[str, Any]:
        """The STATS object ``d`` (an agent's answer, a LUT entry, a stored measurement) checked field by
        field and returned as a new dict of the fields edgenas knows: the required numbers, then the
        optional ones (``None`` where the agent reports none). Unknown fields are dropped, so a device
        cannot store arbitrary data through them; a wrong type is one ``InputError``, never a crash."""
        if not isinstance(d, Mapping):
            raise InputError(f"{where}: expected an object of statistics")
        missing = [f for f in _STAT_FIELDS if f not in d]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        out: dict[str, Any] = {f: _number(d[f], f"{where}: {f}", cap=_cap(f)) for f in _STAT_FIELDS}
        if out["n"] < 1 or out["n"] != int(out["n"]):
            raise InputError(f"{where}: n must be a whole number >= 1, got {out['n']!r}")
        if not out["min_ms"] <= out["median_ms"] <= out["max_ms"] + 1e-12:
            raise InputError(f"{where}: median_ms outside [min_ms, max_ms]")
        if "stable" in d:
            if not isinstance(d["stable"], bool):
                raise InputError(f"{where}: stable must be true or false, got {_short(d['stable'])}")
            out["stable"] = d["stable"]
        for f, kind in _OPTIONAL_FIELDS.items():
            v = d.get(f)
            if v is None:
                continue
            if kind == "sha256":
                if not isinstance(v, str) or not _SHA256.fullmatch(v):
                    raise InputError(f"{where}: {f} must be a SHA-256 (64 hex digits), got {_short(v)}")
                out[f] = v
                continue
            if kind == "list":
                if not isinstance(v, list) or len(v) > MAX_WINDOWS:
                    raise InputError(f"{where}: {f} must be a list of at most {MAX_WINDOWS} numbers")
                out[f] = [_number(x, f"{where}: {f}", cap=MAX_MS) for x in v]
                continue
            out[f] = _number(v, f"{where}: {f}", allow_inf=kind == "spread", cap=_cap(f))
            if kind == "count" and out[f] != int(out[f]):
                raise InputError(f"{where}: {f} must be a whole number, got {_short(v)}")
            if kind == "positive" and out[f] <= 0:
                raise InputError(f"{where}: {f} must be a finite number > 0, got {_short(v)}")
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "entry") -> "EntryStats":
        return cls.from_checked(cls.check(d, where))

    @classmethod
    def from_checked(cls, c: Mapping[str, Any]) -> "EntryStats":
        """The record of a STATS object ``check`` has already returned (not checked again)."""
        return cls(
            n=int(c["n"]), median_ms=float(c["median_ms"]), mean_ms=float(c["mean_ms"]),
            std_ms=float(c["std_ms"]), cov=float(c["cov"]), p90_ms=float(c["p90_ms"]),
            p99_ms=float(c["p99_ms"]), min_ms=float(c["min_ms"]), max_ms=float(c["max_ms"]),
            stable=c.get("stable", True), k=int(c.get("k", 1)),
            warmup_n=int(c.get("warmup_n", 0)), total_s=float(c.get("total_s", 0.0)),
            ratio=None if c.get("ratio") is None else float(c["ratio"]),
        )

    @property
    def robust_cov(self) -> float:
        """The spread of the samples' bulk relative to the median: (p90 - median) / (1.2816 x median), the
        CoV of a normal sample. A few stalls in the tail inflate ``cov`` (one 50 ms sample among
        4 us ones made it 0.45); they leave this where the bulk is."""
        return max(self.p90_ms - self.median_ms, 0.0) / (_Z90 * self.median_ms) if self.median_ms > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Calibration:
    """A correction from LUT sums to measured whole-model latency, fitted on ``n_points``."""

    model: str  # e.g. "loglinear": log(measured) = a + b * log(predicted)
    params: dict[str, float]
    n_points: int
    fitted_at: float = field(default_factory=time.time)
    residual: float = 0.0  # robust spread of the residuals (relative)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "LUT") -> "Calibration":
        where = f"malformed calibration in {source}:"
        missing = [k for k in ("model", "params", "n_points") if k not in d]
        if missing:  # the KeyError said only 'params'
            raise InputError(f"{where} missing field{'s' * (len(missing) > 1)} {', '.join(map(repr, missing))}",
                             hint=_CAL_HINT)
        if not isinstance(d["params"], Mapping):
            raise InputError(f"{where} params must be an object such as {{\"a\": 0.1, \"b\": 1.0}}, "
                             f"got {_short(d['params'])}", hint=_CAL_HINT)
        try:
            params = dict(d["params"])
            bad = next((k for k, v in params.items() if not is_finite(v)), None)
            if bad is not None:
                raise InputError(f"{where} parameter {_short(bad)} must be a finite number, got {_short(params[bad])}",
                                 hint=_CAL_HINT)
            cal = cls(model=str(d["model"]), params={k: float(v) for k, v in params.items()},
                      n_points=_whole(d["n_points"], f"{where} n_points"),
                      fitted_at=_time(d.get("fitted_at", 0.0), f"{where} fitted_at"),
                      residual=float(_number(d.get("residual", 0.0), f"{where} residual")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where} {exc}") from None
        try:
            cal.check()
        except InputError as exc:
            raise InputError(f"{source}: {exc.message}", hint=exc.hint) from None
        # a fitted_at in the future is not refused: the host's clock was ahead, the fit is as good as any, and
        # refusing it made the table unreadable even for the deploy or `lut calibrate` that would refit it
        return cal

    def check(self) -> None:
        """Raise ``InputError`` unless this is a loglinear, strictly increasing correction."""
        if self.model != CALIBRATION_MODEL:
            raise InputError(f"unknown calibration model {_short(self.model)} (known: {CALIBRATION_MODEL})",
                             hint="refit the calibration with this edgenas version")
        a, b = self.params.get("a"), self.params.get("b")
        if a is None or b is None or not math.isfinite(a) or not math.isfinite(b):
            raise InputError("calibration: params 'a' and 'b' must be finite numbers",
                             hint=_CAL_HINT)
        if b <= 0:
            raise InputError(f"calibration slope b={b:g} is not > 0, so it is not monotone",
                             hint="refit the calibration")
        lo, hi = CALIBRATION_SLOPES
        if not lo <= b <= hi or abs(a) > CALIBRATION_MAX_OFFSET:
            raise InputError(f"calibration a={a:g}, b={b:g} is outside what a fit writes (b from {lo:g} to {hi:g}, "
                             f"|a| at most {CALIBRATION_MAX_OFFSET:g})", hint=_CAL_HINT)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Lut:
    device: str
    space: str
    fingerprint: dict[str, Any]
    fingerprint_hash: str
    runtime: str
    precision: str
    threads: int
    protocol: dict[str, Any]
    overhead: EntryStats
    entries: dict[str, EntryStats]
    calibration: Calibration | None = None
    created_at: float = field(default_factory=time.time)
    schema: int = LUT_SCHEMA
    #: the speed reference timed in alternation with every entry: {"sha256", "ms" (its median time
    #: over the whole profile: the device's nominal speed), "model"}; None for tables without one
    reference: dict[str, Any] | None = None
    #: the overhead model timed one call at a time (no reference), for tables timed in runs; else None
    sync: EntryStats | None = None

    @property
    def normalised(self) -> bool:
        """True when every entry (and the overhead) carries a reference ratio."""
        return (self.reference is not None and self.overhead.ratio is not None
                and all(e.ratio is not None for e in self.entries.values()))

    def value_ms(self, entry: EntryStats) -> float:
        """An entry's cost in ms: ratio x the reference's nominal time if normalised, else the median."""
        if self.normalised:
            return float(entry.ratio) * float(self.reference["ms"])  # type: ignore[index,arg-type]
        return entry.median_ms

    @property
    def overhead_ms(self) -> float:
        """The per-call overhead as the entries include it (timed like them): what each entry's net cost
        subtracts."""
        return self.value_ms(self.overhead)

    @property
    def sync_extra_ms(self) -> float:
        """What one inference pays beyond ``overhead_ms`` for waiting on the device: the overhead model
        timed one call at a time minus timed in runs (raw medians of one profile), 0 without ``sync``."""
        if self.sync is None:
            return 0.0
        return max(self.sync.median_ms - self.overhead.median_ms, 0.0)

    @property
    def per_inference_ms(self) -> float:
        """The fixed cost of one inference: ``overhead_ms`` plus ``sync_extra_ms``."""
        return self.overhead_ms + self.sync_extra_ms

    def clock_warnings(self, now: float | None = None) -> list[str]:
        """What is dated in the future in this table (its ``created_at``, its calibration's ``fitted_at``):
        it is used as it is, but its date says nothing about which table or fit is newer."""
        out = []
        if future_dated(self.created_at, now):
            out.append(f"LUT {self.device}/{self.space} is dated {utc(self.created_at)}, in the future: the host "
                       f"clock was ahead when it was profiled (edgenas profile {self.device} --space {self.space} "
                       "--force dates a new one)")
        if self.calibration is not None and future_dated(self.calibration.fitted_at, now):
            out.append(f"the calibration of LUT {self.device}/{self.space} is dated {utc(self.calibration.fitted_at)}"
                       ", in the future: the host clock was ahead when it was fitted (the next deploy or "
                       f"edgenas lut calibrate {self.device} --space {self.space} refits it)")
        return out

    @property
    def unstable_keys(self) -> list[str]:
        return sorted(k for k, e in self.entries.items() if not e.stable)

    def with_calibration(self, calibration: Calibration | None) -> "Lut":
        from dataclasses import replace

        return replace(self, calibration=calibration)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out = {
            "schema": self.schema,
            "device": self.device,
            "space": self.space,
            "fingerprint_hash": self.fingerprint_hash,
            "fingerprint": self.fingerprint,
            "runtime": self.runtime,
            "precision": self.precision,
            "threads": self.threads,
            "protocol": self.protocol,
            "created_at": self.created_at,
            "overhead": self.overhead.to_dict(),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "reference": self.reference,
            "entries": {k: self.entries[k].to_dict() for k in sorted(self.entries)},
        }
        if self.sync is not None:  # absent, not null, in tables without it: their files stay as they were
            out["sync"] = self.sync.to_dict()
        return out

    @classmethod
    def from_dict(cls, d: Any, where: str = "LUT") -> "Lut":
        if not isinstance(d, Mapping):
            raise InputError(f"{where}: expected a JSON object")
        if not is_schema(d.get("schema"), LUT_SCHEMA):
            raise InputError(f"{where}: unsupported schema {d.get('schema')!r} (expected {LUT_SCHEMA})",
                             hint="re-profile the device with this edgenas version")
        for key, typ in (("device", str), ("space", str), ("fingerprint_hash", str), ("runtime", str),
                         ("precision", str), ("fingerprint", Mapping), ("entries", Mapping),
                         ("protocol", Mapping)):
            if not isinstance(d.get(key), typ):
                raise InputError(f"{where}: missing or malformed '{key}'")
        from edgenas.safenames import BLOCK_KEY_RE, HASH_RE, NAME_RE, SHA256_RE

        for key, rx in (("device", NAME_RE), ("space", NAME_RE), ("fingerprint_hash", HASH_RE)):
            if not rx.match(d[key]):
                raise InputError(f"{where}: malformed '{key}' {d[key][:80]!r}",
                                 hint="a plain name (letters, digits, '.', '_', '-') or a hex hash")
        from edgenas.devices.runtimes import MAX_THREADS, PRECISIONS, runtime_names

        rebuild = f"rebuild the table: edgenas profile {d['device']} --space {d['space']} --force"
        for key, known in (("runtime", (*runtime_names(), IMPORTED_RUNTIME)),
                           ("precision", (*PRECISIONS, UNKNOWN_PRECISION))):
            if d[key] not in known:  # 'onnx\x1b[2Jruntime' was read, and shown as onnxruntime
                raise InputError(f"{where}: unknown {key} {_short(d[key])} (known: {', '.join(map(repr, known))})",
                                 hint=rebuild)
        bad = next((k for k in d["entries"] if not BLOCK_KEY_RE.match(k)), None)
        if bad is not None:
            raise InputError(f"{where}: malformed block key {bad[:80]!r}",
                             hint="keys are the space's block keys (letters, digits and '._:+=,-'); "
                                  "re-profile the device or re-import the table")
        entries = {k: EntryStats.from_dict(v, f"{where}: entry '{k}'") for k, v in d["entries"].items()}
        if not entries:
            raise InputError(f"{where}: has no entries")
        cal = d.get("calibration")
        if cal is not None and not isinstance(cal, Mapping):
            raise InputError(f"{where}: malformed 'calibration' (an object or null)")
        ref = d.get("reference")
        if ref is not None and not (isinstance(ref, Mapping) and is_finite(ref.get("ms")) and ref["ms"] > 0
                                    and isinstance(ref.get("sha256"), str) and SHA256_RE.match(ref["sha256"])):
            raise InputError(f"{where}: malformed 'reference' (needs a hex sha256 of 64 digits and ms > 0)")
        if ref is not None and ref["ms"] > MAX_MS:
            raise InputError(f"{where}: the reference's ms must be at most {MAX_MS:g}, got {_short(ref['ms'])}")
        sync = EntryStats.from_dict(d["sync"], f"{where}: sync") if "sync" in d else None
        try:  # lut calibrate loads the table first, so it cannot repair a damaged calibration: a new table can
            calibration = Calibration.from_dict(cal, where) if cal else None
        except InputError as exc:
            raise InputError(exc.message, hint=rebuild) from None
        lut = cls(
            device=d["device"], space=d["space"], fingerprint=dict(d["fingerprint"]),
            fingerprint_hash=d["fingerprint_hash"], runtime=d["runtime"], precision=d["precision"],
            threads=_whole(d.get("threads", 0), f"{where}: threads", MAX_THREADS), protocol=dict(d["protocol"]),
            overhead=EntryStats.from_dict(d.get("overhead"), f"{where}: overhead"),
            entries=entries, calibration=calibration,
            created_at=_time(d.get("created_at", 0.0), f"{where}: created_at", rebuild), schema=LUT_SCHEMA,
            reference=dict(ref) if ref is not None else None, sync=sync,
        )
        if lut.normalised:  # medians are capped where they are read; a cost here is ratio x reference
            ratio, big = max((float(e.ratio), k) for k, e in {"overhead": lut.overhead, **entries}.items())
            cost = ratio * float(ref["ms"])  # type: ignore[index]
            if cost > MAX_MS:
                raise InputError(f"{where}: entry {_short(big)} costs {cost:g} ms (ratio x reference), "
                                 f"over {MAX_MS:g}", hint=rebuild)
        return lut

    def saved_bytes(self) -> int:
        """The size of the file ``save`` writes: indented JSON, all ASCII (one byte a character)."""
        return len(_file_text(self.to_dict()))

    def check_size(self, size: int | None = None) -> None:
        """One ``InputError`` for a table whose file ``Lut.load`` could not read back: the fingerprint is the
        device's, as large as one answer may be, and the file is indented (a list of 200,000 zeros, 0.4 MB in
        an answer, is 1.8 MB here), so every later command refused the table as damaged."""
        from edgenas import limits

        size = self.saved_bytes() if size is None else size
        if size > limits.MAX_JSON_BYTES:
            over, fingerprint = limits.over_limit(size, limits.MAX_JSON_BYTES), len(json.dumps(self.fingerprint))
            raise InputError(f"the table of device '{self.device}' would be {over} for LUT files (its fingerprint, "
                             f"from the device, is {limits.size_text(fingerprint)})",
                             hint=f"nothing was written; check the device's fingerprint (edgenas device info "
                                  f"{self.device} --json) and reinstall the agent")

    def save(self, path: str | Path) -> Path:
        """Validate by round trip, check the size of the file, then write atomically."""
        data = self.to_dict()
        Lut.from_dict(data, where=str(path))
        text = _file_text(data)
        self.check_size(len(text))
        return atomic_write_text(path, text)

    @classmethod
    def load(cls, path: str | Path) -> "Lut":
        return cls.from_dict(read_json(path, "LUT file"), where=f"LUT {path}")
