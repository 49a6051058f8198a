"""Build the agent zipapp deterministically: the same sources give the same bytes, hence the same version.

Entries are sorted, stored uncompressed (no dependence on the zlib version) with a fixed timestamp and
fixed permissions. The archive holds ``__main__.py``, the ``edgenas_agent`` package and, when present,
the files ``exporters.DEVICE_FILES`` names (``exporters/__init__.py``, ``tensorrt.py`` and what it
needs: the TensorRT engine builder and runner the agent imports lazily). The version is the archive's SHA-256; it is never written into the archive (that would change
the hash): the agent hashes its own archive at start and reports it in its hello line.

Host side use: ``edgenas.devices.agent_bundle.ensure_agent_bundle(project)``. Standard library only.
"""

from __future__ import annotations

import ast
import hashlib
import io
import os
import tempfile
import zipfile
from pathlib import Path
from typing import List, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_EPOCH = (1980, 1, 1, 0, 0, 0)
_MAIN = (
    "# edgenas device agent (zipapp entry point); version = SHA-256 of this archive\n"
    "import sys\n"
    "from edgenas_agent.__main__ import main\n"
    "sys.exit(main())\n"
)


def _sources() -> List[Tuple[str, bytes]]:
    entries = [("__main__.py", _MAIN.encode("utf-8"))]
    pkg = HERE / "edgenas_agent"
    for path in sorted(pkg.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        entries.append((path.relative_to(HERE).as_posix(), path.read_bytes()))
    for name in _exporter_device_files():
        path = REPO / "exporters" / name
        if path.is_file():
            entries.append(("exporters/" + name, path.read_bytes()))
    return sorted(entries)


def _exporter_device_files() -> Tuple[str, ...]:
    """``exporters.DEVICE_FILES`` (read from the source, without importing exporters)."""
    init = REPO / "exporters" / "__init__.py"
    default = ("__init__.py", "tensorrt.py")
    if not init.is_file():
        return default
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "DEVICE_FILES" for t in node.targets):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                return default
            return tuple(str(v) for v in value if str(v).endswith(".py") and "/" not in str(v))
    return default


def zipapp_bytes() -> bytes:
    buf = io.BytesIO()
    buf.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for name, data in _sources():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data, compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


def build_zipapp(out_dir: Path) -> Tuple[Path, str]:
    """Write ``out_dir/edgenas-agent-<sha256>.pyz`` unless already there; return ``(path, sha256)``."""
    data = zipapp_bytes()
    version = hashlib.sha256(data).hexdigest()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("edgenas-agent-%s.pyz" % version)
    if path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == version:
        return path, version
    fd, tmp = tempfile.mkstemp(prefix=".agent.", suffix=".tmp", dir=str(out_dir))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path, version


if __name__ == "__main__":
    import sys

    p, v = build_zipapp(Path(sys.argv[1] if len(sys.argv) > 1 else "build/agent"))
    print(p)
