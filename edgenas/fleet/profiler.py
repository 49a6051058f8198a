"""Build a device's LUT for a search space: export each block once, time it on the device.

Flow: connect -> ``info`` gives the fingerprint hash that names the LUT -> reuse an existing table
unless ``force`` -> export every block key of the space to ONNX on the host (cached by key under
``.edgenas/blocks/``) -> push the files (content-addressed, skipped when present) -> ``bench_many`` in
batches; the agent appends each finished entry to a partial file on the device, so an interrupted run
resumes where it stopped -> time the runtime's fixed per-inference overhead on a trivial model ->
assemble, validate and write the LUT atomically on the host (``luts/``) and on the device. Until that
last step the previous LUT is untouched.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from edgenas.errors import DeviceError, InputError
from edgenas.io import sha256_file
from edgenas.latency.lut import EntryStats, Lut
from edgenas.latency.store import LutStore, lut_filename
from edgenas.project import Project
from edgenas.spaces import get_space
from edgenas.spaces.base import SearchSpace

Progress = Callable[[str, int, int], None]

#: the LUT protocol the agent applies to each block (see device_agents/PROTOCOL.md)
#: Issue 17: single-run samples (``sample_target_ms`` 0: the estimator of Once-for-All's fixed 500
#: runs and of the long reference run), a short warm-up (20 runs, 3 ms), at least 150 samples, stop
#: when the median's 95% CI is within 2% (or CoV <= 5%), 0.4 s cap; the speed reference (opened once
#: per ``bench_many``) after every 10th sample. Figures: bench/lut_protocol.py, bench/RESULTS.md.
LUT_PROTOCOL: dict[str, Any] = {
    "warmup_min_n": 20, "warmup_min_s": 0.003, "sample_target_ms": 0.0, "min_n": 150, "min_s": 0.003,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 0.4, "ref_every": 10,
}
#: the adaptive protocol before issue 17 (kept for bench/lut_protocol.py's before/after)
LUT_PROTOCOL_BEFORE: dict[str, Any] = {
    "warmup_min_n": 10, "warmup_min_s": 0.05, "sample_target_ms": 1.0, "min_n": 15, "min_s": 0.1,
    "max_cov": 0.05, "max_ci_rel": 0.02, "max_s": 1.5,
}


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

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["lut_path"] = str(self.lut_path)
        return d


def block_onnx_path(project: Project, space: SearchSpace, key: str) -> Path:
    digest = hashlib.sha256(f"{space.name}\n{key}".encode()).hexdigest()[:24]
    return project.block_cache / space.name / f"{digest}.onnx"


def export_blocks(project: Project, space: SearchSpace, keys: list[str],
                  progress: Progress | None = None) -> tuple[dict[str, Path], int]:
    """Export each key once (cached on disk by key); returns key -> path and how many were new."""
    from exporters.onnx_export import export_onnx

    paths, new = {}, 0
    for i, key in enumerate(keys):
        path = block_onnx_path(project, space, key)
        if not path.exists():
            export_onnx(space.build_block(key).eval(), tuple(space.block_input_shape(key)), path)
            new += 1
        paths[key] = path
        if progress:
            progress("export blocks", i + 1, len(keys))
    return paths, new


def overhead_model(project: Project) -> Path:
    """A trivial ONNX model (one Relu on 8 floats) that times the runtime's per-call overhead."""
    from onnx import TensorProto, helper

    path = project.block_cache / "overhead-relu8.onnx"
    if not path.exists():
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8])
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 8])
        graph = helper.make_graph([helper.make_node("Relu", ["input"], ["output"])], "overhead", [x], [y])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        from edgenas.io import atomic_write_bytes

        atomic_write_bytes(path, model.SerializeToString())
    return path


REFERENCE_DESCRIPTION = "Conv 3x3 16->16 on 1x16x16x16 + Relu (fixed weights)"


