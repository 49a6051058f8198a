"""Shared set-up of the SSH benchmarks: the test suite's real-sshd helper and an isolated client side."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def sshd_helpers() -> ModuleType:
    """``tests/conftest.py`` (``SshdServer``, ``_free_port``), imported by path."""
    spec = importlib.util.spec_from_file_location("edgenas_test_conftest", ROOT / "tests" / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def ssh_bench_dir(prefix: str) -> tuple[Path, Path]:
    """(a fresh work folder, a client key in it); the user's ~/.ssh is kept out of the benchmark."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    key = base / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    os.environ["EDGENAS_USER_KNOWN_HOSTS"] = str(base / "no_known_hosts")
    os.environ["EDGENAS_SSH_CONFIG"] = str(base / "no_ssh_config")
    os.environ.pop("SSH_AUTH_SOCK", None)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    return base, key
