"""Import Once-for-All's published latency tables (one ``{r}_lookup_table.yaml`` per resolution).

OFA measured its width-1.2 MobileNetV3 blocks on a Samsung Note10 and published, per block key,
``count``, ``mean`` and ``std`` in milliseconds. Our ``Lut`` wants richer statistics, so the import
is explicit about what it approximates (also written into the LUT's ``protocol`` field):

* ``median_ms`` := ``mean`` (OFA published no median);
* ``p90``/``p99`` := ``mean + z * std`` with the normal quantiles z = 1.2816 / 2.3263, and
  ``min``/``max`` := ``mean -/+ 3 std`` (min clipped at 0): normal approximations, not observations;
* a key that appears in several resolution files (the resolution-independent head blocks) gets the
  pooled count, mean and standard deviation of all its measurements.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from edgenas.errors import InputError
from edgenas.latency.lut import IMPORTED_RUNTIME, UNKNOWN_PRECISION, EntryStats, Lut

FINGERPRINT = {"source": "once-for-all note10 tables"}
_Z90, _Z99, _ZMAX = 1.2816, 2.3263, 3.0
_FILE = re.compile(r"([0-9]+)_lookup_table\.ya?ml")
#: an hour: a block "latency" above this is garbage, and bounding it keeps the pooling arithmetic finite
MAX_MS = 3_600_000.0
#: the most measurements one entry may claim: bounds the pooled sums (OFA's tables hold a few hundred)
MAX_COUNT = 10 ** 9


def _read_table(path: Path) -> dict[str, tuple[int, float, float]]:
    from edgenas.limits import load_yaml_limited

    data = load_yaml_limited(path, "YAML in OFA table", hint="re-download the table")
    if not isinstance(data, dict) or not data:
        raise InputError(f"OFA table {path} must map block keys to {{count, mean, std}}", hint="is it an OFA table?")
    out = {}
    for key, v in data.items():
        if not isinstance(key, str) or not isinstance(v, dict) or not {"count", "mean", "std"} <= set(v):
            raise InputError(f"OFA table {path}: entry {key!r} must have count, mean and std")
        out[key] = _entry(path, key, [v["count"], v["mean"], v["std"]])
    return out


def _entry(path: Path, key: str, vals: list[Any]) -> tuple[int, float, float]:
    """One entry's ``(count, mean, std)``, range-checked so that pooling and the normal approximations
    stay finite: a file is untrusted, and a huge value must be one ``InputError``, not an overflow."""
    where = f"OFA table {path}: entry {key[:160]!r}"
    if any(isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0 for x in vals):
        raise InputError(f"{where} has non-numeric or negative statistics {str(vals)[:120]}",
                         hint="each of count, mean and std must be a finite number >= 0")
    count, mean, std = vals
    if count != int(count) or not 1 <= count <= MAX_COUNT:
        raise InputError(f"{where} has count {count} (needs a whole number from 1 to {MAX_COUNT})",
                         hint="fix or re-download the table")
    if mean > MAX_MS or std > MAX_MS:
        raise InputError(f"{where} has mean {mean} / std {std} ms (a block latency is at most {MAX_MS:.0f} ms)",
                         hint="fix or re-download the table")
    return int(count), float(mean), float(std)


def _pool(parts: list[tuple[int, float, float]]) -> tuple[int, float, float]:
    """Pooled count, mean and (population-style) std of several groups of measurements."""
    n = sum(p[0] for p in parts)
    mean = sum(p[0] * p[1] for p in parts) / n
    var = sum(p[0] * (p[2] ** 2 + (p[1] - mean) ** 2) for p in parts) / n
    return n, mean, math.sqrt(max(var, 0.0))


def _stats(n: int, mean: float, std: float) -> EntryStats:
    return EntryStats(n=n, median_ms=mean, mean_ms=mean, std_ms=std, cov=std / mean if mean > 0 else 0.0,
                      p90_ms=mean + _Z90 * std, p99_ms=mean + _Z99 * std,
                      min_ms=max(0.0, mean - _ZMAX * std), max_ms=mean + _ZMAX * std)


def import_ofa_lut(yaml_dir: str | Path, *, device: str = "note10", space: str = "ofa-mbv3-w12") -> Lut:
    """Read every ``{r}_lookup_table.yaml`` in ``yaml_dir`` into one ``Lut`` for ``space``."""
    from edgenas.spaces import get_space

    space = get_space(space).name
    d = Path(yaml_dir)
    if not d.is_dir():
        raise InputError(f"OFA table folder not found: {d}", hint="pass the folder holding 160_lookup_table.yaml ...")
    files = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _FILE.fullmatch(p.name)))
    if not files:
        raise InputError(f"no '<resolution>_lookup_table.yaml' files in {d}", hint="is this OFA's LUT folder?")
    groups: dict[str, list[tuple[int, float, float]]] = {}
    for _, path in files:
        for key, stats in _read_table(path).items():
            groups.setdefault(key, []).append(stats)
    entries = {k: _stats(*_pool(v)) for k, v in groups.items()}
    protocol: dict[str, Any] = {
        "source": "Once-for-All (mit-han-lab/once-for-all) published Note10 latency tables",
        "resolutions": [r for r, _ in files],
        "median_ms": "= mean; OFA published only count, mean and std",
        "p90_ms/p99_ms": f"normal approximation mean + z*std (z = {_Z90}, {_Z99})",
        "min_ms/max_ms": f"normal approximation mean -/+ {_ZMAX}*std, min clipped at 0",
        "keys_in_several_files": "pooled count, mean and std",
    }
    fp_hash = hashlib.sha256(json.dumps(FINGERPRINT, sort_keys=True).encode()).hexdigest()
    lut = Lut(device=device, space=space, fingerprint=dict(FINGERPRINT), fingerprint_hash=fp_hash,
              runtime=IMPORTED_RUNTIME, precision=UNKNOWN_PRECISION, threads=0, protocol=protocol,
              overhead=EntryStats(n=1, median_ms=0.0, mean_ms=0.0, std_ms=0.0, cov=0.0, p90_ms=0.0,
                                  p99_ms=0.0, min_ms=0.0, max_ms=0.0),
              entries=entries, created_at=0.0)
    return Lut.from_dict(lut.to_dict(), where=f"OFA tables in {d}")
