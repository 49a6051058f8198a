"""Load an ONNX file and check it, turning every way it can be bad into one clear error.

A file coming back from a user, a device or a cache may be missing, not ONNX at all (random bytes,
an HTML error page), truncated by an interrupted copy, or a valid protobuf that is not a valid model.
Each case gives an ``ExportCheckError`` whose one-line message names the file.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from exporters.errors import ExportCheckError

_HINT = "re-export the model (edgenas export) or copy the file again"


def load_checked(path: str | Path) -> onnx.ModelProto:
    """Load ``path`` as ONNX, run ``onnx.checker`` (full check) and return the model."""
    path = Path(path)
    if not path.exists():
        raise ExportCheckError(f"ONNX file {path} does not exist", hint=_HINT)
    if not path.is_file():
        raise ExportCheckError(f"ONNX path {path} is not a file", hint=_HINT)
    if path.stat().st_size == 0:
        raise ExportCheckError(f"ONNX file {path} is empty", hint=_HINT)
    try:
        model = onnx.load(str(path))
    except PermissionError:  # the file is fine: this user may not read it ("corrupt or truncated" sent to re-export)
        raise ExportCheckError(f"cannot read ONNX file {path}: permission denied",
                               hint="give this user read permission on it, or copy it somewhere it can read") from None
    except (DecodeError, RuntimeWarning, ValueError, OSError) as exc:
        raise ExportCheckError(
            f"{path} is not a readable ONNX model (corrupt or truncated): {exc}", hint=_HINT
        ) from exc
    except Exception as exc:  # protobuf backends differ in what they raise on garbage
        raise ExportCheckError(
            f"{path} is not a readable ONNX model: {type(exc).__name__}: {exc}", hint=_HINT
        ) from exc
    if not model.HasField("graph") or len(model.graph.node) == 0 or not model.opset_import:
        raise ExportCheckError(
            f"{path} is not an ONNX model (no graph, nodes or opset import; truncated?)", hint=_HINT
        )
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError
        raise ExportCheckError(f"{path} fails the ONNX checker: {exc}", hint=_HINT) from exc
    return model
