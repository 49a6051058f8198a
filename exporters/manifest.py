"""The manifest that travels next to an exported ONNX file.

It says what the file is (architecture, space, opset, input shape), identifies it (SHA-256, file
name), records how well it matched PyTorch (the parity report) and with which library versions it
was produced. JSON with an explicit schema version; reading is strict: unknown or missing keys,
wrong types and other schema versions are errors, never guesses. No torch import.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, fields
from importlib import metadata
from pathlib import Path
from typing import Any

from exporters._io import atomic_write_bytes, sha256_file
from exporters.errors import ExportCheckError

SCHEMA = 1
VERSIONED_PACKAGES = ("torch", "onnx", "onnxruntime")

_TYPES: dict[str, tuple[type, ...]] = {
    "schema": (int,),
    "space": (str,),
    "arch": (dict,),
    "opset": (int,),
    "input_shape": (list,),
    "dynamic_batch": (bool,),
    "onnx_sha256": (str,),
    "onnx_file": (str,),
    "parity": (dict, type(None)),
    "versions": (dict,),
    "created_at": (str,),
}


def package_versions() -> dict[str, str]:
    """Installed versions of torch/onnx/onnxruntime (``"absent"`` when not installed)."""
    out = {}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Manifest:
    space: str
    arch: dict[str, Any]
    opset: int
    input_shape: tuple[int, ...]
    dynamic_batch: bool
    onnx_sha256: str
    onnx_file: str  # a bare file name, resolved next to the manifest
    parity: dict[str, Any] | None
    versions: dict[str, str]
    created_at: str  # ISO 8601, UTC
    schema: int = SCHEMA

    @classmethod
    def for_export(
        cls, info: Any, *, space: str, arch: dict[str, Any], parity: Any = None
    ) -> Manifest:
        """Build from an ``ExportInfo`` (and a ``ParityReport`` or its dict), stamping versions/time."""
        parity_dict = parity.to_dict() if hasattr(parity, "to_dict") else parity
        return cls(
            space=space,
            arch=dict(arch),
            opset=info.opset,
            input_shape=tuple(info.input_shape),
            dynamic_batch=info.dynamic_batch,
            onnx_sha256=info.sha256,
            onnx_file=Path(info.path).name,
            parity=parity_dict,
            versions=package_versions(),
            created_at=_now(),
        )

    @classmethod
    def create(
        cls,
        *,
        arch: dict[str, Any],
        space: str,
        opset: int,
        input_shape: Any,
        dynamic_batch: bool,
        onnx_path: str | Path,
        parity: dict[str, Any] | None,
    ) -> Manifest:
        """Build from explicit fields, hashing ``onnx_path`` (as it is now) and stamping versions/time."""
        return cls(
            space=space,
            arch=dict(arch),
            opset=int(opset),
            input_shape=tuple(int(d) for d in input_shape),
            dynamic_batch=bool(dynamic_batch),
            onnx_sha256=sha256_file(onnx_path),
            onnx_file=Path(onnx_path).name,
            parity=parity,
            versions=package_versions(),
            created_at=_now(),
        )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["input_shape"] = list(self.input_shape)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise ExportCheckError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("schema") != SCHEMA:
            raise ExportCheckError(
                f"{source}: manifest schema {data.get('schema')!r} is not supported (expected {SCHEMA})",
                hint="re-export with this version of edgenas",
            )
        missing = sorted(set(_TYPES) - set(data))
        unknown = sorted(set(data) - set(_TYPES))
        if missing or unknown:
            raise ExportCheckError(f"{source}: missing keys {missing}, unknown keys {unknown}")
        for key, types in _TYPES.items():
            value = data[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise ExportCheckError(f"{source}: {key!r} has the wrong type {type(value).__name__}")
        shape = data["input_shape"]
        if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape):
            raise ExportCheckError(f"{source}: input_shape {shape!r} must be positive ints")
        if len(data["onnx_sha256"]) != 64 or Path(data["onnx_file"]).name != data["onnx_file"]:
            raise ExportCheckError(f"{source}: onnx_sha256/onnx_file malformed")
        kwargs = dict(data)
        kwargs["input_shape"] = tuple(shape)
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str, *, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ExportCheckError(f"{source}: not valid JSON: {exc}") from exc
        return cls.from_dict(data, source=source)

    def save(self, path: str | Path) -> Path:
        return atomic_write_bytes(path, self.to_json().encode("utf-8"))

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ExportCheckError(f"cannot read manifest {path}: {exc}") from exc
        return cls.from_json(text, source=str(path))

    def verify_onnx(self, folder: str | Path) -> Path:
        """Check that ``folder/onnx_file`` exists and has the recorded SHA-256; return its path."""
        path = Path(folder) / self.onnx_file
        if not path.is_file():
            raise ExportCheckError(f"ONNX file {path} named by the manifest is missing")
        actual = sha256_file(path)
        if actual != self.onnx_sha256:
            raise ExportCheckError(
                f"{path} has SHA-256 {actual[:12]}..., the manifest records {self.onnx_sha256[:12]}...",
                hint="the file changed after export; re-export it",
            )
        return path
