#!/usr/bin/env python3
"""Mutation testing of one module: each mutant changes one AST node of the module, the tests run against
it, and a mutant they still pass on "survives" (an equivalent change, or behaviour no test checks).

A coverage map of the whole suite first (about 30 minutes on 2 cores; pytest-cov, not a project
dependency), then one module at a time, each mutant running only the tests that ran its line:

    .venv/bin/pip install pytest-cov
    COVERAGE_FILE=/tmp/cov/.coverage .venv/bin/python -m pytest -q --cov=edgenas --cov-context=test \
        --cov-report= tests
    .venv/bin/python dev/mutate.py --module edgenas/safenames.py --cov-data /tmp/cov/.coverage \
        [--lines 10-40] [--out mutants.jsonl]

or, without a map, a pytest selection for every mutant: ``--tests "tests/devices/test_profiles.py -k name"``.
SURVIVED / UNCOVERED (no in-process test ran the line) / TIMEOUT lines go to stderr, a JSON summary to
stdout, every mutant to ``--out``.

Operators: comparison boundaries and negations (< <=, > >=, == !=, in / not in, is / is not), and <-> or,
``not x`` -> ``x``, + <-> -, * <-> /, int n -> n + 1, float x -> 2x (0 -> 1), True <-> False, ``raise`` ->
``pass``, ``return X`` -> ``return None``, ``if c:`` -> ``if not c:``, a call statement removed, ``continue``
<-> ``break``, and looser patterns passed to ``re.compile`` / ``re.match`` / ``re.fullmatch`` /
``re.search`` (``\\Z`` -> ``$``, no ``^``, a count one larger, '/' and ' ' added to a character class).
Docstrings and other string constants are left alone.

The module is restored after every mutant (and on Ctrl-C; after a kill -9, ``git checkout`` it), and its
``__pycache__`` entry is removed before each run so that no stale bytecode runs. Never run it on a
checkout others are using: it edits the module in place.
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult}


def docstring_nodes(tree: ast.AST) -> set[int]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def candidates(tree: ast.AST, lines: tuple[int, int] | None) -> list[tuple[int, str]]:
    """(index of the node in ast.walk order, operator) for every mutant."""
    docs, out = docstring_nodes(tree), []
    for i, node in enumerate(ast.walk(tree)):
        ln = getattr(node, "lineno", None)
        if ln is None or (lines and not lines[0] <= ln <= lines[1]):
            continue
        if isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in CMP_SWAP:
                    out.append((i, f"cmp{j}"))
        elif isinstance(node, ast.BoolOp):
            out.append((i, "boolop"))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append((i, "drop-not"))
        elif isinstance(node, ast.BinOp) and type(node.op) in BIN_SWAP:
            out.append((i, "binop"))
        elif isinstance(node, ast.Constant) and id(node) not in docs:
            if isinstance(node.value, bool):
                out.append((i, "bool"))
            elif isinstance(node.value, (int, float)):
                out.append((i, "num"))
        elif isinstance(node, ast.Raise):
            out.append((i, "drop-raise"))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append((i, "return-none"))
        elif isinstance(node, ast.If):
            out.append((i, "negate-if"))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            out.append((i, "drop-call"))
        elif isinstance(node, (ast.Continue, ast.Break)):
            out.append((i, "continue-break"))
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("re.compile", "re.match", "re.fullmatch",
                                                                        "re.search") and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            for j, _ in enumerate(regex_variants(node.args[0].value)):
                out.append((i, f"regex{j}"))
    return out


def regex_variants(rx: str) -> list[str]:
    """Looser patterns: an end anchor that lets a newline through, no start anchor, a count one larger,
    a character class that also takes '/' and ' '."""
    out = []
    if rx.endswith("\\Z"):
        out.append(rx[:-2] + "$")
    if rx.startswith("^"):
        out.append(rx[1:])
    m = re.search(r"\{(\d+),(\d+)\}", rx)
    if m:
        out.append(rx[:m.start()] + "{%s,%d}" % (m.group(1), int(m.group(2)) + 1) + rx[m.end():])
    m = re.search(r"\[([^\]^]+)\]", rx)
    if m:
        out.append(rx[:m.start()] + "[/ " + m.group(1) + "]" + rx[m.end():])
    return out


class Replace(ast.NodeTransformer):
    def __init__(self, target: ast.AST, new: ast.AST) -> None:
        self.target, self.new = target, new

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            return self.new
        return super().generic_visit(node)


def mutate(tree: ast.AST, index: int, kind: str) -> tuple[ast.AST, str, str]:
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    before = ast.unparse(node).splitlines()[0][:100]
    if kind.startswith("cmp"):
        j = int(kind[3:])
        node.ops[j] = CMP_SWAP[type(node.ops[j])]()
        new = node
    elif kind == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        new = node
    elif kind == "drop-not":
        new = node.operand
    elif kind == "binop":
        node.op = BIN_SWAP[type(node.op)]()
        new = node
    elif kind == "bool":
        new = ast.Constant(not node.value)
    elif kind == "num":
        v = node.value
        new = ast.Constant(v + 1 if isinstance(v, int) else (1.0 if v == 0 else v * 2))
    elif kind == "drop-raise":
        new = ast.Pass()
    elif kind == "return-none":
        new = ast.Return(ast.Constant(None))
    elif kind == "negate-if":
        node.test = ast.UnaryOp(ast.Not(), node.test)
        new = node
    elif kind == "drop-call":
        new = ast.Pass()
    elif kind.startswith("regex"):
        node.args[0] = ast.Constant(regex_variants(node.args[0].value)[int(kind[5:])])
        new = node
    elif kind == "continue-break":
        new = ast.Break() if isinstance(node, ast.Continue) else ast.Continue()
    else:
        raise ValueError(kind)
    if new is not node:
        ast.copy_location(new, node)
        tree = Replace(node, new).visit(tree)
    if isinstance(new, ast.If):
        after = "if " + ast.unparse(new.test)[:96]
    else:
        after = ast.unparse(new).splitlines()[0][:100]
    if isinstance(node, ast.If) and kind == "negate-if":
        before = "if " + ast.unparse(node.test.operand)[:96]
    ast.fix_missing_locations(tree)
    return tree, before, after


def top_name(tree: ast.Module, line: int) -> str | None:
    """The name a module-level assignment spanning ``line`` binds."""
    for st in tree.body:
        if isinstance(st, (ast.Assign, ast.AnnAssign)) and st.lineno <= line <= st.end_lineno:
            target = st.targets[0] if isinstance(st, ast.Assign) else st.target
            return target.id if isinstance(target, ast.Name) else None
    return None


def load_contexts(a: argparse.Namespace, root: Path) -> dict[int, set[str]]:
    """line -> the test node ids that ran it ('' for import time), from the coverage data."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        js = Path(tmp) / "cov.json"
        subprocess.run([a.python, "-m", "coverage", "json", f"--data-file={a.cov_data}", f"--include=*/{a.module}",
                        "--show-contexts", "-o", str(js)], cwd=root, check=True, capture_output=True)
        files = json.loads(js.read_text())["files"]
    out: dict[int, set[str]] = {}
    for f, v in files.items():
        if f.endswith(a.module):
            for ln, ctxs in v.get("contexts", {}).items():
                out[int(ln)] = {c.rsplit("|", 1)[0] for c in ctxs}
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True, help="path of the module, relative to --root")
    ap.add_argument("--tests", default="", help="pytest arguments (one string, split on spaces)")
    ap.add_argument("--root", default=".")
    ap.add_argument("--lines", default=None, help="A-B: only nodes starting on these lines")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per mutant (default: 3x the clean run + 10)")
    ap.add_argument("--out", default=None, help="JSON lines, one per mutant")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--cov-data", default=None,
                    help="a .coverage file of pytest --cov=edgenas --cov-context=test: each mutant then runs only "
                         "the tests that ran its line (--tests is ignored); a line no test ran is 'uncovered'")
    a = ap.parse_args()

    root = Path(a.root).resolve()
    path = root / a.module
    original = path.read_text()
    tree = ast.parse(original)
    lines = tuple(int(x) for x in a.lines.split("-")) if a.lines else None
    muts = candidates(tree, lines)
    env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
    cmd = [a.python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *a.tests.split()]
    pyc = path.parent / "__pycache__"

    def run(timeout: float | None, tests: list[str] | None = None) -> tuple[str, float]:
        for f in pyc.glob(path.stem + ".*.pyc") if pyc.is_dir() else []:
            f.unlink()
        t0 = time.time()
        p = subprocess.Popen(cmd if tests is None else cmd[:9] + tests, cwd=root, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:  # the whole group: a test's servers (a Ray head, sshd) too
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return "timeout", time.time() - t0
        if p.returncode == 5:
            return "no-tests", time.time() - t0
        return ("survived" if p.returncode == 0 else "killed"), time.time() - t0

    cover = load_contexts(a, root) if a.cov_data else None
    if cover is None:
        status, clean = run(None)
        if status != "survived":
            print(f"the clean run does not pass ({status}): fix the selection first", file=sys.stderr)
            return 2
        timeout = a.timeout or 3 * clean + 10
    else:
        clean, timeout = 0.0, a.timeout or 300
        everyone = sorted({t for ts in cover.values() for t in ts if t})
        uses: dict[str, list[int]] = {}
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for x in ast.walk(fn):
                    if isinstance(x, ast.Name):
                        uses.setdefault(x.id, []).append(x.lineno)
    print(f"{a.module}: {len(muts)} mutants, clean run {clean:.1f} s", file=sys.stderr)
    out = open(a.out, "w") if a.out else None
    counts: dict[str, int] = {}
    stamp = time.time()
    nodes = list(ast.walk(tree))  # the unmutated nodes, in the order candidates() numbered them
    try:
        for n, (index, kind) in enumerate(muts):
            mtree, before, after = mutate(tree, index, kind)
            node = nodes[index]
            try:
                text = ast.unparse(mtree)
                compile(text, str(path), "exec")
            except Exception:
                continue
            tests = None
            if cover is not None:
                last = node.lineno if isinstance(node, ast.stmt) and not isinstance(node, ast.If) else (
                    node.test.end_lineno if isinstance(node, ast.If) else node.end_lineno)
                ctx = set().union(*(cover.get(ln, set()) for ln in range(node.lineno, last + 1)))
                tests = sorted(t for t in ctx if t)
                if not tests and "" in ctx:  # import time: the tests that ran a line using the name assigned
                    users = uses.get(top_name(tree, node.lineno), [])
                    tests = sorted({t for ln in users for t in cover.get(ln, ()) if t}) or everyone
                if not tests:
                    status, secs = "uncovered", 0.0
                    counts[status] = counts.get(status, 0) + 1
                    rec = dict(line=node.lineno, kind=kind, before=before, after=after, status=status, seconds=0)
                    if out:
                        out.write(json.dumps(rec) + "\n")
                    print(f"[{n + 1}/{len(muts)}] UNCOVERED line {node.lineno} {kind}: {before!r} -> {after!r}",
                          file=sys.stderr)
                    continue
            path.write_text(text)
            stamp += 2
            os.utime(path, (stamp, stamp))
            status, secs = run(timeout, tests)
            counts[status] = counts.get(status, 0) + 1
            rec = dict(line=node.lineno, kind=kind, before=before, after=after, status=status, seconds=round(secs, 1))
            if out:
                out.write(json.dumps(rec) + "\n")
                out.flush()
            if status != "killed":
                print(f"[{n + 1}/{len(muts)}] {status.upper()} line {node.lineno} {kind}: {before!r} -> {after!r}",
                      file=sys.stderr)
    finally:
        path.write_text(original)
        stamp += 2
        os.utime(path, (stamp, stamp))
        for f in pyc.glob(path.stem + ".*.pyc") if pyc.is_dir() else []:
            f.unlink()
    print(json.dumps(dict(module=a.module, mutants=sum(counts.values()), **counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
