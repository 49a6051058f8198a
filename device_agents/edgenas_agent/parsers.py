"""Pure parsers for the text that Jetson and NVIDIA tools print (tested on real samples in
``tests/device_agents/samples``). Each returns a plain dict; a field the text does not carry is absent.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Dict, List, Optional

_KV = re.compile(r"(\w+)=(\S+)")


def _lenient(empty: Callable[[], Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A parser that meets output it does not expect gives ``empty()`` (the field is then absent) instead of
    raising: one odd line of ``jetson_clocks --show`` (``Online=on``, a GPU line without ``MaxFreq``) or of
    ``tegrastats`` failed the agent's ``info`` call, and with it every command on the device."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def parse(text: str) -> Any:
            try:
                return fn(text)
            except Exception:  # noqa: BLE001 - a tool's output is untrusted text
                return empty()
        return parse
    return wrap


def _int(text: Any) -> Optional[int]:
    return int(text) if isinstance(text, str) and text.strip().lstrip("-").isdigit() else None


def _num(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


@_lenient(dict)
def parse_nvpmodel_q(text: str) -> Dict[str, Any]:
    """``nvpmodel -q``: ``NV Power Mode: MAXN`` then the mode id on the next line (with ``--verbose`` the
    mode line reads ``NVPM VERB: Current mode: NV Power Mode: MAXN``)."""
    out: Dict[str, Any] = {}
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        m = re.search(r"NV Power Mode:\s*(.+)$", line)
        if m:
            out["mode"] = m.group(1).strip()
            if i + 1 < len(lines) and lines[i + 1].isdigit():
                out["id"] = int(lines[i + 1])
            break
    return out


@_lenient(dict)
def parse_jetson_clocks_show(text: str) -> Dict[str, Any]:
    """``jetson_clocks --show``: SoC, per-CPU governor and clocks, GPU and EMC clocks, power mode.

    Frequencies keep the tool's units (CPU kHz, GPU/EMC Hz). ``locked`` is True when every online CPU
    and the GPU have MinFreq == MaxFreq, which is what ``jetson_clocks`` sets.
    """
    out: Dict[str, Any] = {}
    cpus: Dict[str, Dict[str, Any]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        m = re.match(r"SOC family:(\S+)\s+Machine:(.+)$", line)
        if m:
            out["soc_family"], out["machine"] = m.group(1), m.group(2).strip()
            continue
        m = re.match(r"(cpu\d+):\s*(.*)$", line)
        if m:
            fields = dict(_KV.findall(m.group(2).split("IdleStates:")[0]))
            gov = fields.get("Governor", fields.get("Gonvernor"))  # L4T 28 spelled it "Gonvernor"
            online = _int(fields.get("Online", "1"))
            cpu: Dict[str, Any] = {} if online is None else {"online": online}
            if gov is not None:
                cpu["governor"] = gov
            for src, dst in (("MinFreq", "min_freq"), ("MaxFreq", "max_freq"), ("CurrentFreq", "cur_freq")):
                if src in fields:
                    cpu[dst] = _num(fields[src])
            cpus[m.group(1)] = cpu
            continue
        m = re.match(r"(GPU|EMC|gpu-[\w-]+)\s+(MinFreq=.*)$", line)  # gpu-gpc-0, gpu-nvd-0: Thor (R38+)
        if m:
            fields = dict(_KV.findall(m.group(2)))
            unit = {dst: _num(fields[src]) for src, dst in (("MinFreq", "min_freq"), ("MaxFreq", "max_freq"),
                                                            ("CurrentFreq", "cur_freq"),
                                                            ("FreqOverride", "freq_override")) if src in fields}
            if m.group(1).startswith("gpu-"):
                out.setdefault("gpu", {})[m.group(1)] = unit
            else:
                out[m.group(1).lower()] = unit
            continue
        m = re.match(r"Online CPUs:\s*(\S+)", line)
        if m:
            out["online_cpus"] = m.group(1)
            continue
        m = re.match(r"Active GPU TPCs:\s*(\d+)", line)
        if m:
            out["active_gpu_tpcs"] = int(m.group(1))
            continue
        m = re.match(r"NV Power Mode:\s*(.+)$", line)
        if m:
            out["nv_power_mode"] = m.group(1).strip()
    if cpus:
        out["cpus"] = cpus
    online = [c for c in cpus.values() if c.get("online") == 1]
    gpu = out.get("gpu", {})
    gpus = list(gpu.values()) if gpu and all(k.startswith("gpu-") for k in gpu) else ([gpu] if gpu else [])
    if online or gpus:
        units = online + gpus
        out["locked"] = all("min_freq" in u and u.get("min_freq") == u.get("max_freq") for u in units)
    return out


@_lenient(dict)
def parse_nv_tegra_release(text: str) -> Dict[str, Any]:
    """``/etc/nv_tegra_release``: ``# R35 (release), REVISION: 4.1, GCID: ..., BOARD: ...``."""
    out: Dict[str, Any] = {}
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = re.match(r"#\s*R(\d+)\s*\(release\)\s*,\s*REVISION:\s*([\d.]+)", first)
    if not m:
        return out
    out["release"] = "R" + m.group(1)
    out["revision"] = m.group(2)
    out["l4t"] = "%s.%s" % (m.group(1), m.group(2))
    for key, value in re.findall(r"(GCID|BOARD|EABI|DATE):\s*([^,]+)", first):
        out[key.lower()] = value.strip()
    return out


