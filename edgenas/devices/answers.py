"""Typed records for what the agent answers, parsed once where the RPC answer arrives.

The agent is untrusted input: ``DeviceInfo.from_answer`` checks the shape of an ``info`` answer (the
fingerprint hash names LUT files on the host, so it must be 64 hex digits) and raises one
``BadAnswerError`` (a ``DeviceError``) naming the device when it is malformed. ``BenchAnswer`` does the
same for ``bench``: its statistics become the LUT's ``EntryStats``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from edgenas.errors import BadAnswerError, InputError
from edgenas.latency.lut import EntryStats
from edgenas.safenames import SHA256_RE
from edgenas.textsafe import clean, one_line

#: a cold-start field: ``session_ms``, ``first_run_ms``, ...
_COLD_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}\Z")


def _mapping(device: str, answer: Mapping[str, Any], key: str, what: str) -> dict[str, Any]:
    value = answer.get(key, {})
    if not isinstance(value, Mapping):
        raise BadAnswerError(device, f"the agent's {what} answer has a malformed '{key}' ({type(value).__name__})",
                             hint="reinstall the agent (it is replaced when its hash differs)")
    return dict(value)


@dataclass(frozen=True)
class DeviceInfo:
    """The agent's ``info`` answer: fingerprint (and its hash), performance state, runtimes."""

    device: str
    fingerprint: dict[str, Any]
    fingerprint_hash: str
    state: dict[str, Any] = field(default_factory=dict)
    runtimes: dict[str, Any] = field(default_factory=dict)  # name -> version info, or None when absent
    agent_version: str = ""
    workdir: str = ""

    @classmethod
    def from_answer(cls, device: str, answer: Any) -> "DeviceInfo":
        if not isinstance(answer, Mapping):
            raise BadAnswerError(device, f"the agent's info answer is not an object ({type(answer).__name__})")
        fp_hash = answer.get("fingerprint_hash")
        if not isinstance(fp_hash, str) or not SHA256_RE.match(fp_hash):
            raise BadAnswerError(device, f"the agent's fingerprint hash {str(fp_hash)[:80]!r} is not 64 hex digits",
                                 hint="reinstall the agent (it is replaced when its hash differs)")
        return cls(device=device, fingerprint=_mapping(device, answer, "fingerprint", "info"),
                   fingerprint_hash=fp_hash, state=_mapping(device, answer, "state", "info"),
                   runtimes=_mapping(device, answer, "runtimes", "info"),
                   agent_version=str(answer.get("agent_version") or ""), workdir=str(answer.get("workdir") or ""))

    def available_runtimes(self) -> list[str]:
        return sorted(name for name, have in self.runtimes.items() if have)

    def power_mode(self) -> Any:
        """The nvpmodel mode the fingerprint reports (None where the device has no nvpmodel)."""
        return _find(self.fingerprint, "nvpmodel")

    def power_mode_note(self, expected: str | None) -> str | None:
        """A warning when the profile expects a power mode and the device is in another, or reports none (a
        table timed in the wrong mode is what the setting is there to catch): ``profile``, ``deploy`` and
        ``fleet status`` print it (``device info`` printed it alone)."""
        if not expected:
            return None
        mm = self.power_mode_mismatch(expected)
        if mm is not None:
            return f"power mode is {one_line(mm['actual'], 80)}, the profile expects {one_line(mm['expected'], 80)}"
        if self.power_mode() is None:
            return f"the profile expects power mode {expected}, and the device reports none (no nvpmodel answer)"
        return None

    def unmeasurable(self, params: Mapping[str, Any]) -> str | None:
        """Why the device cannot run calls with ``params`` (a runtime it lacks, an ONNX Runtime provider it
        lacks), from what ``info`` reported; None when it can, or cannot tell (torch's CUDA is not reported)."""
        name, provider = params.get("runtime"), params.get("provider")
        have = self.available_runtimes()
        if name not in have:
            return f"runtime '{name}' is not available; the device has: {', '.join(have) or 'none'}"
        entry = self.runtimes.get(name)
        listed = entry.get("providers") if isinstance(entry, Mapping) else None
        want = _ORT_PROVIDERS.get(provider) if name == "onnxruntime" else None
        if want and isinstance(listed, list) and want not in listed:
            return (f"onnxruntime provider {want} is not available; the device's onnxruntime has: "
                    f"{', '.join(str(p) for p in listed) or 'none'}")
        version = entry.get("version") if isinstance(entry, Mapping) else None
        major = re.match(r"(\d{1,6})\.", str(version)) if version is not None else None
        if name == "tensorrt" and params.get("precision", "fp32") != "fp32" and major and int(major.group(1)) >= 11:
            return (f"TensorRT {version} builds every layer in the type its ONNX graph gives it, and edgenas exports "
                    f"fp32 graphs: a {params.get('precision')} engine cannot be built (set precision = \"fp32\")")
        return None

    def power_mode_mismatch(self, expected: str | None) -> dict[str, Any] | None:
        """``{"expected", "actual"}`` when the profile expects a power mode the device is not in: the mode's
        name as ``nvpmodel -q`` prints it or its number, compared whole and ignoring case (a part matched:
        "5W" passed for 15W and 25W, "MAXN" for MAXN_SUPER)."""
        mode = self.power_mode()
        if not (expected and mode):
            return None
        want = expected.strip().lower()
        mode_id = _find(self.fingerprint, "nvpmodel", "id")
        if want == str(mode).strip().lower() or (mode_id is not None and want == str(mode_id)):
            return None
        return {"expected": expected, "actual": mode}

    def to_dict(self) -> dict[str, Any]:
        """The answer's JSON shape (what ``edgenas device info --json`` prints)."""
        return {"fingerprint": self.fingerprint, "fingerprint_hash": self.fingerprint_hash, "state": self.state,
                "runtimes": self.runtimes, "agent_version": self.agent_version, "workdir": self.workdir}


