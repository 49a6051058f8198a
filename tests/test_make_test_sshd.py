"""Issue 10: ``make test`` (the README's test command) never skips the SSH tests silently: it installs
openssh-server when root, or stops with one line; under it, a missing sshd fails the SSH tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_need_sshd_fails_with_one_line_when_it_cannot_install():
    env = dict(os.environ, EDGENAS_SSHD="/nonexistent/sshd", EDGENAS_NO_INSTALL="1")
    r = subprocess.run(["bash", str(ROOT / ".ci" / "need-sshd")], env=env, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "apt-get install openssh-server" in r.stderr
    ok = subprocess.run(["bash", str(ROOT / ".ci" / "need-sshd")], capture_output=True, text=True,
                        env=dict(os.environ, EDGENAS_SSHD=sys.executable))  # an executable that exists
    assert ok.returncode == 0 and ok.stderr == ""


def test_make_test_runs_pytest_with_sshd_required():
    make = (ROOT / "Makefile").read_text()
    recipe = make.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "bash .ci/need-sshd" in recipe and "EDGENAS_REQUIRE_SSHD=1" in recipe


def test_ssh_tests_fail_instead_of_skipping_when_sshd_is_required(tmp_path):
    env = dict(os.environ, EDGENAS_SSHD="/nonexistent/sshd", EDGENAS_REQUIRE_SSHD="1", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/devices/test_trust.py::test_first_contact_rejected_until_trusted"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "1 error" in r.stdout and "/nonexistent/sshd not found" in r.stdout
    env.pop("EDGENAS_REQUIRE_SSHD")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "tests/devices/test_trust.py::test_first_contact_rejected_until_trusted"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "1 skipped" in r.stdout  # plain pytest, outside make test: skipped, with the reason