@_lenient(dict)
def parse_tegrastats(line: str) -> Dict[str, Any]:
    """One ``tegrastats`` line: RAM/SWAP (MB), per-CPU load and MHz, EMC/GR3D load and MHz,
    temperatures (deg C; ``-256C`` means the sensor is off and is dropped) and power rails (mW)."""
    out: Dict[str, Any] = {}
    m = re.search(r"RAM (\d+)/(\d+)MB", line)
    if m:
        out["ram_used_mb"], out["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"SWAP (\d+)/(\d+)MB", line)
    if m:
        out["swap_used_mb"], out["swap_total_mb"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"CPU \[([^\]]*)\](?:@(\d+))?", line)
    if m:
        shared = int(m.group(2)) if m.group(2) else None
        cpus: List[Optional[Dict[str, Any]]] = []
        for item in m.group(1).split(","):
            cm = re.match(r"\s*(\d+)%(?:@(\d+))?", item)
            if not cm:
                cpus.append(None)  # "off"
                continue
            freq = int(cm.group(2)) if cm.group(2) else shared
            cpus.append({"load": int(cm.group(1)), "freq_mhz": freq} if freq is not None
                        else {"load": int(cm.group(1))})
        out["cpu"] = cpus
    m = re.search(r"EMC_FREQ (\d+)%(?:@(\d+))?", line)
    if m:
        out["emc"] = {"load": int(m.group(1))}
        if m.group(2):
            out["emc"]["freq_mhz"] = int(m.group(2))
    m = re.search(r"GR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?", line)
    if m:
        out["gr3d"] = {"load": int(m.group(1))}
        if m.group(2):
            out["gr3d"]["freq_mhz"] = [int(f) for f in m.group(2).split(",")]
    temps = {name: float(v) for name, v in re.findall(r"\b(\w+)@(-?\d+(?:\.\d+)?)C\b", line) if float(v) > -256}
    if temps:
        out["temps_c"] = temps
    power: Dict[str, Dict[str, int]] = {}
    for name, cur, avg in re.findall(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?\b", line):
        if name not in ("RAM", "SWAP", "NC"):
            power[name] = {"cur_mw": int(cur), "avg_mw": int(avg)}
    if power:
        out["power"] = power
    return out


@_lenient(list)
def parse_nvidia_smi_csv(text: str) -> List[Dict[str, Any]]:
    """``nvidia-smi --query-gpu=... --format=csv``: one dict per GPU; ``[unit]`` headers give numbers,
    ``[N/A]`` / ``[Not Supported]`` values are left out."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return []
    headers = []
    for h in lines[0].split(","):
        hm = re.match(r"\s*([\w.]+)(?:\s*\[([^\]]+)\])?", h)
        headers.append((hm.group(1), hm.group(2)) if hm else (h.strip(), None))
    rows = []
    for line in lines[1:]:
        row: Dict[str, Any] = {}
        for (key, unit), raw in zip(headers, line.split(",")):
            value = raw.strip()
            if value.startswith("[") or value in ("N/A", ""):
                continue
            if unit and value.endswith(unit):
                value = value[: -len(unit)].strip()
            row[key] = _num(value) if unit or key in ("index", "temperature.gpu") else value
        rows.append(row)
    return rows


@_lenient(dict)
def parse_os_release(text: str) -> Dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip().strip('"')
    return out


@_lenient(lambda: None)
def parse_meminfo_total_mb(text: str) -> Optional[int]:
    m = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.M)
    return int(m.group(1)) // 1024 if m else None


@_lenient(lambda: None)
def parse_cpu_model(cpuinfo: str) -> Optional[str]:
    """``model name`` (x86 and some ARM kernels) or ``Hardware``; None when neither is printed."""
    for key in ("model name", "Model", "Hardware"):
        m = re.search(r"^%s\s*:\s*(.+)$" % re.escape(key), cpuinfo, re.M)
        if m:
            return m.group(1).strip()
    return None