#: the ONNX Runtime provider a profile's ``provider`` names (as the agent maps it)
_ORT_PROVIDERS = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def _find(d: object, key: str, field: str = "mode") -> object:
    if isinstance(d, dict):
        for k, v in d.items():
            if key in k.lower():
                return v.get(field) if isinstance(v, dict) else (v if field == "mode" else None)
            got = _find(v, key, field)
            if got is not None:
                return got
    return None


@dataclass(frozen=True)
class BenchAnswer:
    """The agent's ``bench`` answer: validated statistics, cold start, the device's state while timing.

    ``raw_stats`` is the agent's STATS object with every field edgenas knows (``ref_ms``, ``ratio_cov``,
    window medians, ...) checked and unknown ones dropped, the form a ``Measurement`` stores; the cold
    start is a few named, finite, non-negative numbers."""

    stats: EntryStats
    raw_stats: dict[str, Any]
    cold_start: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    session: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)  # the protocol the agent applied

    @classmethod
    def from_answer(cls, device: str, answer: Any, what: str = "bench") -> "BenchAnswer":
        if not isinstance(answer, Mapping):
            raise BadAnswerError(device, f"the agent's {what} answer is not an object ({type(answer).__name__})")
        raw = _mapping(device, answer, "stats", what)
        try:
            raw = EntryStats.check(raw, f"{what} statistics")  # the known fields, checked; the rest dropped
            stats = EntryStats.from_checked(raw)
        except InputError as exc:
            raise BadAnswerError(device, f"the agent sent bad {exc.message}") from None
        if stats.median_ms <= 0:  # a whole model takes time: 0 ms is a broken timer or a hostile agent
            raise BadAnswerError(device, f"the agent's {what} answer times the model at {stats.median_ms:g} ms",
                                 hint="a measurement must be > 0 ms; check the device's clock or reinstall the agent")
        cold = _mapping(device, answer, "cold_start", what)
        bad = next((k for k, v in cold.items() if not _COLD_KEY_RE.match(str(k)) or isinstance(v, bool)
                    or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0), None)
        if bad is not None or len(cold) > 16:
            raise BadAnswerError(device, f"the agent's {what} answer has a malformed cold start "
                                         + (f"({clean(repr(bad), 40)}: {clean(repr(cold[bad]), 40)})" if bad is not None
                                            else f"({len(cold)} fields)"),
                                 hint="cold-start times are numbers of milliseconds; reinstall the agent")
        return cls(stats, raw, cold, *(_mapping(device, answer, key, what) for key in ("state", "session", "protocol")))

    @property
    def median_ms(self) -> float:
        return self.stats.median_ms

    def to_dict(self) -> dict[str, Any]:
        return {"stats": self.raw_stats, "cold_start": self.cold_start, "session": self.session,
                "state": self.state, "protocol": self.protocol}


#: where the agent keeps the engines it builds (relative to its work dir)
_ENGINE_RE = re.compile(r"^engines/[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.plan\Z")


def engine_answer(device: str, answer: Any) -> dict[str, Any]:
    """The agent's ``build_engine`` answer checked: the engine's path in the device's work dir
    (``engines/NAME.plan``, it is handed back to the agent to time it), its SHA-256 and build time."""
    ok = isinstance(answer, Mapping)
    engine, sha, build_s = (answer.get(k) for k in ("engine", "sha256", "build_s")) if ok else (None, None, None)
    if not (isinstance(engine, str) and _ENGINE_RE.match(engine) and ".." not in engine
            and isinstance(sha, str) and SHA256_RE.match(sha) and not isinstance(build_s, bool)
            and isinstance(build_s, (int, float)) and math.isfinite(build_s) and build_s >= 0):
        raise BadAnswerError(device, "the agent's build_engine answer is malformed (engine must be "
                                     "engines/NAME.plan, with its SHA-256 and build time)",
                             hint="reinstall the agent (it is replaced when its hash differs)")
    return {"engine": engine, "sha256": sha, "build_s": float(build_s)}
