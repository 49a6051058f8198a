"""The device fingerprint: what a LUT's numbers depend on.

``collect(settings)`` returns ``(fingerprint, fingerprint_hash, state)``:

- ``fingerprint = {"identity", "software", "performance", "settings"}``; its hash (SHA-256 of the
  canonical JSON) names the LUT, so any change (another power mode, a new onnxruntime, a different
  thread count) makes the LUT stale. Only configured values go in: governors and min/max clocks, never
  current clocks.
- ``state``: readings that change every second (temperatures, current clocks, a tegrastats line,
  GPU clocks and power draw). Reported, never hashed.

Files are read under ``root`` and tools run through ``run`` so tests can replay real samples; a missing
file or tool leaves its field absent instead of guessing.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import threading
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from . import parsers, runtimes

Runner = Callable[[List[str], float], Optional[str]]
_SMI_FP = "name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.memory"
_SMI_STATE = "index,temperature.gpu,clocks.sm,clocks.mem,power.draw,pstate"
_TOOL_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


def run_tool(argv: List[str], timeout_s: float = 5.0) -> Optional[str]:
    """stdout of a tool, or None when it is absent, fails or hangs (no root, no shell)."""
    exe = shutil.which(argv[0]) or next((os.path.join(d, argv[0]) for d in _TOOL_DIRS
                                         if os.access(os.path.join(d, argv[0]), os.X_OK)), None)
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe] + argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", "replace")


def _read(root: str, path: str, nul: str = "") -> Optional[str]:
    try:
        with open(os.path.join(root, path.lstrip("/")), "rb") as fh:
            return fh.read().decode("utf-8", "replace").replace("\x00", nul).strip()
    except OSError:
        return None


def _put(d: Dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != {} and value != []:
        d[key] = value


def _cpufreq(root: str, names: Tuple[str, ...]) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    base = os.path.join(root, "sys/devices/system/cpu")
    for path in sorted(glob.glob(os.path.join(base, "cpu[0-9]*")), key=lambda p: int(re.sub(r"\D", "", os.path.basename(p)))):
        cpu: Dict[str, Any] = {}
        for name in names:
            value = _read(root, os.path.relpath(os.path.join(path, "cpufreq", name), root))
            _put(cpu, name, parsers._num(value) if value is not None else None)
        _put(out, os.path.basename(path), cpu)
    return out


def _devfreq(root: str, names: Tuple[str, ...]) -> Dict[str, Dict[str, Any]]:
    """GPU and EMC devfreq nodes (Jetson: ``17000000.ga10b``, ``57000000.gpu``, ...)."""
    out: Dict[str, Dict[str, Any]] = {}
    for path in sorted(glob.glob(os.path.join(root, "sys/class/devfreq/*"))):
        node = os.path.basename(path)
        if not re.search(r"gpu|gv11b|ga10b|gp10b|gm20b|emc", node):
            continue
        dev: Dict[str, Any] = {}
        for name in names:
            value = _read(root, os.path.relpath(os.path.join(path, name), root))
            _put(dev, name, parsers._num(value) if value is not None else None)
        _put(out, node, dev)
    return out


def identity(root: str, run: Runner) -> Dict[str, Any]:
    out: Dict[str, Any] = {"machine": platform.machine(), "cpu_count": os.cpu_count()}
    _put(out, "cpu_model", parsers.parse_cpu_model(_read(root, "/proc/cpuinfo") or ""))
    _put(out, "ram_mb", parsers.parse_meminfo_total_mb(_read(root, "/proc/meminfo") or ""))
    _put(out, "model", _read(root, "/proc/device-tree/model"))
    compatible = _read(root, "/proc/device-tree/compatible", nul="\n")  # NUL-separated, SoC last
    _put(out, "soc", compatible.split("\n")[-1] if compatible else None)
    smi = run(["nvidia-smi", "--query-gpu=" + _SMI_FP, "--format=csv"], 10.0)
    gpus = parsers.parse_nvidia_smi_csv(smi) if smi else []
    _put(out, "gpus", [{k: g[k] for k in ("name", "memory.total") if k in g} for g in gpus])
    return out


def software(root: str, run: Runner, agent_version: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {"kernel": platform.release(), "python": platform.python_version(),
                           "agent_version": agent_version}
    _put(out, "os", parsers.parse_os_release(_read(root, "/etc/os-release") or "").get("PRETTY_NAME"))
    tegra = parsers.parse_nv_tegra_release(_read(root, "/etc/nv_tegra_release") or "")
    _put(out, "l4t", tegra.get("l4t"))
    jetpack = run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"], 5.0)
    _put(out, "jetpack", jetpack.strip() if jetpack else None)
    cuda = _read(root, "/usr/local/cuda/version.json")
    if cuda:
        try:
            _put(out, "cuda", json.loads(cuda).get("cuda", {}).get("version"))
        except ValueError:
            pass
    smi = run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv"], 10.0)
    rows = parsers.parse_nvidia_smi_csv(smi) if smi else []
    _put(out, "nvidia_driver", rows[0].get("driver_version") if rows else None)
    _put(out, "runtimes", {k: v for k, v in runtimes.probe_all().items() if v is not None})
    return out


def performance(root: str, run: Runner) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    _put(out, "cpus_online", _read(root, "/sys/devices/system/cpu/online"))
    _put(out, "cpufreq", _cpufreq(root, ("scaling_governor", "scaling_min_freq", "scaling_max_freq")))
    _put(out, "intel_no_turbo", _read(root, "/sys/devices/system/cpu/intel_pstate/no_turbo"))
    _put(out, "cpufreq_boost", _read(root, "/sys/devices/system/cpu/cpufreq/boost"))
    _put(out, "devfreq", _devfreq(root, ("governor", "min_freq", "max_freq")))
    nvp = run(["nvpmodel", "-q"], 10.0)
    _put(out, "nvpmodel", parsers.parse_nvpmodel_q(nvp) if nvp else None)
    show = run(["jetson_clocks", "--show"], 10.0)  # needs root on most releases: then absent
    if show:
        jc = parsers.parse_jetson_clocks_show(show)
        _put(out, "jetson_clocks", {
            "locked": jc.get("locked"),
            "cpus": {k: {f: v for f, v in c.items() if f != "cur_freq"} for k, c in jc.get("cpus", {}).items()},
            "gpu": _settings(jc.get("gpu", {})),
            "emc": {f: v for f, v in jc.get("emc", {}).items() if f != "cur_freq"},
        })
    smi = run(["nvidia-smi", "--query-gpu=" + _SMI_FP, "--format=csv"], 10.0)
    gpus = parsers.parse_nvidia_smi_csv(smi) if smi else []
    _put(out, "gpus", [{k: g[k] for k in ("power.limit", "clocks.max.sm", "clocks.max.memory") if k in g}
                       for g in gpus])
    return out


def _settings(unit: Dict[str, Any]) -> Dict[str, Any]:
    """A clock unit of ``jetson_clocks --show`` without its current frequency (a reading, not a setting); Thor's
    several GPU units (``gpu-gpc-0``, ...) each alike."""
    return {k: (_settings(v) if isinstance(v, dict) else v) for k, v in unit.items() if k != "cur_freq"}


def state(root: str = "/", run: Runner = run_tool) -> Dict[str, Any]:
    """Readings of the moment (not hashed): temperatures, current clocks, GPU power."""
    out: Dict[str, Any] = {}
    temps = {}
    for zone in sorted(glob.glob(os.path.join(root, "sys/class/thermal/thermal_zone*"))):
        kind = _read(root, os.path.relpath(os.path.join(zone, "type"), root))
        temp = _read(root, os.path.relpath(os.path.join(zone, "temp"), root))
        if kind and temp and temp.lstrip("-").isdigit():
            temps[kind] = int(temp) / 1000.0
    _put(out, "temps_c", temps)
    cur = _cpufreq(root, ("scaling_cur_freq",))
    _put(out, "cpu_cur_khz", {k: v["scaling_cur_freq"] for k, v in cur.items() if "scaling_cur_freq" in v})
    _put(out, "devfreq_cur", {k: v.get("cur_freq") for k, v in _devfreq(root, ("cur_freq",)).items()})
    smi = run(["nvidia-smi", "--query-gpu=" + _SMI_STATE, "--format=csv"], 10.0)
    _put(out, "gpus", parsers.parse_nvidia_smi_csv(smi) if smi else None)
    return out


def tegrastats_once(timeout_s: float = 3.0) -> Optional[Dict[str, Any]]:
    """One tegrastats line, when the tool exists (it streams: read one line, then stop it)."""
    exe = shutil.which("tegrastats")
    if exe is None:
        return None
    try:
        proc = subprocess.Popen([exe, "--interval", "500"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    killer = threading.Timer(timeout_s, proc.kill)
    killer.start()
    try:
        line = proc.stdout.readline().decode("utf-8", "replace").strip() if proc.stdout else ""
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()
    return parsers.parse_tegrastats(line) if line else None


def _memo(run: Runner) -> Runner:
    cache: Dict[str, Optional[str]] = {}

    def memo(argv: List[str], timeout_s: float) -> Optional[str]:
        key = "\0".join(argv)
        if key not in cache:
            cache[key] = run(argv, timeout_s)
        return cache[key]

    return memo


def fingerprint_hash(fp: Mapping[str, Any]) -> str:
    canonical = json.dumps(fp, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def collect(settings: Optional[Mapping[str, Any]] = None, *, agent_version: str = "dev", root: str = "/",
            run: Runner = run_tool) -> Tuple[Dict[str, Any], str, Dict[str, Any]]:
    run = _memo(run)
    fp = {"identity": identity(root, run), "software": software(root, run, agent_version),
          "performance": performance(root, run), "settings": dict(settings or {})}
    return fp, fingerprint_hash(fp), state(root, run)
