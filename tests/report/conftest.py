"""A real project for the report and API tests (built once per session): a profiled ``mbv3-tiny`` LUT on
``local``, two real searches and a NAS-Bench-201 tabular search under ``runs/``, a real deployment of
the first run's best architecture, a calibration from real measurements and a real drift check
(``fleet refresh``); plus a headless Chromium (``browser``) driven over the DevTools protocol."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest

from edgenas.project import Project
from tests.protocols import FAST

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
    best = json.loads((root / "runs" / "evo" / "best.json").read_text())["arch"]
    deploy(project, "local", space, space.from_dict(best))
    calibrate_device(project, "local", "mbv3-tiny", measure=2, seed=0)
    refresh_fleet(project, [LOCAL_PROFILE], "mbv3-tiny", protocol=FAST, drift_floor=0.5)
    return root


NB201_VALID = NB201_CSV.with_name("nb201_valid.csv")


def _cli(*args: str) -> None:
    from edgenas.cli import main

    try:
        main(list(args))
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)


@pytest.fixture(scope="session")
def drivers_template(report_template, tmp_path_factory):
    """The report project plus runs of the other drivers and budgets, made by the CLI: ``sh`` (a ladder from
    the compression proxy to training on digits, accuracy in %), ``dm`` (DARTS on mbv3-tiny, 2 epochs) and
    ``dm-tight`` (the same without a multiplier, ``lambda_lr=0``: no latency term, so its argmax is that of a
    run without a budget, made first outside the project; and a budget below that argmax: the derived network
    is repaired to meet it),
    and with the NB-201 tables ``hb`` (hyperband over the 12- and 200-epoch columns), ``nb201-b`` (20 ms,
    as ``nb201``) and ``tight`` (12 ms)."""
    root = tmp_path_factory.mktemp("drivers") / "proj"
    shutil.copytree(report_template, root, symlinks=True)
    budget = str(_quantile_ms(Project(root), "local", "mbv3-tiny", 0.6))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGENAS_PROJECT", str(root))
        mp.setenv("EDGENAS_NO_PROGRESS", "1")
        mp.chdir(root)
        _cli("search", "--space", "mbv3-tiny", "--device", "local", "--max-latency-ms", budget, "--strategy", "sh",
             "--budget", "4", "--ladder", "compression:keep=2", "--ladder", "train:epochs=1,cost=40,limit=300",
             "--seed", "0", "--out", "runs/sh")
        darts = ("search", "--space", "mbv3-tiny", "--strategy", "darts", "--device", "local", "--epochs", "2")
        _cli(*darts, "--max-latency-ms", budget, "--seed", "0", "--out", "runs/dm")
        # dm's multiplier may have pushed its argmax to the fastest network, which no budget can repair; without
        # one the argmax is what accuracy alone derives (its own database: the project's lists no extra run)
        free = tmp_path_factory.mktemp("dm-free")
        _cli(*darts, "--strategy-opt", "lambda_lr=0", "--seed", "0", "--out", str(free / "run"),
             "--db", f"sqlite:///{free / 'free.db'}")
        argmax = json.loads((free / "run/history.json").read_text())["history"][-1]["derived_ms"]["local"]
        fastest = _fastest_ms(Project(root), "local", "mbv3-tiny")
        if argmax > fastest:
            _cli(*darts, "--max-latency-ms", str((argmax + fastest) / 2), "--strategy-opt", "lambda_lr=0",
                 "--seed", "0", "--out", "runs/dm-tight")
        if NB201_VALID.exists():
            table = ["--table", str(NB201_CSV.resolve()), "--latency-column", "raspi4_ms"]
            valid = f"nb201-fidelity:table={NB201_VALID.resolve()}"
            _cli("search", "--space", "nb201", "--strategy", "hyperband", "--budget", "27", *table,
                 "--max-latency-ms", "15", "--ladder", f"{valid},column=cifar10_valid_12ep",
                 "--ladder", f"{valid},column=cifar10_valid,cost=16.67,report=cifar10_test", "--seed", "0",
                 "--out", "runs/hb")
            for name, ms, seed in (("nb201-b", "20", "4"), ("tight", "12", "5")):
                _cli("search", "--space", "nb201", *table, "--max-latency-ms", ms, "--budget", "40", "--seed", seed,
                     "--out", f"runs/{name}")
    return root


def _model(project, device: str, space: str):
    """The latency model a search on ``device`` uses now: the LUT the store chooses, with its calibration.
    The template's first searches were budgeted on the raw table, before ``calibrate_device``: on a busy
    machine their budget can be below the fastest network the calibrated table allows."""
    from edgenas.latency.predictor import LatencyPredictor
    from edgenas.latency.store import LutStore
    from edgenas.spaces import get_space

    return LatencyPredictor(LutStore(project.luts_dir).choose(device, space).lut, get_space(space))


def _fastest_ms(project, device: str, space: str) -> float:
    return _model(project, device, space).min_latency()[0]


def _quantile_ms(project, device: str, space: str, q: float) -> float:
    import numpy as np
    from edgenas.spaces import get_space

    rng, s = np.random.default_rng(0), get_space(space)
    return float(np.quantile(_model(project, device, space).predict_many([s.sample(rng) for _ in range(256)]), q))


def _private_copy(template, tmp_path, monkeypatch):
    """A copy of a session's project template that a test may add files to, as the project of the test."""
    root = tmp_path / "proj"
    shutil.copytree(template, root, symlinks=True)
    monkeypatch.setenv("EDGENAS_PROJECT", str(root))
    monkeypatch.setenv("EDGENAS_NO_PROGRESS", "1")
    return root


@pytest.fixture
def dproj(drivers_template, tmp_path, monkeypatch):
    """A private copy of ``drivers_template``."""
    return _private_copy(drivers_template, tmp_path, monkeypatch)


@pytest.fixture
def rproj(report_template, tmp_path, monkeypatch):
    """A private copy of the report project (tests may add files to it)."""
    return _private_copy(report_template, tmp_path, monkeypatch)


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
