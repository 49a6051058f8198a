"""TensorRT side: version logic (pure), torch-free import, Python 3.8 compatibility, and the build.

TensorRT is absent on the development machine; the real build test skips with the reason there.
``test_build_engine_with_fake_tensorrt`` uses a stand-in ``tensorrt`` module (the only mock allowed
in these tests) to exercise the flag/cache/profile/parse-error logic of ``build_engine``.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from exporters.errors import ExportCheckError, TensorRTMissing
from exporters.tensorrt import build_engine, builder_flags_for, tensorrt_available

ROOT = Path(__file__).resolve().parents[2]
DEVICE_SIDE = ["exporters/__init__.py", "exporters/errors.py", "exporters/_io.py",
               "exporters/tensorrt.py", "exporters/_trt_runner.py"]


@pytest.mark.parametrize(
    "version, precision, expected",
    [
        ("8.5.2.2", "fp32", ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH"]),
        ("8.6.1", "fp16", ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "BuilderFlag.FP16"]),
        ("8.6.2.3", "int8",
         ["NetworkDefinitionCreationFlag.EXPLICIT_BATCH", "BuilderFlag.INT8", "BuilderFlag.FP16"]),
        ("10.3.0", "fp16", ["BuilderFlag.FP16"]),
        ("10.13.0.35", "int8", ["BuilderFlag.INT8", "BuilderFlag.FP16"]),
        ("10.0.1", "fp32", []),
        ("11.0.0", "fp32", ["NetworkDefinitionCreationFlag.STRONGLY_TYPED"]),
        ("11.2", "fp32", ["NetworkDefinitionCreationFlag.STRONGLY_TYPED"]),
    ],
)
def test_builder_flags_for(version, precision, expected):
    assert builder_flags_for(version, precision) == expected


@pytest.mark.parametrize("version, match", [("8.4.1", "too old"), ("7.1.3", "too old"), ("x.y", "parse"),
                                            # strongly typed: an fp16 engine of edgenas's fp32 graph was fp32
                                            ("11.0.0", "exports fp32 graphs")])
def test_builder_flags_for_bad_versions(version, match):
    with pytest.raises(ExportCheckError, match=match):
        builder_flags_for(version, "fp16")


def test_builder_flags_for_bad_precision():
    with pytest.raises(ExportCheckError, match="bf8"):
        builder_flags_for("10.3.0", "bf8")


def test_import_without_torch_in_subprocess():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None\n"
        "import exporters, exporters.tensorrt, exporters._trt_runner\n"
        "from exporters import ExportCheckError, TensorRTMissing, builder_flags_for\n"
        "assert builder_flags_for('10.3', 'fp16') == ['BuilderFlag.FP16']\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'edgenas', 'device_agents') and sys.modules[m] is not None)\n"
        "print(bad)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def _is_py38(exe: str) -> bool:
    probe = "import sys; sys.exit(sys.version_info[:2] != (3, 8))"
    return subprocess.run([exe, "-c", probe], capture_output=True, timeout=30).returncode == 0


def test_python38_can_import_device_side():
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python")))
    candidates += [c for c in [shutil.which("python3.8")] if c]
    py38 = next((c for c in candidates if _is_py38(c)), None)
    if py38 is None:
        pytest.skip("no Python 3.8 interpreter on this machine (the vermin test still covers syntax)")
    code = (
        "import exporters, exporters.tensorrt, exporters._trt_runner\n"
        "print(exporters.tensorrt.builder_flags_for('8.5.2', 'fp16'))\n"
        "print(exporters.tensorrt.tensorrt_available()[0])\n"
    )
    res = subprocess.run([py38, "-I", "-c", "import sys; sys.path.insert(0, '.');" + code.replace("\n", ";")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.split("\n")
    assert lines[0] == "['NetworkDefinitionCreationFlag.EXPLICIT_BATCH', 'BuilderFlag.FP16']"


def test_vermin_python38():
    vermin = Path(sys.executable).with_name("vermin")
    if not vermin.exists():
        pytest.skip("vermin is not installed in this environment (pip install vermin)")
    res = subprocess.run([str(vermin), "-t=3.8-", "--violations", "--no-tips", *DEVICE_SIDE],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_tensorrt_available_reports_reason():
    ok, reason = tensorrt_available()
    assert isinstance(ok, bool) and reason
    if not ok:
        assert reason.startswith("TensorRT is not installed on this device")
        assert "pip install tensorrt" in reason


def test_missing_tensorrt_raises_with_hint(tmp_path):
    ok, reason = tensorrt_available()
    if ok:
        pytest.skip("TensorRT is installed here")
    with pytest.raises(TensorRTMissing, match="TensorRT is not installed on this device"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine")
    from exporters.tensorrt import EngineRunner

    with pytest.raises(TensorRTMissing):
        EngineRunner(tmp_path / "m.engine")


def test_build_engine_real(exported_dynamic, tmp_path):
    ok, reason = tensorrt_available()
    if not ok:
        pytest.skip(reason)
    from exporters.tensorrt import EngineRunner

    cache = tmp_path / "fingerprint-abc.cache"
    info = build_engine(exported_dynamic.path, tmp_path / "m.engine", precision="fp16",
                        timing_cache=cache, dynamic_batch=(1, 2, 4))
    assert Path(info["engine_path"]).stat().st_size == info["size_bytes"] > 0
    assert cache.stat().st_size > 0
    again = build_engine(exported_dynamic.path, tmp_path / "m2.engine", timing_cache=cache, dynamic_batch=(1, 2, 4))
    assert again["timing_cache_loaded"] is True
    with EngineRunner(tmp_path / "m.engine", batch=2) as runner:
        (out,) = runner.run().values()
        assert out.shape == (2, 10)
        times = runner.time(iterations=20, warmup=5)
        assert len(times) == 20 and min(times) > 0
    json.dumps(info)


def test_shipped_files_import_alone(tmp_path):
    """What the agent zipapp ships must import on its own (torch and onnx blocked)."""
    import exporters

    pkg = tmp_path / "exporters"
    pkg.mkdir()
    for name in exporters.DEVICE_FILES:
        shutil.copy(ROOT / "exporters" / name, pkg / name)
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; sys.path.insert(0, '.')\n"
        "import exporters.tensorrt as t\n"
        "assert t.__file__.startswith(sys.argv[1]), t.__file__\n"
        "assert t.builder_flags_for('10.3.0', 'int8') == ['BuilderFlag.INT8', 'BuilderFlag.FP16']\n"
        "try:\n"
        "    t.open_runner('x.engine', {})\n"
        "except t.TensorRTMissing as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    # -S: no site-packages, so the editable install cannot shadow the copied package
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ok, _ = tensorrt_available()
    if not ok:
        assert res.stdout.startswith("TensorRTMissing ")
