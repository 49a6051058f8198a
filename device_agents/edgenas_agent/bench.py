"""``bench``, ``bench_many`` and ``build_engine``: a runtime opened on a model, timed by ``measure``.

``bench_many`` times its models one after the other, with ``interleave`` >= 2 in round-robin groups
(``interleave.py``), or with ``sessions`` >= 2 in sweeps of fresh sessions (``sweeps.py``). It appends
every finished entry to its partial JSON-lines file (fsync per line; the entries finishing in the same
round of a group or the same sweep together, one fsync) before going on; an entry already in that
file with the same key, model and settings is reused, not measured again, so an interrupted profile
resumes where it stopped. A torn last line (a crash while writing) is ignored.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional

from . import files, fingerprint, interleave, measure, runtimes, sweeps
from .errors import AgentFault

Progress = Callable[[Dict[str, Any]], None]
_PRECISIONS = ("fp32", "fp16", "int8")


def settings_from(params: Mapping[str, Any]) -> Dict[str, Any]:
    """The runtime settings a measurement depends on, checked."""
    runtime = params.get("runtime", "onnxruntime")
    if runtime not in runtimes.NAMES:
        raise AgentFault("BadRequest", "unknown runtime %r (known: %s)" % (runtime, ", ".join(runtimes.NAMES)))
    threads = params.get("threads", 1)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise AgentFault("BadRequest", "threads must be an integer >= 0 (0 = runtime default), got %r" % (threads,))
    precision = params.get("precision", "fp32")
    if precision not in _PRECISIONS:
        raise AgentFault("BadRequest", "precision must be one of %s, got %r" % (", ".join(_PRECISIONS), precision))
    out = {"runtime": runtime, "threads": threads, "precision": precision,
           "provider": params.get("provider"), "seed": params.get("seed", 0)}
    if "input_shapes" in params:
        out["input_shapes"] = params["input_shapes"]
    return out


def _protocol(params: Mapping[str, Any]) -> Dict[str, Any]:
    try:
        return measure.resolve_protocol(params.get("protocol"), bool(params.get("winner", False)))
    except measure.ProtocolError as exc:
        raise AgentFault("BadRequest", str(exc))


def _model(workdir: str, path: Any) -> str:
    model = files.resolve(workdir, path, "model")
    if not os.path.isfile(model):
        raise AgentFault("FileNotFoundError", "model not found on the device: %s" % model)
    return model


def _run_one(model: str, settings: Mapping[str, Any], protocol: Mapping[str, Any],
             reference: Optional[str] = None, shared_ref: Optional[Any] = None) -> Dict[str, Any]:
    """Time one model; with ``reference`` (a model path) interleave it as the speed reference.

    ``shared_ref`` is ``(runner, k)`` of a reference already open and calibrated (``bench_many``
    opens it once for all its entries instead of once per entry)."""
    timed_ref = reference is not None and protocol.get("fixed_n") is None  # fixed_n never reads it
    own = runtimes.open_runner(settings["runtime"], reference, settings) if timed_ref and not shared_ref else None
    ref_timer, ref_k = (shared_ref[0].timer, shared_ref[1]) if shared_ref else (own.timer if own else None, None)
    try:
        runner = runtimes.open_runner(settings["runtime"], model, settings)
        try:
            session = runner.session  # read while the session is open, as the measurement found it
            stats = measure.measure(timer=runner.timer, protocol=protocol, ref_timer=ref_timer, ref_k=ref_k)
        finally:
            runner.close()
    finally:
        if own is not None:
            own.close()
    return {"stats": stats, "cold_start": runner.cold_start, "session": session}


def _reference(workdir: str, params: Mapping[str, Any]) -> Optional[str]:
    ref = params.get("reference")
    return None if ref is None else _model(workdir, ref)


def bench(workdir: str, params: Mapping[str, Any], progress: Optional[Progress] = None) -> Dict[str, Any]:
    settings = settings_from(params)
    protocol = _protocol(params)
    model = _model(workdir, params.get("model"))
    before = fingerprint.state()
    out = _run_one(model, settings, protocol, _reference(workdir, params))
    out["state"] = {"before": before, "after": fingerprint.state()}
    out["protocol"] = protocol
    return out


def _load_partial(path: str) -> Dict[str, Dict[str, Any]]:
    done: Dict[str, Dict[str, Any]] = {}
    if not os.path.isfile(path):
        return done
    with open(path, "rb") as fh:
        for raw in fh:
            try:
                rec = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                continue  # torn line from a crash
            if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("stats"), dict):
                done[rec["key"]] = rec
    return done


def bench_many(workdir: str, params: Mapping[str, Any], progress: Optional[Progress] = None) -> Dict[str, Any]:
    settings = settings_from(params)
    protocol = _protocol(params)
    items = params.get("items")
    if not isinstance(items, list) or not items:
        raise AgentFault("BadRequest", "items must be a non-empty list of {key, model}")
    keys: List[str] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or "model" not in item:
            raise AgentFault("BadRequest", "each item needs a string key and a model path, got %r" % (item,))
        keys.append(item["key"])
    if len(set(keys)) != len(keys):
        raise AgentFault("BadRequest", "duplicate keys in items")
    partial = files.resolve(workdir, params.get("partial") or "partial/bench_many.jsonl", "partial")
    done = _load_partial(partial)
    ident = {k: v for k, v in settings.items()}
    ident["protocol"] = protocol
    reference = _reference(workdir, params)
    if reference is not None:
        ident["reference"] = params.get("reference")
    return _bench_items(workdir, items, settings, protocol, partial, done, ident, reference, progress)


def _bench_items(workdir: str, items: List[Any], settings: Mapping[str, Any], protocol: Mapping[str, Any],
                 partial: str, done: Dict[str, Any], ident: Dict[str, Any], reference: Optional[str],
                 progress: Optional[Progress]) -> Dict[str, Any]:
    shared: List[Any] = []  # [(runner, k)]: the reference, opened and calibrated once when first needed
    try:
        return _bench_loop(workdir, items, settings, protocol, partial, done, ident, reference, progress, shared)
    finally:
        for runner, _ in shared:
            runner.close()


def _bench_loop(workdir: str, items: List[Any], settings: Mapping[str, Any], protocol: Mapping[str, Any],
                partial: str, done: Dict[str, Any], ident: Dict[str, Any], reference: Optional[str],
                progress: Optional[Progress], shared: List[Any]) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    cold: Dict[str, Any] = {}
    reused: List[str] = []
    measured: List[str] = []
    t0 = time.perf_counter()

    def tick(key: str) -> None:
        if progress is not None:
            progress({"done": len(reused) + len(measured), "total": len(items), "key": key,
                      "reused": key in reused})

    def finish(entries: List[Any]) -> None:
        """Record finished entries ``(key, model, stats, cold_start)``: one appended line each, one fsync."""
        files.append_json_lines(partial, [{"key": key, "model": model_rel, "settings": ident, "stats": st,
                                           "cold_start": cs, "at": time.time()}
                                          for key, model_rel, st, cs in entries])
        for key, _, st, cs in entries:
            results[key], cold[key] = st, cs
            measured.append(key)
            tick(key)

    todo: List[Any] = []
    for item in items:
        key, model_rel = item["key"], item["model"]
        rec = done.get(key)
        if rec is not None and rec.get("model") == model_rel and rec.get("settings") == ident:
            results[key] = rec["stats"]
            reused.append(key)
            tick(key)
        else:
            todo.append(item)
    sweep_mode = protocol["sessions"] > 1 and protocol["fixed_n"] is None
    if todo and reference is not None and not shared and protocol["fixed_n"] is None and not sweep_mode:
        # one reference session for all items (sweeps open a fresh one per sweep instead)
        runner = runtimes.open_runner(settings["runtime"], reference, settings)
        shared.append((runner, measure.reference_k(runner.timer, protocol)))
    if sweep_mode:
        _time_sweeps(workdir, todo, settings, protocol, reference, finish)
    elif protocol["interleave"] > 1 and protocol["fixed_n"] is None:
        _time_interleaved(workdir, todo, settings, protocol, shared[0][0].timer if shared else None, finish)
    else:
        for item in todo:
            out = _run_one(_model(workdir, item["model"]), settings, protocol, reference,
                           shared[0] if shared else None)
            finish([(item["key"], item["model"], out["stats"], out["cold_start"])])
    return {"results": results, "reused": reused, "measured": measured, "cold_start": cold,
            "partial": os.path.relpath(partial, workdir), "protocol": protocol,
            "total_s": time.perf_counter() - t0}


def _time_interleaved(workdir: str, todo: List[Any], settings: Mapping[str, Any], protocol: Mapping[str, Any],
                      ref_timer: Optional[Callable[[int], float]], finish: Callable[[List[Any]], None]) -> None:
    """Groups of ``interleave`` models, all open at once, timed round-robin (``interleave.run_group``).

    Each model's session is closed as soon as it has its verdict; the group's finished entries are
    recorded together after each round."""
    size = int(protocol["interleave"])
    for start in range(0, len(todo), size):
        group = todo[start:start + size]
        runners: Dict[str, Any] = {}
        try:
            for item in group:
                runners[item["key"]] = runtimes.open_runner(settings["runtime"], _model(workdir, item["model"]),
                                                            settings)
            models = {item["key"]: item["model"] for item in group}

            def on_done(tracks: List[interleave.Track]) -> None:
                entries = []
                for track in tracks:
                    runner = runners.pop(track.key)
                    runner.close()
                    stats_ = track.result(protocol["runs_per_sample"])
                    entries.append((track.key, models[track.key], stats_, runner.cold_start))
                finish(entries)

            tracks = [interleave.Track(item["key"], runners[item["key"]].timer) for item in group]
            interleave.run_group(tracks, protocol, ref_timer, on_done)
        finally:
            for runner in runners.values():
                runner.close()


def _time_sweeps(workdir: str, todo: List[Any], settings: Mapping[str, Any], protocol: Mapping[str, Any],
                 reference: Optional[str], finish: Callable[[List[Any]], None]) -> None:
    """All of ``todo`` in sweeps of fresh sessions (``sweeps.run_sweeps``), the reference (a model path)
    in a fresh session of its own before each sweep; the entries finishing after the same sweep are
    recorded together. ``cold_start`` is that of a model's first session."""
    models = {item["key"]: _model(workdir, item["model"]) for item in todo}
    rel = {item["key"]: item["model"] for item in todo}
    cold: Dict[str, Any] = {}

    def open_session(key: str) -> Any:
        runner = runtimes.open_runner(settings["runtime"], models[key], settings)
        cold.setdefault(key, runner.cold_start)
        return runner

    def on_done(tracks: List[sweeps.SweepTrack]) -> None:
        finish([(t.key, rel[t.key], t.result(protocol["runs_per_sample"]), cold[t.key]) for t in tracks])

    def open_reference() -> Any:
        return runtimes.open_runner(settings["runtime"], reference, settings)

    sweeps.run_sweeps([item["key"] for item in todo], open_session, protocol,
                      open_reference if reference is not None else None, on_done)


def build_engine(workdir: str, params: Mapping[str, Any], progress: Optional[Progress] = None) -> Dict[str, Any]:
    from .runtimes import tensorrt_rt

    model = _model(workdir, params.get("model"))
    options = {k: params[k] for k in ("precision", "workspace_mb", "opt_level") if k in params}
    if params.get("timing_cache"):
        options["timing_cache"] = files.resolve(workdir, params["timing_cache"], "timing_cache")
    engine = os.path.join(workdir, "engines", files.sha256_file(model) + "-" + str(params.get("precision", "fp16")) + ".plan")
    t0 = time.perf_counter()
    tensorrt_rt.build_engine(model, engine, options)
    return {"engine": os.path.relpath(engine, workdir), "sha256": files.sha256_file(engine),
            "build_s": time.perf_counter() - t0}
