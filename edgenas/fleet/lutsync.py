"""LUTs between a device and the host: what the agent holds, and copying them on a device into the project's ``luts/`` (hash-checked, validated).

The device is untrusted: the names it lists are accepted only when they match the LUT file-name
pattern (``SPACE-FPHASH12.json``), each file is downloaded into a private temporary folder under a name
of our choosing, checked (SHA-256, size, structure) in memory, and must belong to the device it came
from (its ``device`` field) and match its own name; only then is it stored under ``luts/DEVICE/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from edgenas.errors import DeviceError, InputError
from edgenas.io import sha256_file
from edgenas.latency.lut import Lut, future_dated
from edgenas.latency.store import LutStore, lut_filename
from edgenas.limits import MAX_JSON_BYTES, loads_json_limited
from edgenas.project import Project
from edgenas.safenames import LUT_FILE_RE, SHA256_RE
from edgenas.textsafe import clean


def device_luts(project: Project, device: str) -> list[dict[str, Any]]:
    """The LUTs the agent holds on ``device``: ``[{"name", "size", "sha256"}, ...]``."""
    from edgenas.devices.session import open_session

    with open_session(project, device) as s:
        return _listing(s.device, s.call("lut.list", {}, timeout_s=s.quick_timeout_s))


#: the most tables a device may list (a space and fingerprint each)
MAX_LISTED = 10_000


def _listing(device: str, listed: Any) -> list[dict[str, Any]]:
    """The agent's ``lut.list`` answer checked: valid LUT file names, each with its ``size`` (a whole
    number of bytes) and ``sha256`` (64 hex digits), ``None`` where the device sent something else;
    other fields are dropped."""
    if not isinstance(listed, list):
        raise DeviceError(device, "lut.list answered with something that is not a list",
                          hint="reinstall the agent (it is replaced when its hash differs)")
    if len(listed) > MAX_LISTED:
        raise DeviceError(device, f"lut.list sent {len(listed)} tables, over the {MAX_LISTED} limit; "
                                  "nothing was written")
    names = [e.get("name") if isinstance(e, dict) else e for e in listed]
    bad = [n for n in names if not (isinstance(n, str) and LUT_FILE_RE.match(n))]
    if bad:
        raise DeviceError(device, f"lut.list sent {len(bad)} invalid LUT name(s), first {clean(repr(bad[0]), 80)}",
                          hint="LUT names are SPACE-FPHASH12.json; nothing was written")
    out = []
    for n, e in zip(names, listed):
        size, sha = (e.get("size"), e.get("sha256")) if isinstance(e, dict) else (None, None)
        out.append({"name": n, "size": size if isinstance(size, int) and not isinstance(size, bool) and size >= 0
                    else None, "sha256": sha if isinstance(sha, str) and SHA256_RE.match(sha) else None})
    return out


def pull_luts(project: Project, device: str, *, name: str | None = None) -> list[dict[str, Any]]:
    """Copy the device's tables (or the one called ``name``) into ``luts/DEVICE/``: all or nothing.

    Every table is fetched and validated before the first is stored, so an invalid one (another device's,
    a corrupted download) is an error that leaves the project's tables as they were."""
    from edgenas.devices.session import open_session

    store = LutStore(project.luts_dir)
    with open_session(project, device) as s:
        names = _listed_names(s, name)
        store.check_writable(s.device)
        fetched = [_fetch_one(s, store, n) for n in names]
    pulled = []
    for n, lut, got in fetched:
        try:
            host = store.find(s.device, lut.space, lut.fingerprint_hash)
        except InputError:  # a damaged host copy is what a pull restores
            host = None
        lut, kept = keep_host_calibration(lut, host)
        path = store.save(lut)
        # sha256 is the stored file's: with the host's calibration kept it is not the device's copy (device_sha256)
        pulled.append({"name": n, "lut_path": str(path), "sha256": sha256_file(path), "device_sha256": got,
                       "kept_calibration": kept})
    return pulled


