"""The agent core runs on a bare Python 3.8 (JetPack 5): stdlib only, no edgenas, deterministic zipapp."""

import ast
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from device_agents import build
from edgenas.errors import RuntimeMissingError
from edgenas.devices.local import LocalTransport
from edgenas.devices.rpc import AgentClient

AGENT = Path(build.__file__).parent / "edgenas_agent"
RUNTIME_MODULES = {"onnxruntime_rt.py", "torch_rt.py", "tensorrt_rt.py"}  # import their library lazily


VERMIN = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")


def _vermin(*args: str) -> subprocess.CompletedProcess:
    if VERMIN is None:
        pytest.fail("vermin is not installed (pip install vermin): the Python 3.8 check cannot run")
    return subprocess.run([VERMIN, "-t=3.8-", "--violations", "--no-tips", *args],
                          capture_output=True, text=True, timeout=120)


def test_vermin_finds_no_violations_for_python_3_8():
    r = _vermin(str(AGENT))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Minimum required versions: 3." in r.stdout


def test_vermin_check_can_fail(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 'abc'.removeprefix('a')\n")  # str.removeprefix is 3.9+
    assert _vermin(str(bad)).returncode != 0


def _imports(path: Path, top_level_only: bool) -> set:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_core_imports_only_the_standard_library():
    files = sorted(AGENT.rglob("*.py"))
    assert len(files) >= 10
    for path in files:
        lazy = path.name in RUNTIME_MODULES
        outside = {n for n in _imports(path, top_level_only=lazy) if n not in sys.stdlib_module_names}
        outside.discard("__future__")
        assert not outside, f"{path.name} imports {outside} at module level"
        assert "edgenas" not in _imports(path, top_level_only=False) and "torch" not in _imports(path, True)


def test_zipapp_is_deterministic(tmp_path):
    p1, v1 = build.build_zipapp(tmp_path / "a")
    p2, v2 = build.build_zipapp(tmp_path / "b")
    assert v1 == v2 and p1.read_bytes() == p2.read_bytes()
    assert v1 == hashlib.sha256(p1.read_bytes()).hexdigest() and p1.name == f"edgenas-agent-{v1}.pyz"
    with zipfile.ZipFile(p1) as zf:
        names = zf.namelist()
        assert names == sorted(names) and "__main__.py" in names and "edgenas_agent/server.py" in names
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    assert not any("__pycache__" in n for n in names)


def test_bare_python_without_site_packages_serves_and_reports_missing_runtime(tmp_path):
    """``python -S``: no numpy, no onnxruntime, no torch. The agent still serves; bench says why not."""
    wrapper = tmp_path / "bare-python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    wrapper.chmod(0o755)
    _run_bare(tmp_path, str(wrapper))


def _python38():
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates += [p for p in (shutil.which("python3.8"),) if p]
    for exe in candidates:  # a pyenv shim may exist without a working interpreter behind it
        if subprocess.run([exe, "-c", "import sys; assert sys.version_info[:2] == (3, 8)"],
                          capture_output=True, timeout=30).returncode == 0:
            return exe
    return None


PY38 = _python38()


@pytest.mark.skipif(PY38 is None, reason="no Python 3.8 interpreter on this machine")
def test_agent_runs_on_python_3_8(tmp_path):
    info = _run_bare(tmp_path, PY38)
    assert info["fingerprint"]["software"]["python"].startswith("3.8")


def _run_bare(tmp_path: Path, python: str) -> dict:
    from edgenas.project import Project

    project = Project(tmp_path / "proj")
    path, version = build.build_zipapp(tmp_path / "bundle")
    with LocalTransport(project, device="bare", python=python) as t:
        with AgentClient(t.start_agent(path, version), "bare", expect_version=version) as c:
            info = c.info(threads=1)
            assert info["runtimes"] == {"onnxruntime": None, "tensorrt": None, "torch": None}
            (project.local_workdir_of("bare") / "models" / "m.onnx").write_bytes(b"\x08\x08")
            with pytest.raises(RuntimeMissingError) as exc:
                c.call("bench", {"model": "models/m.onnx", "protocol": {"max_s": 0.2}})
            assert "available: none" in str(exc.value)
            assert c.ping()
    return info


def test_zipapp_ships_the_exporters_device_files(tmp_path):
    path, _ = build.build_zipapp(tmp_path / "b")
    init = Path(build.__file__).parent.parent / "exporters" / "__init__.py"
    if not (init.parent / "tensorrt.py").is_file():
        pytest.skip("exporters/tensorrt.py not written yet")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"exporters/__init__.py", "exporters/tensorrt.py"} <= names
    # the shipped module imports on the agent's bare Python (no torch, no onnx, no site-packages)
    python = PY38 or sys.executable
    r = subprocess.run([python, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                        "import exporters.tensorrt as t; print(callable(t.build_engine))", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def test_the_host_package_runs_on_the_python_pyproject_names():
    """pyproject said >=3.10 while edgenas imports tomllib and enum.StrEnum (3.11): pip installed it on 3.10 and
    every command failed at import."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    spec = tomllib.loads((root / "pyproject.toml").read_text())["project"]["requires-python"]
    assert spec.startswith(">=3."), spec
    low = spec.removeprefix(">=")
    r = subprocess.run([VERMIN or "vermin", f"-t={low}-", "--violations", "--no-tips",
                        str(root / "edgenas"), str(root / "exporters")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"Minimum required versions: {low}" in r.stdout, r.stdout
