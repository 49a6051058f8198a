"""Build a device's LUT for a search space: export each block once, time it on the device.

Flow: connect -> ``info`` gives the fingerprint hash that names the LUT -> reuse an existing table
unless ``force`` -> export every block key of the space to ONNX on the host (cached by key under
``.edgenas/blocks/``) -> push the files (content-addressed, skipped when present) -> ``bench_many`` in
batches; the agent appends each finished entry to a partial file on the device, so an interrupted run
resumes where it stopped -> time the runtime's fixed per-inference overhead on a trivial model (and,
where the runtime's calls overlap on the device, the same model one call at a time: ``Lut.sync``) ->
assemble and validate the LUT, fit its calibration on the device's stored whole-model measurements of
that fingerprint if there are any (``fleet.calibrate.fit_new_table``), and write it atomically on the
host (``luts/``) and on the device. Until that last step the previous LUT is untouched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.devices.answers import BenchAnswer
from edgenas.devices.profiles import DeviceProfile, load_profile
from edgenas.devices.session import Session, open_session
from edgenas.errors import DeviceError, InputError, RuntimeMissingError
from edgenas.fleet.calibrate import CalibrationResult, fit_new_table
from edgenas.fleet.table_lock import profile_lock
from edgenas.fleet.measure import (
    Progress, bench_many_results, device_has, export_blocks, keep_on_device, lut_protocol_for, nominal_reference,
    overhead_model, reference_model, runs_per_sample, send_to_device)
from edgenas.io import sha256_file
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore
from edgenas.project import Project
from edgenas.spaces import get_space
from edgenas.spaces.base import SearchSpace


@dataclass(frozen=True)
class ProfileResult:
    device: str
    space: str
    lut_path: Path
    fingerprint_hash: str
    n_entries: int
    reused_lut: bool
    measured: int
    resumed: int
    exported: int
    unstable: int
    wall_s: float
    #: back-to-back calls per sample (> 1 where the runtime's calls overlap on the device: a GPU)
    runs_per_sample: int = 1
    #: whether the table carries a calibration to whole-model measurements
    calibrated: bool = False
    #: a new table's calibration fitted on the device's stored measurements (as deploy reports its refit)
    recalibrated: CalibrationResult | None = None
    #: why a new table could not be fitted on the stored measurements (the database could not be read)
    calibration_note: str | None = None
    #: the device is not in the power mode its profile expects, or reports none (``DeviceInfo.power_mode_note``)
    power_mode_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # 'entries' as lut show and lut import-ofa count them (and as 'measured', 'unstable' here: no n_)
        d = {("entries" if k == "n_entries" else k): v for k, v in self.__dict__.items()}
        d["lut_path"] = str(self.lut_path)
        d["recalibrated"] = self.recalibrated.to_dict() if self.recalibrated is not None else None
        return d


def profile_device(project: Project, device: Any, space_name: str, *, force: bool = False,
                   protocol: dict[str, Any] | None = None, batch_size: int = 24,
                   progress: Progress | None = None) -> ProfileResult:
    """Profile ``device`` (a name or a DeviceProfile) for ``space_name``; returns what happened.

    One profile of a (device, space) at a time: a second one is refused as soon as it has connected (an
    OS file lock). The lock is taken only once the device answered, so a device that cannot be reached
    leaves no lock file behind."""
    space = get_space(space_name)
    if not isinstance(device, DeviceProfile):  # an unknown device is refused before anything is written
        device = load_profile(project, device)
    LutStore(project.luts_dir).check_writable(device.name)  # a planted link is refused before minutes of timing
    with open_session(project, device) as s:
        why = s.info().unmeasurable(s.runtime_params())
        if why:  # found after every block was exported and pushed, and with a lock and a fingerprint record left
            raise RuntimeMissingError(s.device, why, hint="install it on the device, or profile with a runtime "
                                                          "and provider it has (the device profile's settings)")
        with profile_lock(project, device.name, space.name):
            return _profile_device(project, s, space, force=force, protocol=protocol, batch_size=batch_size,
                                   progress=progress)


def _profile_device(project: Project, s: Session, space: SearchSpace, *, force: bool,
                    protocol: dict[str, Any] | None, batch_size: int, progress: Progress | None) -> ProfileResult:
    t0 = time.perf_counter()
    store = LutStore(project.luts_dir)
    proto = dict(lut_protocol_for(s.runtime_params()), **(protocol or {}))
    info = s.info()
    fp_hash = info.fingerprint_hash
    existing = store.path_for(s.device, space.name, fp_hash)
    store.remember_fingerprint(s.device, fp_hash)
    if existing.exists() and not force:
        try:
            # validates; a corrupt file is an error, not silently rebuilt, and so is another device's or
            # fingerprint's table lying at this one's path (it was reused, pushed, and refused by every reader)
            lut = store.load(existing, s.device)
        except InputError as exc:
            raise InputError(f"the LUT {existing} is damaged: {exc.message}",
                             hint=f"rebuild it with: edgenas profile {s.device} --space {space.name} --force "
                                  "(the damaged file is kept in history/)") from None
        if not device_has(s, existing, lut):  # a run that failed after the host's save, or a full device disk
            keep_on_device(s, existing, lut)
        return ProfileResult(s.device, space.name, existing, fp_hash, len(lut.entries), True, 0, 0, 0,
                             len(lut.unstable_keys), time.perf_counter() - t0,
                             runs_per_sample(lut.protocol), lut.calibration is not None,
                             power_mode_note=info.power_mode_note(s.profile.power_mode))
    keys = space.key_vocab()
    runtime = s.runtime_params()["runtime"]
    paths, exported = export_blocks(project, space, keys, progress, runtime)
    partial = f"partial/{space.name}-{fp_hash[:12]}.jsonl"
    if force and existing.exists():
        # named after the table being replaced: a forced run that is interrupted resumes on the next
        # forced run (the old table is still there), while a completed one makes the next start afresh
        partial = f"partial/{space.name}-{fp_hash[:12]}-force-{sha256_file(existing)[:12]}.jsonl"
    results: dict[str, dict[str, Any]] = {}
    resumed = 0
    done = 0
    ref_path = reference_model(project, runtime)
    ref_remote = s.push(ref_path)
    for start in range(0, len(keys), batch_size):
        batch = keys[start:start + batch_size]
        items = [{"key": k, "model": m} for k, m in zip(batch, s.push_many([paths[k] for k in batch]))]

        def on_progress(p: dict[str, Any], base: int = done, n: int = len(batch)) -> None:
            got = p.get("done")
            if progress and isinstance(got, int) and not isinstance(got, bool) and 0 <= got <= n:
                progress(f"time blocks on {s.device}", base + got, len(keys))

        out = s.call("bench_many", dict(s.runtime_params(), items=items, protocol=proto, partial=partial,
                                        reference=ref_remote), on_progress=on_progress)
        got, reused = bench_many_results(s.device, out, batch)
        results.update(got)
        resumed += reused
        done += len(batch)
        if progress:
            progress(f"time blocks on {s.device}", done, len(keys))
    trivial = s.push(overhead_model(project, runtime))
    overhead = BenchAnswer.from_answer(s.device, s.call(
        "bench", dict(s.runtime_params(), model=trivial, protocol=proto, reference=ref_remote)), "overhead bench")
    sync = None
    if runs_per_sample(proto) > 1:  # the wait one inference pays once: the trivial model one call at a time
        sync = BenchAnswer.from_answer(s.device, s.call(
            "bench", dict(s.runtime_params(), model=trivial, protocol=dict(proto, runs_per_sample=1, min_n=200))),
            "sync bench").stats
    entries = {k: EntryStats.from_checked(results[k]) for k in keys if k in results}  # checked on arrival
    missing = [k for k in keys if k not in entries]
    if missing:
        raise DeviceError(s.device, f"agent returned no result for {len(missing)} blocks (first: {missing[0]})",
                          hint="re-run the profile; measured entries are kept and not timed again")
    lut = Lut(device=s.device, space=space.name, fingerprint=dict(info.fingerprint),
              fingerprint_hash=fp_hash, runtime=s.profile.runtime, precision=s.profile.precision,
              threads=int(s.profile.threads), protocol=proto,
              overhead=overhead.stats, entries=entries, sync=sync,
              reference=nominal_reference([results[k] for k in keys] + [overhead.raw_stats], ref_path))
    try:  # each number was checked on arrival; what they make together (ratio x reference) is checked here
        Lut.from_dict(lut.to_dict(), where="the table")
    except InputError as exc:
        raise DeviceError(s.device, f"the agent's timings make a bad table: {exc.message}",
                          hint="re-profile the device; nothing was written") from None
    # the device's whole-model measurements fit the new table at once, so a rebuilt table is not used
    # raw until the next deploy or `lut calibrate`
    fit, note = fit_new_table(project, lut, space)
    lut = fit.lut if fit else lut
    try:  # before anything is written, on the device or here
        lut.check_size()
    except InputError as exc:
        raise DeviceError(s.device, exc.message, hint=exc.hint) from None
    # the device first, then the host: a failure on the way (a full disk on either) leaves the host's table,
    # and so the name of the partial file, as they were, and the same command resumes instead of timing again
    send_to_device(project, s, lut)
    path = store.save(lut)
    s.forget(partial)  # the table is saved: its per-entry file would only pile up (one per forced run)
    refit = fit.result(s.device, space.name, str(path)) if fit is not None else None
    return ProfileResult(s.device, space.name, path, fp_hash, len(entries), False,
                         len(entries) - resumed, resumed, exported, len(lut.unstable_keys),
                         time.perf_counter() - t0, runs_per_sample(proto), fit is not None, refit, note,
                         info.power_mode_note(s.profile.power_mode))
