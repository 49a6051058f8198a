"""No import circle in edgenas/, exporters/ or device_agents/, and every module imports on its own.

The graph counts every import statement in a file, at the top or inside a function (a function-level
import that closes a circle only hides it), resolved to the project's own modules. Check it by hand with
``python -m pytest tests/test_imports.py -q``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edgenas", "exporters", "device_agents")


def _modules() -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``module`` imports (anywhere in the file)."""
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_pkg else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:  # "pkg.mod.attr" -> "pkg.mod"
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(m, p, set(mods)) for m, p in mods.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "edgenas.devices.login" in graph["edgenas.devices.ssh"]  # a top-level import
    assert "edgenas.devices.session" in graph["edgenas.fleet.profiler"]  # one inside a function
    assert "device_agents.edgenas_agent.errors" in graph["device_agents.edgenas_agent.runtimes"]  # relative
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle():
    graph = import_graph()
    found = circles(graph)
    detail = ["; ".join(f"{m} -> {sorted(graph[m] & set(c))}" for m in c) for c in found]
    assert not found, "import circles:\n" + "\n".join(detail)


def test_layers_point_down():
    """Inside edgenas: devices never imports the jobs (fleet) or anything above; latency, supernet, spaces and
    datasets never import evaluate or above; exporters and the agent import no host code."""
    graph = import_graph()
    above = ("edgenas.fleet", "edgenas.cli", "edgenas.search", "edgenas.report", "edgenas.api")
    for mod, targets in graph.items():
        if mod.startswith(("edgenas.fleet", "edgenas.search")):
            assert not [t for t in targets if t.startswith(("edgenas.cli", "edgenas.report", "edgenas.api"))], mod
        if mod.startswith(("edgenas.report", "edgenas.api")):
            assert not [t for t in targets if t.startswith("edgenas.cli")], mod
        if mod.startswith("edgenas.devices"):
            assert not [t for t in targets if t.startswith(above)], mod
        if mod.startswith(("edgenas.latency", "edgenas.supernet", "edgenas.spaces", "edgenas.datasets")):
            assert not [t for t in targets if t.startswith(("edgenas.evaluate",) + above)], mod
        if mod.startswith("exporters"):
            assert not [t for t in targets if t.startswith(("edgenas", "device_agents"))], mod
        if mod.startswith("device_agents"):
            assert not [t for t in targets if t.startswith("edgenas")], mod


_IMPORT_EACH = """
import importlib, sys, traceback
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("edgenas", "exporters", "device_agents")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=3))
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


@pytest.mark.slow
def test_each_module_imports_first():
    """Each module imported first, into a fresh set of project modules (third-party ones stay loaded)."""
    # Alembic's migration scripts run only inside alembic (they read ``alembic.context.config``)
    names = [m for m in _modules() if not m.endswith("__main__") and ".migrations." not in m]
    res = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


_NO_TORCH = """
import sys
from edgenas.cli import main
for args in (["search", "--space", "nb201", "--table", sys.argv[1], "--strategy", "evolution", "--budget", "30",
              "--out", "run", "--json"], ["report", "run", "--out", "run/report.html", "--json"]):
    try:
        main(args)
    except SystemExit as exc:
        assert not exc.code, (args, exc.code)
print(sorted(m for m in ("torch", "scipy", "optuna", "sklearn") if m in sys.modules))
"""


def test_a_table_search_and_its_report_never_import_torch(tmp_path):
    """A search that looks accuracy and latency up in a table, and its report, start in a fraction of a
    second: torch (about 0.8 s to import), scipy and scikit-learn are for the evaluators that compute."""
    table = ROOT.parent / "shared" / "data" / "nb201" / "nb201_hw.csv"
    res = subprocess.run([sys.executable, "-c", _NO_TORCH, str(table)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                                      "EDGENAS_PROJECT": str(tmp_path), "EDGENAS_NO_PROGRESS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-500:]
    assert (tmp_path / "run" / "report.html").is_file()
