"""A real project for the report and API tests (built once per session): a profiled ``mbv3-tiny`` LUT on
``local``, two real searches and a NAS-Bench-201 tabular search under ``runs/``, a real deployment of
the first run's best architecture, a calibration from real measurements and a real drift check
(``fleet refresh``); plus a headless Chromium (``browser``) driven over the DevTools protocol."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

FAST = {"warmup_min_n": 3, "warmup_min_s": 0.01, "min_n": 5, "min_s": 0.02, "max_s": 0.3}
NB201_CSV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nb201" / "nb201_hw.csv"


def _load_browser_module():
    spec = importlib.util.spec_from_file_location("edgenas_test_browser", Path(__file__).with_name("browser.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


browser_mod = _load_browser_module()


def _search(project, out, **kw):
    from edgenas.search.launch import SearchRequest, launch_search

    req = SearchRequest(space="mbv3-tiny", devices=("local",), max_latency_quantile=0.6, evaluator="params",
                        population=8, **kw)
    return launch_search(project, req, out)


@pytest.fixture(scope="session")
def report_template(tmp_path_factory):
    from edgenas.fleet.calibrate import calibrate_device
    from edgenas.fleet.deploy import deploy
    from edgenas.fleet.profiler import profile_device
    from edgenas.devices.profiles import LOCAL_PROFILE
    from edgenas.fleet.refresh import refresh_fleet
    from edgenas.project import Project
    from edgenas.spaces import get_space

    root = tmp_path_factory.mktemp("report-project")
    project = Project(root)
    profile_device(project, "local", "mbv3-tiny", protocol=FAST)
    profile_device(project, "local", "nb201", protocol=FAST)   # a space without the kernel x expand layout
    _search(project, root / "runs" / "evo", strategy="evolution", budget=32, seed=1)
    _search(project, root / "runs" / "rnd", strategy="random", budget=32, seed=2)
    if NB201_CSV.exists():
        from edgenas.search.launch import SearchRequest, launch_search

        launch_search(project, SearchRequest(space="nb201", table=str(NB201_CSV.resolve()), objective="cifar10_test",
                                             latency_column="raspi4_ms", max_latency_ms=(20.0,), budget=40, seed=3),
                      root / "runs" / "nb201")
    space = get_space("mbv3-tiny")
    import json

    best = json.loads((root / "runs" / "evo" / "best.json").read_text())["arch"]
    deploy(project, "local", space, space.from_dict(best))
    calibrate_device(project, "local", "mbv3-tiny", measure=2, seed=0)
    refresh_fleet(project, [LOCAL_PROFILE], "mbv3-tiny", protocol=FAST, drift_floor=0.5)
    return root


@pytest.fixture
def rproj(report_template, tmp_path, monkeypatch):
    """A private copy of the report project (tests may add files to it)."""
    root = tmp_path / "proj"
    shutil.copytree(report_template, root, symlinks=True)
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    return root


@pytest.fixture(scope="session")
def browser():
    if browser_mod.CHROMIUM is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium; .ci/run does it)")
    pytest.importorskip("websocket", reason="needs websocket-client (the test extra)")
    b = browser_mod.Browser()
    yield b
    b.close()


@pytest.fixture
def snapshot():
    """``snapshot(root)``: every file under ``root`` -> its bytes' SHA-256 (to show nothing changed)."""
    import hashlib

    def snap(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    return snap
