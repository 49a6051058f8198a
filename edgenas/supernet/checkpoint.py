"""Supernet checkpoints: safetensors for tensors, JSON for everything else; never pickle.

A checkpoint directory holds

* ``weights-STEP.safetensors``: the supernet's state dict (weights and BN statistics);
* ``optimizer-STEP.safetensors``: SGD momentum buffers keyed by parameter name, torch's RNG state;
* ``supernet.json``: format tag and schema, space name, the ``MBV3Config``, the training config, the
  step reached, the numpy generator state, loss history, and the names and SHA-256 of both tensor
  files.

Each file is written atomically, the JSON last: it is the commit record. Tensor files carry the step
in their names, so a save interrupted at any point leaves the previous checkpoint whole; files no
longer referenced are removed after the JSON is in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from edgenas.errors import InputError
from edgenas.io import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from edgenas.spaces.mbv3_config import PRESETS, MBV3Config
from edgenas.supernet.model import MBV3Supernet

FORMAT = "edgenas-supernet"
SCHEMA = 1
META = "supernet.json"
TORCH_RNG = "__torch_rng_state__"


@dataclass
class Checkpoint:
    supernet: MBV3Supernet
    meta: dict[str, Any]
    optimizer_tensors: dict[str, torch.Tensor]
    path: Path


def checkpoint_dir(path: str | Path) -> Path:
    """Accept the directory or its ``supernet.json``."""
    p = Path(path)
    return p.parent if p.name == META else p


def config_to_dict(config: MBV3Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(data: Any, source: str) -> MBV3Config:
    if not isinstance(data, dict):
        raise InputError(f"{source}: 'config' must be an object")
    names = {f.name for f in dataclasses.fields(MBV3Config)}
    unknown = set(data) - names
    if unknown or "name" not in data:
        raise InputError(f"{source}: bad supernet config (unknown keys {sorted(unknown)})")
    try:
        cfg = MBV3Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise InputError(f"{source}: bad supernet config ({exc})") from None
    return PRESETS[cfg.name] if PRESETS.get(cfg.name) == cfg else cfg


def save_checkpoint(out: str | Path, supernet: MBV3Supernet, meta: dict[str, Any],
                    optimizer_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write the three files atomically (tensor files first, JSON last); returns the JSON path."""
    out = Path(out)
    step = int(meta.get("step", 0))
    names = {"weights": f"weights-{step:08d}.safetensors", "optimizer": f"optimizer-{step:08d}.safetensors"}
    weights = st_save({k: v.detach().contiguous() for k, v in supernet.state_dict().items()})
    tensors = dict(optimizer_tensors or {})
    tensors[TORCH_RNG] = torch.get_rng_state()
    optim = st_save({k: v.detach().contiguous() for k, v in tensors.items()})
    atomic_write_bytes(out / names["weights"], weights)
    atomic_write_bytes(out / names["optimizer"], optim)
    record = {"format": FORMAT, "schema": SCHEMA, "space": supernet.config.name,
              "config": config_to_dict(supernet.config), **meta, "files": names,
              "sha256": {"weights": sha256_bytes(weights), "optimizer": sha256_bytes(optim)}}
    path = atomic_write_json(out / META, record)
    for old in [*out.glob("weights-*.safetensors"), *out.glob("optimizer-*.safetensors")]:
        if old.name not in names.values():
            old.unlink(missing_ok=True)
    return path


def _read_tensors(path: Path, expected_sha: Any) -> dict[str, torch.Tensor]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"supernet checkpoint file missing: {path}") from None
    if expected_sha is not None and sha256_bytes(data) != expected_sha:
        raise InputError(f"{path} does not match its checkpoint record (SHA-256 differs)",
                         hint="the checkpoint was interrupted mid-save or edited; use another one")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; anything missing or malformed raises one ``InputError``."""
    d = checkpoint_dir(path)
    if not (d / META).is_file():
        raise InputError(f"no supernet checkpoint at {path} ({META} not found)",
                         hint="pass the directory written by 'edgenas supernet train'")
    meta = read_json(d / META, "supernet checkpoint")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{d / META} is not an edgenas supernet checkpoint")
    if meta.get("schema") != SCHEMA:
        raise InputError(f"{d / META}: unsupported checkpoint schema {meta.get('schema')!r}",
                         hint=f"this edgenas reads schema {SCHEMA}")
    config = config_from_dict(meta.get("config"), str(d / META))
    shas = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(files.get(k), str) and "/" not in files[k]
                                               for k in ("weights", "optimizer")):
        raise InputError(f"{d / META}: missing or bad 'files' entry")
    weights = _read_tensors(d / files["weights"], shas.get("weights"))
    optim = _read_tensors(d / files["optimizer"], shas.get("optimizer"))
    try:
        supernet = MBV3Supernet(config)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{d / META}: cannot build the supernet ({exc})") from None
    expected = supernet.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    bad = sorted(k for k in set(expected) & set(weights) if expected[k].shape != weights[k].shape)
    if missing or unexpected or bad:
        raise InputError(f"{d / files['weights']} does not fit the {config.name} supernet "
                         f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {bad[:3]})")
    supernet.load_state_dict(weights)
    return Checkpoint(supernet.eval(), meta, optim, d)


def load_supernet(path: str | Path) -> MBV3Supernet:
    """The trained supernet of a checkpoint (directory or its ``supernet.json``), in eval mode."""
    return load_checkpoint(path).supernet
