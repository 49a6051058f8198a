"""Out of memory for real: a Python script run in a subprocess that caps its own address space a little above
what it uses at that moment (``cap(extra_mb)``, after its imports), and lifts the cap (``uncap()``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PRELUDE = textwrap.dedent("""
    import resource


    def cap(extra_mb, hard=False):
        used = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
        limit = used + extra_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit if hard else resource.RLIM_INFINITY))


    def uncap():
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
""")


def run_capped(script: str, tmp_path: Path, *args: object, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """``script`` (which calls ``cap``) run with the repository on its path, one thread, and ``env`` added."""
    path = tmp_path / "capped.py"
    path.write_text(PRELUDE + textwrap.dedent(script))
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, str(path), *map(str, args)], env=full, capture_output=True, text=True,
                          timeout=timeout)
