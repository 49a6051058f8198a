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
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from edgenas.errors import InputError
from edgenas.io import atomic_write_bytes, atomic_write_json, read_json, sha256_bytes
from edgenas.limits import is_schema, read_bytes_limited
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
    bad = _config_problem(data)
    if bad:
        raise InputError(f"{source}: bad supernet config: {bad}",
                         hint="the checkpoint's supernet.json was edited or damaged; train again or restore it")
    try:
        cfg = MBV3Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
    except TypeError as exc:
        raise InputError(f"{source}: bad supernet config ({exc})") from None
    return PRESETS[cfg.name] if PRESETS.get(cfg.name) == cfg else cfg


#: what a supernet config may hold: (low, high) for each whole number, and per list the element range,
#: the longest list and whether its length is the number of stages. Tight enough that a file cannot ask
#: for a network that does not fit in memory (a width of 10^6 is a 10^12-weight convolution).
_CONFIG_INTS = {"stem_width": (1, 4096), "stem_stride": (1, 4), "first_block_width": (1, 4096),
                "final_expand_width": (1, 8192), "feature_mix_width": (1, 8192), "num_classes": (1, 100_000),
                "in_channels": (1, 64)}
_CONFIG_LISTS = {"stage_widths": ((1, 4096), 16, True), "stage_strides": ((1, 4), 16, True),
                 "ks_choices": ((1, 15), 8, False), "e_choices": ((1, 16), 8, False),
                 "d_choices": ((1, 16), 8, False), "resolutions": ((8, 1024), 256, False)}
_ACTIVATIONS = ("relu", "hswish")


def _config_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a supernet config record (None when nothing is)."""
    from edgenas.limits import is_whole
    from edgenas.safenames import NAME_RE

    if not isinstance(data.get("name"), str) or not NAME_RE.match(data["name"]):
        return "'name' must be 1-64 letters, digits, '.', '_' or '-'"
    for key, (low, high) in _CONFIG_INTS.items():
        if key in data and not (is_whole(data[key]) and low <= data[key] <= high):
            return f"'{key}' must be a whole number from {low} to {high}"
    stages = data.get("stage_widths", list(MBV3Config.stage_widths))
    n_stages = len(stages) if isinstance(stages, list) else None
    for key, ((low, high), longest, per_stage) in _CONFIG_LISTS.items():
        v = data.get(key)
        if v is None and key not in data:
            continue
        if not (isinstance(v, list) and 0 < len(v) <= longest and all(is_whole(x) and low <= x <= high for x in v)):
            return f"'{key}' must be a list of 1-{longest} whole numbers from {low} to {high}"
        if per_stage and len(v) != n_stages:
            return f"'{key}' must have one entry per stage ({n_stages})"
    if "ks_choices" in data and any(k % 2 == 0 for k in data["ks_choices"]):
        return "'ks_choices' must be odd kernel sizes"
    if "stage_act" in data and not (isinstance(data["stage_act"], list) and len(data["stage_act"]) == n_stages
                                    and all(a in _ACTIVATIONS for a in data["stage_act"])):
        return f"'stage_act' must name one activation per stage ({', '.join(_ACTIVATIONS)})"
    if "stage_se" in data and not (isinstance(data["stage_se"], list) and len(data["stage_se"]) == n_stages
                                   and all(isinstance(x, bool) for x in data["stage_se"])):
        return "'stage_se' must be one true/false per stage"
    return None


_FILE_RE = re.compile(r"^(weights|optimizer)-\d{1,19}\.safetensors$")


def _meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a checkpoint record that training and evaluation read."""
    from edgenas.limits import MAX_INT, is_finite, is_whole

    tc = meta.get("train_config", {})
    for key in ("step", "total_steps"):
        if key in meta and not (is_whole(meta[key]) and meta[key] <= MAX_INT):
            return f"'{key}' must be a whole number"
    if not isinstance(meta.get("space"), str):
        return "'space' must be a space name"
    if not isinstance(tc, dict):
        return "'train_config' must be an object"
    if "data" in tc and not (isinstance(tc["data"], str) and tc["data"]):
        return "'train_config.data' must be 'digits', a .npz file or an image folder"
    if "val_fraction" in tc and not (is_finite(tc["val_fraction"]) and 0 < tc["val_fraction"] < 1):
        return "'train_config.val_fraction' must be a number between 0 and 1"
    if "rng" in meta and not isinstance(meta["rng"], dict):
        return "'rng' must be an object (numpy's generator state)"
    history = meta.get("history", [])
    if not (isinstance(history, list) and all(isinstance(h, dict) for h in history)):
        return "'history' must be a list of objects"
    return None


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


#: the largest weights or optimizer file read (an mbv3 supernet's are tens of MB)
MAX_TENSOR_BYTES = 1 << 30