def _listed_names(s: Any, name: str | None) -> list[str]:
    """The table names ``lut.list`` sent (all of them valid LUT file names), or just ``name``."""
    names = [e["name"] for e in _listing(s.device, s.call("lut.list", {}, timeout_s=s.quick_timeout_s))]
    if name is not None:
        if name not in names:
            raise InputError(f"device '{s.device}' holds no LUT named '{name}'",
                             hint=f"it holds: {', '.join(names) or 'none'}")
        names = [name]
    return names


def _fetch_one(s: Any, store: LutStore, n: str) -> tuple[str, Lut, str]:
    """Table ``n`` downloaded into a private folder and checked (hash, size, structure, owner, name);
    nothing is written to the project here."""
    meta = s.call("lut.get", {"name": n}, timeout_s=s.quick_timeout_s)
    where = f"device '{s.device}': LUT {n}"
    if not isinstance(meta, dict) or meta.get("path") != f"luts/{n}" or not isinstance(meta.get("sha256"), str):
        raise DeviceError(s.device, f"lut.get {n}: unexpected answer (path must be luts/{n}); nothing was written")
    if isinstance(meta.get("size"), int) and meta["size"] > MAX_JSON_BYTES:
        raise DeviceError(s.device, f"LUT {n} is {meta['size']} bytes, over the {MAX_JSON_BYTES} limit; "
                                    "nothing was written")
    with tempfile.TemporaryDirectory(prefix="edgenas-pull-") as tmp:
        local = Path(tmp) / "pulled.json"  # our name, never the device's
        got = s.transport.get_file(meta["path"], local, max_bytes=MAX_JSON_BYTES)
        if got != meta["sha256"]:
            raise DeviceError(s.device, f"LUT {n} arrived corrupted", hint="retry the pull; nothing was written")
        raw = local.read_bytes()
    try:
        lut = Lut.from_dict(loads_json_limited(raw, where, unique_keys=True), where=where)
    except InputError as exc:
        raise DeviceError(s.device, f"LUT {meta['path']} on the device is invalid: {exc.message}",
                          hint=f"re-profile it: edgenas profile {s.device} --space {n.rsplit('-', 1)[0]} --force; "
                               "nothing was written") from None
    if lut.device != s.device:
        raise DeviceError(s.device, f"LUT {n} says it belongs to device {clean(repr(lut.device), 80)}",
                          hint="a table is stored only under the device it was pulled from; nothing was written")
    if lut_filename(lut.space, lut.fingerprint_hash) != n:
        raise DeviceError(s.device, f"LUT {n} holds space '{lut.space}' and fingerprint "
                                    f"{lut.fingerprint_hash[:12]}, which do not match its name; nothing was written")
    store.path_for(s.device, lut.space, lut.fingerprint_hash)  # the names it gives are valid path parts
    try:  # a compact table the host would write indented past the size it can read back
        lut.check_size()
    except InputError as exc:
        raise DeviceError(s.device, f"LUT {n}: {exc.message}", hint=exc.hint) from None
    return n, lut, got


def keep_host_calibration(pulled: Lut, host: Lut | None) -> tuple[Lut, bool]:
    """The pulled table, with the host copy's calibration where the host fitted one on the same timings.

    A calibration is fitted on the host (``deploy``, ``lut calibrate``) from measurements the host keeps,
    so the device's copy of a table lacks it or holds an older one. Pulling must not undo it: when the
    host's copy has the same entries, overhead, sync and reference and a newer calibration, that calibration
    stays. A table timed anew (other entries) arrives as the device has it: the old fit was for other sums.
    """
    mine = host.calibration if host is not None else None
    timings = (pulled.entries, pulled.overhead, pulled.sync, pulled.reference)
    if mine is None or timings != (host.entries, host.overhead, host.sync, host.reference):
        return pulled, False
    # a fit dated in the future (a host clock ahead) is not known to be newer: the host's own fit is kept
    theirs = pulled.calibration
    if theirs is not None and theirs.fitted_at >= mine.fitted_at and not future_dated(theirs.fitted_at):
        return pulled, False
    return pulled.with_calibration(mine), True


__all__ = ["keep_host_calibration", "pull_luts"]