def reference_model(project: Project) -> Path:
    """The speed reference timed in alternation with every measurement (deterministic bytes).

    A small convolution comparable to one block: ratios to it are immune to the speed drift of the
    machine (turbo, throttling, noisy neighbours), see ``device_agents/edgenas_agent/measure.py``.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    path = project.block_cache / "reference-conv16.onnx"
    if not path.exists():
        w = np.random.default_rng(12345).standard_normal((16, 16, 3, 3)).astype(np.float32) * 0.1
        x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 16, 16, 16])
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16, 16, 16])
        nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
                 helper.make_node("Relu", ["c"], ["output"])]
        graph = helper.make_graph(nodes, "reference", [x], [y], [numpy_helper.from_array(w, "w")])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        from edgenas.io import atomic_write_bytes

        atomic_write_bytes(path, model.SerializeToString())
    return path


def nominal_reference(results: list[dict[str, Any]], path: Path) -> dict[str, Any] | None:
    """The LUT's reference record: the reference's median time over the whole profile."""
    import statistics

    from edgenas.io import sha256_file

    times = [float(r["ref_ms"]) for r in results if r.get("ref_ms") and r.get("ratio")]
    if len(times) < len(results):
        return None
    return {"sha256": sha256_file(path), "ms": statistics.median(times), "model": REFERENCE_DESCRIPTION}


def profile_device(project: Project, device: Any, space_name: str, *, force: bool = False,
                   protocol: dict[str, Any] | None = None, batch_size: int = 24,
                   progress: Progress | None = None) -> ProfileResult:
    """Profile ``device`` (a name or a DeviceProfile) for ``space_name``; returns what happened."""
    from edgenas.fleet.session import open_session

    t0 = time.perf_counter()
    space = get_space(space_name)
    store = LutStore(project.luts_dir)
    proto = dict(LUT_PROTOCOL, **(protocol or {}))
    with open_session(project, device) as s:
        info = s.call("info", s.runtime_params(), timeout_s=120)
        fp_hash = str(info["fingerprint_hash"])
        existing = store.path_for(s.device, space.name, fp_hash)
        if existing.exists() and not force:
            lut = Lut.load(existing)  # validates; a corrupt file is an error, not silently rebuilt
            return ProfileResult(s.device, space.name, existing, fp_hash, len(lut.entries), True, 0, 0, 0,
                                 len(lut.unstable_keys), time.perf_counter() - t0)
        keys = space.key_vocab()
        paths, exported = export_blocks(project, space, keys, progress)
        partial = f"partial/{space.name}-{fp_hash[:12]}.jsonl"
        if force and existing.exists():
            # named after the table being replaced: a forced run that is interrupted resumes on the next
            # forced run (the old table is still there), while a completed one makes the next start afresh
            partial = f"partial/{space.name}-{fp_hash[:12]}-force-{sha256_file(existing)[:12]}.jsonl"
        results: dict[str, dict[str, Any]] = {}
        resumed = 0
        done = 0
        ref_path = reference_model(project)
        ref_remote = s.push(ref_path)
        for start in range(0, len(keys), batch_size):
            batch = keys[start:start + batch_size]
            items = [{"key": k, "model": s.push(paths[k])} for k in batch]

            def on_progress(p: dict[str, Any], base: int = done) -> None:
                if progress:
                    progress(f"time blocks on {s.device}", base + int(p.get("done", 0)), len(keys))

            out = s.call("bench_many", dict(s.runtime_params(), items=items, protocol=proto, partial=partial,
                                            reference=ref_remote), on_progress=on_progress)
            results.update(out["results"])
            resumed += len(out.get("reused", []))
            done += len(batch)
            if progress:
                progress(f"time blocks on {s.device}", done, len(keys))
        overhead = s.call("bench", dict(s.runtime_params(), model=s.push(overhead_model(project)),
                                        protocol=proto, reference=ref_remote))
        entries = {k: EntryStats.from_dict(results[k], f"device {s.device}: entry {k}") for k in keys
                   if k in results}
        missing = [k for k in keys if k not in entries]
        if missing:
            raise DeviceError(s.device, f"agent returned no result for {len(missing)} blocks (first: {missing[0]})",
                              hint="re-run the profile; measured entries are kept and not timed again")
        lut = Lut(device=s.device, space=space.name, fingerprint=dict(info["fingerprint"]),
                  fingerprint_hash=fp_hash, runtime=s.profile.runtime, precision=s.profile.precision,
                  threads=int(s.profile.threads), protocol=proto,
                  overhead=EntryStats.from_dict(overhead["stats"], "overhead"), entries=entries,
                  reference=nominal_reference([results[k] for k in keys] + [overhead["stats"]], ref_path))
        path = store.save(lut)
        keep_on_device(s, path, lut)
        return ProfileResult(s.device, space.name, path, fp_hash, len(entries), False,
                             len(entries) - resumed, resumed, exported, len(lut.unstable_keys),
                             time.perf_counter() - t0)


def keep_on_device(session: Any, path: Path, lut: Lut) -> None:
    """Hand the agent a copy of the host's table (hash-checked upload, then an atomic ``lut.put``)."""
    name = lut_filename(lut.space, lut.fingerprint_hash)
    sha = session.transport.put_file(path, f"cache/{name}.upload")
    session.call("lut.put", {"name": name, "path": f"cache/{name}.upload", "sha256": sha})


def current_lut(project: Project, device: str, space_name: str, fingerprint_hash: str | None = None) -> Lut:
    """The host's LUT for (device, space): the one matching ``fingerprint_hash`` when given."""
    store = LutStore(project.luts_dir)
    if fingerprint_hash:
        lut = store.find(device, space_name, fingerprint_hash)
        if lut is None:
            raise InputError(f"no LUT for device '{device}', space '{space_name}' and the device's current "
                             f"fingerprint {fingerprint_hash[:12]}",
                             hint=f"the device changed since it was profiled; run: edgenas profile {device} "
                                  f"--space {space_name}")
        return lut
    return store.latest(device, space_name)