def _read_tensors(path: Path, expected_sha: Any) -> dict[str, torch.Tensor]:
    if not path.exists() and not path.is_symlink():
        raise InputError(f"supernet checkpoint file missing: {path}")
    data = read_bytes_limited(path, "supernet checkpoint file", MAX_TENSOR_BYTES)
    if expected_sha is not None and sha256_bytes(data) != expected_sha:
        raise InputError(f"{path} does not match its checkpoint record (SHA-256 differs)",
                         hint="the checkpoint was interrupted mid-save or edited; use another one")
    try:
        return st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise InputError(f"{path}: not a readable safetensors file ({exc})") from None


_DAMAGED = "the checkpoint was edited or damaged; train again or restore it"


def _tensors_problem(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor],
                     partial: bool = False) -> str | None:
    """What is wrong with tensors meant for ``expected`` (all of its keys unless ``partial``): a key missing
    or unknown, another shape or dtype, a NaN or infinity."""
    missing = [] if partial else sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = sorted(k for k in set(expected) & set(tensors)
                   if (expected[k].shape, expected[k].dtype) != (tensors[k].shape, tensors[k].dtype))
    if missing or unexpected or wrong:
        return f"do not fit (missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape or type {wrong[:3]})"
    nonfinite = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all()))
    return f"hold NaN or infinite values ({nonfinite[:3]})" if nonfinite else None


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read and validate a checkpoint; anything missing or malformed raises one ``InputError``."""
    d = checkpoint_dir(path)
    if not (d / META).is_file():
        raise InputError(f"no supernet checkpoint at {path} ({META} not found)",
                         hint="pass the directory written by 'edgenas supernet train'")
    meta = read_json(d / META, "supernet checkpoint")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{d / META} is not an edgenas supernet checkpoint")
    if not is_schema(meta.get("schema"), SCHEMA):
        raise InputError(f"{d / META}: unsupported checkpoint schema {meta.get('schema')!r}",
                         hint=f"this edgenas reads schema {SCHEMA}")
    config = config_from_dict(meta.get("config"), str(d / META))
    bad = _meta_problem(meta)
    if not bad and meta["space"] != config.name:
        bad = f"'space' is '{meta['space']}' but the config is the {config.name} supernet's"
    if bad:
        raise InputError(f"{d / META}: {bad}", hint="the checkpoint's supernet.json was edited or damaged; "
                                                     "train again or restore it")
    shas = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
    files = meta.get("files")
    if not isinstance(files, dict) or not all(isinstance(files.get(k), str) and _FILE_RE.match(files[k])
                                               for k in ("weights", "optimizer")):
        raise InputError(f"{d / META}: missing or bad 'files' entry")
    try:  # shapes only (torch's meta device holds no data): a config within its limits can still ask for
        with torch.device("meta"):  # a 31 GiB network (four stages of width 4096), built before any check
            shape = MBV3Supernet(config)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{d / META}: cannot build the supernet ({exc})") from None
    expected = shape.state_dict()
    size = sum(t.numel() * t.element_size() for t in expected.values())
    if size > MAX_TENSOR_BYTES:
        raise InputError(f"{d / META}: its config is a supernet of {size / (1 << 30):.1f} GiB, more than a weights "
                         f"file may hold ({MAX_TENSOR_BYTES >> 30} GiB)", hint=_DAMAGED)
    weights = _read_tensors(d / files["weights"], shas.get("weights"))
    optim = _read_tensors(d / files["optimizer"], shas.get("optimizer"))
    bad = _tensors_problem(weights, expected)
    if bad:
        raise InputError(f"{d / files['weights']}: the weights of the {config.name} supernet {bad}", hint=_DAMAGED)
    params = {f"momentum/{k}": p for k, p in shape.named_parameters()}
    bad = _tensors_problem({k: v for k, v in optim.items() if k != TORCH_RNG}, params, partial=True)
    if bad:
        raise InputError(f"{d / files['optimizer']}: the momentum buffers {bad}", hint=_DAMAGED)
    if TORCH_RNG in optim:
        try:
            torch.Generator().set_state(optim[TORCH_RNG])
        except (RuntimeError, TypeError) as exc:
            raise InputError(f"{d / files['optimizer']}: '{TORCH_RNG}' is not a torch generator state ({exc})",
                             hint=_DAMAGED) from None
    supernet = MBV3Supernet(config)
    supernet.load_state_dict(weights)
    return Checkpoint(supernet.eval(), meta, optim, d)


def load_supernet(path: str | Path) -> MBV3Supernet:
    """The trained supernet of a checkpoint (directory or its ``supernet.json``), in eval mode."""
    return load_checkpoint(path).supernet
