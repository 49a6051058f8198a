"""Every committed run of today's LUT protocol, tallied: does it agree better than fixed-500 (JSON)?

    python bench/lut_protocol_tally.py                       # bench/lut_protocol*_results.json
    python bench/lut_protocol_tally.py > bench/lut_protocol_tally_results.json   # (not read back)
    python bench/lut_protocol_tally.py FILE.json [FILE.json ...]

Reads the JSON that ``bench/lut_protocol.py`` printed, as committed: one run per file, or several
under ``runs`` (a list of ``{run, output}`` or a mapping of name to ``{result}``). It keeps the runs
whose recorded ``adaptive`` protocol equals today's ``LUT_PROTOCOL`` in every setting and whose calls
held ``--chunk`` 24 blocks (the profiler's batch), timed against today's fixed-500 and the default long
reference (2,000 runs per block in 4 passes); runs of earlier protocols, of candidate batches or with
another baseline are listed under ``left_out`` with the reason. Nothing is timed.

Per space, over every repeat of those runs: in how many the product's median, 90th-percentile and
largest relative difference of the entry medians from the long reference were below fixed-500's (ties
count as not below; the figures are compared as the bench printed them, to 4 decimals), with the exact
one-sided sign-test p-value of that count under "either is as likely to be lower" (a small p: the
product is lower more often than chance would make it); the same
split by the long reference's own pass-to-pass difference (below 0.5%: the calm repeats, where both
sit at the reference's noise floor; 0.5% or more: the noisier ones); and the range of the speed-up
over fixed-500. Repeats within one run share a machine and its spells, so the p-values treat them as
independent, which they are only roughly: read them as a summary, not as a proof.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the repeats whose long reference's passes agreed within this are "calm" (at the noise floor)
CALM_PASS_TO_PASS = 0.005
#: the profiler's batch: the product is timed as it profiles only in calls of this many blocks
PRODUCT_CHUNK = 24
FIGURES = ("median", "p90", "max")
#: how bench/lut_protocol.py describes the default long reference
LONG = "2000 single runs per block in 4 pass(es) of 500"


def runs_of(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(name, output) of every bench run in one committed JSON document."""
    if "spaces" in doc:
        yield "run", doc
        return
    runs = doc.get("runs")
    if isinstance(runs, list):
        for i, run in enumerate(runs):
            yield str(run.get("run", i)), run.get("output") or run.get("result") or {}
    elif isinstance(runs, dict):
        for name, run in runs.items():
            yield str(name), run.get("result") or run.get("output") or {}


def why_left_out(output: dict[str, Any], protocol: dict[str, Any], baseline: dict[str, Any],
                 long_pass: dict[str, Any]) -> str | None:
    """None if ``output`` timed today's protocol as the profiler does, against today's fixed-500 and a
    long reference of 2,000 runs in 4 passes of ``long_pass``; otherwise the reason."""
    protos = output.get("protocols") or {}
    adaptive = protos.get("adaptive")
    if not isinstance(adaptive, dict):
        return "no adaptive protocol recorded"
    differ = sorted(k for k, v in protocol.items() if adaptive.get(k) != v)
    if differ:
        return "an earlier protocol (" + ", ".join(f"{k} {adaptive.get(k)}" for k in differ) + ")"
    if output.get("chunk") != PRODUCT_CHUNK:
        return f"calls of {output.get('chunk')} blocks (a candidate batch)"
    if protos.get("fixed_500") != baseline:
        return "another fixed-500 baseline"
    if protos.get("long") != long_pass or not str(output.get("long", "")).startswith(LONG):
        return "another long reference"
    return None


def sign_test_p(wins: int, n: int) -> float:
    """Exact one-sided sign test: P(at least ``wins`` of ``n`` fair coin tosses)."""
    return sum(math.comb(n, i) for i in range(wins, n + 1)) / 2 ** n if n else 1.0


def tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Wins of the product over fixed-500 on each figure, over ``rows`` (one per repeat)."""
    out: dict[str, Any] = {"repeats": len(rows)}
    for fig in FIGURES:
        wins = sum(r["product"][fig] < r["fixed_500"][fig] for r in rows)
        out[f"{fig}_below_fixed_500"] = wins
        out[f"{fig}_sign_test_p"] = float(f"{sign_test_p(wins, len(rows)):.3g}")
    return out


def collect(paths: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """One row per repeat and space of the runs that timed today's protocol; the other runs, with why."""
    from edgenas.fleet.measure import LUT_PROTOCOL, LUT_PROTOCOL_BEFORE, LUT_PROTOCOL_FIXED_500

    long_pass = dict(LUT_PROTOCOL_BEFORE, fixed_n=500)
    rows, left_out = [], []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for name, output in runs_of(doc):
            reason = why_left_out(output, LUT_PROTOCOL, LUT_PROTOCOL_FIXED_500, long_pass)
            if reason:
                left_out.append({"file": Path(path).name, "run": name, "why": reason})
                continue
            for entry in output["spaces"]:
                results = entry["results"]
                rows.append({
                    "file": Path(path).name, "run": name, "repeat": entry.get("repeat", 0),
                    "space": entry["space"] + (f"@{entry['resolution']}" if entry.get("resolution") else ""),
                    "long_pass_to_pass": entry["long_pass_to_pass_median_rel_diff"],
                    "speedup": results["adaptive"]["speedup_vs_fixed_500"],
                    "fixed_500": {f: results["fixed_500"][f"{f}_rel_diff_vs_long"] for f in FIGURES},
                    "product": {f: results["adaptive"][f"{f}_rel_diff_vs_long"] for f in FIGURES},
                })
    return rows, left_out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", help="bench/lut_protocol.py JSON (default: bench/lut_protocol*_results.json)")
    a = ap.parse_args()
    from edgenas.fleet.measure import LUT_PROTOCOL

    paths = a.files or sorted(p for p in glob.glob(str(ROOT / "bench" / "lut_protocol*_results.json"))
                              if Path(p).name != "lut_protocol_tally_results.json")
    rows, left_out = collect(paths)
    spaces: dict[str, Any] = {}
    for space in sorted({r["space"] for r in rows}):
        mine = [r for r in rows if r["space"] == space]
        calm = [r for r in mine if r["long_pass_to_pass"] < CALM_PASS_TO_PASS]
        noisy = [r for r in mine if r["long_pass_to_pass"] >= CALM_PASS_TO_PASS]
        spaces[space] = {"all": tally(mine), "calm": tally(calm), "noisier": tally(noisy),
                         "speedup_range": [min(r["speedup"] for r in mine), max(r["speedup"] for r in mine)]}
    print(json.dumps({"bench": "lut_protocol_tally", "protocol": LUT_PROTOCOL, "chunk": PRODUCT_CHUNK,
                      "calm_pass_to_pass_below": CALM_PASS_TO_PASS, "files": [Path(p).name for p in paths],
                      "spaces": spaces, "repeats": rows, "left_out": left_out}, indent=1))


if __name__ == "__main__":
    main()
